"""Kernels, opt ops and `KernelInfo`, the one holder of a kernel's optimization choices (DESIGN.md point 3).

A kernel is a SINK of `END(STORE(INDEX(buf, idx), value), *ranges)` with reductions as `REDUCE(x, *ranges, arg=op)`; every RANGE
has a unique int id. Opt ops split ranges: a split replaces a range `r` by `outer*amt + inner` (or `inner*n + outer` for
GROUPTOP) and gives the new ranges roles. `apply_opts` maps a list of `Opt`s to a `KernelInfo`, checking that each one fits."""
from __future__ import annotations
from dataclasses import dataclass, replace
from enum import Enum
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.helpers import prod

class OptOps(Enum):
  UPCAST = "UPCAST"; UNROLL = "UNROLL"; LOCAL = "LOCAL"; GROUP = "GROUP"; GROUPTOP = "GROUPTOP"  # noqa: E702
  PADTO = "PADTO"; NOLOCALS = "NOLOCALS"; SWAP = "SWAP"; TC = "TC"  # noqa: E702
  def __repr__(self) -> str: return f"OptOps.{self.name}"

class AxisType(Enum):
  GLOBAL = "g"; LOCAL = "l"; REDUCE = "r"; UPCAST = "u"; UNROLL = "ur"; GROUP_REDUCE = "gr"  # noqa: E702
  TC = "tc"; TC_LANE = "lane"  # the 16/8/16 inner parts of a tensor core's M/N/K axes, and the warp's 32 lanes  # noqa: E702

@dataclass(frozen=True)
class Opt:
  """One optimization: `op` on axis `axis` (an index into the kernel's axes, globals first) with amount `arg`."""
  op: OptOps
  axis: int | None = None
  arg: int | None = None
  def __repr__(self) -> str: return f"Opt(op={self.op!r}, axis={self.axis}, arg={self.arg})"

class KernelOptError(ValueError):
  """An opt op that does not fit the kernel (a non-divisor, too many locals, a reduce axis where a global one is needed, ...)."""

@dataclass(frozen=True)
class Axis:
  """One range of the kernel after opts: its RANGE UOp, its role, and which original range it came from."""
  rng: UOp
  type: AxisType
  origin: int  # the id of the original range
  @property
  def size(self) -> int: return self.rng.src[0].arg if self.rng.src[0].op is Ops.CONST else int(self.rng.src[0].vmax)

@dataclass(frozen=True)
class KernelInfo:
  """The optimization choices of one kernel: the opts applied (in order) and the resulting axes with their roles."""
  name: str = "kernel"
  opts: tuple[Opt, ...] = ()
  axes: tuple[Axis, ...] = ()
  nolocals: bool = False
  # how each original range id is rebuilt from the new ranges, and the size before padding (PADTO)
  subst: tuple[tuple[int, UOp], ...] = ()
  padded: tuple[UOp, ...] = ()  # validity conditions of padded ranges (PADTO), over the current ranges
  applied: bool = False
  mma: tuple[tuple[int, int, int, DType], ...] = ()  # where a TC opt could go: (M, N, K) original range ids and the input dtype
  tc: tuple | None = None  # after TC: (index into the renderer's tensor_cores, M inner, N inner, K inner, lane) ranges
  def __repr__(self) -> str: return f"KernelInfo(name={self.name!r}, opts={list(self.opts)}, axes={[(a.type.value, a.size) for a in self.axes]})"

def kernel_ranges(ast: UOp) -> tuple[list[UOp], list[UOp]]:
  """(global ranges, reduce ranges) of a kernel, each sorted by id."""
  red = {r for u in ast.toposort() if u.op is Ops.REDUCE for r in u.src[1:]}
  rngs = [u for u in ast.toposort() if u.op is Ops.RANGE]
  ids = [r.arg for r in rngs]
  if len(set(ids)) != len(ids): raise ValueError(f"every RANGE of a kernel needs a unique id, got ids {sorted(ids)}")
  key = lambda r: r.arg  # noqa: E731
  return sorted([r for r in rngs if r not in red], key=key), sorted([r for r in rngs if r in red], key=key)

