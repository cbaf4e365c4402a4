"""The scheduler on tensor-level UOps: kernel counts for standard patterns, and values against numpy on the CPU."""
import numpy as np
import pytest
from tg_uop import UOp, dtypes, Ops
from tg_tensor.buffers import from_numpy, get_buffer
from tg_tensor.engine import realize
from tg_tensor.schedule import create_schedule, ScheduleError

def npy(u: UOp) -> np.ndarray:
  out = np.empty(u.shape, dtype=np.float32)
  get_buffer(u).copyout(memoryview(out).cast("B"))
  return out

def kernels(*outs: UOp) -> int:
  items, _ = create_schedule(list(outs), "CPU")
  return sum(it.ast is not None for it in items)

@pytest.fixture
def data():
  rng = np.random.default_rng(0)
  a, b, w = (rng.standard_normal(s).astype(np.float32) for s in ((8, 16), (16,), (16, 4)))
  return a, b, w, from_numpy(a, "CPU"), from_numpy(b, "CPU"), from_numpy(w, "CPU")

def bcast(x: UOp, shape) -> UOp: return x.reshape((1,) * (len(shape) - len(x.shape)) + x.shape).expand(shape)

def test_add_then_sum_is_one_kernel(data):
  a, b, _, A, B, _ = data
  s = (A + bcast(B, (8, 16))).reduce_axis(Ops.ADD, (0, 1))
  assert kernels(s) == 1
  assert np.allclose(npy(realize(s)[0]), (a + b).sum(), rtol=1e-5)

def test_softmax_is_at_most_three_kernels(data):
  a, _, _, A, _, _ = data
  m = A.reduce_axis(Ops.MAX, (1,)).reshape((8, 1)).expand((8, 16))
  e = ((A - m) * UOp.const(dtypes.float32, 1.4426950408889634).reshape((1, 1)).expand((8, 16))).alu(Ops.EXP2)
  sm = e * bcast(e.reduce_axis(Ops.ADD, (1,)), (16, 8)).permute((1, 0)).alu(Ops.RECIP)
  assert kernels(sm) <= 3
  ref = np.exp(a - a.max(1, keepdims=True)); ref /= ref.sum(1, keepdims=True)
  np.testing.assert_allclose(npy(realize(sm)[0]), ref, rtol=1e-5, atol=1e-6)

def test_matmul_bias_relu_is_one_kernel(data):
  a, b, w, A, _, W = data
  bias = from_numpy(np.arange(4, dtype=np.float32), "CPU")
  mm = (A.reshape((8, 16, 1)).expand((8, 16, 4)) * W.reshape((1, 16, 4)).expand((8, 16, 4))).reduce_axis(Ops.ADD, (1,))
  out = (mm + bcast(bias, (8, 4))).maximum(UOp.const(dtypes.float32, 0.0).reshape((1, 1)).expand((8, 4)))
  assert kernels(out) == 1
  np.testing.assert_allclose(npy(realize(out)[0]), np.maximum(a @ w + np.arange(4), 0), rtol=1e-5, atol=1e-5)

def test_movement_ops_become_index_math(data):
  a, _, _, A, _, _ = data
  x = A.permute((1, 0)).pad(((1, 2), (0, 3))).flip((True, False)).shrink(((1, 18), (2, 10)))
  assert kernels(x) == 1
  np.testing.assert_array_equal(npy(realize(x)[0]), np.pad(a.T, ((1, 2), (0, 3)))[::-1][1:18, 2:10])

def test_reshape_across_axes(data):
  a, _, _, A, _, _ = data
  x = A.reshape((4, 32)).permute((1, 0)).reshape((8, 16))
  np.testing.assert_array_equal(npy(realize(x)[0]), a.reshape(4, 32).T.reshape(8, 16))

def test_contiguous_is_a_materialization_barrier(data):
  _, _, _, A, _, _ = data
  y = (A + A).contiguous()
  assert kernels(y * y) == 2

def test_reduce_of_reduce_fuses_into_one_kernel(data):
  a, _, _, A, _, _ = data
  s = A.reduce_axis(Ops.MAX, (1,)).reduce_axis(Ops.ADD, (0,))
  assert kernels(s) == 1
  assert np.allclose(npy(realize(s)[0]), a.max(1).sum(), rtol=1e-5)

