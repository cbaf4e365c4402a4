"""Every hook a tg plugin can implement, declared once. The plugin manager calls them; plugins return plain data."""
from __future__ import annotations
from typing import Any
import pluggy
from tg_uop.plugins.specs import DeviceSpec, FrontendSpec, InterfaceSpec, RendererSpec

hookspec = pluggy.HookspecMarker("tg")

@hookspec
def tg_configure(config: dict[str, Any]) -> None:
  """Called by the plugin manager once per plugin when it assembles the runtime, before any other hook.

  `config` is a fresh dict per plugin holding the final settings: `api_version` (the core's (major, minor)), `plugins`
  (names of the loaded plugins), `dev` (the DEV environment variable or None) and `debug` (the DEBUG level). Use it to
  adapt what the other hooks return. Return nothing. Raising marks the plugin broken.
  """

@hookspec
def tg_devices() -> list[DeviceSpec]:
  """Called once when the runtime is assembled (first use of `Device` or the plugin manager).

  Return a list of `DeviceSpec`: a name, a lazy `loader` returning the device class, a cheap `probe` (no driver import:
  check a file such as /dev/nvidiactl) and a priority for choosing the default device. Every result is collected
  (not firstresult); a name already taken by an earlier plugin is ignored and reported in `conflicts`.
  """

@hookspec
def tg_device_interfaces() -> list[InterfaceSpec]:
  """Called once when the runtime is assembled.

  Return a list of `InterfaceSpec`: a transport named `name` for the device `device` (e.g. "USB" for "AMD"), so a package
  adds itself to a driver it does not import. `DEV=USB+AMD` passes `loader()`'s result to the device as `interface=`.
  Every result is collected (not firstresult).
  """

@hookspec
def tg_renderers() -> list[RendererSpec]:
  """Called once when the runtime is assembled.

  Return a list of `RendererSpec`: a name (e.g. "PTX"), the devices and architectures it serves, and a lazy `loader`
  returning a `Renderer` subclass that the device registry instantiates as `cls(arch)`. Every result is collected
  (not firstresult); a name already taken by an earlier plugin is ignored and reported in `conflicts`.
  """

@hookspec
def tg_rewrite_passes(stage: str, target: str) -> list[Any]:
  """Called by the lowering the first time it reaches lowering stage `stage` for renderer/device `target`; cached after.

  Return a list of `PatternMatcher`s to apply at that stage (an empty list when the plugin has none for it). Every
  plugin's list is concatenated in plugin order (not firstresult).
  """

@hookspec
def tg_frontends() -> list[FrontendSpec]:
  """Called once when the runtime is assembled.

  Return a list of `FrontendSpec`: model or file loaders (ONNX, safetensors, GGUF, torch checkpoints) with the file
  extensions they read and a lazy `loader` returning the load function. Every result is collected (not firstresult).
  """
