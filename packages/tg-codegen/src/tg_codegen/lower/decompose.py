"""Rewrites of ops a renderer does not support natively into ones it does (transcendentals, MULACC, SUB, ...)."""
from __future__ import annotations
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import UPat, PatternMatcher
from tg_uop.uop import UOp

def threefry2x32(x: UOp, key: UOp) -> UOp:
  """THREEFRY (threefry2x32, 20 rounds) on uint64 `x` and `key` in 32-bit ops, bit-exact with tg_uop.alu's reference."""
  n = x.dtype.count  # vectors work lane-wise
  u32, u64 = dtypes.uint32.vec(n), dtypes.uint64.vec(n)
  lo = lambda v: v.cast(u32)  # noqa: E731  (uint64 -> uint32 keeps the low half)
  hi = lambda v: (v >> v.const_like(32)).cast(u32)  # noqa: E731
  ks = [lo(key), hi(key)]
  ks.append(ks[0] ^ ks[1] ^ UOp.const(u32, 0x1BD11BDA))
  x0, x1 = lo(x) + ks[0], hi(x) + ks[1]
  rot = [13, 15, 26, 6, 17, 29, 16, 24]
  for i in range(5):
    for r in rot[(i % 2) * 4:(i % 2) * 4 + 4]:
      x0 = x0 + x1
      x1 = (x1 << UOp.const(u32, r)) | (x1 >> UOp.const(u32, 32 - r))
      x1 = x1 ^ x0
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + UOp.const(u32, i + 1)
  return (x1.cast(u64) << UOp.const(u64, 32)) | x0.cast(u64)

_x, _y, _z = UPat.var("x"), UPat.var("y"), UPat.var("z")
_generic = [
  (UPat(Ops.MULACC, src=(_x, _y, _z)), lambda x, y, z: x * y + z, Ops.MULACC),
  (UPat(Ops.SUB, src=(_x, _y)), lambda x, y: x + y.neg(), Ops.SUB),
  (UPat(Ops.CMPEQ, src=(_x, _y)), lambda x, y: x.ne(y).ne(True), Ops.CMPEQ),
  (UPat(Ops.FDIV, src=(_x, _y)), lambda x, y: x * y.alu(Ops.RECIP), Ops.FDIV),
  (UPat(Ops.THREEFRY, dtype=(dtypes.uint64,), src=(_x, _y)), lambda x, y: threefry2x32(x, y), Ops.THREEFRY),
]

def supported_ops(ren) -> set[Ops]:
  """The ALU ops `ren` renders natively (all of them when it does not say)."""
  return set(getattr(ren, "supported_ops", None) or GroupOp.ALU)

def decompositions(ren) -> PatternMatcher:
  """Rules that rewrite every ALU op `ren` lacks into ops it has."""
  return decompositions_for(frozenset(supported_ops(ren)))

def decompositions_for(sup: frozenset) -> PatternMatcher:
  """Rules that rewrite every ALU op outside `sup` into ops in it."""
  pm = PatternMatcher([(p, f) for p, f, op in _generic if op not in sup], name="decompose")
  missing = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW, Ops.SQRT} - sup
  if missing:
    from tg_codegen.lower.transcendental import transcendental_rules
    pm = pm + transcendental_rules(sup)
  return pm
