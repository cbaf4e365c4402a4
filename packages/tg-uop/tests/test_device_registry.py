"""The device registry: DEV grammar, renderer and interface pairing, default device choice, clear errors."""
import types
import pytest
from tg_uop.device import DeviceRegistry, DevSpec, parse_dev
from tg_uop.plugins import API_VERSION, DeviceSpec, InterfaceSpec, RendererSpec, hookimpl
from tg_uop.plugins.manager import PluginManager, reset_plugin_manager

# ---- grammar ----
@pytest.mark.parametrize("s, want, canonical", [
  ("NV", DevSpec(None, "NV", None, None, None), "NV"),
  ("CPU:LLVM", DevSpec(None, "CPU", None, "LLVM", None), "CPU:LLVM"),
  ("USB+AMD", DevSpec("USB", "AMD", None, None, None), "USB+AMD"),
  ("NULL:PTX:sm_90", DevSpec(None, "NULL", None, "PTX", "sm_90"), "NULL:PTX:sm_90"),
  ("CPU:1", DevSpec(None, "CPU", 1, None, None), "CPU:1"),
  ("CPU:1:LLVM", DevSpec(None, "CPU", 1, "LLVM", None), "CPU:1:LLVM"),
  ("usb+amd:2:amdgpu:gfx942", DevSpec("USB", "AMD", 2, "AMDGPU", "gfx942"), "USB+AMD:2:AMDGPU:gfx942"),
  ("nv:0", DevSpec(None, "NV", 0, None, None), "NV"),
  ("cpu:0:llvm", DevSpec(None, "CPU", 0, "LLVM", None), "CPU:LLVM"),
])
def test_parse_dev_accepts_the_grammar(s, want, canonical):
  assert parse_dev(s) == want
  assert parse_dev(s).canonical == DeviceRegistry.canonicalize(s) == canonical

@pytest.mark.parametrize("s, hint", [
  ("", "empty"), ("A+B+C", "one INTERFACE+"), ("+NV", "around '+'"), ("USB+", "around '+'"), ("CPU::LLVM", "empty part"),
  ("CPU:LLVM:sm_90:x", "too many"), ("CPU:1:LLVM:sm_90:x", "too many"), ("CPU:1:2", "one INDEX"), (" CPU", "spaces"),
  ("1CPU", "not a name"), ("CPU:LL-VM", "not a name"),
])
def test_parse_dev_rejects_malformed_input_with_a_helpful_message(s, hint):
  with pytest.raises(ValueError) as e: parse_dev(s)
  msg = str(e.value)
  assert hint in msg and "[INTERFACE+]DEVICE[:INDEX][:RENDERER[:ARCH]]" in msg and "CPU:LLVM" in msg

def test_parse_dev_rejects_non_strings():
  with pytest.raises(TypeError, match="str"): parse_dev(3)

# ---- a fake world of plugins ----
class FakeDevice:
  def __init__(self, name, renderer=None, interface=None): self.name, self.renderer, self.interface = name, renderer, interface
class RendA:
  def __init__(self, arch=None): self.arch = arch
class RendB(RendA): pass
class RendOther(RendA): pass

def make_plugin(name, **hooks):
  mod = types.ModuleType(name)
  mod.TG_API_VERSION = API_VERSION
  for k, fn in hooks.items(): setattr(mod, k, hookimpl(fn))
  return mod

def no_loader(): raise ImportError("libfake.so: cannot open shared object file")
def raising_probe(): raise PermissionError("/dev/raise")

