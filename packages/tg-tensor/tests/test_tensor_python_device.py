"""A representative subset of the op suite on the PYTHON device (the exact reference interpreter): the same results as PyTorch."""
import numpy as np
import pytest
torch = pytest.importorskip("torch")
from tg_tensor import Tensor

DEV = "PYTHON"
rng = np.random.default_rng(0)
A = rng.standard_normal((3, 5)).astype(np.float32)
B = rng.standard_normal((5, 4)).astype(np.float32)
SPECIAL = np.array([0.0, -0.0, 1.5, -2.25, np.inf, -np.inf, np.nan, 1e30, -1e-30], np.float32)

CASES = {
  "add_broadcast": (lambda t: t(A) + t(A[0]), lambda t: t(A) + t(A[0])),
  "mul_scalar": (lambda t: t(A) * 3, lambda t: t(A) * 3),
  "div_int_promotes": (lambda t: t(np.arange(6, dtype=np.int32)) / 4, lambda t: t(np.arange(6, dtype=np.int32)) / 4),
  "exp_special": (lambda t: t(SPECIAL).exp(), lambda t: t(SPECIAL).exp()),
  "relu_nan": (lambda t: t(SPECIAL).relu(), lambda t: t(SPECIAL).relu()),
  "sqrt_special": (lambda t: t(np.abs(SPECIAL)).sqrt(), lambda t: t(np.abs(SPECIAL)).sqrt()),
  "sum_axis": (lambda t: t(A).sum(1), lambda t: t(A).sum(1)),
  "max_keepdim": (lambda t: t(A).max(0, keepdim=True), lambda t: t(A).amax(0, keepdim=True)),
  "mean_all": (lambda t: t(A).mean(), lambda t: t(A).mean()),
  "int_sum_int64": (lambda t: t(np.arange(6, dtype=np.int32)).sum(), lambda t: t(np.arange(6, dtype=np.int32)).sum()),
  "matmul": (lambda t: t(A) @ t(B), lambda t: t(A) @ t(B)),
  "softmax": (lambda t: t(A).softmax(1), lambda t: t(A).softmax(1)),
  "permute_pad_flip": (lambda t: t(A).permute(1, 0).flip(0)[1:4], lambda t: t(A).permute(1, 0).flip(0)[1:4]),
  "int8_wrap": (lambda t: t(np.array([120, -120], np.int8)) + t(np.array([10, -10], np.int8)),
                lambda t: t(np.array([120, -120], np.int8)) + t(np.array([10, -10], np.int8))),
  "where_cmp": (lambda t: (t(A) > 0).where(t(A), t(A) * 0.5), lambda t: torch.where(t(A) > 0, t(A), t(A) * 0.5)),
}

@pytest.mark.parametrize("name", sorted(CASES))
def test_python_device_matches_torch(name):
  ours, theirs = CASES[name]
  got = ours(lambda a: Tensor(a, device=DEV))
  ref = theirs(lambda a: torch.tensor(a))
  assert got.device == DEV
  out = got.numpy()
  exp = ref.numpy()
  assert out.shape == exp.shape and str(out.dtype) == str(exp.dtype).replace("torch.", "")
  np.testing.assert_allclose(out, exp, rtol=1e-6, atol=1e-6, equal_nan=True)

def test_gradients_on_python_device_match_torch():
  x = Tensor(A, device=DEV, requires_grad=True)
  (x * x).sum().backward()
  tx = torch.tensor(A, requires_grad=True)
  (tx * tx).sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)

def test_float16_matmul_runs_on_tensor_cores_and_matches_torch():
  # 32x48 @ 48x16 in float16: the PYTHON device has the m16n8k16 tensor core (emulated), so the default opts take the TC path
  from tg_uop.device import Device
  from tg_codegen.opt.heuristic import hand_coded_optimizations
  from tg_codegen.kernel import OptOps
  from tg_tensor.schedule import create_schedule
  a, b = rng.standard_normal((32, 48)).astype(np.float16), rng.standard_normal((48, 16)).astype(np.float16)
  x, y = Tensor(a, device=DEV), Tensor(b, device=DEV)
  out = x @ y
  sched, _ = create_schedule([out.uop], DEV)
  assert hand_coded_optimizations(sched[-1].ast, Device[DEV].renderer)[0].op is OptOps.TC
  got = out.numpy()
  ref = (torch.tensor(a, dtype=torch.float32) @ torch.tensor(b, dtype=torch.float32)).half().numpy()
  assert got.dtype == np.float16 and got.shape == (32, 16)
  np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=2e-2, atol=2e-2)