def test_mixing_devices_is_a_clear_error(data):
  a, _, _, A, _, _ = data
  P = from_numpy(a, "PYTHON")
  with pytest.raises(ScheduleError, match="mixes tensors on devices"): create_schedule([A + P], "CPU")

def test_assign_reading_other_positions_uses_a_temporary(data):
  a, _, _, A, _, _ = data
  target = from_numpy(a.copy(), "CPU")
  x = UOp(Ops.ASSIGN, dtypes.float32, (target, target.flip((True, False)) + target))
  realize(x)
  np.testing.assert_array_equal(npy(target), a[::-1] + a)

def test_assign_elementwise_in_place(data):
  a, _, _, A, _, _ = data
  target = from_numpy(a.copy(), "CPU")
  realize(UOp(Ops.ASSIGN, dtypes.float32, (target, target * target)))
  np.testing.assert_array_equal(npy(target), a * a)

def _softmax(x: UOp) -> UOp:
  n, k = x.shape
  m = x.reduce_axis(Ops.MAX, (1,)).reshape((n, 1)).expand((n, k))
  e = ((x - m) * UOp.const(dtypes.float32, 1.4426950408889634).reshape((1, 1)).expand((n, k))).alu(Ops.EXP2)
  return e * e.reduce_axis(Ops.ADD, (1,)).alu(Ops.RECIP).reshape((n, 1)).expand((n, k))

def _np_softmax(a):
  e = np.exp(a - a.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)

def test_memory_planner_reuses_dead_intermediates(data):
  from tg_tensor.memory import plan_memory
  from tg_tensor.schedule import schedule_cached
  a, _, _, A, _, _ = data
  y = A
  for _ in range(4): y = _softmax(y).contiguous()
  items, realized = schedule_cached([y], "CPU")
  plan = plan_memory(items, {realized[y], A.src[0]})
  assert plan.allocated < plan.requested  # same-sized intermediates of earlier steps were reused
  ref = a
  for _ in range(4): ref = _np_softmax(ref)
  np.testing.assert_allclose(npy(realize(y)[0]), ref, rtol=1e-5, atol=1e-6)

def test_schedule_cache_reuses_a_schedule_for_new_buffers(data):
  from tg_tensor.schedule import cache_stats
  a, b, _, A, B, _ = data
  f = lambda x, y: (x * bcast(y, (8, 16))).reduce_axis(Ops.ADD, (1,))  # noqa: E731
  np.testing.assert_allclose(npy(realize(f(A, B))[0]), (a * b).sum(1), rtol=1e-5)
  hits = cache_stats["hits"]
  a2, b2 = a + 1, b * 2
  np.testing.assert_allclose(npy(realize(f(from_numpy(a2, "CPU"), from_numpy(b2, "CPU")))[0]), (a2 * b2).sum(1), rtol=1e-5)
  assert cache_stats["hits"] == hits + 1

def test_an_assign_that_ran_does_not_run_again_in_later_graphs():
  from tg_tensor.tensor import Tensor
  a = Tensor([1.0, 2.0]).realize()
  a.assign(a + 1)
  b = a * 10  # built on the pending assign
  a.realize()
  assert b.tolist() == [20.0, 30.0] and a.tolist() == [2.0, 3.0]

def test_the_same_update_twice_runs_twice():
  from tg_tensor.tensor import Tensor
  x = Tensor([0.0]).realize()
  keep = []
  for _ in range(3):
    x.assign(x + 1)
    keep.append(x.uop)  # holding the graph alive must not make a later identical update look done
    x.realize()
  assert x.tolist() == [3.0]

def test_reads_of_the_old_value_run_before_the_assign():
  from tg_tensor.tensor import Tensor
  a = Tensor([1.0, 2.0]).realize()
  old_doubled = (a * 2).contiguous()
  a.assign(a + 10)
  Tensor.realize(old_doubled, a)
  assert old_doubled.tolist() == [2.0, 4.0] and a.tolist() == [11.0, 12.0]

def test_an_assign_cycle_is_a_clear_error():
  from tg_tensor.tensor import Tensor
  x, y = Tensor([1.0]).realize(), Tensor([2.0]).realize()
  x_old, y_old = Tensor(x.uop), Tensor(y.uop)  # views of the buffers as they are now
  x.assign(y_old + 0)
  y.assign(x_old + 0)  # each needs the other's old value, and each overwrites it: no order works
  with pytest.raises(ScheduleError, match="assign cycle"): Tensor.realize(x, y)