FAKE_DEVICES = [
  DeviceSpec("FAKE", loader=lambda: FakeDevice, priority=10, renderers=("FA", "FB")),
  DeviceSpec("SLOW", loader=lambda: FakeDevice, priority=5, renderers=("FB",)),
  DeviceSpec("UNPLUGGED", loader=lambda: FakeDevice, probe=lambda: "no /dev/fake0", priority=50, renderers=("FA",)),
  DeviceSpec("RAISES", loader=lambda: FakeDevice, probe=raising_probe, priority=60, renderers=("FA",)),
  DeviceSpec("NEEDSPTX", loader=lambda: FakeDevice, priority=-5, renderers=("PTX", "CUDA")),
  DeviceSpec("ANY", loader=lambda: FakeDevice, priority=-50),
  DeviceSpec("NOLIB", loader=no_loader, priority=-60, renderers=("FA",)),
]
FAKE_RENDERERS = [
  RendererSpec("FA", loader=lambda: RendA, devices=("FAKE", "UNPLUGGED", "RAISES", "NOLIB"), archs=("a1", "a2")),
  RendererSpec("FB", loader=lambda: RendB, devices=("FAKE", "SLOW")),
  RendererSpec("OTHER", loader=lambda: RendOther, devices=("ELSEWHERE",)),
]
FAKE_INTERFACES = [InterfaceSpec("USB", "UNPLUGGED", loader=lambda: "usb-link"), InterfaceSpec("USB", "FAKE", loader=lambda: "usb-link")]

def fake_manager(devices=FAKE_DEVICES, renderers=FAKE_RENDERERS, with_broken=True) -> PluginManager:
  pm = PluginManager()
  pm.load_module(make_plugin("fakedrv", tg_devices=lambda: devices, tg_device_interfaces=lambda: FAKE_INTERFACES), dist="fake-drv", version="1")
  pm.load_module(make_plugin("fakerend", tg_renderers=lambda: renderers), dist="fake-codegen", version="1")
  if with_broken: pm.load_module("tg_definitely_missing_driver", name="missingdrv", dist="tg-driver-missing", version="0.1")
  return pm

@pytest.fixture
def reg(monkeypatch):
  monkeypatch.delenv("DEV", raising=False)
  pm = fake_manager()
  return DeviceRegistry(lambda: pm)

# ---- opening devices ----
def test_device_gets_canonical_name_and_first_preferred_renderer(reg):
  d = reg["fake"]
  assert isinstance(d, FakeDevice) and d.name == "FAKE" and type(d.renderer) is RendA and d.renderer.arch is None and d.interface is None

def test_device_is_opened_once_per_canonical_name(reg):
  assert reg["FAKE"] is reg["fake:0"]
  assert reg["FAKE:1"] is not reg["FAKE"] and reg["FAKE:1"].name == "FAKE:1"

def test_named_renderer_and_arch_are_used(reg):
  assert type(reg["FAKE:FB"].renderer) is RendB
  d = reg["FAKE:1:FA:a2"]
  assert d.name == "FAKE:1:FA:a2" and type(d.renderer) is RendA and d.renderer.arch == "a2"

def test_renderer_that_does_not_serve_the_device_is_refused_with_alternatives(reg):
  with pytest.raises(ValueError) as e: reg["FAKE:OTHER"]
  assert "does not serve device FAKE" in str(e.value) and "FA, FB" in str(e.value)

def test_unregistered_renderer_points_to_tg_codegen(reg):
  with pytest.raises(ValueError, match="pip install tg-codegen"): reg["FAKE:NOPE"]

def test_unsupported_arch_lists_supported_ones(reg):
  with pytest.raises(ValueError, match="a1, a2"): reg["FAKE:FA:zz"]

def test_device_whose_renderers_are_not_installed_names_the_package(reg):
  with pytest.raises(ValueError) as e: reg["NEEDSPTX"]
  assert "PTX, CUDA" in str(e.value) and "pip install tg-codegen" in str(e.value)

def test_any_renderer_device_accepts_any_renderer_and_defaults_to_one_serving_it(monkeypatch):
  pm = fake_manager(renderers=FAKE_RENDERERS + [RendererSpec("ANYR", loader=lambda: RendB, devices=("ANY",))])
  reg = DeviceRegistry(lambda: pm)
  assert type(reg["ANY:OTHER"].renderer) is RendOther
  assert type(reg["ANY"].renderer) is RendB

