"""The device registry: parses device strings, pairs each device with a renderer and interface from the plugins, opens it once."""
from __future__ import annotations
import functools, os, re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
if TYPE_CHECKING:
  from tg_uop.plugins.manager import PluginManager
  from tg_uop.plugins.specs import DeviceSpec, RendererSpec

GRAMMAR = "[INTERFACE+]DEVICE[:INDEX][:RENDERER[:ARCH]]"
EXAMPLES = "NV, CPU:LLVM, USB+AMD, NULL:PTX:sm_90, CPU:1, CPU:1:LLVM"
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_DEV_RE = re.compile(rf"(?:(?P<interface>{_NAME})\+)?(?P<device>{_NAME})(?::(?P<index>[0-9]+))?"
                     rf"(?::(?P<renderer>{_NAME})(?::(?P<arch>[A-Za-z0-9_.+\-]+))?)?")

@dataclass(frozen=True)
class DevSpec:
  """A parsed device string: names upper-cased, `index` None when not given, `arch` kept as written."""
  interface: str | None
  device: str
  index: int | None
  renderer: str | None
  arch: str | None
  @property
  def canonical(self) -> str:
    """The registry key: index 0 is dropped, so "nv:0" and "NV" name the same device."""
    s = (f"{self.interface}+" if self.interface else "") + self.device + (f":{self.index}" if self.index else "")
    return s + (f":{self.renderer}" if self.renderer else "") + (f":{self.arch}" if self.arch else "")

def _what_is_wrong(s: str) -> str:
  # the most likely mistake first, so the message points at it
  if not s.strip(): return "it is empty"
  if s != s.strip() or " " in s: return "it contains spaces"
  if s.count("+") > 1 and ":" not in s.split("+", 1)[0]: return "only one INTERFACE+ prefix is allowed"
  head, *parts = s.split(":")
  if "+" in head and not all(head.split("+")): return "the interface or the device name around '+' is missing"
  if any(p == "" for p in parts): return "it has an empty part between ':'"
  names = [x for x in head.split("+")] + [p for p in parts if not p.isdigit()][:1]
  if bad := [n for n in names if not re.fullmatch(_NAME, n)]: return f"{bad[0]!r} is not a name (letters, digits and '_', starting with a letter)"
  if len(parts) > 1 and parts[0].isdigit() and parts[1].isdigit(): return "only one INDEX is allowed and a RENDERER name starts with a letter"
  if len(parts) > 3 or (len(parts) == 3 and not parts[0].isdigit()): return "it has too many ':' parts"
  return "it does not match the grammar"

def parse_dev(s: str) -> DevSpec:
  """Parse `[INTERFACE+]DEVICE[:INDEX][:RENDERER[:ARCH]]`, e.g. "USB+AMD", "CPU:1:LLVM", "NULL:PTX:sm_90"."""
  if not isinstance(s, str): raise TypeError(f"a device name must be a str like 'CPU', got {type(s).__name__} {s!r}")
  return _parse_dev(s)

@functools.lru_cache(maxsize=1024)  # every buffer and launch names its device: parse each spelling once
def _parse_dev(s: str) -> DevSpec:
  m = _DEV_RE.fullmatch(s)
  if m is None: raise ValueError(f"malformed device {s!r}: {_what_is_wrong(s)}; expected {GRAMMAR}, e.g. {EXAMPLES}")
  up = lambda v: v.upper() if v is not None else None
  return DevSpec(up(m["interface"]), m["device"].upper(), int(m["index"]) if m["index"] is not None else None, up(m["renderer"]), m["arch"])

def _load(pm: PluginManager, kind: str, key: Any, loader: Callable[[], Any]) -> Any:
  try: return loader()
  except Exception as e:
    p = pm.provider(kind, key)
    src = f" (from plugin {p.name!r}, {p.dist} {p.version})" if p is not None else ""
    raise RuntimeError(f"loading {kind} {key if isinstance(key, str) else '+'.join(key)}{src} failed: {type(e).__name__}: {e}") from e

def _broken_note(pm: PluginManager) -> str:
  broken = pm.broken()
  return ("; broken plugins: " + "; ".join(f"{i.name} ({i.dist} {i.version}): {i.error}" for i in broken)) if broken else ""

