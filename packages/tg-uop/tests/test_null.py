"""The NULL device plugin: registration, any-renderer compile, no execution, placeholder memory, the text renderer."""
import types
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.plugins import DeviceSpec, RendererSpec, hookimpl
from tg_uop.plugins.manager import PluginManager
from tg_uop.device import DeviceRegistry
from tg_uop.runtime import Buffer, Renderer
import tg_uop.runtime.buffer as buffer_mod
import tg_uop.null as null

class EchoRenderer(Renderer):
  """A stand-in for a real code generator: renders the op names."""
  device, suffix = "ECHO", "ECHO"
  def render(self, name, uops): return f"kernel {name} {self.arch}: " + " ".join(u.op.name for u in uops)

class EchoDevice(null.NullDevice):
  """A stand-in for a real device of default priority."""

def echo_plugin() -> types.ModuleType:
  mod = types.ModuleType("echo_plugin")
  mod.TG_API_VERSION = (1, 0)
  def tg_renderers(): return [RendererSpec("ECHO", loader=lambda: EchoRenderer, devices=("ECHO",))]
  def tg_devices(): return [DeviceSpec("ECHO", loader=lambda: EchoDevice, renderers=("ECHO",))]
  mod.tg_renderers, mod.tg_devices = hookimpl(tg_renderers), hookimpl(tg_devices)
  return mod

@pytest.fixture
def registry(monkeypatch):
  """A device registry over a plugin manager holding only NULL and the ECHO renderer; Buffer resolves devices through it."""
  pm = PluginManager()
  assert pm.load_module("tg_uop.null", name="null").state == "loaded"
  assert pm.load_module(echo_plugin(), name="echo").state == "loaded"
  reg = DeviceRegistry(lambda: pm)
  monkeypatch.setattr(buffer_mod, "_get_device", reg.__getitem__)
  return reg

def kernel_uops() -> list:
  """out[gidx0] = in[gidx0] * 2.0 + n, linearized."""
  out = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(), (), 0)
  inp = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(), (), 1)
  n = UOp(Ops.DEFINE_VAR, dtypes.int32, (), ("n", 0, 10))
  g = UOp(Ops.SPECIAL, dtypes.index, (UOp.const(dtypes.index, 16),), "gidx0")
  val = UOp(Ops.LOAD, dtypes.float32, (inp.index(g),)) * UOp.const(dtypes.float32, 2.0) + n.cast(dtypes.float32)
  return list(UOp.sink(out.index(g).store(val)).toposort())

# ---- plugin registration
def test_plugin_declares_api_version_and_specs():
  assert null.TG_API_VERSION == (1, 0)
  (dspec,) = null.tg_devices()
  assert isinstance(dspec, DeviceSpec) and (dspec.name, dspec.priority, dspec.renderers) == ("NULL", -100, ())
  assert dspec.probe() is None and dspec.loader() is null.NullDevice
  (rspec,) = null.tg_renderers()
  assert isinstance(rspec, RendererSpec) and (rspec.name, rspec.devices) == ("NULL", ("NULL",)) and rspec.loader() is null.NullRenderer

def test_registry_opens_null_with_its_own_renderer(registry):
  dev = registry["NULL"]
  assert isinstance(dev, null.NullDevice) and isinstance(dev.renderer, null.NullRenderer)
  assert dev.executes is False and dev.device == "NULL" and registry["null"] is dev

def test_null_is_the_lowest_priority_device(registry):
  assert registry.get_available_devices() == ["ECHO", "NULL"] and registry.DEFAULT == "ECHO"

def test_null_takes_any_renderer(registry):
  dev = registry["NULL:ECHO:v2"]
  assert isinstance(dev, null.NullDevice) and isinstance(dev.renderer, EchoRenderer) and dev.renderer.arch == "v2"
  src = dev.renderer.render("k", kernel_uops())
  assert dev.compile(src) == src.encode()

# ---- compile and run
def test_null_compiles_to_source_bytes_without_caching(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  dev = null.NullDevice()
  src = dev.renderer.render("k", kernel_uops())
  assert dev.compile(src) == src.encode() and not (tmp_path / "tg").exists()

def test_null_program_runs_nothing(registry):
  dev = registry["NULL"]
  prg = dev.program("k", b"anything")
  b = Buffer("NULL", 4, dtypes.float32).allocate()
  assert prg(b._buf, global_size=(4,), local_size=(1,), vals=(3,)) is None
  assert prg(b._buf, wait=True) == 0.0
  with pytest.raises(ValueError, match="positive ints"): prg(global_size=(0,))
  dev.synchronize()

# ---- memory
def test_null_buffers_hold_placeholders_and_copyout_writes_nothing(registry):
  b = Buffer("NULL", 4, dtypes.int32).copyin(bytes(range(16)))
  assert isinstance(b._buf, null.NullBuffer) and b._buf.size == 16
  dest = bytearray(b"\xaa" * 16)
  b.copyout(dest)
  assert dest == b"\xaa" * 16

def test_null_buffer_views_resolve_offsets(registry):
  b = Buffer("NULL", 16, dtypes.int32)
  v = b.view(4, dtypes.int32, 8).view(2, dtypes.int32, 4)
  v.allocate()
  assert (v._buf.size, v._buf.offset, v.base is b) == (8, 12, True)

def test_null_buffers_are_cheap_for_any_size(registry):
  b = Buffer("NULL", 1 << 40, dtypes.float32).allocate()  # 4 TiB: nothing is really allocated
  assert b.nbytes == 4 << 40

# ---- the NULL renderer
def parse_lines(text: str) -> list[list[str]]:
  lines = text.strip().split("\n")
  assert lines[0].startswith("//")
  return [ln.split() for ln in lines[1:]]

def test_null_renderer_prints_one_line_per_uop_with_source_indices():
  uops = kernel_uops()
  rows = parse_lines(null.NullRenderer().render("k", uops))
  assert len(rows) == len(uops)
  index = {id(u): i for i, u in enumerate(uops)}
  for i, (u, row) in enumerate(zip(uops, rows)):
    assert int(row[0]) == i and row[1] == u.op.name
    srcs = next(tok for tok in row if tok.startswith("["))
    assert srcs == "[" + ",".join(str(index[id(s)]) for s in u.src) + "]"

def test_null_renderer_shows_dtype_and_arg():
  uops = kernel_uops()
  text = null.NullRenderer().render("mykernel", uops)
  assert "mykernel" in text
  for u in uops:
    if u.op in (Ops.DEFINE_VAR, Ops.SPECIAL, Ops.CONST): assert repr(u.arg) in text and repr(u.dtype) in text

class BadRepr:
  def __repr__(self): raise RuntimeError("no repr")

@pytest.mark.parametrize("op", list(Ops))
def test_null_renderer_never_crashes(op):
  orphan = UOp(Ops.CONST, dtypes.int32, (), 1)  # a source missing from the list
  weird = [UOp(op, dtypes.float32.vec(4), (orphan,), BadRepr()), UOp(op, dtypes.void, (), (1, "x", None)), UOp(op, dtypes.int8.ptr(16, "local"))]
  rows = parse_lines(null.NullRenderer().render("k", weird))
  assert [r[1] for r in rows] == [op.name] * 3 and "[?]" in rows[0]

def test_null_renderer_of_empty_program():
  assert parse_lines(null.NullRenderer().render("empty", [])) == []
