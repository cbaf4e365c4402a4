"""Multi-device sharding: values on two CPU devices against numpy, gradients against the single-device run, and kernel placement
on NULL devices (which compile but run nothing)."""
from collections import Counter
import numpy as np
import pytest
from tg_tensor.tensor import Tensor
from tg_tensor.multi import MultiTensor
from tg_tensor.schedule import create_schedule

CPUS = ("CPU:0", "CPU:1")
NULLS = ("NULL", "NULL:1")
rng = np.random.default_rng(0)
A = rng.standard_normal((8, 6)).astype(np.float32)
B = rng.standard_normal((6, 5)).astype(np.float32)
V = rng.standard_normal((6,)).astype(np.float32)

def close(t: Tensor, ref: np.ndarray, atol: float = 1e-5) -> None:
  out = t.numpy()
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, atol=atol, rtol=1e-5)

# ---- placement and gathering ----
@pytest.mark.parametrize("axis", [0, 1, None])
def test_shard_keeps_the_logical_shape_and_values(axis):
  x = Tensor(A).shard(CPUS, axis)
  assert isinstance(x, Tensor) and x.shape == A.shape and x.device == ("CPU", "CPU:1") and x.axis == axis
  close(x, A)

def test_shard_splits_evenly_with_the_remainder_first():
  x = Tensor(np.arange(7, dtype=np.float32)).shard(CPUS, 0)
  assert [s.shape for s in x.shards] == [(4,), (3,)]
  close(x * 2, np.arange(7, dtype=np.float32) * 2)

def test_to_one_device_gathers_a_plain_tensor():
  x = Tensor(A).shard(CPUS, 0)
  g = x.to("CPU:1")
  assert not isinstance(g, MultiTensor) and g.device == "CPU:1"
  close(g, A)

def test_reshard_to_another_axis():
  x = Tensor(A).shard(CPUS, 0).shard(CPUS, 1)
  assert x.axis == 1 and [s.shape for s in x.shards] == [(8, 3), (8, 3)]
  close(x, A)

def test_realize_computes_every_shard():
  x = (Tensor(A).shard(CPUS, 0) + 1).realize()
  assert all(s._is_realized() for s in x.shards)
  close(x, A + 1)

# ---- elementwise ----
@pytest.mark.parametrize("axis", [0, 1, None])
def test_elementwise_with_scalars_and_unary_ops(axis):
  x = Tensor(A).shard(CPUS, axis)
  close((2 - x * 3).relu() + x.exp() / 2, np.maximum(2 - A * 3, 0) + np.exp(A) / 2)

@pytest.mark.parametrize("axis", [0, 1])
def test_broadcast_with_a_plain_tensor_in_either_order(axis):
  x = Tensor(A).shard(CPUS, axis)
  close(x + Tensor(V), A + V)
  close(Tensor(V) * x, V * A)
  close(x - Tensor(A[:, :1]), A - A[:, :1])

def test_sharded_with_replicated_and_where():
  x, r = Tensor(A).shard(CPUS, 0), Tensor(A * 2).shard(CPUS)
  close(x + r, A * 3)
  close((x > 0).where(x, r), np.where(A > 0, A, A * 2))

# ---- reductions ----
@pytest.mark.parametrize("shard_axis", [0, 1, None])
@pytest.mark.parametrize("axis", [0, 1, None])
def test_sum_over_each_axis(shard_axis, axis):
  out = Tensor(A).shard(CPUS, shard_axis).sum(axis)
  close(out, A.sum(axis))
  if axis is None or axis == shard_axis: assert out.axis is None  # reduced across devices: replicated (allreduce)

def test_mean_max_min_keepdim_and_softmax():
  x = Tensor(A).shard(CPUS, 0)
  close(x.mean(), np.array(A.mean()), atol=1e-6)
  close(x.mean(0, keepdim=True), A.mean(0, keepdims=True), atol=1e-6)
  close(x.max(0), A.max(0))
  close(x.min(), np.array(A.min()))
  close(x.sum(1, keepdim=True), A.sum(1, keepdims=True))
  e = np.exp(A - A.max(0, keepdims=True))
  close(x.softmax(0), e / e.sum(0, keepdims=True), atol=1e-6)

