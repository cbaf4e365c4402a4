"""Runtime interfaces: Buffer (lazy, views, bounds), LRUAllocator, the compile cache, launch dims, Compiled."""
import array, hashlib, struct, subprocess, sys
import pytest
from tg_uop.dtype import dtypes
from tg_uop.helpers import Context, cache_dir
from tg_uop.runtime import Allocator, LRUAllocator, BufferSpec, Buffer, Compiled, Compiler, CompileError, Renderer, check_launch_dims
import tg_uop.runtime.buffer as buffer_mod

class HostAllocator(LRUAllocator):
  """Host memory as memoryviews of bytearrays; counts calls, and can be capped to simulate running out of memory."""
  def __init__(self, device=None, cap=None):
    super().__init__(device)
    self.allocs, self.frees, self.live, self.cap = 0, 0, 0, cap
  def _alloc(self, size, options):
    if self.cap is not None and self.live + size > self.cap: raise MemoryError(f"{size} bytes > {self.cap - self.live} free")
    self.allocs, self.live = self.allocs + 1, self.live + size
    return memoryview(bytearray(size))
  def _free(self, opaque, size, options): self.frees, self.live = self.frees + 1, self.live - size
  def _copyin(self, dest, src): dest[:] = src
  def _copyout(self, dest, src): dest[:] = src
  def _offset(self, buf, size, offset): return buf[offset:offset+size]
  def _transfer(self, dest, src, nbytes): dest[:nbytes] = src[:nbytes]

class NoViewAllocator(Allocator):
  def _alloc(self, size, options): return bytearray(size)
  def _copyin(self, dest, src): dest[:] = src
  def _copyout(self, dest, src): dest[:] = src

@pytest.fixture
def devices(monkeypatch):
  """Fake devices "FAKE" and "FAKE2" (host memory) and "NOVIEW", resolved by Buffer without the plugin registry."""
  devs = {name: Compiled(name, alloc, None, None, None) for name, alloc in
          (("FAKE", HostAllocator()), ("FAKE2", HostAllocator()), ("NOVIEW", NoViewAllocator()))}
  monkeypatch.setattr(buffer_mod, "_get_device", lambda name: devs[name])
  return devs

def floats(*xs): return array.array("f", xs)

# ---- Buffer
def test_buffer_allocates_lazily(devices):
  alloc = devices["FAKE"].allocator
  b = Buffer("FAKE", 4, dtypes.float32)
  assert not b.is_allocated() and alloc.allocs == 0
  b.copyin(floats(1, 2, 3, 4))
  assert b.is_allocated() and alloc.allocs == 1

def test_buffer_allocate_is_idempotent(devices):
  b = Buffer("FAKE", 4, dtypes.int32).allocate()
  assert b.allocate() is b and devices["FAKE"].allocator.allocs == 1

def test_buffer_roundtrip_matches_input(devices):
  src = floats(1.5, -2.0, 3.25, 0.0)
  b = Buffer("FAKE", 4, dtypes.float32).copyin(src)
  assert array.array("f", b.as_buffer().tobytes()) == src
  assert b.nbytes == 16

def test_copyin_size_mismatch_names_both_sizes(devices):
  b = Buffer("FAKE", 4, dtypes.float32)
  with pytest.raises(ValueError, match=r"got 12 bytes.*holds 16 bytes"): b.copyin(floats(1, 2, 3))
  assert not b.is_allocated()

def test_copyout_size_mismatch_and_readonly(devices):
  b = Buffer("FAKE", 2, dtypes.int32).copyin(array.array("i", [1, 2]))
  with pytest.raises(ValueError, match=r"got 4 bytes.*holds 8 bytes"): b.copyout(bytearray(4))
  with pytest.raises(ValueError, match="writable"): b.copyout(bytes(8))

def test_copyout_of_unallocated_buffer_is_a_clear_error(devices):
  with pytest.raises(RuntimeError, match="never allocated"): Buffer("FAKE", 2, dtypes.int32).as_buffer()

def test_copyin_accepts_multidimensional_memoryview(devices):
  data = array.array("i", range(6))
  mv = memoryview(data).cast("B").cast("i", (2, 3))
  b = Buffer("FAKE", 6, dtypes.int32).copyin(mv)
  assert array.array("i", b.as_buffer().tobytes()) == data