def initial_info(ast: UOp) -> KernelInfo:
  """The KernelInfo of an unoptimized kernel: every non-reduce range GLOBAL, every reduce range REDUCE."""
  g, r = kernel_ranges(ast)
  axes = tuple(Axis(x, AxisType.GLOBAL, x.arg) for x in g) + tuple(Axis(x, AxisType.REDUCE, x.arg) for x in r)
  name = ("r_" if r else "E_") + "_".join(str(a.size) for a in axes)
  return KernelInfo(name=name, axes=axes, subst=tuple((a.origin, a.rng) for a in axes), mma=mma_candidates(ast, g))

def mma_operands(red: UOp) -> tuple[UOp, UOp] | None:
  """The two factors of a REDUCE ADD of products in float16/bfloat16 (`sum(a*b)` or `sum(float(a)*float(b))`, or the product cast to
  a wider float), each without its widening CAST; None if the reduction is something else."""
  if red.op is not Ops.REDUCE or red.arg is not Ops.ADD or not dtypes.is_float(red.dtype): return None
  x = red.src[0]
  if x.op is Ops.CAST and dtypes.is_float(x.src[0].dtype): x = x.src[0]
  if x.op is not Ops.MUL: return None
  a, b = (s.src[0] if s.op is Ops.CAST and dtypes.is_float(s.src[0].dtype) and s.src[0].dtype.itemsize < s.dtype.itemsize else s for s in x.src)
  if a.dtype != b.dtype or a.dtype not in (dtypes.float16, dtypes.bfloat16) or a.dtype.count != 1: return None
  return a, b

def mma_candidates(ast: UOp, glb: list[UOp]) -> tuple[tuple[int, int, int, DType], ...]:
  """The (M, N, K) range ids a tensor core could take in `ast`: its only REDUCE sums products of two float16/bfloat16 factors, K is
  a reduce range both factors use, M a global range only the first uses, N one only the second uses (the last ranges first)."""
  reds = [u for u in ast.toposort() if u.op is Ops.REDUCE]
  if len(reds) != 1 or (ops := mma_operands(reds[0])) is None: return ()
  ra, rb = ({u for u in o.toposort() if u.op is Ops.RANGE} for o in ops)
  ks = [r for r in reds[0].src[1:] if r in ra and r in rb]
  out = []
  for a, b in ((ra, rb), (rb, ra)):  # either factor may be A (M x K); B is the other (K x N)
    ms, ns = [r for r in glb if r in a and r not in b], [r for r in glb if r in b and r not in a]
    out += [(m.arg, n.arg, k.arg, ops[0].dtype) for k in reversed(ks) for n in reversed(ns) for m in reversed(ms)]
  return tuple(out)

def _next_id(info: KernelInfo) -> int: return max([a.rng.arg for a in info.axes] + [-1]) + 1

