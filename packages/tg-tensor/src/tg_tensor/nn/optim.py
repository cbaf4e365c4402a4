"""Optimizers (SGD, Adam, AdamW, LAMB) with a fused update, and learning-rate schedules.

Fused update: `step()` builds every parameter's update and realizes all of them (and the optimizer state) in ONE `realize` call.
Parameters are updated in groups: a large parameter (`Optimizer.fuse_below` elements or more) is a group of its own, and its state
(momentum, Adam's m and v) has its shape, so each state slot and the parameter itself take one plain elementwise kernel (SIMD,
no index arithmetic). The small parameters share one group: their state lives in flat float32 buffers over all of them, one kernel
per slot reading the gradients through a concatenation, then one copy kernel per parameter, so a model with many biases and norms
does not pay three kernel launches for each. Gradients are materialized once. The learning rate and the bias corrections are
buffers too, not constants, so a `TinyJit`-captured training step follows a schedule's changes."""
from __future__ import annotations
import math
from abc import ABC, abstractmethod
from typing import Sequence
import numpy as np
from tg_uop.dtype import dtypes
from tg_tensor.tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LAMB", "LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR",
           "CosineAnnealingLR", "LinearLR", "LinearWarmup", "OneCycleLR"]

def _dedup(ts: Sequence[Tensor]) -> list[Tensor]:
  # by identity: Tensor.__eq__ is elementwise, so `in` and dict lookups by equality would compare values
  seen: dict[int, Tensor] = {}
  for t in ts: seen.setdefault(id(t), t)
  return list(seen.values())

def _scalar_buffer(v: float | list[float], device: str) -> Tensor:
  """A realized float32 buffer (shape () for a scalar): kernels load it, so changing it needs no recompile."""
  return Tensor(np.array(v, dtype=np.float32), device=device, requires_grad=False)

class ParamGroup:
  """Parameters updated together: one kernel per state slot over all of them. A single parameter keeps its shape (its state is
  shaped like it and it is assigned directly); several are flattened and joined, with a flat buffer for their new values that each
  parameter then copies its piece from."""
  def __init__(self, params: list[Tensor], nstate: int, device: str):
    self.params, self.sizes = params, [p.numel() for p in params]
    self.offsets = [sum(self.sizes[:i]) for i in range(len(params))]
    shape = params[0].shape if len(params) == 1 else (sum(self.sizes),)
    # each state slot is written by one kernel that reads it only at the position it writes (no temporary copy needed)
    self.state = [Tensor.zeros(*shape, device=device).contiguous().realize() for _ in range(nstate)]
    self.new_params = Tensor.zeros(*shape, device=device).contiguous().realize() if len(params) > 1 else None

  def flat(self, ts: list[Tensor]) -> Tensor:
    """The tensors (one per parameter) flattened and joined, in parameter order (a single one as it is)."""
    return Tensor.cat(*[t.reshape(-1) for t in ts]) if len(ts) > 1 else ts[0]

  def piece(self, flat: Tensor, i: int) -> Tensor:
    """Parameter i's part of a flat tensor, in its shape."""
    if len(self.params) == 1: return flat
    return flat[self.offsets[i]:self.offsets[i] + self.sizes[i]].reshape(self.params[i].shape)

