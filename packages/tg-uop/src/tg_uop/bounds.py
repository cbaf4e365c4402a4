"""`min_max`: sound lower/upper bounds of a UOp's value, used by the symbolic rules.

Integer bounds are computed exactly in Python and fall back to the dtype's full range wherever the result could wrap around,
so a rule that trusts them stays correct under fixed-width arithmetic."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING
from tg_uop.dtype import dtypes
from tg_uop.helpers import cdiv, cmod
from tg_uop.ops import Ops
if TYPE_CHECKING: from tg_uop.uop import UOp

def _full(u: UOp) -> tuple: return dtypes.min(u.dtype), dtypes.max(u.dtype)

def _fit(u: UOp, lo, hi) -> tuple:
  # where the exact result leaves the dtype's range it may wrap: then nothing is known
  dmin, dmax = _full(u)
  return (lo, hi) if dmin <= lo and hi <= dmax else (dmin, dmax)

def min_max(u: UOp) -> tuple:
  """(vmin, vmax) of `u`, inclusive. Booleans use False/True, floats may be ±inf."""
  if u.dtype.count > 1 and u.op is not Ops.VECTORIZE: return _full(u)
  if u.op is Ops.CONST: return u.arg, u.arg
  if u.op is Ops.VCONST: return min(u.arg), max(u.arg)
  if u.op is Ops.VECTORIZE: return min(s.vmin for s in u.src), max(s.vmax for s in u.src)
  if u.op is Ops.GEP and len(u.arg) == 1 and u.src[0].op is Ops.VECTORIZE: return u.src[0].src[u.arg[0]]._min_max
  if u.op is Ops.DEFINE_VAR: return u.arg[1], u.arg[2]
  if u.op is Ops.BIND: return u.src[0]._min_max
  if u.op in (Ops.RANGE, Ops.SPECIAL):
    return (0, u.src[0].vmax - 1) if dtypes.is_int(u.src[0].dtype) and u.src[0].vmax >= 1 else _full(u)
  if not (dtypes.is_int(u.dtype) or u.dtype.scalar() == dtypes.bool) or not u.src: return _full(u)
  if any(not (dtypes.is_int(s.dtype) or s.dtype.scalar() == dtypes.bool) for s in u.src if u.op is not Ops.CAST):
    if u.op is Ops.CMPLT or u.op is Ops.CMPNE or u.op is Ops.CMPEQ: return False, True
    if u.op is not Ops.WHERE: return _full(u)
  s0 = u.src[0]
  (a0, a1) = s0._min_max
  if len(u.src) >= 2: b0, b1 = u.src[1]._min_max
  if u.op is Ops.ADD: return _fit(u, a0 + b0, a1 + b1)
  if u.op is Ops.SUB: return _fit(u, a0 - b1, a1 - b0)
  if u.op is Ops.NEG: return _fit(u, -a1, -a0)
  if u.op is Ops.MUL:
    vals = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
    return _fit(u, min(vals), max(vals))
  if u.op is Ops.MAX: return max(a0, b0), max(a1, b1)
  if u.op is Ops.IDIV:
    if b0 == b1 and b0 != 0:  # division by a known constant: truncation is monotonic in the dividend
      vals = (cdiv(a0, b0), cdiv(a1, b0))
      return _fit(u, min(vals), max(vals))
    if b0 > 0:  # positive divisor range: the quotient lies between the extremes of the corners
      vals = (cdiv(a0, b0), cdiv(a0, b1), cdiv(a1, b0), cdiv(a1, b1))
      return _fit(u, min(min(vals), 0), max(max(vals), 0))
    return _full(u)
  if u.op is Ops.MOD:
    if b0 > 0:
      if a0 >= 0 and a1 < b0: return a0, a1  # already in range: x % c == x
      if a0 >= 0 and b0 == b1 and a0 // b0 == a1 // b0: return cmod(a0, b0), cmod(a1, b0)
      hi = b1 - 1
      return (0 if a0 >= 0 else max(-hi, a0)), (min(hi, a1) if a1 >= 0 else 0)
    return _full(u)
  if u.op is Ops.AND and dtypes.is_int(u.dtype):
    if a0 >= 0 and b0 >= 0: return 0, min(a1, b1)
    return _full(u)
  if u.op is Ops.AND: return a0 and b0, a1 and b1
  if u.op in (Ops.XOR, Ops.OR) and dtypes.is_int(u.dtype) and a0 >= 0 and b0 >= 0:  # no bit above the larger's highest bit
    return 0, (1 << max(int(a1), int(b1)).bit_length()) - 1
  if u.op is Ops.OR and u.dtype.scalar() == dtypes.bool: return a0 or b0, a1 or b1
  if u.op is Ops.SHL and b0 == b1 and 0 <= b0 < 8 * u.dtype.itemsize: return _fit(u, a0 << b0, a1 << b0)
  if u.op is Ops.SHR and b0 == b1 and 0 <= b0 < 8 * u.dtype.itemsize and a0 >= 0: return a0 >> b0, a1 >> b0
  if u.op is Ops.CMPLT: return (a1 < b0), (a0 < b1)
  if u.op is Ops.CMPNE: return (a1 < b0 or b1 < a0), not (a0 == a1 == b0 == b1)
  if u.op is Ops.CMPEQ: return (a0 == a1 == b0 == b1), not (a1 < b0 or b1 < a0)
  if u.op is Ops.WHERE:
    (c0, c1), (x0, x1), (y0, y1) = u.src[0]._min_max, u.src[1]._min_max, u.src[2]._min_max
    if c0 is True or c0 == 1: return x0, x1
    if c1 is False or c1 == 0: return y0, y1
    return min(x0, y0), max(x1, y1)
  if u.op is Ops.CAST and (dtypes.is_int(s0.dtype) or s0.dtype.scalar() == dtypes.bool):
    lo, hi = int(a0), int(a1)
    return (bool(lo), bool(hi)) if u.dtype.scalar() == dtypes.bool and lo >= 0 else _fit(u, lo, hi)
  if u.op is Ops.CAST and dtypes.is_float(s0.dtype) and math.isfinite(a0) and math.isfinite(a1):
    return _fit(u, math.trunc(a0), math.trunc(a1))
  return _full(u)
