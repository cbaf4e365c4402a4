"""The plugin manager: hook registration, isolation of broken plugins, API versions, environment switches, the CLI."""
import importlib.metadata, json, os, subprocess, sys, textwrap, types
import pytest
from tg_uop.plugins import API_VERSION, DeviceSpec, FrontendSpec, InterfaceSpec, RendererSpec, hookimpl
from tg_uop.plugins.manager import PluginManager, get_plugin_manager, reset_plugin_manager

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))

class FakeDevice:
  def __init__(self, name, renderer=None, interface=None): self.name, self.renderer, self.interface = name, renderer, interface
class FakeRenderer:
  def __init__(self, arch=None): self.arch = arch

def plugin_module(name: str, api=API_VERSION, **hooks) -> types.ModuleType:
  """A plugin module object holding `hooks` (functions, marked with hookimpl) and TG_API_VERSION = `api` (None: undeclared)."""
  mod = types.ModuleType(name)
  if api is not None: mod.TG_API_VERSION = api
  for k, fn in hooks.items(): setattr(mod, k, hookimpl(fn))
  return mod

def device_plugin(name: str, dev: str, **kw) -> types.ModuleType:
  return plugin_module(name, tg_devices=lambda: [DeviceSpec(dev, loader=lambda: FakeDevice, renderers=("FAKER",))],
                       tg_renderers=lambda: [RendererSpec(f"{dev}R", loader=lambda: FakeRenderer, devices=(dev,))], **kw)

def only_entry_points_from(monkeypatch, paths: list[str]) -> None:
  """Make entry point discovery see only the distributions under `paths`, so plugins installed alongside the tests (tg-uop's own
  `null` entry point when tg-uop is pip installed) do not leak into tests that assert exactly which plugins were found."""
  def entry_points(**params):
    eps = [ep for d in importlib.metadata.distributions(path=paths) for ep in d.entry_points]
    return importlib.metadata.EntryPoints(eps).select(**params)
  monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

@pytest.fixture
def no_installed_plugins(monkeypatch):
  """Entry point discovery finds nothing: plugins come only from a test's explicit first_party list."""
  only_entry_points_from(monkeypatch, [])

