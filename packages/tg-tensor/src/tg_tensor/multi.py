"""Multi-device tensors: `Tensor.shard(devices, axis)` splits a tensor across devices (or replicates it when axis is None).

A `MultiTensor` is a Tensor subclass holding one ordinary, lazy Tensor per device (its shards) and the sharded axis. Every op
runs per shard on that shard's device:
- elementwise ops align their operands first: a replicated operand (a plain Tensor is copied to each device) is cut to each
  shard's slice of the sharded axis, so shard i only ever meets data on device i;
- a reduction over other axes stays per shard; over the sharded axis each shard reduces its part, then an allreduce copies every
  partial to every device and combines them in device order (so all replicas hold the same bits) — the result is replicated;
- matmul is Tensor.dot's own formula (broadcast multiply, sum over the contraction axis) on top of the two rules above, so a
  sharded batch/row/column axis stays sharded and a sharded contraction axis gives partial products plus an allreduce;
- reshape and permute keep the sharded axis whole (else a clear error); gradients flow through the per-shard graphs, and
  `backward()` sends each gradient that crosses a device back to the device its value came from."""
from __future__ import annotations
import weakref
from typing import Any, Sequence
from tg_uop.helpers import prod
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor.tensor import Tensor, _canonical_device, _graph_device
from tg_tensor.ops_math import MathMixin, broadcast_shape
from tg_tensor.ops_movement import _args

Bounds = tuple[tuple[int, int], ...]

def _split(n: int, k: int) -> Bounds:
  """[start, end) of each of `k` nearly equal parts of `n` (the first n % k parts get one more)."""
  out, start = [], 0
  for i in range(k):
    size = n // k + (1 if i < n % k else 0)
    out.append((start, start + size))
    start += size
  return tuple(out)

def _devices(devices: Any) -> tuple[str, ...]:
  if isinstance(devices, str) or not isinstance(devices, (tuple, list)) or not devices:
    raise TypeError(f"shard needs a non-empty tuple or list of device names such as ('CPU:0', 'CPU:1'), got {devices!r}")
  devs = tuple(_canonical_device(d) for d in devices)
  if len(set(devs)) != len(devs): raise ValueError(f"shard devices must be distinct, got {devs}: each shard needs its own device")
  return devs

def _slice(t: Tensor, axis: int, bound: tuple[int, int]) -> Tensor:
  return t.shrink(tuple(bound if i == axis else None for i in range(t.ndim)))

def shard(t: Tensor, devices: Sequence[str], axis: int | None = None) -> MultiTensor:
  """`t` split along `axis` across `devices` (nearly equal parts, in order), or replicated on each of them when axis is None."""
  devs = _devices(devices)
  if isinstance(t, MultiTensor):
    ax = None if axis is None else t._axis(axis)
    if t.device == devs and t.axis == ax: return t
    t = t.to(devs[0])  # gather, then split again
  if not isinstance(t, Tensor): raise TypeError(f"shard needs a Tensor, got {type(t).__name__}")
  if axis is None: return MultiTensor._make([t.to(d) for d in devs], None, None)
  ax = t._axis(axis)
  if t.shape[ax] < len(devs):
    raise ValueError(f"can't shard axis {axis} of size {t.shape[ax]} (shape {t.shape}) across {len(devs)} devices: every device needs "
                     f"at least one element; shard another axis or use fewer devices")
  bounds = _split(t.shape[ax], len(devs))
  return MultiTensor._make([_slice(t, ax, b).to(d) for b, d in zip(bounds, devs)], ax, bounds)

