"""`Program.launcher` on the CPU device, the launch a TinyJit replay calls: the same results as a plain call, on one thread and
split across the workers, in C and in LLVM, for ctypes buffers and bare addresses."""
from __future__ import annotations
import ctypes, shutil
import pytest
np = pytest.importorskip("numpy")
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import linearize_steps
from tg_codegen.devices.cpu import CPUDevice

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("clang") is None and shutil.which("cc") is None,
                              reason="no C compiler installed")

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

def _axpb(dev: CPUDevice, n: int):
  """out[gidx0*8 + j] = a*2 + 1 over gidx0 blocks of 8 elements, compiled on `dev`."""
  out, a = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n * 8), (), 0), UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n * 8), (), 1)
  g, r = UOp.special(n, "gidx0"), UOp.range(8, 0)
  end = out.index(g * 8 + r).store(a.index(g * 8 + r).load() * 2.0 + 1.0).end(r)
  return dev.program("ew", dev.compile(dev.renderer.render("ew", linearize_steps(UOp.sink(end), g, end))))

def _run(dev: CPUDevice, launch, n: int, x: np.ndarray, as_address: bool = False) -> np.ndarray:
  out, inp = dev.allocator.alloc(n * 32), dev.allocator.alloc(n * 32)
  dev.allocator._copyin(out, memoryview(np.full(n * 8, np.nan, np.float32).tobytes()))
  dev.allocator._copyin(inp, memoryview(x.tobytes()))
  launch(*((ctypes.addressof(out), ctypes.addressof(inp)) if as_address else (out, inp)))
  res = np.empty(n * 8, np.float32)
  dev.allocator._copyout(memoryview(res).cast("B"), out)
  return res

@needs_cc
@pytest.mark.parametrize("threads, min_bytes", [(1, 1 << 60), (7, 0)], ids=["one thread", "split across workers"])
@pytest.mark.parametrize("as_address", [False, True], ids=["ctypes buffers", "bare addresses"])
def test_c_launcher_matches_numpy(threads, min_bytes, as_address):
  n, dev = 997, CPUDevice("CPU")  # 997 blocks: not a multiple of the thread count
  prg = _axpb(dev, n)
  dev.threads, prg.min_parallel_bytes = threads, min_bytes
  x = np.random.default_rng(0).standard_normal(n * 8).astype(np.float32)
  np.testing.assert_array_equal(_run(dev, prg.launcher((n,), (1,)), n, x, as_address), x * np.float32(2) + np.float32(1))
  assert (dev._pool is not None) == (threads > 1)
  dev.finalize()

def test_llvm_launcher_matches_numpy():
  pytest.importorskip("llvmlite")
  from tg_codegen.renderer.llvmir import LLVMRenderer
  n, dev = 301, CPUDevice("CPU:LLVM", renderer=LLVMRenderer())
  prg = _axpb(dev, n)
  prg.min_parallel_bytes, dev.threads = 0, 4
  x = np.arange(n * 8, dtype=np.float32)
  np.testing.assert_array_equal(_run(dev, prg.launcher((n, 1, 1), (1, 1, 1)), n, x), x * 2 + 1)
  dev.finalize()

def test_launcher_checks_dims_when_made():
  prg = object.__new__(CPUDevice("CPU").runtime)  # nothing compiled: the dims are refused before any launch
  with pytest.raises(ValueError, match="global_size must be up to 3 positive ints"): prg.launcher((4, 0), (1,))
