"""Autograd: gradients from backward() and Tensor.gradient() against PyTorch."""
import numpy as np
import pytest
torch = pytest.importorskip("torch")
from tg_tensor import Tensor

A = np.array([[1.0, -2.0, 3.0], [4.0, 0.5, -6.0]], np.float32)
B = np.array([[0.5, 1.0], [2.0, -1.0], [1.0, 1.0]], np.float32)

FNS = {
  "matmul_relu": lambda a, b, T: (a @ b).relu().sum(),
  "sigmoid_tanh": lambda a, b, T: (a.sigmoid() * a.tanh()).mean(),
  "exp_log": lambda a, b, T: ((a * 0.1).exp() + (a.abs() + 1).log()).sum(),
  "div_sqrt": lambda a, b, T: (a / (a * a + 1).sqrt()).sum(),
  "max_min": lambda a, b, T: (a.max(1) if T is Tensor else a.amax(1)).sum() + (a.min() if T is Tensor else a.amin()),
  "softmax": lambda a, b, T: (a.softmax(1) * a).sum(),
  "log_softmax": lambda a, b, T: a.log_softmax(-1)[:, 1].sum() if T is Tensor else a.log_softmax(-1)[:, 1].sum(),
  "movement": lambda a, b, T: (a.permute(1, 0).reshape(6)[1:5].flip(0) * 2).sum() + (a.pad(((1, 1), (0, 0))) if T is Tensor else
                              torch.nn.functional.pad(a, (0, 0, 1, 1))).square().sum(),
  "expand_where": lambda a, b, T: (a[:1].expand(4, 3) * 3).sum() + ((a > 0).where(a, a * a) if T is Tensor else torch.where(a > 0, a, a * a)).sum(),
  "pow_sin": lambda a, b, T: ((a.abs() + 0.5) ** 1.5 + a.sin()).sum(),
  "var_std": lambda a, b, T: a.var(1).sum() + a.std(),
  "gelu_silu": lambda a, b, T: ((a.gelu() + a.silu()) if T is Tensor else (torch.nn.functional.gelu(a) + torch.nn.functional.silu(a))).sum(),
  "cat_cumsum": lambda a, b, T: (a.cat(a * 2, dim=0) if T is Tensor else torch.cat([a, a * 2], 0)).cumsum(1).sum(),
}

@pytest.mark.parametrize("name", list(FNS))
def test_backward_matches_torch(name):
  a, b = Tensor(A, requires_grad=True), Tensor(B, requires_grad=True)
  ta, tb = torch.tensor(A, requires_grad=True), torch.tensor(B, requires_grad=True)
  out, tout = FNS[name](a, b, Tensor), FNS[name](ta, tb, torch)
  np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-5)
  out.backward()
  tout.backward()
  np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=1e-5)
  if tb.grad is not None: np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-4, atol=1e-5)

def test_detach_stops_the_gradient_and_grads_accumulate():
  a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
  (a * a.detach()).sum().backward()
  assert a.grad.tolist() == [1.0, 2.0, 3.0]
  (a * 2).sum().backward()
  assert a.grad.tolist() == [3.0, 4.0, 5.0]

def test_gradient_returns_grads_for_targets():
  x, y = Tensor([2.0, 3.0]), Tensor([5.0, 7.0])
  gx, gy = (x * y).sum().gradient(x, y)
  assert gx.tolist() == [5.0, 7.0] and gy.tolist() == [2.0, 3.0]

def test_backward_after_reading_the_loss_still_works():
  w = Tensor([1.0, -1.0], requires_grad=True)
  loss = (w * w * 3).sum()
  assert loss.item() == 6.0
  loss.backward()
  assert w.grad.tolist() == [6.0, -6.0]

def test_backward_errors_are_clear():
  with pytest.raises(RuntimeError, match="requires_grad=True"): (Tensor([1.0]) * 2).sum().backward()
  with pytest.raises(ValueError, match="needs `gradient=`"): Tensor([1.0, 2.0], requires_grad=True).gradient(Tensor([1.0]))
  with pytest.raises(TypeError, match="only float tensors"): Tensor([1, 2], requires_grad=True)
