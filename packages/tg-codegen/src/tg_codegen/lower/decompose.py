"""Rewrites of ops a renderer does not support natively into ones it does (transcendentals, MULACC, SUB, ...)."""
from __future__ import annotations
from tg_uop.dtype import DType, dtypes
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
  """The ALU ops `ren` renders natively on at least one dtype (all of them when it does not say)."""
  return set(getattr(ren, "supported_ops", None) or GroupOp.ALU)

def native_dtypes(ren) -> frozenset[tuple[Ops, frozenset[DType]]]:
  """(op, scalar dtypes) for each op `ren` renders natively on those dtypes only (`Renderer.native_dtypes`), as a hashable set so
  the rules built from it can be cached."""
  return frozenset((op, frozenset(dts)) for op, dts in (getattr(ren, "native_dtypes", None) or {}).items())

def decompositions(ren) -> PatternMatcher:
  """Rules that rewrite every ALU op `ren` lacks, on the dtypes it lacks it for, into ops it has."""
  return decompositions_for(frozenset(supported_ops(ren)), native_dtypes(ren))

def _unless_native(f, dts: frozenset[DType]):
  # a generic rule's first source is the operand whose dtype `Renderer.supports` is asked about (`alu_dtype`)
  return lambda x, **kw: None if x.dtype.scalar() in dts else f(x=x, **kw)

def decompositions_for(sup: frozenset, limits: frozenset[tuple[Ops, frozenset[DType]]] = frozenset()) -> PatternMatcher:
  """Rules that rewrite every ALU op outside `sup`, and every op of `limits` on a dtype outside its native dtypes, into ops in `sup`."""
  from tg_codegen.lower.transcendental import TRANSCENDENTAL, transcendental_rules
  only = dict(limits)
  if bad := set(only) - {op for _, _, op in _generic} - set(TRANSCENDENTAL):
    raise ValueError(f"native_dtypes limits {', '.join(sorted(o.name for o in bad))} to some dtypes, but the lowering has no "
                     "decomposition for the others: render them natively on every dtype")
  rules = [(p, f) for p, f, op in _generic if op not in sup]
  rules += [(p, _unless_native(f, only[op])) for p, f, op in _generic if op in sup and op in only]
  pm = PatternMatcher(rules, name="decompose")
  if set(TRANSCENDENTAL) - sup or set(TRANSCENDENTAL) & set(only): pm = pm + transcendental_rules(sup, only)
  return pm
