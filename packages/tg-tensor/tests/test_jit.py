"""TinyJit: capture on the second call, replay after; inputs must keep shape/dtype/device; outputs never alias between calls."""
import gc, resource
import numpy as np
import pytest
from tg_tensor.tensor import Tensor
from tg_tensor.jit import TinyJit, JitError
from tg_tensor import engine

def _pair(seed, shape=(4, 8)):
  rng = np.random.default_rng(seed)
  return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)

def test_replay_gives_fresh_correct_results_and_skips_scheduling():
  @TinyJit
  def f(x, y): return (x * y + x).sum(1), x + 1
  outs = []
  for i in range(5):
    a, b = _pair(i)
    s, t = f(Tensor(a), Tensor(b))
    np.testing.assert_allclose(s.numpy(), (a * b + a).sum(1), rtol=1e-5)
    np.testing.assert_allclose(t.numpy(), a + 1)
    outs.append((t, a))
  for t, a in outs: np.testing.assert_allclose(t.numpy(), a + 1)  # earlier outputs were not overwritten by later calls
  assert f.captured is not None and len(f.captured.steps) >= 2

def test_replay_runs_the_captured_kernels_only():
  @TinyJit
  def f(x): return (x * 2).sum()
  for i in range(3): f(Tensor(_pair(i)[0]))
  k0 = engine.kernel_count
  f(Tensor(_pair(9)[0]))
  assert engine.kernel_count - k0 == len([s for s in f.captured.steps if s[0] is not None])

@pytest.mark.parametrize("bad, what", [(np.zeros((3, 8), np.float32), "shape"), (np.zeros((4, 8), np.int32), "dtype")])
def test_changed_inputs_raise_a_clear_error(bad, what):
  @TinyJit
  def f(x): return x + 1
  for i in range(3): f(Tensor(_pair(i)[0]))
  with pytest.raises(JitError, match=f"input 0 changed {what}"): f(Tensor(bad))

def test_changed_device_raises_a_clear_error():
  @TinyJit
  def f(x): return x + 1
  for i in range(3): f(Tensor(_pair(i)[0]))
  with pytest.raises(JitError, match="changed device"): f(Tensor(_pair(0)[0], device="PYTHON"))

def test_weights_updated_in_place_stay_in_place():
  w = Tensor(np.ones(4, np.float32)).realize()
  @TinyJit
  def step(x):
    w.assign(w - x).realize()
    return (w * 1).sum()
  for i in range(4): step(Tensor(np.full(4, 0.5, np.float32)))
  np.testing.assert_allclose(w.numpy(), np.ones(4) - 4 * 0.5)

def test_jit_off_runs_the_function_every_time():
  from tg_uop.helpers import Context
  calls = []
  @TinyJit
  def f(x):
    calls.append(1)
    return x * 3
  with Context(JIT=0):
    for i in range(4): f(Tensor(_pair(i)[0]))
  assert len(calls) == 4

def test_ten_thousand_replays_keep_memory_flat():
  @TinyJit
  def f(x): return x * 2 + 1
  x = Tensor(np.arange(16, dtype=np.float32))
  for _ in range(3): f(x)
  gc.collect()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  for _ in range(10_000): out = f(x)
  gc.collect()
  after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  np.testing.assert_allclose(out.numpy(), np.arange(16) * 2 + 1)
  assert after - before < 20 * 1024, f"peak RSS grew by {(after - before) / 1024:.1f} MiB over 10k replays"  # ru_maxrss is in KiB

def test_tinyjit_is_exported_at_the_top_level():
  # the entry point: `from tg_tensor import Tensor, dtypes, Device, TinyJit`
  from tg_tensor import Tensor as T, dtypes as D, Device as V, TinyJit as J  # noqa: F401
  from tg_tensor.jit import TinyJit as J2
  assert J is J2

def test_replay_rebuilds_every_kind_of_return_value():
  w = Tensor(np.ones((2, 3), np.float32)).realize()
  @TinyJit
  def f(x, y=None):
    z = (x * 2 + y).reshape(3, 2)
    return z, z, x, w, {"s": z.sum()}, 7
  b = np.arange(6, dtype=np.float32).reshape(2, 3)
  for i in range(4):
    a = np.full((2, 3), i, np.float32)
    z, z2, x, ww, d, c = f(Tensor(a), y=Tensor(b))
    np.testing.assert_allclose(z.numpy(), (a * 2 + b).reshape(3, 2))
    assert z.shape == (3, 2) and z2.uop is z.uop and c == 7
    np.testing.assert_allclose(x.numpy(), a)  # an input returned as it came in
    assert ww.uop is w.uop  # a weight returned is the weight
    np.testing.assert_allclose(d["s"].numpy(), (a * 2 + b).sum())

def test_replay_realizes_lazy_inputs_first():
  @TinyJit
  def f(x): return x * 3
  for i in range(4):
    a = _pair(i)[0]
    np.testing.assert_allclose(f(Tensor(a) + 1).numpy(), (a + 1) * 3, rtol=1e-6)  # the input is an unrealized graph

