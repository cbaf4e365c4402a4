"""Optimizers and learning-rate schedules against PyTorch (LAMB against a numpy reference) over several steps."""
import math
import numpy as np
import pytest
torch = pytest.importorskip("torch")
from tg_tensor import Tensor, engine
from tg_tensor.nn import optim
from tg_tensor.jit import TinyJit

RNG = np.random.default_rng(0)
W0, B0 = RNG.standard_normal((4, 3)).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
XS = RNG.standard_normal((5, 6, 4)).astype(np.float32)

def _loss(x, w, b): return ((x @ w + b).relu() ** 2).mean() + (w * w).sum() * 0.01

def _run_tg(make, steps: int = 5):
  w, b = Tensor(W0.copy()), Tensor(B0.copy())
  opt = make([w, b])
  Tensor.training = True
  try:
    for x in XS[:steps]:
      opt.zero_grad()
      _loss(Tensor(x), w, b).backward()
      opt.step()
  finally: Tensor.training = False
  return w.numpy(), b.numpy()

def _run_torch(make, steps: int = 5):
  w, b = torch.tensor(W0.copy(), requires_grad=True), torch.tensor(B0.copy(), requires_grad=True)
  opt = make([w, b])
  for x in XS[:steps]:
    opt.zero_grad()
    _loss(torch.tensor(x), w, b).backward()
    opt.step()
  return w.detach().numpy(), b.detach().numpy()

