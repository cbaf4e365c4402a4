"""Lowering the TC opt: the REDUCE over a tensor core's K becomes WMMAs, and the stores over its M and N one per result element.

After `rebuild`, the kernel's REDUCE sums `a * b` over ranges that include K (16 values), `a` uses M (16) and `b` uses N (8); a
range of 32 lanes (`info.tc`'s last) stands for the warp. Each lane gathers its fragments by the layout of
`tg_codegen.tensor_cores`: a = 8 values of `a` at (M, K) = a_elem(lane, i), b = 4 values of `b` at (K, N) = b_elem(lane, i). The
REDUCE keeps its other ranges and sums `WMMA(a, b, 0)` (float.vec(4)); `lower_reduces` folds the accumulator into the WMMA's C.
Every END over M and N stores the 4 elements the lane holds: element i at (M, N) = c_elem(lane, i)."""
from __future__ import annotations
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.kernel import KernelInfo, mma_operands
from tg_codegen.tensor_cores import ldmatrix_row

def _narrow(x: UOp, dt) -> UOp:
  # the factor in the tensor core's input dtype: mma_operands already dropped widening casts
  return x if x.dtype == dt else x.cast(dt)

def _fragment(x: UOp, k: UOp, subs: list[dict]) -> UOp:
  """The values of `x` at each element's (row, col): elements 2j and 2j+1 of every fragment are neighbours along K, so when `x` is a
  load running along memory with K they come from one 2-wide load (the renderer makes it one 32-bit access where aligned)."""
  from tg_codegen.lower.lowerer import _unit_stride
  if x.op is Ops.LOAD and x.src[0].op is Ops.INDEX and len(x.src[0].src) == 2 and all(s.dtype == dtypes.void for s in x.src[1:]) and \
     _unit_stride(x.src[0].src[1], k):  # (a load from a staged tile carries the BARRIER it follows)
    pairs = [UOp(Ops.LOAD, x.dtype.vec(2), (x.src[0].substitute(subs[j]), *x.src[1:])) for j in range(0, len(subs), 2)]
    return UOp.vectorize(*(p.gep(i) for p in pairs for i in range(2)))
  return UOp.vectorize(*(x.substitute(s) for s in subs))

def _ldmatrix(x: UOp, operand: str, rows: UOp, k: UOp, lane: UOp, ren) -> UOp | None:
  """The fragment of `x` as one ldmatrix (`tg_codegen.tensor_cores`), where `x` reads a staged tile in shared memory whose K or
  `rows` dimension (M for A, N for B) is contiguous and whose 8-element rows are 16-byte aligned; None where it can't be."""
  from tg_codegen.lower.stage import range_stride
  if not getattr(ren, "ldmatrix", False) or x.op is not Ops.LOAD or x.dtype.itemsize != 2 or x.src[0].op is not Ops.INDEX: return None
  buf, idx = x.src[0].src[0], x.src[0].src[1]
  if buf.op is not Ops.DEFINE_LOCAL or len(x.src[0].src) != 2 or not all(s.dtype == dtypes.void for s in x.src[1:]): return None
  rngs = [u for u in idx.toposort() if u.op is Ops.RANGE]
  sk, sr = range_stride(idx, k, rngs), range_stride(idx, rows, rngs)
  if sk == 1 and sr is not None and sr % 8 == 0: contiguous = "k"
  elif sr == 1 and sk is not None and sk % 8 == 0: contiguous = "m" if operand == "a" else "n"
  else: return None
  if idx.substitute({k: k.const_like(0), rows: rows.const_like(0)}).simplify().const_factor() % 8: return None  # rows not 16-byte aligned
  r, c = ldmatrix_row(operand, contiguous, lane)
  at = {rng: v if isinstance(v, UOp) else rng.const_like(v) for rng, v in zip((rows, k) if operand == "a" else (k, rows), (r, c))}
  nmat = 4 if operand == "a" else 2
  return UOp(Ops.LOAD, x.dtype.vec(2 * nmat), (x.src[0].substitute(at), *x.src[1:]), ("ldmatrix", nmat, contiguous != "k"))

def apply_tc(sink: UOp, info: KernelInfo, ren) -> UOp:
  """`sink` (after `rebuild`) with its REDUCE over the tensor core's K turned into WMMAs and its M/N stores per result element."""
  sel, m, n, k, lane = info.tc
  tc = ren.tensor_cores[sel]
  red = next(u for u in sink.toposort() if u.op is Ops.REDUCE and k in u.src[1:])
  a, b = mma_operands(red)
  if m not in a.toposort(): a, b = b, a
  a, b = _narrow(a, tc.dtype_in), _narrow(b, tc.dtype_in)
  if (a_frag := _ldmatrix(a, "a", m, k, lane, ren)) is None:
    a_frag = _fragment(a, k, [dict(zip((m, k), tc.a_elem(lane, i))) for i in range(tc.elements_per_thread[0])])
  if (b_frag := _ldmatrix(b, "b", n, k, lane, ren)) is None:
    b_frag = _fragment(b, k, [dict(zip((k, n), tc.b_elem(lane, i))) for i in range(tc.elements_per_thread[1])])
  nc = tc.elements_per_thread[2]
  out_dt = tc.dtype_out.vec(nc)
  w = UOp(Ops.WMMA, out_dt, (a_frag, b_frag, UOp.const(out_dt, 0.0)), tc.wmma_arg(ren.device))
  rest = tuple(r for r in red.src[1:] if r is not k)
  res = UOp(Ops.REDUCE, out_dt, (w, *rest), Ops.ADD) if rest else w
  if red.dtype != tc.dtype_out: res = res.cast(red.dtype.vec(nc))
  new: dict[UOp, UOp] = {}
  for u in sink.toposort():
    if u is red:
      new[u] = res
      continue
    src = [new[s] for s in u.src]
    if u.op is Ops.END and m in u.src and n in u.src:
      vals = [v for v in u.src if v.op is not Ops.RANGE]
      # the originals (not `src`): substituting M and N must not reach inside the new REDUCE, which no longer uses them
      xs = [v.substitute({red: res.gep(i)}).substitute(dict(zip((m, n), tc.c_elem(lane, i)))) for i in range(nc) for v in vals]
      rr = [r for r in u.src if r.op is Ops.RANGE and r is not m and r is not n]
      new[u] = UOp(Ops.END, dtypes.void, (*xs, *rr)) if rr else UOp(Ops.SINK, dtypes.void, tuple(xs))
    else: new[u] = u if all(x is y for x, y in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
  out = new[sink]
  if any(x in out.toposort() for x in (m, n, k)):
    raise ValueError(f"TC lowering of {info.name}: the tensor core's M/N/K ranges are still used outside the reduction and its stores")
  return UOp(Ops.SINK, dtypes.void, tuple(x for s in out.src for x in (s.src if s.op is Ops.SINK else (s,))), out.arg)

def accumulate(acc: UOp, x: UOp) -> UOp:
  """`acc + x` where `x` is a sum of `WMMA(a, b, 0)`s: each one takes the running sum as its C (the tensor core adds it for free)."""
  if x.op is Ops.WMMA and all(c.op is Ops.CONST and c.arg == 0 for c in (x.src[2].src if x.src[2].op is Ops.VECTORIZE else (x.src[2],))):
    return x.replace(src=(x.src[0], x.src[1], acc, *x.src[3:]))  # (a wgmma's 4th source orders it after its tiles' copies)
  if x.op is Ops.ADD and any(s.op in (Ops.WMMA, Ops.ADD) for s in x.src): return accumulate(accumulate(acc, x.src[0]), x.src[1])
  return acc + x