class Optimizer(ABC):
  """Base class: `params` with requires_grad None become trainable; ones with requires_grad False (BatchNorm running stats) are
  realized with each step. Subclasses implement `_new_state` and `_new_params` over one group's (flat) tensors."""
  nstate = 0
  fuse_below = 1 << 14  # parameters with fewer elements share one group (their update is cheap; the kernel launches are not)
  def __init__(self, params: Sequence[Tensor], lr: float):
    params = list(params)
    for p in params:
      if not isinstance(p, Tensor): raise TypeError(f"optimizer params must be Tensors, got {type(p).__name__}: pass get_parameters(model)")
      if p.requires_grad is None and dtypes.is_float(p.dtype): p.requires_grad_(True)
    self.params = _dedup([p for p in params if p.requires_grad])
    self.buffers = _dedup([p for p in params if not p.requires_grad])
    if not self.params: raise ValueError("the optimizer got no trainable parameters (all had requires_grad=False or were not float)")
    self.device = self.params[0].device
    if any(p.device != self.device for p in self.params):
      raise ValueError(f"optimizer params are on several devices {sorted({p.device for p in self.params})}: put them on one device")
    Tensor.realize(*self.params)
    self.lr = _scalar_buffer(lr, self.device)
    small = [p for p in self.params if p.numel() < self.fuse_below]
    self.groups = [ParamGroup([p], self.nstate, self.device) for p in self.params if p.numel() >= self.fuse_below]
    if small: self.groups.append(ParamGroup(small, self.nstate, self.device))

  def zero_grad(self) -> None:
    """Forget the gradients (the next backward() starts from zero)."""
    for p in self.params: p.grad = None

  def step(self) -> None:
    """Apply one update to every parameter: one `realize` for all of them, the optimizer state and the buffers."""
    ts = self.schedule_step()
    Tensor.realize(*ts)
    # an update graph kept alive after it ran is taken by the scheduler as "already done" when the next step builds the identical
    # graph (a step counter's x * b): the state never needs its graph for gradients, so drop it
    for t in ts: t._graph = None

  def schedule_step(self) -> list[Tensor]:
    """The update of every parameter as lazy assigns (not realized): the tensors to realize, buffers first (their updates read
    the old parameters), then the optimizer state, then the parameters."""
    if not Tensor.training:
      raise RuntimeError("optimizer.step() while Tensor.training is False: set Tensor.training = True for the training loop")
    missing = [i for i, p in enumerate(self.params) if p.grad is None]
    if missing:
      raise RuntimeError(f"parameters {missing[:8]}{'...' if len(missing) > 8 else ''} (of {len(self.params)}) have no gradient: call "
                         f"loss.backward() before step(), and pass only parameters the loss depends on")
    extra, state, flats = self._shared_state(), [], []
    for grp in self.groups:
      # each gradient materialized once: the state and parameter kernels all read it (a flat group through a concatenation), where
      # an unmaterialized gradient (a reduction over the batch) would be recomputed in each of them
      pf = [p.detach().float() for p in grp.params]
      g, pflat = grp.flat([p.grad.float().contiguous() for p in grp.params]), grp.flat(pf)
      # the new parameters read the ASSIGNED state: reading the old buffers here could see them already overwritten
      for st, v in zip(grp.state, self._new_state(grp, g, pflat)): st.assign(v)
      state += grp.state
      new = self._new_params(grp, g, pflat, pf)
      if grp.new_params is not None: flats.append(grp.new_params.assign(new))
      for i, p in enumerate(grp.params): p.assign(grp.piece(flats[-1] if grp.new_params is not None else new, i).cast(p.dtype))
    return [*self.buffers, *extra, *state, *flats, *self.params]

  def _shared_state(self) -> list[Tensor]:
    """Assign the state shared by all groups (a step count, bias corrections); returns those tensors, realized with the step."""
    return []
  @abstractmethod
  def _new_state(self, grp: ParamGroup, g: Tensor, p: Tensor) -> list[Tensor]:
    """From a group's flat float32 gradients and parameters: the new value of each of its state slots (`grp.state`)."""
  @abstractmethod
  def _new_params(self, grp: ParamGroup, g: Tensor, p: Tensor, params: list[Tensor]) -> Tensor:
    """A group's new flat parameters, from its flat gradients and parameters (and each parameter, float32), after its state is
    assigned."""

