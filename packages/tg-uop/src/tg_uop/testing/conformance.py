"""Conformance classes for backend authors: subclass them in a test module with `device = "MYDEV"` and pytest runs them.

    from tg_uop.testing.conformance import AllocatorConformance, ProgramConformance, ImportCostConformance
    class TestMyAllocator(AllocatorConformance): device = "MYDEV"
    class TestMyPrograms(ProgramConformance): device = "MYDEV"
    class TestMyImportCost(ImportCostConformance): device, entry_module = "MYDEV", "my_pkg.plugin"

Devices with `executes = False` (like NULL) keep no data: their data checks are skipped and programs are only rendered and compiled.
"""
from __future__ import annotations
import json, os, subprocess, sys
from typing import Any
import pytest
from tg_uop.dtype import DType, dtypes
from tg_uop.testing import programs as P

class _DeviceMixin:
  device: str = "NULL"
  def get_device(self) -> Any:
    """The opened device (through the registry, so plugins and renderer selection are exercised too)."""
    from tg_uop.device import Device
    return Device[self.device]
  def executes(self) -> bool: return bool(getattr(self.get_device(), "executes", True))

_SIZES = (1, 3, 4, 17, 256, 4096, 1 << 18)
_DTYPES = (dtypes.uint8, dtypes.bool, dtypes.int16, dtypes.float16, dtypes.int32, dtypes.float32, dtypes.int64, dtypes.float64)

def _pattern(nbytes: int, seed: int = 0) -> bytes:
  # a deterministic, position-dependent pattern, so shifted or truncated copies are caught
  return bytes(((i * 131 + seed * 17 + (i >> 8)) & 0xff) for i in range(nbytes))

def _bool_safe(dt: DType, data: bytes) -> bytes:
  # bool buffers hold 0/1 only: anything else is not a valid bool on every device
  return bytes(b & 1 for b in data) if dt == dtypes.bool else data

class AllocatorConformance(_DeviceMixin):
  """Allocation, copies in and out, views, device-side copies and LRU reuse."""
  def _buf(self, size: int, dt: DType, options: Any = None):
    from tg_uop.runtime.buffer import Buffer
    return Buffer(self.device, size, dt, options=options)

  @pytest.mark.parametrize("dt", _DTYPES, ids=lambda d: repr(d).replace("dtypes.", ""))
  def test_round_trip_every_size(self, dt: DType):
    for size in _SIZES:
      data = _bool_safe(dt, _pattern(size * dt.itemsize, size))
      buf = self._buf(size, dt).allocate()
      assert buf.is_allocated() and buf.nbytes == size * dt.itemsize
      buf.copyin(memoryview(data))
      out = buf.as_buffer()
      if self.executes(): assert bytes(out) == data, f"{self.device}: copy round trip of {size} x {dt} changed the data"
      buf.deallocate()
      assert not buf.is_allocated()

  def test_copyin_copyout_numpy(self):
    np = pytest.importorskip("numpy")
    x = np.arange(-50, 50, dtype=np.int32) * 7
    buf = self._buf(x.size, dtypes.int32).copyin(x)
    out = np.empty_like(x)
    buf.copyout(out)
    if self.executes(): np.testing.assert_array_equal(out, x)
    if self.executes(): np.testing.assert_array_equal(buf.numpy(), x)

  def test_size_mismatch_is_a_clear_error(self):
    buf = self._buf(8, dtypes.float32)
    with pytest.raises(ValueError, match="size mismatch"): buf.copyin(memoryview(bytearray(31)))
    buf.allocate()
    with pytest.raises(ValueError, match="size mismatch"): buf.copyout(memoryview(bytearray(33)))

  def test_many_live_buffers_are_independent(self):
    bufs = [self._buf(64, dtypes.uint8).copyin(memoryview(_pattern(64, i))) for i in range(16)]
    if self.executes():
      for i, b in enumerate(bufs): assert bytes(b.as_buffer()) == _pattern(64, i), f"{self.device}: buffer {i} was overwritten by another"

  def test_views_share_memory_with_their_base(self):
    dev = self.get_device()
    if not dev.allocator.supports_offset: pytest.skip(f"{self.device} allocator has no _offset: no views")
    data = _pattern(256)
    base = self._buf(256, dtypes.uint8).copyin(memoryview(data))
    view = base.view(16, dtypes.int32, 64)
    if self.executes(): assert bytes(view.as_buffer()) == data[64:128]
    view.copyin(memoryview(bytes(64)))
    nested = view.view(4, dtypes.uint8, 8)
    nested.copyin(memoryview(b"\x01\x02\x03\x04"))
    if self.executes():
      assert bytes(base.as_buffer()) == data[:64] + bytes(8) + b"\x01\x02\x03\x04" + bytes(52) + data[128:]

  def test_copy_between_buffers(self):
    data = _pattern(1000, 3)
    a = self._buf(250, dtypes.float32).copyin(memoryview(data))
    b = self._buf(250, dtypes.float32).copy_from(a)
    c = self._buf(1000, dtypes.uint8).copy_from(b)
    if self.executes(): assert bytes(b.as_buffer()) == data and bytes(c.as_buffer()) == data

  def test_lru_reuses_freed_buffers(self):
    from tg_uop.runtime.allocator import BufferSpec, LRUAllocator
    alloc = self.get_device().allocator
    if not isinstance(alloc, LRUAllocator): pytest.skip(f"{self.device} allocator {type(alloc).__name__} is not an LRUAllocator")
    alloc.free_cache()
    a = alloc.alloc(4096)
    alloc.free(a, 4096)
    assert alloc.alloc(4096) is a, "a freed buffer of the same size should be handed out again"
    b = alloc.alloc(4096)
    assert b is not a, "a buffer still in use must not be handed out twice"
    nolru = BufferSpec(nolru=True)
    c = alloc.alloc(128, nolru)
    alloc.free(c, 128, nolru)
    assert not alloc.cache.get((128, nolru)), "a nolru buffer must be released, not cached"
    alloc.free(a, 4096)
    alloc.free(b, 4096)
    assert alloc.free_cache() == (2, 8192) and not alloc.cache