def test_as_buffer_is_a_copy(devices):
  b = Buffer("FAKE", 2, dtypes.int32).copyin(array.array("i", [7, 8]))
  out = b.as_buffer()
  out[:] = bytes(8)
  assert array.array("i", b.as_buffer().tobytes()) == array.array("i", [7, 8])

def test_numpy_matches_input(devices):
  np = pytest.importorskip("numpy")
  ref = np.arange(6, dtype=np.float16)
  b = Buffer("FAKE", 6, dtypes.float16).copyin(ref.data)
  out = b.numpy()
  assert out.dtype == ref.dtype and (out == ref).all()

def test_numpy_of_dtype_numpy_lacks_is_a_clear_error(devices):
  b = Buffer("FAKE", 2, dtypes.bfloat16).copyin(bytes(4))
  with pytest.raises(TypeError, match="numpy has no"): b.numpy()

def test_view_shares_base_memory(devices):
  ref = list(range(8))
  b = Buffer("FAKE", 8, dtypes.int32).copyin(array.array("i", ref))
  v = b.view(3, dtypes.int32, offset=8)
  assert array.array("i", v.as_buffer().tobytes()).tolist() == ref[2:5]
  v.copyin(array.array("i", [-1, -2, -3]))
  ref[2:5] = [-1, -2, -3]
  assert array.array("i", b.as_buffer().tobytes()).tolist() == ref
  assert devices["FAKE"].allocator.allocs == 1

def test_view_reinterprets_dtype(devices):
  b = Buffer("FAKE", 2, dtypes.float32).copyin(floats(1.0, 2.0))
  v = b.view(8, dtypes.uint8, 0)
  assert v.as_buffer().tobytes() == struct.pack("<2f", 1.0, 2.0)

def test_view_of_unallocated_base_allocates_the_base(devices):
  b = Buffer("FAKE", 8, dtypes.int32)
  v = b.view(2, dtypes.int32, 4).copyin(array.array("i", [5, 6]))
  assert b.is_allocated() and v.is_allocated()
  assert array.array("i", b.as_buffer().tobytes()).tolist() == [0, 5, 6, 0, 0, 0, 0, 0]

def test_view_of_view_resolves_to_base_with_summed_offsets(devices):
  ref = list(range(16))
  b = Buffer("FAKE", 16, dtypes.int32).copyin(array.array("i", ref))
  v1 = b.view(8, dtypes.int32, 16)
  v2 = v1.view(2, dtypes.int32, 12)
  assert v2.base is b and v2.offset == 28
  assert array.array("i", v2.as_buffer().tobytes()).tolist() == ref[7:9]

def test_view_out_of_range_is_a_clear_error(devices):
  b = Buffer("FAKE", 4, dtypes.float32)
  with pytest.raises(ValueError, match="out of range"): b.view(2, dtypes.float32, 12)
  with pytest.raises(ValueError, match="offset"): b.view(1, dtypes.float32, -4)
  v = b.view(2, dtypes.float32, 0)
  # inside the base, but past the end of the view it is taken from
  with pytest.raises(ValueError, match="out of range"): v.view(2, dtypes.float32, 4)
  with pytest.raises(ValueError, match="out of range"): Buffer("FAKE", 2, dtypes.float32, base=b, offset=12)

def test_view_needs_allocator_with_offset(devices):
  v = Buffer("NOVIEW", 4, dtypes.int32).view(1, dtypes.int32, 4)
  with pytest.raises(RuntimeError, match="does not support buffer views"): v.allocate()

def test_view_must_be_on_base_device(devices):
  with pytest.raises(ValueError, match="must be on FAKE"): Buffer("FAKE2", 1, dtypes.int32, base=Buffer("FAKE", 1, dtypes.int32))

def test_bad_size_is_a_clear_error():
  with pytest.raises(ValueError, match="size"): Buffer("FAKE", -1, dtypes.int32)

def test_deallocate_returns_memory_to_lru_cache(devices):
  alloc = devices["FAKE"].allocator
  b = Buffer("FAKE", 4, dtypes.int32).allocate()
  b.deallocate()
  assert not b.is_allocated() and alloc.frees == 0 and len(alloc.cache[(16, None)]) == 1
  b2 = Buffer("FAKE", 16, dtypes.uint8).allocate()
  assert b2.is_allocated() and alloc.allocs == 1 and not alloc.cache[(16, None)]

def test_deleted_buffer_returns_memory(devices):
  alloc = devices["FAKE"].allocator
  b = Buffer("FAKE", 4, dtypes.int32).allocate()
  del b
  assert len(alloc.cache[(16, None)]) == 1