def test_wrong_number_of_inputs_raises_a_clear_error():
  @TinyJit
  def f(x, y=None): return x + 1 if y is None else x + y
  for i in range(3): f(Tensor(_pair(i)[0]))
  with pytest.raises(JitError, match="captured with 1 tensor inputs, got 2"): f(Tensor(_pair(0)[0]), y=Tensor(_pair(1)[0]))

def test_debug_2_replays_through_the_runners_and_reports_each_kernel(capsys):
  from tg_uop.helpers import Context
  @TinyJit
  def f(x): return (x * 2).sum(1) + 1
  for i in range(3): f(Tensor(_pair(i)[0]))
  capsys.readouterr()
  a = _pair(7)[0]
  with Context(DEBUG=2): out = f(Tensor(a))
  np.testing.assert_allclose(out.numpy(), (a * 2).sum(1) + 1, rtol=1e-5)
  kernels = [s for s in f.captured.steps if s[0] is not None]
  assert sum(" GFLOPS " in line for line in capsys.readouterr().out.splitlines()) == len(kernels)

def _affine_jit():
  @TinyJit
  def f(x): return x * 2 + 1
  return f

def _vec(v): return Tensor(np.full(16, v, np.float32))

def test_a_dropped_result_leaves_its_buffer_to_the_next_call():
  import weakref
  from tg_tensor.buffers import get_buffer
  f = _affine_jit()
  for i in range(3): f(_vec(i))
  dropped = weakref.ref(get_buffer(f(_vec(5)).uop))  # the result (and its tensor) is gone after this line
  out = f(_vec(7))
  assert get_buffer(out.uop) is dropped(), "nothing held the last result: its buffer is written again, not a new one"
  np.testing.assert_allclose(out.numpy(), np.full(16, 15.0))
  for i in range(50): f(_vec(i))
  assert len(f.captured.plan.pools[0]) <= 2

def test_a_result_anything_still_sees_is_never_written():
  import weakref
  from tg_tensor.buffers import get_buffer
  from tg_tensor.tensor import Tensor as T
  f = _affine_jit()
  for i in range(3): f(_vec(i))
  x = _vec(0)
  held = f(x)                              # the tensor itself
  lazy = f(_vec(1)) * 10                   # a graph built on it, not run yet
  buf = get_buffer(f(_vec(2)).uop)         # its Buffer
  view = f(_vec(3)).reshape(4, 4)          # a view of it
  out = f(_vec(4))
  weak = weakref.ref(out.uop)              # a weak reference (as the gradient's remembered graphs hold them)
  del out
  for i in range(20): f(_vec(100 + i)); f(x)  # dropped results, new and repeated inputs: the pool turns over
  np.testing.assert_allclose(held.numpy(), np.full(16, 1.0))
  np.testing.assert_allclose(lazy.numpy(), np.full(16, 30.0))
  np.testing.assert_allclose(np.frombuffer(buf.as_buffer(), np.float32), np.full(16, 5.0))
  np.testing.assert_allclose(view.numpy(), np.full((4, 4), 7.0))
  if (u := weak()) is not None: np.testing.assert_allclose(T._of(u, "CPU").numpy(), np.full(16, 9.0))  # (or it is gone: unseen)

def test_feeding_results_back_ping_pongs_between_two_buffers():
  f = _affine_jit()
  x, ref = _vec(1), np.full(16, 1.0, np.float32)
  for _ in range(4): x, ref = f(x), ref * 2 + 1
  pool = f.captured.plan.pools[0]
  entries = list(pool)
  for _ in range(10): x, ref = f(x), ref * 2 + 1
  np.testing.assert_allclose(x.numpy(), ref)
  assert len(pool) == 2 and all(a is b for a, b in zip(pool, entries)), "x = f(x) reuses the buffer it dropped a call before"

def test_the_same_input_tensor_updated_in_place_replays_on_its_new_values():
  f = _affine_jit()
  x = _vec(0).contiguous().realize()
  for i in range(4):
    x.assign(_vec(i)).realize()
    np.testing.assert_allclose(f(x).numpy(), np.full(16, 2 * i + 1.0))

def test_non_tensor_arguments_are_ignored_on_replay():
  @TinyJit
  def f(x, note): return x + 1
  for i in range(4): np.testing.assert_allclose(f(_vec(i), f"call {i}").numpy(), np.full(16, i + 1.0))

def test_a_call_that_raised_leaves_the_jit_working():
  f = _affine_jit()
  x = _vec(3)
  for _ in range(3): f(x)
  with pytest.raises(JitError, match="changed shape"): f(Tensor(np.zeros(8, np.float32)))
  np.testing.assert_allclose(f(x).numpy(), np.full(16, 7.0))
  np.testing.assert_allclose(f(_vec(4)).numpy(), np.full(16, 9.0))