def _align(self: MultiTensor, items: list[Any]) -> tuple[int | None, Bounds | None, list[list[Any]]]:
  """The operands of an elementwise op as per-device lists: sharded operands give their shard, replicated ones (plain Tensors
  are copied to each device) their copy cut to the shard's slice of the sharded axis. Returns (output axis, bounds, lists)."""
  tensors = [x for x in items if isinstance(x, Tensor)]
  nd = max(x.ndim for x in tensors)
  shape = broadcast_shape(*(x.shape for x in tensors))
  axis, bounds = None, None
  for x in tensors:
    if not isinstance(x, MultiTensor): continue
    if x.device != self.device:
      raise ValueError(f"sharded tensors on different devices ({self.device} and {x.device}): reshard one with .shard({self.device})")
    if x.axis is None: continue
    ax = x.axis + nd - x.ndim
    if axis is not None and ax != axis:
      raise ValueError(f"operands sharded on different axes ({axis - nd} and {ax - nd}, counted from the right): reshard one with "
                       f".shard(devices, axis) so both split the same axis")
    if shape[ax] != x.shape[x.axis]: raise ValueError(f"can't broadcast the sharded axis of {x.shape} to {shape}: reshard first")
    axis, bounds = ax, x.bounds
  per: list[list[Any]] = [[] for _ in self.device]
  for x in items:
    for i, dev in enumerate(self.device):
      if isinstance(x, MultiTensor): v: Any = x.shards[i]
      elif isinstance(x, Tensor): v = x.to(dev)
      else: v = x
      if axis is not None and isinstance(x, Tensor) and not (isinstance(x, MultiTensor) and x.axis is not None):
        local = axis - (nd - v.ndim)
        if local >= 0 and v.shape[local] != 1: v = _slice(v, local, bounds[i])  # type: ignore[index]
      per[i].append(v)
  return axis, bounds, per

def _per_shard(name: str):
  """A MultiTensor method that runs Tensor's method `name` on each shard, with its Tensor arguments aligned to the shards."""
  base = getattr(Tensor, name)
  def method(self: MultiTensor, *args: Any, **kwargs: Any) -> MultiTensor:
    keys = list(kwargs)
    axis, bounds, per = _align(self, [self, *args, *kwargs.values()])
    out = []
    for vals in per:
      n = 1 + len(args)
      out.append(base(*vals[:n], **dict(zip(keys, vals[n:]))))
    return MultiTensor._make(out, axis, bounds)
  method.__name__, method.__doc__ = name, f"Tensor.{name}, run on each shard."
  return method

# every MathMixin method is elementwise: it runs per shard. Excluded: operand helpers, in-place ops (no sharded assign) and matmul
_NOT_PER_SHARD = {"_operand", "_broadcast_to", "_broadcasted", "_check_int", "_inplace", "__matmul__", "__rmatmul__"}
_ELEMENTWISE = [n for n, v in vars(MathMixin).items() if callable(v) and n not in _NOT_PER_SHARD and not n.startswith("__i")
                and n not in ("__slots__",)] + ["cast", "bitcast", "contiguous", "detach"]

# sharded tensors that require gradients: backward() gives them a sharded .grad
_grad_multis: weakref.WeakSet = weakref.WeakSet()

