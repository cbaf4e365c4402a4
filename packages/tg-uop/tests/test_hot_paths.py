"""Core paths every launch and every UOp goes through, made cheap for TinyJit replays: the hash-cons table drops dead UOps, the
default `Program.launcher` is a plain call with its dims checked once, a Buffer frees into the allocator it came from, and the
registry finds an opened device by its canonical name."""
import gc
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp, UOpMetaClass, _ucache_keys
from tg_uop.runtime import Buffer, Compiled, LRUAllocator
from tg_uop.runtime.program import Program
import tg_uop.runtime.buffer as buffer_mod

def test_hash_consing_dedups_live_uops_and_forgets_dead_ones():
  a = UOp(Ops.CONST, dtypes.int32, (), 123456789)
  assert UOp(Ops.CONST, dtypes.int32, (), 123456789) is a
  assert UOp(Ops.CONST, dtypes.float32, (), -0.0) is not UOp(Ops.CONST, dtypes.float32, (), 0.0)
  n, nkeys = len(UOpMetaClass.ucache), len(_ucache_keys)
  uops = [UOp(Ops.CONST, dtypes.int32, (), 10**12 + i) for i in range(100)]
  assert (len(UOpMetaClass.ucache), len(_ucache_keys)) == (n + 100, nkeys + 100)
  del uops
  gc.collect()
  assert (len(UOpMetaClass.ucache), len(_ucache_keys)) == (n, nkeys)
  assert UOp(Ops.CONST, dtypes.int32, (), 10**12).arg == 10**12  # built again after its first died

class Recording(Program):
  def __init__(self): super().__init__(None, "rec", b"")
  calls: list = []
  def __call__(self, *bufs, global_size=(1, 1, 1), local_size=(1, 1, 1), vals=(), wait=False):
    self.calls.append((bufs, global_size, local_size, vals, wait))

def test_default_launcher_is_a_plain_call_with_padded_dims():
  prg = Recording()
  prg.calls = []
  launch = prg.launcher((4,), (2, 2))
  launch("a", "b")
  launch("c")
  assert prg.calls == [(("a", "b"), (4, 1, 1), (2, 2, 1), (), False), (("c",), (4, 1, 1), (2, 2, 1), (), False)]
  with pytest.raises(ValueError, match="local_size must be up to 3 positive ints"): prg.launcher((4,), (0,))

class Host(LRUAllocator):
  def _alloc(self, size, options): return bytearray(size)
  def _copyin(self, dest, src): dest[:] = src
  def _copyout(self, dest, src): dest[:] = src

def test_buffer_frees_into_the_allocator_it_came_from(monkeypatch):
  first, second = Compiled("FAKE", Host(), None, None, None), Compiled("FAKE", Host(), None, None, None)
  monkeypatch.setattr(buffer_mod, "_get_device", lambda name: first)
  b = Buffer("FAKE", 8, dtypes.uint8).allocate()
  mem = b._buf
  monkeypatch.setattr(buffer_mod, "_get_device", lambda name: second)  # the registry now names another device
  b.deallocate()
  assert first.allocator.cache[(8, None)] == [mem] and not second.allocator.cache

def test_registry_opens_a_device_once_under_any_spelling():
  from tg_uop.device import Device
  assert Device["NULL"] is Device["null"] is Device["NULL:0"]
  with pytest.raises(TypeError, match="must be a str"): Device[["NULL"]]
