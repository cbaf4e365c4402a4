"""The CPU device: allocator, compiler discovery and cache, threaded launches, and CPU:LLVM."""
from __future__ import annotations
import ctypes, shutil, subprocess
import pytest
np = pytest.importorskip("numpy")
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.runtime.compiler import CompileError
from tg_uop.runtime.renderer import Renderer
from tg_uop.testing.programs import all_programs, run_program, check_results, unsupported, linearize_steps
from tg_codegen.devices import cpu as cpu_mod
from tg_codegen.devices.cpu import CPUDevice, CPUAllocator, CCompiler, CPUProgram, CompilerNotFoundError, split_range
from tg_codegen.renderer.cstyle import CRenderer

needs_cc = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("clang") is None and shutil.which("cc") is None,
                              reason="no C compiler installed")

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

def _big_elementwise(n: int):
  """out[gidx0*8 + j] = a*2 + 1 over gidx0 blocks of 8 elements."""
  out, a = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n * 8), (), 0), UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n * 8), (), 1)
  g, r = UOp.special(n, "gidx0"), UOp.range(8, 0)
  end = out.index(g * 8 + r).store(a.index(g * 8 + r).load() * 2.0 + 1.0).end(r)
  return linearize_steps(UOp.sink(end), g, end)

# ---- allocator ----
@pytest.mark.parametrize("size", [0, 1, 100, 4096, CPUAllocator.mmap_threshold + 3])
def test_allocations_are_64_byte_aligned_and_round_trip(size):
  alloc = CPUAllocator("CPU")
  buf = alloc.alloc(size)
  assert ctypes.addressof(buf) % 64 == 0 and ctypes.sizeof(buf) == size
  data = bytes(i % 251 for i in range(size))
  alloc._copyin(buf, memoryview(data))
  out = bytearray(size)
  alloc._copyout(memoryview(out), buf)
  assert bytes(out) == data

def test_views_and_transfers_share_and_copy_memory():
  alloc = CPUAllocator("CPU")
  a, b = alloc.alloc(64), alloc.alloc(16)
  alloc._copyin(a, memoryview(bytes(range(64))))
  view = alloc._offset(a, 16, 32)
  out = bytearray(16)
  alloc._copyout(memoryview(out), view)
  assert bytes(out) == bytes(range(32, 48))
  alloc._copyin(view, memoryview(bytes(16)))  # writing the view writes the base
  whole = bytearray(64)
  alloc._copyout(memoryview(whole), a)
  assert bytes(whole) == bytes(range(32)) + bytes(16) + bytes(range(48, 64))
  alloc._transfer(b, alloc._offset(a, 16, 0), 16)
  alloc._copyout(memoryview(out), b)
  assert bytes(out) == bytes(range(16))

def test_device_allocates_without_a_compiler(monkeypatch, tmp_path):
  monkeypatch.delenv("CC", raising=False)
  monkeypatch.setenv("PATH", str(tmp_path))
  dev = CPUDevice("CPU")
  buf = dev.allocator.alloc(8)
  dev.allocator._copyin(buf, memoryview(b"abcdefgh"))
  out = bytearray(8)
  dev.allocator._copyout(memoryview(out), buf)
  assert bytes(out) == b"abcdefgh"

# ---- compiler ----
def test_no_compiler_gives_a_clear_error(monkeypatch, tmp_path):
  monkeypatch.delenv("CC", raising=False)
  monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no clang, gcc or cc
  dev = CPUDevice("CPU")
  with pytest.raises(CompilerNotFoundError, match=r"no C compiler found: install gcc or clang, or `pip install tg-codegen\[llvm\]`"):
    dev.compile(CRenderer().render("k", _big_elementwise(2)))
  assert cpu_mod.c_compiler_probe() is not None

def test_bad_cc_names_the_variable(monkeypatch):
  monkeypatch.setenv("CC", "definitely-not-a-compiler-xyz")
  with pytest.raises(CompilerNotFoundError, match="CC="):
    CCompiler().compile("void k(void) {}")

@needs_cc
def test_cc_env_picks_the_compiler(monkeypatch):
  cc = shutil.which("gcc") or shutil.which("clang") or shutil.which("cc")
  monkeypatch.setenv("CC", cc)
  assert cpu_mod.find_c_compiler() == [cc]

@needs_cc
def test_flags_keep_ieee_semantics():
  flags = CCompiler().flags
  assert "-ffp-contract=off" in flags and "-fno-math-errno" in flags and not any("fast-math" in f for f in flags)

@needs_cc
def test_compile_errors_carry_the_compiler_message():
  with pytest.raises(CompileError, match="undeclared|not declared|undefined"):
    CCompiler().compile("void k(void) { x = 1; }")

@needs_cc
def test_second_compile_is_a_cache_hit_without_a_subprocess(monkeypatch):
  comp = CCompiler()
  src = CRenderer().render("cached", _big_elementwise(4))
  calls: list = []
  real_run = subprocess.run
  def counting_run(*args, **kwargs):
    calls.append(args[0] if args else kwargs.get("args"))
    return real_run(*args, **kwargs)
  monkeypatch.setattr(cpu_mod.subprocess, "run", counting_run)
  lib1 = comp.compile_cached(src)
  n_first = len(calls)
  assert n_first >= 1
  lib2 = CCompiler().compile_cached(src)  # a fresh compiler object: the disk cache, not memory, serves it
  assert lib2 == lib1 and len(calls) == n_first
  assert comp.cache_path(src) is not None and comp.cache_path(src).is_file()

@needs_cc
def test_cache_key_names_the_compiler():
  comp = CCompiler()
  comp.cache_path("int x;")
  assert comp.cachekey.startswith("cpu_c_") and comp.cachekey != "cpu_c"