CASES = {
  "sgd": (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
  "sgd_momentum_wd": (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
                      lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
  "sgd_nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
  "adam": (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
  "adam_l2": (lambda p: optim.Adam(p, lr=0.01, b1=0.8, b2=0.99, weight_decay=0.1),
              lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
  "adamw": (lambda p: optim.AdamW(p, lr=0.01, weight_decay=0.1), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}

# the default groups (both parameters small: one flat group) and every parameter in a group of its own (in place, in its shape)
GROUPINGS = {"flat": optim.Optimizer.fuse_below, "per_param": 1}

@pytest.mark.parametrize("grouping", list(GROUPINGS))
@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_matches_torch_over_steps(name, grouping, monkeypatch):
  monkeypatch.setattr(optim.Optimizer, "fuse_below", GROUPINGS[grouping])
  make, tmake = CASES[name]
  for ours, ref in zip(_run_tg(make), _run_torch(tmake)): np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)

def _lamb_reference(steps: int, lr=0.01, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
  """LAMB in numpy, with torch computing the gradients."""
  ps = [W0.copy().astype(np.float64), B0.copy().astype(np.float64)]
  m, v = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
  for t, x in enumerate(XS[:steps], 1):
    w, b = torch.tensor(ps[0], dtype=torch.float32, requires_grad=True), torch.tensor(ps[1], dtype=torch.float32, requires_grad=True)
    _loss(torch.tensor(x), w, b).backward()
    for i, g in enumerate((w.grad.numpy(), b.grad.numpy())):
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      up = (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps) + wd * ps[i]
      r1, r2 = np.linalg.norm(ps[i]), np.linalg.norm(up)
      ps[i] = ps[i] - lr * (r1 / r2 if r1 > 0 and r2 > 0 else 1.0) * up
  return ps

@pytest.mark.parametrize("grouping", list(GROUPINGS))
def test_lamb_matches_reference(grouping, monkeypatch):
  monkeypatch.setattr(optim.Optimizer, "fuse_below", GROUPINGS[grouping])
  ours = _run_tg(lambda p: optim.LAMB(p, lr=0.01, weight_decay=0.01))
  for o, r in zip(ours, _lamb_reference(5)): np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)

def test_step_is_one_realize_with_one_kernel_per_parameter_and_state():
  w, b = Tensor(W0.copy()), Tensor(B0.copy())
  opt = optim.Adam([w, b], lr=0.01)
  Tensor.training = True
  try:
    opt.zero_grad()
    _loss(Tensor(XS[0]), w, b).backward()
    Tensor.realize(*[p.grad for p in opt.params])
    before = engine.kernel_count
    opt.step()
  finally: Tensor.training = False
  # grads materialized (2), bias corrections (1), m and v (2), new flat params (1), a copy per parameter (2)
  assert engine.kernel_count - before <= 8

def test_a_large_parameter_is_updated_in_place_by_its_own_kernels(monkeypatch):
  monkeypatch.setattr(optim.Optimizer, "fuse_below", 10)  # w (12 elements) gets a group of its own, b and s (3 each) share one
  S0 = np.array([0.5, -1.0, 2.0], np.float32)
  def loss(x, w, b, s): return _loss(x, w, b) + (s * s * b).sum()
  w, b, s = Tensor(W0.copy()), Tensor(B0.copy()), Tensor(S0.copy())
  opt = optim.Adam([w, b, s], lr=0.01)
  assert [len(g.params) for g in opt.groups] == [1, 2] and opt.groups[0].params[0] is w
  assert opt.groups[0].new_params is None and opt.groups[0].state[0].shape == w.shape
  Tensor.training = True
  try:
    for i, x in enumerate(XS[:4]):
      opt.zero_grad()
      loss(Tensor(x), w, b, s).backward()
      Tensor.realize(*[p.grad for p in opt.params])
      before = engine.kernel_count
      opt.step()
      # grads (3), bias corrections (1); w: m, v and w itself (3); the shared group: m, v, new flat params, a copy each (5)
      if i == 0: assert engine.kernel_count - before == 12
  finally: Tensor.training = False
  tw, tb, ts = (torch.tensor(a.copy(), requires_grad=True) for a in (W0, B0, S0))
  topt = torch.optim.Adam([tw, tb, ts], lr=0.01)
  for x in XS[:4]:
    topt.zero_grad()
    loss(torch.tensor(x), tw, tb, ts).backward()
    topt.step()
  for ours, ref in zip((w, b, s), (tw, tb, ts)): np.testing.assert_allclose(ours.numpy(), ref.detach().numpy(), rtol=1e-4, atol=1e-5)

def test_jitted_training_step_matches_eager_and_follows_the_lr_schedule():
  def train(jit: bool):
    w, b = Tensor(W0.copy()), Tensor(B0.copy())
    opt = optim.SGD([w, b], lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    def step(x):
      opt.zero_grad()
      loss = _loss(x, w, b)
      loss.backward()
      opt.step()
      return loss.realize()
    f = TinyJit(step) if jit else step
    Tensor.training = True
    try:
      for x in XS:
        f(Tensor(x))
        sched.step()
    finally: Tensor.training = False
    return w.numpy(), b.numpy()
  for j, e in zip(train(True), train(False)): np.testing.assert_allclose(j, e, rtol=1e-5, atol=1e-6)

SCHEDS = {
  "step": (lambda o: optim.StepLR(o, 3, 0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
  "multistep": (lambda o: optim.MultiStepLR(o, [2, 5], 0.1), lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.1)),
  "exponential": (lambda o: optim.ExponentialLR(o, 0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
  "cosine": (lambda o: optim.CosineAnnealingLR(o, 8, 0.01), lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 8, 0.01)),
  "linear": (lambda o: optim.LinearLR(o, 0.25, 1.0, 4), lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 4)),
  "onecycle": (lambda o: optim.OneCycleLR(o, 1.0, 10), lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1.0, total_steps=10)),
}

@pytest.mark.parametrize("name", list(SCHEDS))
def test_lr_schedule_matches_torch(name):
  make, tmake = SCHEDS[name]
  opt = optim.SGD([Tensor(W0.copy())], lr=0.1)
  topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
  s, ts = make(opt), tmake(topt)
  for _ in range(9):
    assert math.isclose(opt.lr.item(), topt.param_groups[0]["lr"], rel_tol=1e-5, abs_tol=1e-7)
    topt.step()
    s.step(); ts.step()

def test_linear_warmup_ramps_to_the_base_lr():
  opt = optim.SGD([Tensor(W0.copy())], lr=0.4)
  s = optim.LinearWarmup(opt, 4)
  lrs = [opt.lr.item()] + [(s.step(), opt.lr.item())[1] for _ in range(5)]
  np.testing.assert_allclose(lrs, [0.1, 0.2, 0.3, 0.4, 0.4, 0.4], rtol=1e-6)

def test_optimizer_errors_are_clear():
  w = Tensor(W0.copy())
  opt = optim.SGD([w], lr=0.1)
  with pytest.raises(RuntimeError, match="Tensor.training"): opt.step()
  Tensor.training = True
  try:
    with pytest.raises(RuntimeError, match="backward"): opt.step()
  finally: Tensor.training = False
  with pytest.raises(ValueError, match="nesterov"): optim.SGD([Tensor(W0.copy())], nesterov=True)
  with pytest.raises(ValueError, match="no trainable"): optim.Adam([Tensor([1, 2])])