# ---- matmul ----
def test_matmul_with_sharded_rows():
  out = Tensor(A).shard(CPUS, 0) @ Tensor(B)
  assert out.axis == 0
  close(out, A @ B)

def test_matmul_with_sharded_contraction_is_an_allreduce():
  out = Tensor(A).shard(CPUS, 1) @ Tensor(B).shard(CPUS, 0)
  assert out.axis is None
  close(out, A @ B)
  close(Tensor(A).shard(CPUS, 1) @ Tensor(B), A @ B)  # the replicated operand is split locally

def test_matmul_with_sharded_columns_and_batches():
  out = Tensor(A) @ Tensor(B).shard(CPUS, 1)
  assert out.axis == 1
  close(out, A @ B)
  C = rng.standard_normal((4, 3, 6)).astype(np.float32)
  close(Tensor(C).shard(CPUS, 0) @ Tensor(B), C @ B)

# ---- movement ----
def test_reshape_and_permute_keep_the_sharded_axis():
  x = Tensor(A).shard(CPUS, 0)
  r = x.reshape(8, 3, 2)
  assert r.axis == 0
  close(r, A.reshape(8, 3, 2))
  y = Tensor(A).shard(CPUS, 1)
  assert y.reshape(2, 4, 6).axis == 2 and y.T.axis == 0
  close(y.reshape(2, 4, 6).permute(2, 0, 1), A.reshape(2, 4, 6).transpose(2, 0, 1))

def test_reshape_that_splits_the_sharded_axis_is_an_error():
  with pytest.raises(ValueError, match="sharded on axis 0.*must stay one whole axis"): Tensor(A).shard(CPUS, 0).reshape(48)

# ---- errors ----
def test_operands_sharded_on_different_axes_are_an_error():
  with pytest.raises(ValueError, match="sharded on different axes"): Tensor(A).shard(CPUS, 0) + Tensor(A).shard(CPUS, 1)

def test_operands_on_different_device_sets_are_an_error():
  with pytest.raises(ValueError, match="different devices"): Tensor(A).shard(CPUS, 0) + Tensor(A).shard(("CPU:1", "CPU:0"), 0)

def test_bad_shard_arguments_are_errors():
  with pytest.raises(ValueError, match="every device needs at least one element"): Tensor(np.ones(1, np.float32)).shard(CPUS, 0)
  with pytest.raises(ValueError, match="must be distinct"): Tensor(A).shard(("CPU:1", "CPU:1"))
  with pytest.raises(TypeError, match="tuple or list of device names"): Tensor(A).shard("CPU:1")
  with pytest.raises(IndexError, match="out of range"): Tensor(A).shard(CPUS, 2)

def test_unsupported_ops_say_to_gather_first():
  x = Tensor(A).shard(CPUS, 0)
  with pytest.raises(TypeError, match=r"gather it with \.to\(device\)"): x[0]
  with pytest.raises(ValueError, match="can't shrink the sharded axis"): x.shrink(((0, 2), None))
  with pytest.raises(ValueError, match="reduce it first"): x.backward()

# ---- gradients ----
def _mlp_step(shard: bool) -> list[np.ndarray]:
  r = np.random.default_rng(1)
  X, W1, W2 = (r.standard_normal(s).astype(np.float32) for s in ((8, 4), (4, 16), (16, 3)))
  w1, w2, b1 = Tensor(W1, requires_grad=True), Tensor(W2, requires_grad=True), Tensor(np.zeros(16, np.float32), requires_grad=True)
  x = Tensor(X).shard(CPUS, 0) if shard else Tensor(X)
  loss = (x @ w1 + b1).relu().matmul(w2).log_softmax(1).mean()
  loss.backward()
  return [loss.numpy(), w1.grad.numpy(), b1.grad.numpy(), w2.grad.numpy()]

def test_mlp_with_sharded_batch_gives_single_device_gradients():
  for single, sharded in zip(_mlp_step(False), _mlp_step(True)): np.testing.assert_allclose(sharded, single, atol=1e-6, rtol=1e-5)

