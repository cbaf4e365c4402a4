"""Finds tg plugins, loads each one in isolation, and assembles the devices, renderers, interfaces and frontends they provide."""
from __future__ import annotations
import dataclasses, importlib, importlib.metadata, importlib.util, inspect, os, sys, traceback, types
from dataclasses import dataclass
from typing import Any, Callable, Mapping
import pluggy
from tg_uop.plugins import API_VERSION, hookspecs
from tg_uop.plugins.specs import DeviceSpec, FrontendSpec, InterfaceSpec, RendererSpec

ENTRY_POINT_GROUP = "tg.plugins"
# (plugin name, module, distribution) of the plugins in this monorepo: loaded from the source tree when they are importable
# but not installed (PYTHONPATH checkouts have no entry points). Installed ones should use these entry point names.
FIRST_PARTY: tuple[tuple[str, str, str], ...] = (
  ("null", "tg_uop.null", "tg-uop"), ("codegen", "tg_codegen.plugin", "tg-codegen"), ("tensor", "tg_tensor.plugin", "tg-tensor"),
  ("nv", "tg_driver_nv.plugin", "tg-driver-nv"), ("amd", "tg_driver_amd.plugin", "tg-driver-amd"), ("usb", "tg_usb.plugin", "tg-usb"))
# the core's own NULL device loads even with TG_PLUGINS_AUTOLOAD=0 or a TG_PLUGINS list (TG_PLUGINS_DISABLE=null turns it off)
BUILTIN = frozenset({"null"})
HOOK_NAMES = frozenset(n for n in dir(hookspecs) if n.startswith("tg_"))
# hooks called once per plugin at assembly, and the type each returned item must have
COLLECT_HOOKS: dict[str, type] = {"tg_devices": DeviceSpec, "tg_device_interfaces": InterfaceSpec, "tg_renderers": RendererSpec,
                                  "tg_frontends": FrontendSpec}

@dataclass(frozen=True)
class PluginInfo:
  """One plugin as the manager sees it: state is "loaded", "broken" or "disabled"; error says why when it is not loaded."""
  name: str
  dist: str
  version: str
  module: str
  state: str
  error: str | None = None

@dataclass(frozen=True)
class Candidate:
  """A plugin found (entry point or in-tree first-party module) but not yet imported."""
  name: str
  module: str
  dist: str
  version: str

# ---- discovery ----
def _dist_version(dist: str) -> str:
  try: return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError: return "in-tree"

def _importable(module: str) -> bool:
  # find_spec on "a.b" imports "a"; a broken "a" still counts as present so that loading reports its import error
  if importlib.util.find_spec(module.split(".")[0]) is None: return False
  try: return importlib.util.find_spec(module) is not None
  except Exception: return True

def discover(first_party: tuple[tuple[str, str, str], ...] = FIRST_PARTY) -> tuple[list[Candidate], list[PluginInfo]]:
  """Plugins to consider, in load order (first-party first, then by name), and duplicates that cannot be loaded."""
  found: dict[str, Candidate] = {}
  dups: list[PluginInfo] = []
  def add(c: Candidate):
    if any(o.module == c.module for o in found.values()): return  # the same module seen twice (installed and in-tree)
    if c.name in found:
      o = found[c.name]
      dups.append(PluginInfo(c.name, c.dist, c.version, c.module, "broken", f"plugin name {c.name!r} is also used by {o.dist} {o.version} "
                             f"({o.module}); uninstall one of them"))
    else: found[c.name] = c
  eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
  for ep in sorted(eps, key=lambda e: (e.name, e.value)):
    dist = ep.dist.name if ep.dist is not None else "unknown"
    add(Candidate(ep.name, ep.value, dist, ep.dist.version if ep.dist is not None else "unknown"))
  for name, module, dist in first_party:
    if _importable(module): add(Candidate(name, module, dist, _dist_version(dist)))
  order = {m: i for i, (_, m, _) in enumerate(first_party)}
  return sorted(found.values(), key=lambda c: (order.get(c.module, len(order)), c.name)), dups

def _import_target(target: str) -> Any:
  """Import an entry point value: "pkg.module" or "pkg.module:attr"."""
  mod, _, attr = target.partition(":")
  obj: Any = importlib.import_module(mod)
  for a in filter(None, attr.split(".")): obj = getattr(obj, a)
  return obj

