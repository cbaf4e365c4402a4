"""tg_tensor.nn layers against PyTorch on the same weights and inputs: forward values, input gradients and weight gradients."""
import numpy as np
import pytest
torch = pytest.importorskip("torch")
from tg_tensor import Tensor
from tg_tensor import nn
from tg_tensor.nn.state import get_state_dict

RNG = np.random.default_rng(0)

def _copy_weights(layer, tlayer) -> None:
  """Our layer's tensors into the torch layer, by name."""
  sd = tlayer.state_dict()
  for k, v in get_state_dict(layer).items():
    if k in sd: sd[k].copy_(torch.tensor(v.numpy()).reshape(sd[k].shape).to(sd[k].dtype))

def _check(layer, tlayer, x: np.ndarray, atol: float = 1e-4, grads: bool = True) -> None:
  _copy_weights(layer, tlayer)
  xt, tx = Tensor(x, requires_grad=grads), torch.tensor(x, requires_grad=grads)
  out, tout = layer(xt), tlayer(tx)
  np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), atol=atol, rtol=1e-4)
  if not grads: return
  w = RNG.standard_normal(out.shape).astype(np.float32)
  (out * Tensor(w)).sum().backward()
  (tout * torch.tensor(w)).sum().backward()
  np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), atol=atol, rtol=1e-3)
  for name, p in tlayer.named_parameters():
    ours = get_state_dict(layer)[name]
    if ours.grad is not None: np.testing.assert_allclose(ours.grad.numpy(), p.grad.numpy(), atol=atol, rtol=1e-3, err_msg=name)

def _params_require_grad(layer) -> None:
  for k, v in get_state_dict(layer).items():
    if "running" not in k and "num_batches" not in k: v.requires_grad_(True)

CASES = {
  "linear": (lambda: nn.Linear(5, 3), lambda: torch.nn.Linear(5, 3), (4, 5)),
  "linear_nobias": (lambda: nn.Linear(5, 3, bias=False), lambda: torch.nn.Linear(5, 3, bias=False), (2, 4, 5)),
  "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), lambda: torch.nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6)),
  "conv2d_stride_dil": (lambda: nn.Conv2d(3, 4, (3, 2), stride=2, dilation=(1, 2), padding=(1, 0)),
                        lambda: torch.nn.Conv2d(3, 4, (3, 2), stride=2, dilation=(1, 2), padding=(1, 0)), (2, 3, 9, 8)),
  "conv2d_groups": (lambda: nn.Conv2d(4, 6, 3, groups=2), lambda: torch.nn.Conv2d(4, 6, 3, groups=2), (1, 4, 5, 5)),
  "conv1d": (lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), lambda: torch.nn.Conv1d(3, 5, 3, stride=2, padding=1), (2, 3, 11)),
  "conv_transpose2d": (lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
                       lambda: torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 4, 4)),
  "conv_transpose1d": (lambda: nn.ConvTranspose1d(4, 2, 3, groups=2), lambda: torch.nn.ConvTranspose1d(4, 2, 3, groups=2), (2, 4, 5)),
  "layernorm": (lambda: nn.LayerNorm(6), lambda: torch.nn.LayerNorm(6), (3, 4, 6)),
  "layernorm_2d": (lambda: nn.LayerNorm((4, 6)), lambda: torch.nn.LayerNorm((4, 6)), (3, 4, 6)),
  "groupnorm": (lambda: nn.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4), (2, 4, 3, 3)),
  "instancenorm": (lambda: nn.InstanceNorm(3), lambda: torch.nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 4)),
  "rmsnorm": (lambda: nn.RMSNorm(6, eps=1e-6), lambda: torch.nn.RMSNorm(6, eps=1e-6), (3, 6)),
}