class DeviceRegistry:
  """`Device["CPU"]` opens (once) and returns a device; `Device.DEFAULT` is the device used when none is named."""
  def __init__(self, manager: Callable[[], PluginManager] | None = None):
    self._manager = manager
    self._opened: dict[str, Any] = {}
    self._default: str | None = None

  def _pm(self) -> PluginManager:
    if self._manager is not None: return self._manager()
    from tg_uop.plugins.manager import get_plugin_manager
    return get_plugin_manager()

  @staticmethod
  def canonicalize(name: str) -> str:
    """The canonical spelling of a device string: "nv:0" -> "NV", "usb+amd" -> "USB+AMD"."""
    return parse_dev(name).canonical

  def reset(self) -> None:
    """Forget opened devices and the chosen default (tests, or after reloading plugins)."""
    self._opened.clear()
    self._default = None

  def __getitem__(self, name: str) -> Any:
    # a canonical name of an opened device (what every Buffer holds) needs no parsing
    if type(name) is str and (dev := self._opened.get(name)) is not None: return dev
    ds = parse_dev(name)
    if (key := ds.canonical) not in self._opened: self._opened[key] = self._open(ds)
    return self._opened[key]

  def _spec(self, pm: PluginManager, device: str) -> DeviceSpec:
    devices = pm.devices()
    if device in devices: return devices[device]
    raise ValueError(f"unknown device {device!r}: available devices are {', '.join(sorted(devices)) or 'none'}{_broken_note(pm)}; "
                     f"install the package that provides it (e.g. pip install tg-driver-nv) or pick one of the available devices")

  def _renderer_spec(self, pm: PluginManager, spec: DeviceSpec, ds: DevSpec) -> RendererSpec:
    rends = pm.renderers()
    serving = [n for n in spec.renderers if n in rends] + [n for n, r in rends.items() if ds.device in r.devices and n not in spec.renderers]
    if ds.renderer is not None:
      r = rends.get(ds.renderer)
      if r is None:
        raise ValueError(f"renderer {ds.renderer!r} is not registered (registered: {', '.join(sorted(rends)) or 'none'}){_broken_note(pm)}; "
                         f"renderers come from tg-codegen: pip install tg-codegen")
      if spec.renderers and ds.device not in r.devices and r.name not in spec.renderers:
        raise ValueError(f"renderer {r.name} does not serve device {ds.device} (it serves {', '.join(r.devices) or 'no device'}); "
                         f"renderers for {ds.device}: {', '.join(serving) or 'none installed'}, e.g. {ds.device}:{(serving or spec.renderers)[0]}")
      if ds.arch is not None and r.archs and ds.arch not in r.archs:
        raise ValueError(f"renderer {r.name} does not support arch {ds.arch!r}; supported: {', '.join(r.archs)}")
      return r
    if serving: return rends[serving[0]]
    need = f"one of the renderers {', '.join(spec.renderers)}" if spec.renderers else "a renderer"
    raise ValueError(f"device {ds.device} needs {need}, but none is registered{_broken_note(pm)}; "
                     "install the code generators: pip install tg-codegen")

  def _open(self, ds: DevSpec) -> Any:
    pm = self._pm()
    spec = self._spec(pm, ds.device)
    rspec = self._renderer_spec(pm, spec, ds)
    interface = None
    if ds.interface is not None:
      ikey = (ds.interface, ds.device)
      ispec = pm.interfaces().get(ikey)
      if ispec is None:
        have = [i for i, d in pm.interfaces() if d == ds.device]
        raise ValueError(f"no interface {ds.interface!r} for device {ds.device} (available for {ds.device}: {', '.join(have) or 'none'}); "
                         f"install the package that provides it (e.g. pip install tg-usb){_broken_note(pm)}")
      # through an interface the device's own probe (a local driver node) does not apply; the interface's does
      if (why := pm.probe_interface(*ikey)) is not None: raise RuntimeError(f"device {ds.canonical} is not usable here: {why}")
      interface = _load(pm, "interface", ikey, ispec.loader)
    elif (why := pm.probe(ds.device)) is not None: raise RuntimeError(f"device {ds.canonical} is not usable here: {why}")
    renderer = _load(pm, "renderer", rspec.name, rspec.loader)(ds.arch)
    cls = _load(pm, "device", ds.device, spec.loader)
    return cls(ds.canonical, renderer=renderer, interface=interface)

  def get_available_devices(self) -> list[str]:
    """Devices whose probe passes, highest priority first (ties by name)."""
    pm = self._pm()
    return [n for n, s in sorted(pm.devices().items(), key=lambda kv: (-kv[1].priority, kv[0])) if pm.probe(n) is None]

  def _choose_default(self) -> str:
    if dev := os.environ.get("DEV", "").strip():
      ds = parse_dev(dev)
      self._spec(self._pm(), ds.device)  # fail now, naming what is available, rather than at first use
      return ds.canonical
    if avail := self.get_available_devices(): return avail[0]
    pm = self._pm()
    why = "; ".join(f"{n}: {pm.probe(n)}" for n in sorted(pm.devices())) or "no plugin provides a device"
    raise RuntimeError(f"no usable device ({why}){_broken_note(pm)}; install one (pip install tg-codegen gives CPU) or set DEV")

  @property
  def DEFAULT(self) -> str:
    """DEV from the environment if set, else the highest-priority device whose probe passes; assignable."""
    if self._default is None: self._default = self._choose_default()
    return self._default
  @DEFAULT.setter
  def DEFAULT(self, name: str) -> None: self._default = self.canonicalize(name)

Device = DeviceRegistry()
