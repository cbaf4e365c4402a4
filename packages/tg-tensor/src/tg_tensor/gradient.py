"""Autograd: gradient rules as a PatternMatcher over tensor-level UOps, and the reverse walk that applies them.

Each rule gets the UOp `ret` and its incoming gradient `ctx` (same shape and dtype as `ret`) and returns one gradient per source
(None where no gradient flows: comparisons, integer ops, DETACH)."""
from __future__ import annotations
import math, weakref
from typing import TYPE_CHECKING
from tg_uop.dtype import dtypes
from tg_uop.helpers import argsort
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import UPat, PatternMatcher
from tg_uop.uop import UOp
if TYPE_CHECKING: from tg_tensor.tensor import Tensor

_grad_tensors: weakref.WeakSet = weakref.WeakSet()
def track(t: Tensor) -> None:
  """Remember `t` (requires_grad=True) so backward() can find it."""
  _grad_tensors.add(t)
def live_grad_tensors() -> list[Tensor]: return list(_grad_tensors)

# realized values (BUFFER views) -> the lazy graphs that computed them, while gradients may still be asked for
_lazy_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
def remember_graph(realized: UOp, graph: UOp) -> None:
  # an ASSIGN wrote into the very buffer that later graphs read: its old graph isn't this value's (no gradient flows there anyway)
  if realized is not graph and graph.op is not Ops.ASSIGN: _lazy_of[realized] = graph
def unrealize(root: UOp, keep: set[UOp]) -> UOp:
  """`root` with every realized intermediate (except `keep`, the gradient targets) replaced by the graph that computed it, so
  gradients flow through tensors that were realized on the way (e.g. a printed activation)."""
  done: set[UOp] = set()
  while True:
    subs = {u: g for u in root.toposort() if u not in keep and u not in done and (g := _lazy_of.get(u)) is not None}
    if not subs: return root
    done |= set(subs)  # each realized value is expanded once, so the walk ends even if graphs refer to each other
    root = root.substitute(subs)

def _cos(x: UOp) -> UOp:
  s = (x * x.const_like(0.5)).alu(Ops.SIN)
  return x.const_like(1) - x.const_like(2) * s * s
def _unreduce(g: UOp, src: UOp, axes: tuple[int, ...]) -> UOp:
  """`g` (the shape of a reduce's output) broadcast back over the reduced `axes` of `src`."""
  return g.reshape(tuple(1 if i in axes else s for i, s in enumerate(src.shape))).expand(src.shape)
def _reduce_grad(ctx: UOp, ret: UOp) -> tuple:
  op, axes = ret.arg
  src = ret.src[0]
  if op is Ops.ADD: return (_unreduce(ctx, src, axes),)
  if op is Ops.MAX:  # ties share the gradient equally, as PyTorch's amax
    hit = src.eq(_unreduce(ret, src, axes)).cast(src.dtype)
    count = _unreduce(hit.reduce_axis(Ops.ADD, axes), src, axes)
    return (hit * _unreduce(ctx, src, axes) / count,)
  return (_unreduce(ctx * ret, src, axes) / src,)  # MUL: d(prod)/dx = prod / x (for nonzero x)
def _expand_grad(ctx: UOp, ret: UOp) -> tuple:
  src = ret.src[0]
  axes = tuple(i for i, (s, d) in enumerate(zip(src.shape, ret.shape)) if s != d)
  return (ctx.reduce_axis(Ops.ADD, axes).reshape(src.shape),)
def _where_grad(ctx: UOp, ret: UOp) -> tuple:
  c, zero = ret.src[0], ctx.const_like(0).reshape((1,) * len(ctx.shape)).expand(ctx.shape) if ctx.shape else ctx.const_like(0)
  return (None, c.where(ctx, zero), c.where(zero, ctx))
def _max_grad(ctx: UOp, ret: UOp) -> tuple:
  a, b = ret.src
  half = ctx.const_like(0.5)
  wa = (b < a).cast(ctx.dtype) + a.eq(b).cast(ctx.dtype) * half
  return (ctx * wa, ctx * (ctx.const_like(1) - wa))
def _pow_grad(ctx: UOp, ret: UOp) -> tuple:
  a, b = ret.src
  da = ctx * b * a.alu(Ops.POW, b - b.const_like(1))
  db = ctx * ret * a.alu(Ops.LOG2) * a.const_like(math.log(2))
  return (da, a.eq(0).where(a.const_like(0), db))
def _devices_of(u: UOp) -> set[str]:
  return {x.src[0].arg for x in u.toposort() if x.op is Ops.BUFFER} | {x.src[1].arg for x in u.toposort() if x.op is Ops.COPY}