@pytest.mark.parametrize("name", list(CASES))
def test_layer_matches_torch(name):
  make, tmake, shape = CASES[name]
  Tensor.manual_seed(1)
  layer = make()
  _params_require_grad(layer)
  # random affine parameters, so the test sees more than ones and zeros
  for v in get_state_dict(layer).values(): v.assign(Tensor(RNG.standard_normal(v.shape).astype(np.float32))).realize()
  _check(layer, tmake(), RNG.standard_normal(shape).astype(np.float32))

@pytest.mark.parametrize("dims", [2, 4])
def test_batchnorm_train_and_eval_match_torch(dims):
  shape = (4, 3) if dims == 2 else (4, 3, 5, 5)
  bn, tbn = nn.BatchNorm(3), (torch.nn.BatchNorm1d(3) if dims == 2 else torch.nn.BatchNorm2d(3))
  bn.weight.assign(Tensor(RNG.standard_normal(3).astype(np.float32))).realize()
  _params_require_grad(bn)
  Tensor.training = True
  try:
    for _ in range(3):  # running statistics follow torch's over several steps
      x = RNG.standard_normal(shape).astype(np.float32)
      _check(bn, tbn.train(), x)
      bn.weight.grad = bn.bias.grad = None
      tbn.zero_grad()
      Tensor.realize(bn.running_mean, bn.running_var, bn.num_batches_tracked)
      bn.num_batches_tracked._graph = None  # else the scheduler takes the next identical "+1" as already run (reported to the lead)
      np.testing.assert_allclose(bn.running_mean.numpy(), tbn.running_mean.numpy(), atol=1e-5)
      np.testing.assert_allclose(bn.running_var.numpy(), tbn.running_var.numpy(), atol=1e-5)
  finally: Tensor.training = False
  assert bn.num_batches_tracked.item() == 3
  x = RNG.standard_normal(shape).astype(np.float32)
  np.testing.assert_allclose(bn(Tensor(x)).numpy(), tbn.eval()(torch.tensor(x)).detach().numpy(), atol=1e-5)

def test_embedding_matches_torch():
  emb, temb = nn.Embedding(10, 4), torch.nn.Embedding(10, 4)
  emb.weight.requires_grad_(True)
  temb.weight.data[:] = torch.tensor(emb.weight.numpy())
  idx = np.array([[1, 3, 3], [9, 0, 2]], np.int32)
  out, tout = emb(Tensor(idx)), temb(torch.tensor(idx, dtype=torch.long))
  np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), atol=1e-6)
  out.sum().backward(); tout.sum().backward()
  np.testing.assert_allclose(emb.weight.grad.numpy(), temb.weight.grad.numpy(), atol=1e-6)
  with pytest.raises(TypeError, match="integer indices"): emb(Tensor([1.0]))

def test_lstmcell_matches_torch_over_steps():
  cell, tcell = nn.LSTMCell(3, 4), torch.nn.LSTMCell(3, 4)
  _copy_weights(cell, tcell)
  xs = RNG.standard_normal((3, 2, 3)).astype(np.float32)
  hc, thc = None, None
  for x in xs:
    hc = cell(Tensor(x), hc)
    thc = tcell(torch.tensor(x), thc)
    np.testing.assert_allclose(hc[0].numpy(), thc[0].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(hc[1].numpy(), thc[1].detach().numpy(), atol=1e-5)

def test_dropout_only_in_training():
  x = Tensor.ones(1000)
  d = nn.Dropout(0.5)
  assert d(x).numpy().sum() == 1000
  Tensor.training = True
  try: y = d(x).numpy()
  finally: Tensor.training = False
  assert set(np.unique(y).tolist()) <= {0.0, 2.0} and 300 < (y == 0).sum() < 700
  with pytest.raises(ValueError, match="probability"): nn.Dropout(1.5)

def test_layer_errors_are_clear():
  with pytest.raises(ValueError, match="divisible by groups"): nn.Conv2d(3, 4, 3, groups=2)
  with pytest.raises(ValueError, match="last axes must match"): nn.LayerNorm(4)(Tensor.ones(2, 5))
  with pytest.raises(ValueError, match="divisible by num_groups"): nn.GroupNorm(3, 4)