@pytest.fixture
def fake_site(tmp_path, monkeypatch):
  """A directory on sys.path where tests create distributions with tg.plugins entry points, and their plugin modules; in-process
  discovery sees only these distributions (subprocesses still see everything installed)."""
  before = set(sys.modules)
  monkeypatch.syspath_prepend(str(tmp_path))
  only_entry_points_from(monkeypatch, [str(tmp_path)])
  def make_dist(dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]):
    info = tmp_path / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[tg.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for m, src in modules.items(): (tmp_path / f"{m}.py").write_text(textwrap.dedent(src))
  yield make_dist
  for m in set(sys.modules) - before: sys.modules.pop(m, None)

GOOD_SRC = """
from tg_uop.plugins import hookimpl, DeviceSpec
TG_API_VERSION = (1, 0)
class Dev:
  def __init__(self, name, renderer=None, interface=None): self.name = name
@hookimpl
def tg_devices(): return [DeviceSpec("{dev}", loader=lambda: Dev, probe=lambda: {probe!r}, priority=5)]
"""

# ---- registration and caching ----
def test_loaded_module_hooks_provide_specs():
  pm = PluginManager()
  fe = FrontendSpec("fakeonnx", (".onnx",), loader=lambda: (lambda path: path))
  mod = device_plugin("fakeplug", "FAKE", tg_device_interfaces=lambda: [InterfaceSpec("USB", "FAKE", loader=lambda: "usb-transport")],
                      tg_frontends=lambda: [fe])
  info = pm.load_module(mod, dist="fake-dist", version="1.2")
  assert (info.name, info.dist, info.version, info.state, info.error) == ("fakeplug", "fake-dist", "1.2", "loaded", None)
  assert pm.devices()["FAKE"].loader() is FakeDevice
  assert pm.renderers()["FAKER"].devices == ("FAKE",)
  assert pm.interfaces()[("USB", "FAKE")].loader() == "usb-transport"
  assert pm.frontends() == [fe]
  assert pm.provider("device", "FAKE").dist == "fake-dist"
  assert [p.name for p in pm.plugins] == ["fakeplug"]

def test_plain_function_named_like_a_hook_is_registered_without_the_marker():
  mod = types.ModuleType("plainplug")
  mod.TG_API_VERSION = (1, 0)
  mod.tg_devices = lambda: [DeviceSpec("PLAIN", loader=lambda: FakeDevice)]
  pm = PluginManager()
  pm.load_module(mod)
  assert list(pm.devices()) == ["PLAIN"]

def test_hooks_are_called_once_and_cached():
  calls = []
  def tg_devices():
    calls.append("tg_devices")
    return [DeviceSpec("ONCE", loader=lambda: FakeDevice)]
  def tg_configure(config):
    calls.append(("tg_configure", tuple(config["api_version"]), tuple(config["plugins"])))
  def tg_rewrite_passes(stage, target):
    calls.append(("passes", stage, target))
    return [f"pm-{stage}-{target}"]
  pm = PluginManager()
  pm.load_module(plugin_module("onceplug", tg_devices=tg_devices, tg_configure=tg_configure, tg_rewrite_passes=tg_rewrite_passes))
  for _ in range(3): pm.devices(); pm.renderers(); pm.plugins
  assert pm.rewrite_passes("late", "PTX") == pm.rewrite_passes("late", "PTX") == ["pm-late-PTX"]
  assert calls == [("tg_configure", API_VERSION, ("onceplug",)), "tg_devices", ("passes", "late", "PTX")]

def test_rewrite_passes_concatenate_in_plugin_order():
  pm = PluginManager()
  pm.load_module(plugin_module("a", tg_rewrite_passes=lambda stage, target: ["a1"]))
  pm.load_module(plugin_module("b", tg_rewrite_passes=lambda stage: ["b1", "b2"]))
  assert pm.rewrite_passes("early", "C") == ["a1", "b1", "b2"]

def test_duplicate_device_name_keeps_the_first_and_reports_a_conflict():
  pm = PluginManager()
  pm.load_module(device_plugin("first", "DUP"))
  pm.load_module(plugin_module("second", tg_devices=lambda: [DeviceSpec("DUP", loader=lambda: object, priority=99)]))
  assert pm.devices()["DUP"].priority == 0
  assert pm.provider("device", "DUP").name == "first"
  assert any("DUP" in c and "second" in c and "first" in c for c in pm.conflicts())

def test_loading_the_same_plugin_name_twice_is_refused():
  pm = PluginManager()
  pm.load_module(device_plugin("twice", "T1"))
  with pytest.raises(ValueError, match="twice"): pm.load_module(device_plugin("twice", "T2"))

# ---- isolation ----
def test_plugin_that_raises_on_import_is_broken_and_others_still_work(fake_site):
  fake_site("unused-dist", "0", {}, {"raising_tg_plugin": "raise RuntimeError('libfoo.so missing')\n"})
  pm = PluginManager()
  bad = pm.load_module("raising_tg_plugin", name="raising", dist="raising-dist", version="0.3")
  pm.load_module(device_plugin("good", "GOOD"))
  assert bad.state == "broken" and "RuntimeError" in bad.error and "libfoo.so missing" in bad.error
  assert list(pm.devices()) == ["GOOD"]
  assert [(p.name, p.state) for p in pm.plugins] == [("raising", "broken"), ("good", "loaded")]
  assert [p.name for p in pm.broken()] == ["raising"]

def test_missing_module_is_broken():
  pm = PluginManager()
  info = pm.load_module("tg_no_such_module_anywhere", name="ghost")
  assert info.state == "broken" and "ModuleNotFoundError" in info.error

@pytest.mark.parametrize("declared, needs_upgrade_of", [((2, 0), "tg-uop"), ((0, 9), "fake-dist"), ((1, API_VERSION[1] + 5), "tg-uop")])
def test_api_version_mismatch_is_broken_naming_both_versions_and_the_upgrade(declared, needs_upgrade_of):
  pm = PluginManager()
  mod = plugin_module("versioned", api=declared, tg_devices=lambda: [DeviceSpec("VER", loader=lambda: FakeDevice)])
  info = pm.load_module(mod, dist="fake-dist", version="3.1")
  assert info.state == "broken"
  assert f"{declared[0]}.{declared[1]}" in info.error and f"{API_VERSION[0]}.{API_VERSION[1]}" in info.error
  assert f"pip install -U {needs_upgrade_of}" in info.error
  assert pm.devices() == {}

def test_older_minor_api_version_is_accepted():
  pm = PluginManager()
  assert pm.load_module(plugin_module("oldminor", api=(API_VERSION[0], 0))).state == "loaded"

@pytest.mark.parametrize("declared", [None, "1.0", (1,), (1, "0")])
def test_missing_or_malformed_api_version_is_broken(declared):
  pm = PluginManager()
  info = pm.load_module(plugin_module("noapi", api=declared))
  assert info.state == "broken" and "TG_API_VERSION" in info.error

def test_hook_that_raises_breaks_only_its_plugin_and_drops_all_it_provided():
  def tg_renderers(): raise OSError("cannot read /sys/class/fake")
  pm = PluginManager()
  pm.load_module(plugin_module("raiser", tg_devices=lambda: [DeviceSpec("RAISER", loader=lambda: FakeDevice)], tg_renderers=tg_renderers))
  pm.load_module(device_plugin("good", "GOOD"))
  assert list(pm.devices()) == ["GOOD"]
  info = {p.name: p for p in pm.plugins}["raiser"]
  assert info.state == "broken" and "tg_renderers" in info.error and "cannot read /sys/class/fake" in info.error

def test_configure_that_raises_breaks_the_plugin():
  def tg_configure(config): raise ValueError("bad setting")
  pm = PluginManager()
  pm.load_module(device_plugin("cfg", "CFG", tg_configure=tg_configure))
  assert pm.devices() == {} and "bad setting" in pm.broken()[0].error

def test_rewrite_pass_hook_that_raises_breaks_its_plugin_and_keeps_the_others():
  def bad(stage, target): raise KeyError(stage)
  pm = PluginManager()
  pm.load_module(plugin_module("good", tg_rewrite_passes=lambda stage, target: ["g"]))
  pm.load_module(device_plugin("bad", "BADPASS", tg_rewrite_passes=bad))
  assert pm.rewrite_passes("late", "C") == ["g"]
  assert {p.name: p.state for p in pm.plugins} == {"good": "loaded", "bad": "broken"}
  assert "tg_rewrite_passes" in pm.broken()[0].error and "BADPASS" not in pm.devices()

@pytest.mark.parametrize("ret", [DeviceSpec("X", loader=lambda: FakeDevice), ["not a spec"], [RendererSpec("R", loader=lambda: FakeRenderer)]])
def test_hook_returning_the_wrong_type_is_broken(ret):
  pm = PluginManager()
  pm.load_module(plugin_module("wrongtype", tg_devices=lambda: ret))
  assert pm.devices() == {} and "tg_devices must return a list" in pm.broken()[0].error

def test_unknown_hook_is_broken_naming_the_known_hooks():
  pm = PluginManager()
  info = pm.load_module(plugin_module("typo", tg_device=lambda: []))
  assert info.state == "broken" and "tg_device" in info.error and "tg_devices" in info.error

def test_hook_with_wrong_arguments_is_broken():
  pm = PluginManager()
  info = pm.load_module(plugin_module("wrongargs", tg_rewrite_passes=lambda stage, target, extra: []))
  assert info.state == "broken" and "extra" in info.error

def test_spec_with_wrong_field_types_fails_with_the_field_name():
  with pytest.raises(TypeError, match="renderers"): DeviceSpec("X", loader=lambda: FakeDevice, renderers="PTX")
  with pytest.raises(ValueError, match="upper case"): DeviceSpec("cuda", loader=lambda: FakeDevice)
  with pytest.raises(ValueError, match="devices"): RendererSpec("PTX", loader=lambda: FakeDevice, devices=("nv",))

# ---- discovery through entry points and the environment ----
def two_dists(fake_site):
  fake_site("fake-alpha", "1.2", {"alpha": "fake_alpha_plugin"}, {"fake_alpha_plugin": GOOD_SRC.format(dev="ALPHA", probe=None)})
  fake_site("fake-beta", "0.5", {"beta": "fake_beta_plugin"}, {"fake_beta_plugin": GOOD_SRC.format(dev="BETA", probe=None)})

def states(pm): return {p.name: (p.state, p.dist, p.version) for p in pm.plugins}

def test_entry_points_are_loaded_with_their_distribution(fake_site):
  two_dists(fake_site)
  pm = PluginManager()
  pm.load_from_environment({}, first_party=())
  assert states(pm) == {"alpha": ("loaded", "fake-alpha", "1.2"), "beta": ("loaded", "fake-beta", "0.5")}
  assert sorted(pm.devices()) == ["ALPHA", "BETA"]

def test_tg_plugins_disable_by_name_or_distribution(fake_site):
  two_dists(fake_site)
  for disable in ("alpha", "fake-alpha", "fake_alpha_plugin"):
    pm = PluginManager()
    pm.load_from_environment({"TG_PLUGINS_DISABLE": disable}, first_party=())
    assert states(pm)["alpha"][0] == "disabled" and "TG_PLUGINS_DISABLE" in {p.name: p for p in pm.plugins}["alpha"].error
    assert list(pm.devices()) == ["BETA"]

def test_tg_plugins_loads_only_the_named_plugins(fake_site):
  two_dists(fake_site)
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS": "beta"}, first_party=())
  assert states(pm)["alpha"][0] == "disabled" and states(pm)["beta"][0] == "loaded"
  assert list(pm.devices()) == ["BETA"]

def test_autoload_off_loads_nothing_unless_named(fake_site):
  two_dists(fake_site)
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS_AUTOLOAD": "0"}, first_party=())
  assert {n: s[0] for n, s in states(pm).items()} == {"alpha": "disabled", "beta": "disabled"} and pm.devices() == {}
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS_AUTOLOAD": "0", "TG_PLUGINS": "alpha"}, first_party=())
  assert {n: s[0] for n, s in states(pm).items()} == {"alpha": "loaded", "beta": "disabled"}

def test_tg_plugins_imports_a_module_path_that_is_not_installed(fake_site):
  fake_site("unused", "0", {}, {"loose_tg_plugin": GOOD_SRC.format(dev="LOOSE", probe=None)})
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS_AUTOLOAD": "0", "TG_PLUGINS": "loose_tg_plugin,nonexistent_thing"}, first_party=())
  assert list(pm.devices()) == ["LOOSE"]
  info = {p.name: p for p in pm.plugins}["nonexistent_thing"]
  assert info.state == "broken" and "TG_PLUGINS" in info.error and "neither an installed plugin" in info.error

def test_in_tree_first_party_plugin_loads_without_entry_point_and_is_not_duplicated(fake_site):
  fake_site("fake-gamma", "2.0", {"gamma": "fake_gamma_plugin"}, {"fake_gamma_plugin": GOOD_SRC.format(dev="GAMMA", probe=None),
                                                                  "fake_intree_plugin": GOOD_SRC.format(dev="INTREE", probe=None)})
  first_party = (("intree", "fake_intree_plugin", "fake-intree"), ("gamma", "fake_gamma_plugin", "fake-gamma"), ("absent", "no_such_pkg.plugin", "x"))
  pm = PluginManager()
  pm.load_from_environment({}, first_party=first_party)
  assert states(pm) == {"intree": ("loaded", "fake-intree", "in-tree"), "gamma": ("loaded", "fake-gamma", "2.0")}

def test_builtin_null_loads_even_with_autoload_off(no_installed_plugins):
  pytest.importorskip("tg_uop.null")
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS_AUTOLOAD": "0"}, first_party=(("null", "tg_uop.null", "tg-uop"),))
  assert "NULL" in pm.devices()
  pm = PluginManager()
  pm.load_from_environment({"TG_PLUGINS_DISABLE": "null"}, first_party=(("null", "tg_uop.null", "tg-uop"),))
  assert pm.devices() == {}

def test_same_plugin_name_from_two_distributions_breaks_the_second(fake_site):
  fake_site("fake-one", "1", {"same": "fake_one_plugin"}, {"fake_one_plugin": GOOD_SRC.format(dev="ONE", probe=None)})
  fake_site("fake-two", "1", {"same": "fake_two_plugin"}, {"fake_two_plugin": GOOD_SRC.format(dev="TWO", probe=None)})
  pm = PluginManager()
  pm.load_from_environment({}, first_party=())
  assert list(pm.devices()) == ["ONE"]
  assert "uninstall one" in pm.broken()[0].error

def test_get_plugin_manager_is_a_singleton_until_reset(monkeypatch):
  monkeypatch.setenv("TG_PLUGINS_AUTOLOAD", "0")
  reset_plugin_manager()
  try:
    pm = get_plugin_manager()
    assert get_plugin_manager() is pm
    mine = PluginManager()
    reset_plugin_manager(mine)
    assert get_plugin_manager() is mine
  finally: reset_plugin_manager()

# ---- import cost and the CLI (subprocesses: a clean interpreter) ----
def run_py(code: str, extra_path: str = "", **env) -> subprocess.CompletedProcess:
  # the caller's plugin settings must not leak into the child
  e = {k: v for k, v in os.environ.items() if k not in ("DEV", "TG_PLUGINS", "TG_PLUGINS_DISABLE", "TG_PLUGINS_AUTOLOAD")}
  e.update(PYTHONPATH=os.pathsep.join(filter(None, [extra_path, SRC, os.environ.get("PYTHONPATH", "")])), **env)
  return subprocess.run([sys.executable, *code], capture_output=True, text=True, env=e, timeout=120)

def test_import_tg_uop_imports_neither_pluggy_nor_any_plugin():
  code = ("import sys, json, tg_uop, tg_uop.device; tg_uop.device.parse_dev('USB+AMD'); "
          "print(json.dumps(sorted(m for m in sys.modules if m == 'pluggy' or m.startswith('pluggy.') or m.startswith('tg_uop.plugins') "
          "or m in ('tg_uop.null', 'numpy') or m.endswith('.plugin'))))")
  r = run_py(["-c", code])
  assert r.returncode == 0, r.stderr
  assert json.loads(r.stdout) == []

def test_cli_lists_plugins_as_json_including_broken_ones(fake_site, tmp_path):
  fake_site("fake-cli", "4.2", {"cli_good": "fake_cli_good", "cli_bad": "fake_cli_bad"},
            {"fake_cli_good": GOOD_SRC.format(dev="CLIDEV", probe="no /dev/clidev"), "fake_cli_bad": "import no_such_dependency_xyz\n"})
  r = run_py(["-m", "tg_uop", "plugins", "--probe", "--json"], extra_path=str(tmp_path))
  assert r.returncode == 0, r.stderr
  info = json.loads(r.stdout)
  pk = {p["name"]: p for p in info["packages"]}
  assert (pk["cli_good"]["state"], pk["cli_good"]["dist"], pk["cli_good"]["version"]) == ("loaded", "fake-cli", "4.2")
  assert pk["cli_bad"]["state"] == "broken" and "no_such_dependency_xyz" in pk["cli_bad"]["error"]
  dev = {d["name"]: d for d in info["devices"]}
  assert dev["CLIDEV"]["usable"] is False and dev["CLIDEV"]["probe"] == "no /dev/clidev" and dev["CLIDEV"]["check"]["ok"] is False
  if "NULL" in dev: assert dev["NULL"]["check"]["ok"] is True, dev["NULL"]["check"]
  assert info["api_version"] == list(API_VERSION)

def test_cli_text_output_shows_broken_plugin_errors(fake_site, tmp_path):
  fake_site("fake-txt", "1.0", {"txt_bad": "fake_txt_bad"}, {"fake_txt_bad": "TG_API_VERSION = (9, 0)\n"})
  r = run_py(["-m", "tg_uop", "plugins"], extra_path=str(tmp_path))
  assert r.returncode == 0, r.stderr
  assert "BROKEN" in r.stdout and "pip install -U tg-uop" in r.stdout and "9.0" in r.stdout