def check_api_version(declared: Any, dist: str) -> str | None:
  """None when a plugin declaring TG_API_VERSION = `declared` can load into this core, else what is wrong and how to fix it."""
  core = f"{API_VERSION[0]}.{API_VERSION[1]}"
  if declared is None: return f"the plugin module does not declare TG_API_VERSION; add TG_API_VERSION = {API_VERSION} (tg-uop provides API {core})"
  if not (isinstance(declared, (tuple, list)) and len(declared) == 2 and all(isinstance(v, int) for v in declared)):
    return f"TG_API_VERSION must be a (major, minor) tuple of ints, got {declared!r}"
  major, minor = declared
  need = f"{major}.{minor}"
  if major < API_VERSION[0]:
    return f"{dist} was written for tg plugin API {need} but tg-uop provides API {core}; upgrade the plugin: pip install -U {dist}"
  if major > API_VERSION[0] or minor > API_VERSION[1]:
    return (f"{dist} needs tg plugin API {need} but tg-uop provides API {core}; upgrade the core: pip install -U tg-uop "
            f"(or install an older {dist})")
  return None

def _env_list(v: str | None) -> list[str]: return [x.strip() for x in (v or "").split(",") if x.strip()]
def _norm(s: str) -> str: return s.lower().replace("_", "-")
def _matches(c: Candidate | PluginInfo, item: str) -> bool: return item in (c.name, c.module) or _norm(item) == _norm(c.dist)

def _where(e: BaseException) -> str:
  tb = traceback.extract_tb(e.__traceback__)
  return f" (at {tb[-1].filename}:{tb[-1].lineno})" if tb else ""

class _TgPluggy(pluggy.PluginManager):
  def parse_hookimpl_opts(self, plugin: Any, name: str):
    opts = super().parse_hookimpl_opts(plugin, name)
    # a plain function named like a hook counts too, so a simple plugin module needs no decorator
    if opts is None and name in HOOK_NAMES and inspect.isfunction(getattr(plugin, name, None)): opts = {}
    return opts