def test_wrapped_opaque_is_not_freed(devices):
  alloc = devices["FAKE"].allocator
  mem = memoryview(bytearray(8))
  b = Buffer("FAKE", 2, dtypes.int32, opaque=mem)
  assert b.is_allocated()
  b.copyin(array.array("i", [3, 4]))
  assert array.array("i", mem.tobytes()).tolist() == [3, 4]
  b.deallocate()
  assert alloc.frees == 0 and not alloc.cache

def test_copy_from_other_device_goes_through_host(devices):
  src = Buffer("FAKE2", 3, dtypes.int32).copyin(array.array("i", [1, 2, 3]))
  dst = Buffer("FAKE", 3, dtypes.int32).copy_from(src)
  assert array.array("i", dst.as_buffer().tobytes()).tolist() == [1, 2, 3]

def test_copy_from_same_device_uses_transfer(devices, monkeypatch):
  calls = []
  alloc = devices["FAKE"].allocator
  monkeypatch.setattr(alloc, "_transfer", lambda d, s, n: (calls.append(n), HostAllocator._transfer(alloc, d, s, n)))
  src = Buffer("FAKE", 2, dtypes.int32).copyin(array.array("i", [9, 8]))
  dst = Buffer("FAKE", 2, dtypes.int32).copy_from(src)
  assert calls == [8] and array.array("i", dst.as_buffer().tobytes()).tolist() == [9, 8]

# ---- LRUAllocator
def test_lru_reuses_freed_buffer_of_same_size_and_options():
  a = HostAllocator("X")
  opts = BufferSpec(cpu_access=True)
  x = a.alloc(64, opts)
  a.free(x, 64, opts)
  assert a.alloc(64, BufferSpec(cpu_access=True)) is x and a.allocs == 1
  y = a.alloc(64)
  assert y is not x and a.allocs == 2

def test_lru_does_not_reuse_across_options_or_sizes():
  a = HostAllocator("X")
  x = a.alloc(64)
  a.free(x, 64)
  assert a.alloc(32) is not x and a.alloc(64, BufferSpec(host=True)) is not x and a.allocs == 3

def test_lru_nolru_bypasses_cache():
  a = HostAllocator("X")
  opts = BufferSpec(nolru=True)
  x = a.alloc(64, opts)
  a.free(x, 64, opts)
  assert a.frees == 1 and not any(a.cache.values())

def test_lru_frees_cache_and_retries_on_memory_error():
  a = HostAllocator("X", cap=100)
  bufs = [a.alloc(40), a.alloc(40)]
  for b in bufs: a.free(b, 40)
  # 80 bytes sit in the cache: a 60-byte buffer only fits after the cache is released
  assert len(a.alloc(60)) == 60
  assert a.frees == 2 and not any(a.cache.values())

def test_lru_memory_error_after_retry_says_bytes_device_and_cache():
  a = HostAllocator("GPU:3", cap=100)
  a.free(a.alloc(40), 40)
  with pytest.raises(MemoryError, match=r"GPU:3.*500 bytes.*cache.*1 cached buffers, 40 bytes"): a.alloc(500)

def test_free_cache_counts_buffers_and_bytes():
  a = HostAllocator("X")
  for n, opaque in [(n, a.alloc(n)) for n in (8, 8, 16)]: a.free(opaque, n)
  assert a.free_cache() == (3, 32) and a.frees == 3

def test_alloc_negative_size_is_a_clear_error():
  with pytest.raises(ValueError, match="size"): HostAllocator("X").alloc(-5)

def test_compiled_names_its_allocator():
  a = HostAllocator()
  Compiled("FAKE:1", a, None, None, None)
  assert a.device == "FAKE:1"

# ---- Compiler
class CountingCompiler(Compiler):
  def __init__(self, cachekey="test_cc", flags=()):
    super().__init__(cachekey, flags)
    self.calls = 0
  def compile(self, src):
    self.calls += 1
    if "syntax error" in src: raise CompileError(f"line 1: syntax error in {src!r}")
    return b"BIN:" + src.encode()

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  return tmp_path

def test_compile_cached_second_call_does_not_compile(tmp_cache):
  c = CountingCompiler()
  assert c.compile_cached("int main;") == b"BIN:int main;"
  assert CountingCompiler().compile_cached("int main;") == b"BIN:int main;"  # a fresh compiler reads the disk cache
  assert c.compile_cached("int main;") == b"BIN:int main;" and c.calls == 1

