"""The tg plugin API: `hookimpl` to mark hook functions, the spec dataclasses, and the API version plugins declare."""
import pluggy
from tg_uop.plugins.specs import DeviceSpec, FrontendSpec, InterfaceSpec, RendererSpec

# (major, minor): a plugin declares TG_API_VERSION; same major and minor <= ours loads, anything else is refused
API_VERSION: tuple[int, int] = (1, 0)
hookimpl = pluggy.HookimplMarker("tg")

__all__ = ["API_VERSION", "hookimpl", "DeviceSpec", "FrontendSpec", "InterfaceSpec", "RendererSpec"]