def _split(info: KernelInfo, i: int, amt: int, inner_type: AxisType, top: bool = False) -> KernelInfo:
  ax = info.axes[i]
  if ax.rng.src[0].op is not Ops.CONST: raise KernelOptError(f"axis {i} has a symbolic size ({ax.rng.src[0].render()}): it can't be split")
  size = ax.size
  if amt == 0: amt = size
  if amt <= 0 or size % amt != 0: raise KernelOptError(f"can't split axis {i} of size {size} by {amt}: {amt} does not divide {size}")
  nid = _next_id(info)
  outer = UOp.range(size // amt, nid, ax.rng.dtype)
  inner = UOp.range(amt, nid + 1, ax.rng.dtype)
  expr = inner * (size // amt) + outer if top else outer * amt + inner
  if size // amt == 1: outer, expr = None, inner
  new_axes = list(info.axes)
  # the outer part keeps the role and the position; the inner one goes to the end of its kind (upcasts last, as tinygrad)
  new_axes[i:i + 1] = [Axis(outer, ax.type, ax.origin)] if outer is not None else []
  new_axes.append(Axis(inner, inner_type, ax.origin))
  subst = tuple((k, v.substitute({ax.rng: expr})) for k, v in info.subst)
  return replace(info, axes=tuple(new_axes), subst=subst, padded=tuple(c.substitute({ax.rng: expr}) for c in info.padded))

def apply_opt(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  """`info` with one more opt applied; raises `KernelOptError` naming the opt when it does not fit."""
  try: return replace(_apply(info, opt, ren), opts=info.opts + (opt,))
  except KernelOptError as e: raise KernelOptError(f"{opt!r} doesn't fit kernel {info.name} with axes "
                                                   f"{[(a.type.value, a.size) for a in info.axes]}: {e}") from None

def _apply_tc(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  # the inner 16/8/16 of the chosen M/N/K axes become the tensor core's, and a new axis of 32 lanes (one warp) threads them
  tcs = list(getattr(ren, "tensor_cores", None) or [])
  if not tcs or not ren.has_local: raise KernelOptError(f"the {type(ren).__name__} renderer has no tensor cores")
  if info.opts: raise KernelOptError(f"TC must be the first opt, {list(info.opts)} came before it")
  if info.nolocals: raise KernelOptError("NOLOCALS was applied: tensor cores need a warp of local threads")
  if not info.mma: raise KernelOptError("the kernel is not one REDUCE ADD of products of float16/bfloat16 values (a matmul or conv)")
  if opt.axis is None or not 0 <= opt.axis < len(info.mma):
    raise KernelOptError(f"TC's axis chooses one of the kernel's {len(info.mma)} (M, N, K) choices, got {opt.axis}")
  m_id, n_id, k_id, din = info.mma[opt.axis]
  fits = [i for i, tc in enumerate(tcs) if tc.dtype_in == din]
  if not fits: raise KernelOptError(f"the {type(ren).__name__} renderer has no tensor core for {din} inputs")
  sel = opt.arg or 0
  if not 0 <= sel < len(fits): raise KernelOptError(f"TC's arg picks one of {len(fits)} tensor cores for {din}, got {sel}")
  tc = tcs[fits[sel]]
  inner = []
  for origin, amt, what in zip((m_id, n_id, k_id), tc.dims, "MNK"):
    i = next(j for j, a in enumerate(info.axes) if a.origin == origin)
    if info.axes[i].size % amt: raise KernelOptError(f"the {what} axis (size {info.axes[i].size}) is not a multiple of {amt}")
    info = _split(info, i, amt, AxisType.TC)
    inner.append(info.axes[-1].rng)
  lane = UOp.range(tc.threads, _next_id(info))
  info = replace(info, axes=info.axes + (Axis(lane, AxisType.TC_LANE, -1),), tc=(fits[sel], *inner, lane))
  _check_limits(info, ren)
  return info

def _apply(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  if opt.op is OptOps.TC: return _apply_tc(info, opt, ren)
  if opt.op is OptOps.NOLOCALS:
    if any(a.type in (AxisType.LOCAL, AxisType.GROUP_REDUCE, AxisType.TC_LANE) for a in info.axes): raise KernelOptError("locals are already in use")
    return replace(info, nolocals=True)
  if opt.axis is None or not 0 <= opt.axis < len(info.axes): raise KernelOptError(f"axis {opt.axis} is out of range 0..{len(info.axes)-1}")
  ax = info.axes[opt.axis]
  amt = opt.arg if opt.arg is not None else 0
  if opt.op is OptOps.UPCAST:
    if ax.type not in (AxisType.GLOBAL, AxisType.LOCAL):
      raise KernelOptError(f"UPCAST needs a global or local axis, axis {opt.axis} is {ax.type.name}")
    if (amt or ax.size) > 64: raise KernelOptError(f"an upcast of {amt or ax.size} is too large (at most 64)")
    out = _split(info, opt.axis, amt, AxisType.UPCAST)
  elif opt.op is OptOps.UNROLL:
    if ax.type not in (AxisType.REDUCE, AxisType.GROUP_REDUCE): raise KernelOptError(f"UNROLL needs a reduce axis, axis {opt.axis} is {ax.type.name}")
    if (amt or ax.size) > 64: raise KernelOptError(f"an unroll of {amt or ax.size} is too large (at most 64)")
    out = _split(info, opt.axis, amt, AxisType.UNROLL)
  elif opt.op is OptOps.LOCAL:
    if not ren.has_local: raise KernelOptError(f"the {type(ren).__name__} renderer has no local (workgroup) dimensions")
    if info.nolocals: raise KernelOptError("NOLOCALS was applied")
    if ax.type is not AxisType.GLOBAL: raise KernelOptError(f"LOCAL needs a global axis, axis {opt.axis} is {ax.type.name}")
    out = _split(info, opt.axis, amt, AxisType.LOCAL)
  elif opt.op in (OptOps.GROUP, OptOps.GROUPTOP):
    if not (ren.has_local and ren.has_shared): raise KernelOptError(f"the {type(ren).__name__} renderer has no shared memory for GROUP")
    if info.nolocals: raise KernelOptError("NOLOCALS was applied")
    if ax.type is not AxisType.REDUCE: raise KernelOptError(f"{opt.op.name} needs a reduce axis, axis {opt.axis} is {ax.type.name}")
    if any(a.type is AxisType.GROUP_REDUCE for a in info.axes): raise KernelOptError("only one GROUP per kernel")
    out = _split(info, opt.axis, amt, AxisType.GROUP_REDUCE, top=opt.op is OptOps.GROUPTOP)
  elif opt.op is OptOps.PADTO:
    if ax.type not in (AxisType.GLOBAL, AxisType.REDUCE): raise KernelOptError(f"PADTO needs a global or reduce axis, got {ax.type.name}")
    if info.tc is not None: raise KernelOptError("PADTO can't follow TC (the tensor core reads every element unmasked)")
    if amt <= 1: raise KernelOptError(f"PADTO needs an amount > 1, got {amt}")
    if any(ax.rng in c.toposort() for c in info.padded): raise KernelOptError("axis is already padded")
    size = ax.size
    padded = -(-size // amt) * amt
    if padded == size: raise KernelOptError(f"axis of size {size} is already a multiple of {amt}")
    if padded > size * 2: raise KernelOptError(f"padding {size} to {padded} more than doubles the work")
    new = UOp.range(padded, ax.rng.arg, ax.rng.dtype)
    axes = list(info.axes)
    axes[opt.axis] = Axis(new, ax.type, ax.origin)
    subst = tuple((k, v.substitute({ax.rng: new})) for k, v in info.subst)
    pads = tuple(c.substitute({ax.rng: new}) for c in info.padded) + (new < size,)
    return replace(info, axes=tuple(axes), subst=subst, padded=pads)
  elif opt.op is OptOps.SWAP:
    if amt is None or not 0 <= amt < len(info.axes) or amt == opt.axis: raise KernelOptError(f"SWAP needs another valid axis, got {amt}")
    other = info.axes[amt]
    if ax.type is not AxisType.GLOBAL or other.type is not AxisType.GLOBAL: raise KernelOptError("SWAP exchanges two global axes")
    axes = list(info.axes)
    axes[opt.axis], axes[amt] = other, ax
    return replace(info, axes=tuple(axes))
  else: raise KernelOptError(f"unknown opt op {opt.op}")
  _check_limits(out, ren)
  return out

def _check_limits(info: KernelInfo, ren) -> None:
  locs = [a.size for a in info.axes if a.type in (AxisType.LOCAL, AxisType.GROUP_REDUCE, AxisType.TC_LANE)]
  lmax = prod(ren.local_max) if getattr(ren, "local_max", None) else 0
  limit = min(lmax or 1024, 1024)
  if locs and prod(locs) > limit: raise KernelOptError(f"{prod(locs)} threads per block exceed the limit of {limit}")
  ups = [a.size for a in info.axes if a.type in (AxisType.UPCAST, AxisType.UNROLL)]
  if prod(ups) > 256: raise KernelOptError(f"upcasts and unrolls of {prod(ups)} lanes exceed 256")

def apply_opts(ast: UOp, opts: list[Opt] | tuple[Opt, ...], ren) -> KernelInfo:
  """The KernelInfo of `ast` after `opts`, in order."""
  info = initial_info(ast)
  for o in opts: info = apply_opt(info, o, ren)
  return replace(info, applied=True)

def reduce_identity(op: Ops, dt) -> object:
  """The value a reduction starts from."""
  if op is Ops.ADD: return 0
  if op is Ops.MUL: return 1
  if op is Ops.MAX: return dtypes.min(dt)
  raise ValueError(f"REDUCE supports ADD, MUL and MAX, got {op}")