class SGD(Optimizer):
  """Stochastic gradient descent with optional momentum (PyTorch's form: b = m*b + g), nesterov, and L2 weight decay."""
  def __init__(self, params: Sequence[Tensor], lr: float = 0.001, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
    if nesterov and momentum <= 0: raise ValueError("nesterov momentum needs momentum > 0")
    self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
    self.nstate = 1 if momentum else 0
    super().__init__(params, lr)

  def _g(self, g: Tensor, p: Tensor) -> Tensor: return g + self.weight_decay * p if self.weight_decay else g
  def _new_state(self, grp: ParamGroup, g: Tensor, p: Tensor) -> list[Tensor]:
    return [grp.state[0] * self.momentum + self._g(g, p)] if self.momentum else []
  def _new_params(self, grp: ParamGroup, g: Tensor, p: Tensor, params: list[Tensor]) -> Tensor:
    g = self._g(g, p)
    if not self.momentum: return p - self.lr * g
    b = grp.state[0]
    return p - self.lr * (g + self.momentum * b if self.nesterov else b)

class LAMB(Optimizer):
  """LAMB (layer-wise adaptive moments): Adam's step plus decoupled weight decay, scaled per parameter by the trust ratio
  |p| / |step|. With adam=True the trust ratio is 1, which is AdamW."""
  nstate = 2
  def __init__(self, params: Sequence[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
               weight_decay: float = 0.0, adam: bool = False, l2: float = 0.0):
    self.b1, self.b2, self.eps, self.wd, self.adam, self.l2 = b1, b2, eps, weight_decay, adam, l2
    super().__init__(params, lr)
    self.b_t = _scalar_buffer([1.0, 1.0], self.device)  # b1**t and b2**t, updated each step (bias corrections)
    self._betas = _scalar_buffer([b1, b2], self.device)

  def _shared_state(self) -> list[Tensor]:
    self.b_t.assign(self.b_t * self._betas)
    return [self.b_t]
  def _new_state(self, grp: ParamGroup, g: Tensor, p: Tensor) -> list[Tensor]:
    if self.l2: g = g + self.l2 * p
    m, v = grp.state
    return [m * self.b1 + (1 - self.b1) * g, v * self.b2 + (1 - self.b2) * g * g]
  def _new_params(self, grp: ParamGroup, g: Tensor, p: Tensor, params: list[Tensor]) -> Tensor:
    (m, v), bt = grp.state, self.b_t
    up = (m / (1 - bt[0])) / ((v / (1 - bt[1])).sqrt() + self.eps)
    if self.wd: up = up + self.wd * p
    if not self.adam:  # the trust ratio |p| / |up| of each parameter scales its piece of the step
      ups = []
      for i, pi in enumerate(params):
        u = grp.piece(up, i)
        r1, r2 = pi.square().sum().sqrt(), u.square().sum().sqrt()
        ups.append(u * (r1 > 0).where((r2 > 0).where(r1 / r2, 1.0), 1.0))
      up = grp.flat(ups)
    return p - self.lr * up

def Adam(params: Sequence[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0) -> LAMB:
  """Adam as PyTorch's (weight_decay is L2: added to the gradient)."""
  return LAMB(params, lr, b1, b2, eps, 0.0, adam=True, l2=weight_decay)

def AdamW(params: Sequence[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01) -> LAMB:
  """Adam with decoupled weight decay (p -= lr * weight_decay * p), as PyTorch's AdamW."""
  return LAMB(params, lr, b1, b2, eps, weight_decay, adam=True)

# ---- learning-rate schedules: step() once per epoch (or per batch for OneCycleLR/LinearWarmup), after optimizer.step() ----

class LRScheduler(ABC):
  """Sets `optimizer.lr` (a buffer, so jitted steps see it) from `get_lr(epoch)` on every `step()`; epoch starts at 0."""
  def __init__(self, optimizer: Optimizer):
    if not isinstance(optimizer, Optimizer): raise TypeError(f"a learning-rate schedule needs a tg Optimizer, got {type(optimizer).__name__}")
    self.optimizer, self.epoch_counter = optimizer, 0
    self.base_lr = float(optimizer.lr.item())
    self._set(self.get_lr(0))
  @abstractmethod
  def get_lr(self, epoch: int) -> float:
    """The learning rate after `epoch` steps of the schedule."""
  def _set(self, lr: float) -> None:
    self.last_lr = lr
    self.optimizer.lr.assign(Tensor(np.array(lr, np.float32), device=self.optimizer.device)).realize()
  def step(self) -> None:
    """Advance the schedule by one step."""
    self.epoch_counter += 1
    self._set(self.get_lr(self.epoch_counter))
  def get_last_lr(self) -> float: return self.last_lr

class StepLR(LRScheduler):
  """lr * gamma ** (epoch // step_size)."""
  def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
    if step_size <= 0: raise ValueError(f"StepLR needs step_size > 0, got {step_size}")
    self.step_size, self.gamma = step_size, gamma
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float: return self.base_lr * self.gamma ** (epoch // self.step_size)

class MultiStepLR(LRScheduler):
  """lr * gamma ** (number of milestones passed)."""
  def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1):
    self.milestones, self.gamma = sorted(milestones), gamma
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float: return self.base_lr * self.gamma ** sum(epoch >= m for m in self.milestones)

class ExponentialLR(LRScheduler):
  """lr * gamma ** epoch."""
  def __init__(self, optimizer: Optimizer, gamma: float):
    self.gamma = gamma
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float: return self.base_lr * self.gamma ** epoch

class CosineAnnealingLR(LRScheduler):
  """eta_min + (lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""
  def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
    if T_max <= 0: raise ValueError(f"CosineAnnealingLR needs T_max > 0, got {T_max}")
    self.T_max, self.eta_min = T_max, eta_min
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float:
    return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2

class LinearLR(LRScheduler):
  """lr times a factor going linearly from start_factor to end_factor over total_iters steps, then constant (PyTorch's LinearLR)."""
  def __init__(self, optimizer: Optimizer, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5):
    if total_iters <= 0: raise ValueError(f"LinearLR needs total_iters > 0, got {total_iters}")
    self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float:
    t = min(epoch, self.total_iters) / self.total_iters
    return self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * t)

class LinearWarmup(LRScheduler):
  """lr * (epoch + 1) / warmup_steps for the first warmup_steps steps, then lr."""
  def __init__(self, optimizer: Optimizer, warmup_steps: int):
    if warmup_steps <= 0: raise ValueError(f"LinearWarmup needs warmup_steps > 0, got {warmup_steps}")
    self.warmup_steps = warmup_steps
    super().__init__(optimizer)
  def get_lr(self, epoch: int) -> float: return self.base_lr * min(1.0, (epoch + 1) / self.warmup_steps)

class OneCycleLR(LRScheduler):
  """PyTorch's OneCycleLR (cosine annealing, two phases): from max_lr/div_factor up to max_lr over pct_start of the steps, then
  down to max_lr/(div_factor*final_div_factor)."""
  def __init__(self, optimizer: Optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
               final_div_factor: float = 1e4):
    if total_steps <= 1: raise ValueError(f"OneCycleLR needs total_steps > 1, got {total_steps}")
    self.max_lr, self.total_steps = max_lr, total_steps
    self.initial_lr, self.min_lr = max_lr / div_factor, max_lr / div_factor / final_div_factor
    self.peak = float(pct_start * total_steps) - 1
    super().__init__(optimizer)
  @staticmethod
  def _cos(start: float, end: float, pct: float) -> float: return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)
  def get_lr(self, epoch: int) -> float:
    if epoch <= self.peak: return self._cos(self.initial_lr, self.max_lr, epoch / self.peak if self.peak > 0 else 1.0)
    return self._cos(self.max_lr, self.min_lr, (epoch - self.peak) / (self.total_steps - 1 - self.peak))