class MultiTensor(Tensor):
  """A tensor split (or replicated) across several devices: one lazy Tensor per device, and the sharded axis (None: replicated)."""
  __slots__ = ("shards", "axis", "bounds")
  __hash__ = object.__hash__

  @staticmethod
  def _make(shards: list[Tensor], axis: int | None, bounds: Bounds | None) -> MultiTensor:
    m = MultiTensor.__new__(MultiTensor)
    m.shards, m.axis, m.bounds = list(shards), axis, bounds if axis is not None else None
    m.device, m.requires_grad, m.grad, m._graph = tuple(s.device for s in shards), None, None, None
    return m

  @property
  def uop(self) -> UOp:  # type: ignore[override]
    raise TypeError(f"this operation is not supported on a tensor sharded across {self.device}: gather it onto one device with "
                    f".to(device) first (or, when combining with a single-device Tensor, put the sharded operand first)")
  @property
  def shape(self) -> tuple[int, ...]:
    s = self.shards[0].shape
    return s if self.axis is None else s[:self.axis] + (self.bounds[-1][1],) + s[self.axis + 1:]  # type: ignore[index]
  @property
  def dtype(self): return self.shards[0].dtype
  def __repr__(self) -> str:
    return f"<MultiTensor shape={self.shape} dtype={self.dtype!r} devices={self.device!r} axis={self.axis}>"
  def __getitem__(self, indices: Any) -> Tensor:
    raise TypeError(f"indexing a tensor sharded across {self.device} is not supported: gather it with .to(device) first")

  # ---- placement ----
  def shard(self, devices: Sequence[str], axis: int | None = None) -> MultiTensor:
    """This tensor resharded across `devices` along `axis` (None: replicated)."""
    return shard(self, devices, axis)
  def to(self, device: Any) -> Tensor:  # type: ignore[override]
    """Gathered onto one device (a plain Tensor), or resharded along the same axis when `device` is a tuple of devices."""
    if isinstance(device, (tuple, list)): return shard(self, device, self.axis)
    dev = _canonical_device(device)
    if self.axis is None: return self.shards[self.device.index(dev)] if dev in self.device else self.shards[0].to(dev)
    parts = [s.to(dev) for s in self.shards]
    return parts[0].cat(*parts[1:], dim=self.axis)
  def realize(self, *lst: Tensor) -> MultiTensor:  # type: ignore[override]
    """Compute every shard (and `lst`) now, in one schedule."""
    flat = [s for t in (self, *lst) for s in (t.shards if isinstance(t, MultiTensor) else [t])]
    Tensor.realize(flat[0], *flat[1:])
    return self
  def numpy(self):
    """The whole tensor gathered into one numpy array."""
    import numpy as np
    self.realize()
    if self.axis is None: return self.shards[0].numpy()
    return np.concatenate([s.numpy() for s in self.shards], axis=self.axis)
  def _is_realized(self) -> bool: return all(s._is_realized() for s in self.shards)

  # ---- elementwise helpers that Tensor's composite methods (dot, mean, softmax, ...) call ----
  def _operand(self, y: Any) -> Tensor:
    # a plain Tensor is replicated as it is, before the caller (e.g. dot) adds views: copying a view would first materialize it
    if isinstance(y, MultiTensor): return y
    if isinstance(y, Tensor): return shard(y, self.device)
    if not isinstance(y, (bool, int, float)):
      raise TypeError(f"can't combine a Tensor with {type(y).__name__}: use a Tensor or a Python bool, int or float")
    return MultiTensor._make([s._operand(y) for s in self.shards], None, None)
  def _broadcast_to(self, shape: tuple[int, ...]) -> MultiTensor:
    if self.shape == shape: return self
    if self.axis is None: return MultiTensor._make([s._broadcast_to(shape) for s in self.shards], None, None)
    ax = self.axis + len(shape) - self.ndim
    if shape[ax] != self.shape[self.axis]: raise ValueError(f"can't expand the sharded axis {self.axis} of {self.shape} to {shape}")
    return MultiTensor._make([s._broadcast_to(shape[:ax] + (s.shape[self.axis],) + shape[ax + 1:]) for s in self.shards], ax, self.bounds)
  def __rmatmul__(self, x: Any) -> Tensor:
    return shard(x, self.device).matmul(self) if isinstance(x, Tensor) else self._operand(x).matmul(self)

  # ---- movement: the sharded axis must stay whole ----
  def reshape(self, shape: Any, *args: int) -> MultiTensor:  # type: ignore[override]
    """The same elements in a new shape; the sharded axis must stay one axis with the same elements before it."""
    new = _args(shape, args)
    if new.count(-1) == 1 and all(isinstance(s, int) for s in new) and (known := prod(s for s in new if s != -1)) and self.numel() % known == 0:
      new = tuple(self.numel() // known if s == -1 else s for s in new)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in new) or prod(new) != self.numel():
      raise ValueError(f"can't reshape {self.shape} ({self.numel()} elements) to {new}: the number of elements must match")
    if self.axis is None: return MultiTensor._make([s.reshape(new) for s in self.shards], None, None)
    before, n = prod(self.shape[:self.axis]), self.shape[self.axis]
    j = next((j for j in range(len(new)) if prod(new[:j]) == before and new[j] == n), None)
    if j is None:
      raise ValueError(f"can't reshape {self.shape} to {new} while sharded on axis {self.axis} (size {n}): the sharded axis must stay "
                       f"one whole axis; gather with .to(device) or reshard with .shard(devices, axis) first")
    return MultiTensor._make([s.reshape(new[:j] + (s.shape[self.axis],) + new[j + 1:]) for s in self.shards], j, self.bounds)
  def permute(self, order: Any, *args: int) -> MultiTensor:  # type: ignore[override]
    """The axes reordered; the sharded axis moves with them."""
    o = tuple(self._axis(a) for a in _args(order, args))
    if sorted(o) != list(range(self.ndim)): raise ValueError(f"permute order {o} is not a permutation of the {self.ndim} axes of {self.shape}")
    return MultiTensor._make([s.permute(o) for s in self.shards], None if self.axis is None else o.index(self.axis), self.bounds)
  def shrink(self, arg: Sequence) -> MultiTensor:  # type: ignore[override]
    """A sub-box; the sharded axis must be kept whole."""
    if len(arg) != self.ndim: raise ValueError(f"shrink {tuple(arg)} needs one (start, end) or None per axis of {self.shape}")
    if self.axis is not None and arg[self.axis] is not None and tuple(arg[self.axis]) != (0, self.shape[self.axis]):
      raise ValueError(f"can't shrink the sharded axis {self.axis} of {self.shape}: gather with .to(device) or shard another axis first")
    box = [None if i == self.axis else a for i, a in enumerate(arg)]
    return MultiTensor._make([s.shrink(box) for s in self.shards], self.axis, self.bounds)

  # ---- reductions: per shard, plus an allreduce when the sharded axis is reduced ----
  def _reduce(self, op: Ops, axis: Any, keepdim: bool, identity: Any = None, what: str = "") -> MultiTensor:
    axes = self._axes(axis)
    parts = [s._reduce(op, axes, keepdim, identity, what) for s in self.shards]
    if self.axis is None or self.axis not in axes:
      ax = None if self.axis is None else self.axis if keepdim else self.axis - sum(a < self.axis for a in axes)
      return MultiTensor._make(parts, ax, self.bounds)
    return MultiTensor._make(allreduce(parts, op), None, None)

  # ---- autograd ----
  def requires_grad_(self, requires_grad: bool | None = True) -> MultiTensor:
    """Mark every shard as a gradient target; backward() then sets a sharded .grad."""
    for s in self.shards: s.requires_grad_(requires_grad)
    self.requires_grad = requires_grad
    if requires_grad: _grad_multis.add(self)
    return self
  def gradient(self, *targets: Tensor, gradient: Tensor | None = None) -> list[Tensor]:
    """The gradients of this replicated scalar with respect to `targets` (plain or sharded tensors)."""
    root, root_grad = self._root(gradient)
    flat = [s for t in targets for s in (t.shards if isinstance(t, MultiTensor) else [t])]
    grads = _gradients(root, root_grad, flat)
    out, i = [], 0
    for t in targets:
      if isinstance(t, MultiTensor):
        gs = [_as_grad(s, g) for s, g in zip(t.shards, grads[i:i + len(t.shards)])]
        out.append(MultiTensor._make(gs, t.axis, t.bounds)); i += len(t.shards)  # noqa: E702
      else:
        out.append(_as_grad(t, grads[i])); i += 1  # noqa: E702
    return out
  def backward(self, gradient: Tensor | None = None) -> MultiTensor:  # type: ignore[override]
    """Accumulate gradients into `.grad` of every tensor with requires_grad that this (replicated, scalar) tensor depends on."""
    from tg_tensor.gradient import live_grad_tensors, unrealize
    root, root_grad = self._root(gradient)
    targets = [t for t in live_grad_tensors() if t.requires_grad and not isinstance(t, MultiTensor)]
    topo = unrealize(root._lazy(), {t.uop for t in targets}).toposort()
    targets = [t for t in targets if t.uop in topo]
    if not targets: raise RuntimeError("backward() found no tensor with requires_grad=True in this graph: set requires_grad=True on the inputs")
    for t, g in zip(targets, _gradients(root, root_grad, targets)):
      if g is None: continue
      g = _as_grad(t, g)
      t.grad = g if t.grad is None else t.grad + g
    for m in list(_grad_multis):
      if m.requires_grad and all(s.grad is not None for s in m.shards): m.grad = MultiTensor._make([s.grad for s in m.shards], m.axis, m.bounds)
    return self
  def _root(self, gradient: Tensor | None) -> tuple[Tensor, UOp]:
    """Shard 0 of this replicated tensor and the gradient flowing into it. The gradient is tied to that shard's device through a
    one-element buffer: a gradient graph of constants only would be hash-consed across the shards' graphs and computed on one
    device for all of them."""
    import numpy as np
    if self.axis is not None:
      raise ValueError(f"backward() of a tensor sharded on axis {self.axis} (shape {self.shape}): reduce it first, e.g. .sum() or .mean()")
    root = self.shards[0]
    if gradient is None and self.shape != ():
      raise ValueError(f"backward() of a tensor of shape {self.shape} needs `gradient=` (or call it on a scalar, e.g. .sum())")
    one = Tensor(np.ones((), np.float32), device=root.device).cast(self.dtype)
    g = one if gradient is None else gradient.to(root.device) * one
    return root, g.uop

for _name in _ELEMENTWISE:
  if _name not in vars(MultiTensor): setattr(MultiTensor, _name, _per_shard(_name))

def allreduce(parts: list[Tensor], op: Ops) -> list[Tensor]:
  """Each device's partial result combined with every other device's (copied over), in device order so all replicas agree."""
  combine = {Ops.ADD: lambda a, b: a + b, Ops.MUL: lambda a, b: a * b, Ops.MAX: lambda a, b: a.maximum(b)}[op]
  out = []
  for p in parts:
    acc = None
    for q in parts:
      v = q.to(p.device)
      acc = v if acc is None else combine(acc, v)
    out.append(acc)
  return out

def _as_grad(t: Tensor, g: UOp | None) -> Tensor:
  """Gradient `g` as a Tensor on `t`'s device (zeros when no gradient reached `t`)."""
  return t.zeros_like() if g is None else t._wrap(g)

def _copy_grad(ctx: UOp, ret: UOp) -> UOp:
  """The gradient of a COPY goes back to the device its source lives on (constants need no copy)."""
  src_dev, dev = _graph_device(ret.src[0]), _graph_device(ctx)
  if src_dev is None or dev is None or dev == src_dev: return ctx
  return UOp(Ops.COPY, ctx.dtype, (ctx, UOp(Ops.DEVICE, arg=src_dev)))

def _gradients(root: Tensor, root_grad: UOp, targets: list[Tensor]) -> list[UOp | None]:
  """d(root)/d(t) for each target: the reverse walk of tg_tensor.gradient, with cross-device COPYs sending gradients back."""
  from tg_tensor.gradient import grad_rules, unrealize
  from tg_uop.dtype import dtypes
  tset = {t.uop for t in targets}
  topo = list(unrealize(root._lazy(), tset).toposort())
  on_path: set[UOp] = set()
  for u in topo:
    if u in tset or (u.op is not Ops.DETACH and any(s in on_path for s in u.src)): on_path.add(u)
  grads: dict[UOp, UOp] = {topo[-1]: root_grad}
  for u in reversed(topo):
    if u not in on_path or (g := grads.get(u)) is None or u.op in (Ops.BUFFER, Ops.CONST, Ops.DEVICE) or not dtypes.is_float(u.dtype): continue
    src_grads = (_copy_grad(g, u), None) if u.op is Ops.COPY else grad_rules.rewrite(u, ctx=g)
    if src_grads is None: raise RuntimeError(f"no gradient rule for {u.op.name}: this op can't be differentiated yet")
    for s, sg in zip(u.src, src_grads):
      if sg is None or s not in on_path: continue
      grads[s] = sg if s not in grads else grads[s] + sg
  return [grads.get(t.uop) for t in targets]