class ProgramConformance(_DeviceMixin):
  """Every hand-written program of `tg_uop.testing.programs`, compared with numpy (render + compile only where nothing executes)."""
  skip_programs: tuple[str, ...] = ()  # programs this device is known not to take as written (say why in your test module)

  @pytest.mark.parametrize("name", list(P.PROGRAMS))
  def test_program_matches_numpy(self, name: str):
    pytest.importorskip("numpy")
    if name in self.skip_programs: pytest.skip(f"{self.device} skips {name}")
    prog = P.get_program(name)
    dev = self.get_device()
    if (why := P.unsupported(prog, dev.renderer)) is not None: pytest.skip(why)
    if not self.executes():
      src, lib, fxn = P.compile_program(dev, prog)
      assert isinstance(src, str) and src and isinstance(lib, bytes)
      fxn(global_size=prog.global_size, local_size=prog.local_size, vals=prog.vals)
      return
    err = P.check_results(prog, P.run_program(dev, prog))
    assert err is None, f"{self.device}: {err}"

  def test_programs_are_well_formed(self):
    for prog in P.all_programs(): P.validate_linear(prog.uops)

  def test_probe_passes(self):
    assert P.probe_device(self.device) is None

  def test_rerun_gives_the_same_result(self):
    pytest.importorskip("numpy")
    if not self.executes(): pytest.skip(f"{self.device} does not execute programs")
    prog = P.get_program("matmul")
    first, second = P.run_program(self.get_device(), prog), P.run_program(self.get_device(), prog)
    assert all((first[i] == second[i]).all() for i in first), "running the same program twice gave different results"

_IMPORT_SCRIPT = """
import json, sys, time
t = time.perf_counter()
import importlib; importlib.import_module(sys.argv[1])
ms = (time.perf_counter() - t) * 1000
print(json.dumps({"ms": ms, "heavy": [m for m in sys.argv[2:] if m in sys.modules]}))
"""

def measure_import(module: str, heavy: tuple[str, ...] = ()) -> dict[str, Any]:
  """Import `module` in a fresh interpreter (same sys.path); returns {"ms": import time, "heavy": modules of `heavy` it pulled in}."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  res = subprocess.run([sys.executable, "-c", _IMPORT_SCRIPT, module, *heavy], capture_output=True, text=True, env=env, timeout=120)
  if res.returncode != 0: raise RuntimeError(f"importing {module} in a fresh interpreter failed:\n{res.stderr.strip()}")
  return json.loads(res.stdout.strip().splitlines()[-1])

class ImportCostConformance(_DeviceMixin):
  """The device's plugin entry module imports fast and without heavy dependencies (tg imports it whenever plugins are listed)."""
  entry_module: str | None = None   # default: the module of the plugin that registers `device`
  max_import_ms: float = 1000.0     # generous: this guards against pulling in big libraries, not against slow machines
  heavy_modules: tuple[str, ...] = ("numpy", "torch", "tg_tensor", "tg_codegen.renderer", "llvmlite")

  def get_entry_module(self) -> str:
    if self.entry_module is not None: return self.entry_module
    from tg_uop.device import parse_dev
    from tg_uop.plugins.manager import get_plugin_manager
    info = get_plugin_manager().provider("device", parse_dev(self.device).device)
    if info is None: pytest.fail(f"no plugin provides device {self.device}: set entry_module on {type(self).__name__}")
    return info.module.partition(":")[0]

  def test_entry_module_imports_cheaply(self):
    mod = self.get_entry_module()
    res = measure_import(mod, self.heavy_modules)
    assert not res["heavy"], f"importing {mod} pulled in {res['heavy']}: import them lazily, inside the device loader"
    assert res["ms"] < self.max_import_ms, f"importing {mod} took {res['ms']:.0f} ms (limit {self.max_import_ms:.0f} ms)"
