"""Rewrites of ops a renderer does not support natively into ones it does (transcendentals, MULACC, SUB, ...)."""
from __future__ import annotations
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import UPat, PatternMatcher

_x, _y, _z = UPat.var("x"), UPat.var("y"), UPat.var("z")
_generic = [
  (UPat(Ops.MULACC, src=(_x, _y, _z)), lambda x, y, z: x * y + z, Ops.MULACC),
  (UPat(Ops.SUB, src=(_x, _y)), lambda x, y: x + y.neg(), Ops.SUB),
  (UPat(Ops.CMPEQ, src=(_x, _y)), lambda x, y: x.ne(y).ne(True), Ops.CMPEQ),
  (UPat(Ops.FDIV, src=(_x, _y)), lambda x, y: x * y.alu(Ops.RECIP), Ops.FDIV),
]

def supported_ops(ren) -> set[Ops]:
  """The ALU ops `ren` renders natively (all of them when it does not say)."""
  return set(getattr(ren, "supported_ops", None) or GroupOp.ALU)

def decompositions(ren) -> PatternMatcher:
  """Rules that rewrite every ALU op `ren` lacks into ops it has."""
  sup = supported_ops(ren)
  pm = PatternMatcher([(p, f) for p, f, op in _generic if op not in sup], name="decompose")
  missing = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW, Ops.SQRT} - sup
  if missing:
    from tg_codegen.lower.transcendental import transcendental_rules
    pm = pm + transcendental_rules(sup)
  return pm