def test_compile_cache_file_is_sha256_of_source(tmp_cache):
  CountingCompiler("ptx:sm_90").compile_cached("abc")
  assert cache_dir() == tmp_cache / "tg"
  files = [p for p in (tmp_cache / "tg" / "compile").rglob("*") if p.is_file()]
  assert [p.name for p in files] == [hashlib.sha256(b"abc").hexdigest()]
  assert files[0].read_bytes() == b"BIN:abc" and "/" not in files[0].parent.name

def test_compile_cache_is_keyed_by_flags_and_cachekey(tmp_cache):
  a, b, c = CountingCompiler(flags=("-O2",)), CountingCompiler(flags=("-O3",)), CountingCompiler(cachekey="other")
  for comp in (a, b, c): comp.compile_cached("x")
  assert (a.calls, b.calls, c.calls) == (1, 1, 1)

def test_cachelevel_zero_disables_compile_cache(tmp_cache):
  c = CountingCompiler()
  with Context(CACHELEVEL=0):
    c.compile_cached("x"); c.compile_cached("x")
  assert c.calls == 2 and not (tmp_cache / "tg" / "compile").exists()

def test_no_cachekey_means_no_cache(tmp_cache):
  c = CountingCompiler(cachekey=None)
  c.compile_cached("x"); c.compile_cached("x")
  assert c.calls == 2 and not (tmp_cache / "tg").exists()

def test_compile_error_carries_compiler_message_and_is_not_cached(tmp_cache):
  c = CountingCompiler()
  for _ in range(2):
    with pytest.raises(CompileError, match="line 1: syntax error"): c.compile_cached("syntax error")
  assert c.calls == 2

def test_compile_cache_leaves_no_temp_files(tmp_cache):
  for s in ("a", "b"): CountingCompiler().compile_cached(s)
  names = [p.name for p in (tmp_cache / "tg" / "compile").rglob("*") if p.is_file()]
  assert len(names) == 2 and not any(n.endswith(".tmp") for n in names)

def test_compiler_returning_non_bytes_is_a_clear_error(tmp_cache):
  class Bad(Compiler):
    def compile(self, src): return src
  with pytest.raises(TypeError, match="must return bytes"): Bad("bad").compile_cached("x")

# ---- Program launch dims, Renderer, Compiled
def test_launch_dims_are_padded_to_three():
  assert check_launch_dims((4,), (2, 2)) == ((4, 1, 1), (2, 2, 1))

@pytest.mark.parametrize("gs,ls", [((0,), (1,)), ((1, 1, 1, 1), (1,)), ((1,), (1.5,))])
def test_bad_launch_dims_are_a_clear_error(gs, ls):
  with pytest.raises(ValueError, match="must be up to 3 positive ints"): check_launch_dims(gs, ls)

def test_renderer_arch_defaults_to_class_default():
  class R(Renderer):
    default_arch = "sm_80"
    def render(self, name, uops): return name
  assert R().arch == "sm_80" and R("sm_90").arch == "sm_90"

def test_renderer_supports_is_per_op_and_dtype():
  from tg_uop.ops import Ops
  class All(Renderer):
    def render(self, name, uops): return name
  class Some(All):
    supported_ops = frozenset({Ops.ADD, Ops.EXP2})
    native_dtypes = {Ops.EXP2: frozenset({dtypes.float32})}
  assert All().supports(Ops.SIN, dtypes.float64)  # no supported_ops: every op on every dtype
  r = Some()
  assert r.supports(Ops.ADD, dtypes.float64) and r.supports(Ops.EXP2, dtypes.float32) and r.supports(Ops.EXP2, dtypes.float32.vec(4))
  assert not r.supports(Ops.EXP2, dtypes.float64) and not r.supports(Ops.SIN, dtypes.float32)

def test_compiled_without_compiler_or_runtime_is_a_clear_error():
  dev = Compiled("FAKE", HostAllocator(), None, None, None)
  with pytest.raises(RuntimeError, match="no compiler"): dev.compile("x")
  with pytest.raises(RuntimeError, match="no program runtime"): dev.program("k", b"")
  dev.synchronize()

def test_runtime_import_is_cheap():
  code = "import sys, tg_uop.runtime, tg_uop.runtime.hcq; print(sorted(m for m in ('numpy', 'pluggy') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
  assert out == "[]"