# ---- the manager ----
class PluginManager:
  """Loads plugins one by one (a failing one is recorded as broken, the rest keep working) and caches what their hooks return."""
  def __init__(self):
    self._pm = _TgPluggy("tg")
    self._pm.add_hookspecs(hookspecs)
    self._infos: dict[str, PluginInfo] = {}
    self._contrib: dict[str, dict[str, list]] = {}   # plugin name -> hook name -> validated results, each hook called once
    self._merged: dict[str, Any] | None = None
    self._passes: dict[tuple[str, str], list] = {}
    self._probes: dict[tuple[str, ...], str | None] = {}

  # -- loading --
  def load_from_environment(self, environ: Mapping[str, str] | None = None,
                            first_party: tuple[tuple[str, str, str], ...] = FIRST_PARTY) -> None:
    """Discover and load plugins, honouring TG_PLUGINS_AUTOLOAD=0, TG_PLUGINS=a,b and TG_PLUGINS_DISABLE=x."""
    env = os.environ if environ is None else environ
    autoload = env.get("TG_PLUGINS_AUTOLOAD", "1").strip().lower() not in ("0", "false", "no", "off")
    wanted, disabled = _env_list(env.get("TG_PLUGINS")), _env_list(env.get("TG_PLUGINS_DISABLE"))
    cands, dups = discover(first_party)
    used: set[str] = set()
    for c in cands:
      if any(_matches(c, d) for d in disabled):
        self._record(PluginInfo(c.name, c.dist, c.version, c.module, "disabled", f"disabled by TG_PLUGINS_DISABLE={','.join(disabled)}"))
        continue
      named = [w for w in wanted if _matches(c, w)]
      used.update(named)
      if c.name in BUILTIN or named or (autoload and not wanted): self.load_module(c.module, name=c.name, dist=c.dist, version=c.version)
      else:
        why = "TG_PLUGINS_AUTOLOAD=0 and TG_PLUGINS does not name it" if not autoload else f"TG_PLUGINS={','.join(wanted)} does not name it"
        self._record(PluginInfo(c.name, c.dist, c.version, c.module, "disabled", f"not loaded: {why}"))
    # a duplicate shares its name with the plugin that won, so it is keyed by name and distribution
    for info in dups: self._infos[f"{info.name}@{info.dist}"] = info
    # like pytest's -p: a name in TG_PLUGINS that no installed plugin has is imported as a module path
    for w in wanted:
      if w in used or w in self._infos or any(w == d for d in disabled): continue
      try: ok = importlib.util.find_spec(w.partition(":")[0]) is not None
      except Exception: ok = True  # a parent package that fails to import: let load_module report the real error
      if ok: self.load_module(w, name=w, dist=w.split(".")[0].replace("_", "-"), version=_dist_version(w.split(".")[0].replace("_", "-")))
      else:
        known = ", ".join(c.name for c in cands) or "none"
        self._record(PluginInfo(w, "unknown", "unknown", w, "broken", f"TG_PLUGINS names {w!r}, which is neither an installed plugin "
                                f"(installed: {known}) nor an importable module"))

  def load_module(self, module: str | types.ModuleType, name: str | None = None, dist: str | None = None, version: str | None = None) -> PluginInfo:
    """Load one plugin module (an object or an import path "pkg.mod[:attr]"); returns its PluginInfo, "broken" on any failure."""
    target = module if isinstance(module, str) else module.__name__
    name = name or target
    dist = dist or target.split(".")[0].replace("_", "-")
    version = version or "unknown"
    if name in self._infos and self._infos[name].state != "disabled":
      raise ValueError(f"a plugin named {name!r} is already {self._infos[name].state} ({self._infos[name].module}); pass another name=")
    info = PluginInfo(name, dist, version, target, "loaded")
    if isinstance(module, str):
      try: module = _import_target(module)
      except Exception as e:
        return self._record(dataclasses.replace(info, state="broken", error=f"import failed: {type(e).__name__}: {e}{_where(e)}"))
    err = check_api_version(getattr(module, "TG_API_VERSION", None), dist)
    if err is None:
      unknown = sorted(n for n in dir(module) if n not in HOOK_NAMES and self._pm.parse_hookimpl_opts(module, n) is not None)
      if unknown:
        err = f"defines unknown hook(s) {', '.join(unknown)}; tg plugin API {API_VERSION[0]}.{API_VERSION[1]} has {', '.join(sorted(HOOK_NAMES))}"
    if err is None:
      try: self._pm.register(module, name=name)
      except Exception as e:
        if self._pm.has_plugin(name): self._pm.unregister(name=name)
        err = f"invalid hook implementation: {type(e).__name__}: {e}"
    if err is not None: return self._record(dataclasses.replace(info, state="broken", error=err))
    return self._record(info)

  def _record(self, info: PluginInfo) -> PluginInfo:
    self._infos[info.name] = info
    self._merged = None
    self._passes.clear()
    return info

  def _mark_broken(self, name: str, error: str) -> None:
    if self._pm.has_plugin(name): self._pm.unregister(name=name)
    self._record(dataclasses.replace(self._infos[name], state="broken", error=error))

  # -- calling hooks --
  def _call(self, hook: str, plugin: str, **kwargs: Any) -> list:
    out: list = []
    for impl in getattr(self._pm.hook, hook).get_hookimpls():
      if impl.plugin_name != plugin: continue
      res = impl.function(*[kwargs[a] for a in impl.argnames])
      if hook == "tg_configure": continue
      if res is None: continue
      if not isinstance(res, (list, tuple)): raise TypeError(f"{hook} must return a list, got {type(res).__name__}")
      want = COLLECT_HOOKS.get(hook)
      for item in res:
        if want is not None and not isinstance(item, want): raise TypeError(f"{hook} must return a list of {want.__name__}, got {item!r}")
      out.extend(res)
    return out

  def _loaded(self) -> list[str]: return [n for n, i in self._infos.items() if i.state == "loaded"]

  def _collect(self, name: str) -> None:
    config = {"api_version": API_VERSION, "plugins": self._loaded(), "dev": os.environ.get("DEV"), "debug": _debug_level()}
    hook = "tg_configure"
    try:
      self._call(hook, name, config=dict(config))
      contrib = {}
      for hook in COLLECT_HOOKS: contrib[hook] = self._call(hook, name)
      self._contrib[name] = contrib
    except Exception as e: self._mark_broken(name, f"hook {hook} raised {type(e).__name__}: {e}{_where(e)}")

  def _assemble(self) -> dict[str, Any]:
    if self._merged is None:
      # a plugin whose hook raises is marked broken inside _collect, so the merge below only sees plugins that succeeded
      for n in self._loaded():
        if n not in self._contrib: self._collect(n)
      self._merged = self._merge()
    return self._merged

  def _merge(self) -> dict[str, Any]:
    m: dict[str, Any] = {"devices": {}, "renderers": {}, "interfaces": {}, "frontends": [], "provider": {}, "conflicts": []}
    for n in self._loaded():
      c = self._contrib[n]
      for kind, hook, key in (("device", "tg_devices", lambda s: s.name), ("renderer", "tg_renderers", lambda s: s.name),
                              ("interface", "tg_device_interfaces", lambda s: (s.name, s.device))):
        table = m[kind + "s"]
        for spec in c[hook]:
          k = key(spec)
          if k in table: m["conflicts"].append(f"{kind} {k!r} from plugin {n!r} ignored: plugin {m['provider'][(kind, k)]!r} already provides it")
          else: table[k], m["provider"][(kind, k)] = spec, n
      for spec in c["tg_frontends"]:
        m["frontends"].append(spec)
        m["provider"].setdefault(("frontend", spec.name), n)
    return m

  # -- public queries --
  @property
  def plugins(self) -> list[PluginInfo]:
    """Every plugin seen, in load order, with its state (hooks have run, so a plugin whose hook raised shows as broken)."""
    self._assemble()
    return list(self._infos.values())
  def broken(self) -> list[PluginInfo]:
    """The plugins that failed to import, have the wrong API version, or raised in a hook."""
    return [i for i in self.plugins if i.state == "broken"]
  def devices(self) -> dict[str, DeviceSpec]:
    """Device name -> DeviceSpec, over all loaded plugins."""
    return dict(self._assemble()["devices"])
  def renderers(self) -> dict[str, RendererSpec]:
    """Renderer name -> RendererSpec, over all loaded plugins."""
    return dict(self._assemble()["renderers"])
  def interfaces(self) -> dict[tuple[str, str], InterfaceSpec]:
    """(interface, device) -> InterfaceSpec, over all loaded plugins."""
    return dict(self._assemble()["interfaces"])
  def frontends(self) -> list[FrontendSpec]:
    """Every FrontendSpec, in plugin order."""
    return list(self._assemble()["frontends"])
  def conflicts(self) -> list[str]:
    """Specs ignored because an earlier plugin already registered the same name."""
    return list(self._assemble()["conflicts"])
  def provider(self, kind: str, key: Any) -> PluginInfo | None:
    """The plugin that provides ("device"|"renderer"|"interface"|"frontend", name) or None."""
    n = self._assemble()["provider"].get((kind, key))
    return self._infos[n] if n is not None else None

  def rewrite_passes(self, stage: str, target: str) -> list:
    """The pattern matchers all loaded plugins add at lowering stage `stage` for `target` (hooks called once per pair)."""
    self._assemble()
    key = (stage, target)
    while key not in self._passes:
      out: list = []
      for n in self._loaded():
        try: out.extend(self._call("tg_rewrite_passes", n, stage=stage, target=target))
        except Exception as e:
          self._mark_broken(n, f"hook tg_rewrite_passes(stage={stage!r}, target={target!r}) raised {type(e).__name__}: {e}{_where(e)}")
          break
      else: self._passes[key] = out
    return list(self._passes[key])

  def _probe(self, key: tuple[str, ...], fn: Callable[[], str | None]) -> str | None:
    if key not in self._probes:
      try:
        res = fn()
        self._probes[key] = None if res is None else str(res)
      except Exception as e: self._probes[key] = f"probe raised {type(e).__name__}: {e}"
    return self._probes[key]
  def probe(self, device: str) -> str | None:
    """None when `device` looks usable on this machine, else why not (cached; a raising probe counts as unusable)."""
    spec = self.devices().get(device)
    if spec is None: return f"no plugin provides device {device!r}"
    return self._probe(("device", device), spec.probe)
  def probe_interface(self, interface: str, device: str) -> str | None:
    """Like `probe`, for the interface `interface` of `device`."""
    spec = self.interfaces().get((interface, device))
    if spec is None: return f"no plugin provides interface {interface!r} for device {device!r}"
    return self._probe(("interface", interface, device), spec.probe)

def _debug_level() -> int:
  from tg_uop.helpers import DEBUG
  return int(DEBUG.value)

_manager: PluginManager | None = None

def get_plugin_manager() -> PluginManager:
  """The process-wide plugin manager; the first call discovers and loads the plugins (hooks run on first query)."""
  global _manager
  if _manager is None:
    pm = PluginManager()
    pm.load_from_environment()
    _manager = pm
  return _manager

def reset_plugin_manager(manager: PluginManager | None = None) -> None:
  """Forget the process-wide manager (tests), or install `manager` as it; also forgets devices the registry opened."""
  global _manager
  _manager = manager
  if (dev := sys.modules.get("tg_uop.device")) is not None: dev.Device.reset()