def test_gradient_of_a_sharded_input_is_sharded():
  x = Tensor(A).shard(CPUS, 1).requires_grad_()
  ((x * x).sum() + (x @ Tensor(B)).sum()).backward()
  assert isinstance(x.grad, MultiTensor) and x.grad.axis == 1
  close(x.grad, 2 * A + B.sum(1)[None, :])

def test_gradient_through_a_gather():
  w = Tensor(B, requires_grad=True)
  (Tensor(A).shard(CPUS, 0) @ w.shard(CPUS)).max().backward()
  ref = np.zeros_like(B)
  i, _ = np.unravel_index(np.argmax(A @ B), (8, 5))
  ref[:, np.argmax((A @ B)[i])] = A[i]
  close(w.grad, ref)

# ---- placement on NULL devices (nothing runs: count the scheduled kernels and copies per device) ----
def _placement(out: MultiTensor) -> Counter:
  items, _ = create_schedule([s.uop for s in out.shards], "NULL")
  return Counter((it.device, "copy" if it.ast is None else "kernel") for it in items)

def test_null_elementwise_runs_one_kernel_per_device():
  x = Tensor(np.ones((8, 6), np.float32), device="NULL").realize().shard(NULLS, 0)
  x = x.realize()
  c = _placement(x * 2 + 1)
  assert c[("NULL", "kernel")] == 1 and c[("NULL:1", "kernel")] == 1 and c[("NULL", "copy")] + c[("NULL:1", "copy")] == 0

def test_null_sum_over_the_sharded_axis_is_an_allreduce():
  x = Tensor(np.ones((8, 6), np.float32), device="NULL").shard(NULLS, 0).realize()
  c = _placement(x.sum(0))
  # each device: its partial sum and the combine; each receives the other's partial
  assert c == Counter({("NULL", "kernel"): 2, ("NULL:1", "kernel"): 2, ("NULL", "copy"): 1, ("NULL:1", "copy"): 1})
  c = _placement(x.sum(1))
  assert c == Counter({("NULL", "kernel"): 1, ("NULL:1", "kernel"): 1})

def test_null_matmul_copies_the_weight_once():
  x = Tensor(np.ones((8, 6), np.float32), device="NULL").shard(NULLS, 0).realize()
  w = Tensor(np.ones((6, 4), np.float32), device="NULL")
  c = _placement(x @ w)
  assert c == Counter({("NULL", "kernel"): 1, ("NULL:1", "kernel"): 1, ("NULL:1", "copy"): 1})
  (x @ w).realize()  # renders and compiles for both devices without running

def test_gradient_through_a_copy_returns_to_the_source_device():
  x = Tensor(np.arange(4, dtype=np.float32), device="CPU", requires_grad=True)
  (x.to("PYTHON") * 3).sum().backward()
  assert x.grad.device == "CPU" and x.grad.tolist() == [3.0, 3.0, 3.0, 3.0]

def test_constants_realize_on_their_own_device():
  # a graph of constants reads no buffer: a CONTIGUOUS in it must land on the tensor's device, not Device.DEFAULT
  t = Tensor.zeros(2, 3, device="CPU:1").contiguous().realize()
  from tg_tensor.buffers import get_buffer
  assert t.device == "CPU:1" and get_buffer(t.uop).device == "CPU:1"
  np.testing.assert_equal(t.numpy(), np.zeros((2, 3), np.float32))

def test_optimizer_on_a_non_default_device():
  from tg_tensor.nn import optim
  w = Tensor(np.ones((4, 3), np.float32), device="CPU:1", requires_grad=True)
  x, y = Tensor(np.ones((2, 3), np.float32), device="CPU:1"), Tensor(np.array([1, 2]), device="CPU:1")
  opt = optim.Adam([w], lr=0.1)
  old = Tensor.training
  Tensor.training = True
  try:
    for _ in range(2):
      opt.zero_grad()
      (x @ w.T).sparse_categorical_crossentropy(y).backward()
      opt.step()
  finally: Tensor.training = old
  assert w.device == "CPU:1" and not np.allclose(w.numpy(), 1.0)