def _copy_back(ctx: UOp, ret: UOp) -> UOp:
  """The gradient of a copy goes back to the device the data came from."""
  src_devs = _devices_of(ret.src[0])
  if len(src_devs) != 1 or _devices_of(ctx) <= src_devs: return ctx
  return UOp(Ops.COPY, ctx.dtype, (ctx, UOp(Ops.DEVICE, arg=next(iter(src_devs)))))

def _cast_grad(ctx: UOp, ret: UOp) -> tuple:
  return (ctx.cast(ret.src[0].dtype),) if dtypes.is_float(ret.src[0].dtype) else (None,)

grad_rules = PatternMatcher([
  (UPat(Ops.ADD, name="ret"), lambda ctx, ret: (ctx, ctx)),
  (UPat(Ops.SUB, name="ret"), lambda ctx, ret: (ctx, -ctx)),
  (UPat(Ops.MUL, name="ret"), lambda ctx, ret: (ctx * ret.src[1], ctx * ret.src[0])),
  (UPat(Ops.NEG, name="ret"), lambda ctx, ret: (-ctx,)),
  (UPat(Ops.FDIV, name="ret"), lambda ctx, ret: (ctx / ret.src[1], -(ctx * ret) / ret.src[1])),
  (UPat(Ops.RECIP, name="ret"), lambda ctx, ret: (-(ctx * ret * ret),)),
  (UPat(Ops.SQRT, name="ret"), lambda ctx, ret: (ctx / (ret * ret.const_like(2)),)),
  (UPat(Ops.EXP2, name="ret"), lambda ctx, ret: (ctx * ret * ret.const_like(math.log(2)),)),
  (UPat(Ops.LOG2, name="ret"), lambda ctx, ret: (ctx / (ret.src[0] * ret.const_like(math.log(2))),)),
  (UPat(Ops.SIN, name="ret"), lambda ctx, ret: (ctx * _cos(ret.src[0]),)),
  (UPat(Ops.MAX, name="ret"), _max_grad),
  (UPat(Ops.POW, name="ret"), _pow_grad),
  (UPat(Ops.WHERE, name="ret"), _where_grad),
  # no gradient through comparisons, rounding, integer and bit ops, random bits, or a detach
  (UPat(GroupOp.Comparison | {Ops.TRUNC, Ops.IDIV, Ops.MOD, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR, Ops.THREEFRY, Ops.BITCAST,
                              Ops.DETACH, Ops.ASSIGN}, name="ret"), lambda ctx, ret: (None,) * len(ret.src)),
  (UPat(Ops.CAST, name="ret"), _cast_grad),
  (UPat(Ops.CONTIGUOUS, name="ret"), lambda ctx, ret: (ctx,)),
  (UPat(Ops.COPY, name="ret"), lambda ctx, ret: (_copy_back(ctx, ret), None)),
  (UPat(Ops.RESHAPE, name="ret"), lambda ctx, ret: (ctx.reshape(ret.src[0].shape),)),
  (UPat(Ops.PERMUTE, name="ret"), lambda ctx, ret: (ctx.permute(tuple(argsort(list(ret.arg)))),)),
  (UPat(Ops.EXPAND, name="ret"), _expand_grad),
  (UPat(Ops.PAD, name="ret"), lambda ctx, ret: (ctx.shrink(tuple((b, b + s) for (b, _), s in zip(ret.arg, ret.src[0].shape))),)),
  (UPat(Ops.SHRINK, name="ret"), lambda ctx, ret: (ctx.pad(tuple((b, s - e) for (b, e), s in zip(ret.arg, ret.src[0].shape))),)),
  (UPat(Ops.FLIP, name="ret"), lambda ctx, ret: (ctx.flip(ret.arg),)),
  (UPat(Ops.REDUCE_AXIS, name="ret"), _reduce_grad),
], name="gradient")

def compute_gradient(root: UOp, root_grad: UOp, targets: set[UOp]) -> dict[UOp, UOp]:
  """d(root)/d(t) for each t in `targets` reached from `root`, as UOps (root_grad is the gradient flowing into root)."""
  topo = list(root.toposort())
  # only UOps on a path to a target need a gradient
  on_path: set[UOp] = set()
  for u in topo:
    if u in targets or (u.op is not Ops.DETACH and any(s in on_path for s in u.src)): on_path.add(u)
  grads: dict[UOp, UOp] = {root: root_grad}
  for u in reversed(topo):
    if u not in on_path or (g := grads.get(u)) is None or u.op in (Ops.BUFFER, Ops.CONST, Ops.DEVICE): continue
    if not dtypes.is_float(u.dtype): continue
    src_grads = grad_rules.rewrite(u, ctx=g)
    if src_grads is None: raise RuntimeError(f"no gradient rule for {u.op.name}: this op can't be differentiated yet")
    for s, sg in zip(u.src, src_grads):
      if sg is None or s not in on_path: continue
      grads[s] = sg if s not in grads else grads[s] + sg
  return {t: grads[t] for t in targets if t in grads}