# ---- programs ----
def test_split_range_covers_every_block_once():
  for n in (1, 2, 7, 64, 1000):
    for parts in (1, 3, 8, 2000):
      ranges = split_range(n, parts)
      assert [i for s, e in ranges for i in range(s, e)] == list(range(n))
      assert len(ranges) == min(n, parts)

@needs_cc
def test_threaded_launch_matches_single_thread():
  n = 997  # not a multiple of the thread count
  dev = CPUDevice("CPU")
  uops = _big_elementwise(n)
  prg = dev.program("ew", dev.compile(dev.renderer.render("ew", uops)))
  x = np.random.default_rng(0).standard_normal(n * 8).astype(np.float32)
  results = []
  for threads, min_bytes in ((1, 1 << 60), (7, 0)):
    dev.threads = threads
    prg.min_parallel_bytes = min_bytes
    out, inp = dev.allocator.alloc(n * 32), dev.allocator.alloc(n * 32)
    dev.allocator._copyin(out, memoryview(np.full(n * 8, np.nan, np.float32).tobytes()))
    dev.allocator._copyin(inp, memoryview(x.tobytes()))
    t = prg(out, inp, global_size=(n, 1, 1), wait=True)
    assert isinstance(t, float) and t >= 0
    res = np.empty(n * 8, np.float32)
    dev.allocator._copyout(memoryview(res).cast("B"), out)
    results.append(res)
  assert dev._pool is not None  # the second launch really used the pool
  np.testing.assert_array_equal(results[0], results[1])
  np.testing.assert_array_equal(results[0], x * np.float32(2) + np.float32(1))
  dev.finalize()

def test_workers_run_every_call_and_raise_the_first_error_on_the_launching_thread():
  import threading
  workers = cpu_mod.CPUWorkers(3, "test")
  seen: list[tuple[int, str]] = []
  lock = threading.Lock()
  def call(i):
    with lock: seen.append((i, threading.current_thread().name))
  workers.run([(call, (i,)) for i in range(4)])
  assert sorted(i for i, _ in seen) == [0, 1, 2, 3] and seen[[i for i, _ in seen].index(0)][1] == threading.current_thread().name
  def boom(): raise ValueError("kernel failed")
  with pytest.raises(ValueError, match="kernel failed"): workers.run([(call, (9,)), (boom, ())])
  with pytest.raises(ValueError, match="kernel failed"): workers.run([(boom, ()), (call, (7,))])  # the launching thread's share
  seen.clear()
  workers.run([(call, (5,)), (call, (6,))])  # still usable after an error, and no stale error comes back
  assert sorted(i for i, _ in seen) == [5, 6]
  with pytest.raises(ValueError, match="5 calls for 3 workers"): workers.run([(call, (0,))] * 5)
  workers.close()

@needs_cc
def test_changing_the_thread_count_restarts_the_workers():
  dev = CPUDevice("CPU")
  dev.threads = 3
  assert dev.pool.n == 2
  dev.threads = 5
  assert dev.pool.n == 4
  dev.finalize()
  assert dev._pool is None

@needs_cc
def test_program_without_the_kernel_is_refused():
  dev = CPUDevice("CPU")
  lib = dev.compile(dev.renderer.render("present", _big_elementwise(2)))
  with pytest.raises(RuntimeError, match="no kernel 'absent'"):
    CPUProgram(dev, "absent", lib)

def test_foreign_renderer_is_refused():
  class GPURenderer(Renderer):
    device, suffix = "NV", "PTX"
    def render(self, name, uops): return ""
  with pytest.raises(ValueError, match="CPU device runs C or LLVM IR"):
    CPUDevice("CPU", renderer=GPURenderer())

# ---- CPU:LLVM ----
def _llvm_device() -> CPUDevice:
  pytest.importorskip("llvmlite")
  try: from tg_codegen.renderer.llvmir import LLVMRenderer
  except ImportError as e: pytest.skip(f"the LLVM renderer is not available: {e}")
  return CPUDevice("CPU:LLVM", renderer=LLVMRenderer())

def test_llvm_renderer_selects_llvmlite():
  dev = _llvm_device()
  assert isinstance(dev.compiler, cpu_mod.LLVMCompiler) and dev.runtime is cpu_mod.LLVMProgram

@pytest.mark.parametrize("prog", all_programs(), ids=lambda p: p.name)
def test_llvm_conformance_programs_match_numpy(prog):
  dev = _llvm_device()
  if (why := unsupported(prog, dev.renderer)) is not None: pytest.skip(why)
  assert check_results(prog, run_program(dev, prog)) is None

def test_llvm_threaded_launch_matches_numpy():
  dev = _llvm_device()
  n = 301
  prg = dev.program("ew", dev.compile(dev.renderer.render("ew", _big_elementwise(n))))
  prg.min_parallel_bytes, dev.threads = 0, 4
  x = np.arange(n * 8, dtype=np.float32)
  out, inp = dev.allocator.alloc(n * 32), dev.allocator.alloc(n * 32)
  dev.allocator._copyin(inp, memoryview(x.tobytes()))
  prg(out, inp, global_size=(n, 1, 1), wait=True)
  res = np.empty(n * 8, np.float32)
  dev.allocator._copyout(memoryview(res).cast("B"), out)
  np.testing.assert_array_equal(res, x * 2 + 1)
  dev.finalize()

# ---- Program.launcher: the launch a TinyJit replay calls; the same results as a plain call, on one thread and split across the
# workers, in C and in LLVM, for ctypes buffers and bare addresses ----
def _axpb(dev: CPUDevice, n: int):
  """`_big_elementwise(n)` compiled on `dev`."""
  return dev.program("ew", dev.compile(dev.renderer.render("ew", _big_elementwise(n))))

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