def test_unknown_device_lists_available_devices_and_broken_plugins(reg):
  with pytest.raises(ValueError) as e: reg["QUANTUM"]
  msg = str(e.value)
  assert "QUANTUM" in msg and "FAKE" in msg and "SLOW" in msg and "missingdrv" in msg and "tg-driver-missing" in msg

def test_device_whose_probe_fails_is_refused_with_the_probe_reason(reg):
  with pytest.raises(RuntimeError, match="no /dev/fake0"): reg["UNPLUGGED"]
  with pytest.raises(RuntimeError, match="PermissionError"): reg["RAISES"]

def test_interface_is_passed_to_the_device_and_replaces_its_probe(reg):
  d = reg["usb+unplugged"]
  assert d.name == "USB+UNPLUGGED" and d.interface == "usb-link" and type(d.renderer) is RendA

def test_unknown_interface_lists_those_available(reg):
  with pytest.raises(ValueError) as e: reg["PCI+FAKE"]
  assert "PCI" in str(e.value) and "USB" in str(e.value)

def test_loader_failure_names_the_plugin(reg):
  with pytest.raises(RuntimeError) as e: reg["NOLIB"]
  assert "fakedrv" in str(e.value) and "fake-drv" in str(e.value) and "libfake.so" in str(e.value)

# ---- default device ----
def test_default_is_highest_priority_device_whose_probe_passes(reg):
  assert reg.get_available_devices() == ["FAKE", "SLOW", "NEEDSPTX", "ANY", "NOLIB"]
  assert reg.DEFAULT == "FAKE"

def test_default_comes_from_dev(reg, monkeypatch):
  monkeypatch.setenv("DEV", "slow:fb")
  assert reg.DEFAULT == "SLOW:FB"

def test_dev_naming_an_unknown_device_fails_listing_the_available_ones(reg, monkeypatch):
  monkeypatch.setenv("DEV", "QUANTUM")
  with pytest.raises(ValueError, match="available devices are"): reg.DEFAULT

def test_malformed_dev_fails_with_the_grammar(reg, monkeypatch):
  monkeypatch.setenv("DEV", "CPU::")
  with pytest.raises(ValueError, match="INTERFACE"): reg.DEFAULT

def test_default_is_assignable_and_canonicalized(reg):
  reg.DEFAULT = "slow:0"
  assert reg.DEFAULT == "SLOW"
  reg.reset()
  assert reg.DEFAULT == "FAKE"

def test_no_usable_device_is_a_clear_error(monkeypatch):
  monkeypatch.delenv("DEV", raising=False)
  pm = fake_manager(devices=[DeviceSpec("UNPLUGGED", loader=lambda: FakeDevice, probe=lambda: "no /dev/fake0")])
  with pytest.raises(RuntimeError, match="no /dev/fake0"): DeviceRegistry(lambda: pm).DEFAULT

# ---- the process-wide registry with the real NULL device ----
def test_null_resolves_through_the_global_device(monkeypatch):
  null = pytest.importorskip("tg_uop.null")
  from tg_uop.device import Device
  pm = PluginManager()
  pm.load_module(null, name="null", dist="tg-uop")
  pm.load_module(make_plugin("fakerend", tg_renderers=lambda: FAKE_RENDERERS))
  reset_plugin_manager(pm)
  try:
    d = Device["NULL"]
    assert d is Device["null:0"] and getattr(d, "executes", True) is False
    assert type(d.renderer).__module__ == "tg_uop.null"
    # NULL has renderers == (): it pairs with any renderer, e.g. to compile for a device that is not here
    assert type(Device["NULL:FA:a1"].renderer) is RendA and Device["NULL:FA:a1"].renderer.arch == "a1"
  finally: reset_plugin_manager()
