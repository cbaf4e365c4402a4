"""Symbolic rules: constant folding, identities, div/mod folding using bounds, comparison folding, range simplification.

Every rule is named and listed in `symbolic_rules`; `python -m tg_uop.verify` proves each one with z3 over fixed-width
bit-vectors (wrap-around, C truncating division) or fuzzes it where no proof applies. Integer rules that could change a result
under overflow check the operands' bounds first, so they hold under wrap-around."""
from __future__ import annotations
import math
from typing import Callable
from tg_uop.alu import exec_alu
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import UPat, PatternMatcher
from tg_uop.uop import UOp

INTS = (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64, dtypes.index)
SIGNED = (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64, dtypes.index)
FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64, dtypes.fp8e4m3, dtypes.fp8e5m2)

x, y = UPat.var("x"), UPat.var("y")
xi, yi = UPat.var("x", INTS), UPat.var("y", INTS)
xs = UPat.var("x", SIGNED)
xf = UPat.var("x", FLOATS)
c1, c2 = UPat.cvar("c1", vec=False), UPat.cvar("c2", vec=False)

def _fits(dt: DType, *vals: int) -> bool:
  """All of `vals` are representable in `dt` (so arithmetic that produced them did not wrap)."""
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  return all(lo <= v <= hi for v in vals)

def _no_overflow_mul(x: UOp, c: int) -> bool: return _fits(x.dtype, x.vmin * c, x.vmax * c)

def _fold_alu(a: UOp) -> UOp | None:
  vals = tuple(s.arg for s in a.src)
  if a.op in (Ops.IDIV, Ops.MOD) and vals[1] == 0: return None  # integer division by zero is undefined: leave it to run
  if a.op in (Ops.SHL, Ops.SHR) and not 0 <= vals[1] < 8 * a.dtype.itemsize: return None  # shift out of range is undefined in C
  if a.op is Ops.THREEFRY: return None
  return a.const_like(exec_alu(a.op, a.dtype, vals))

def _fold_cast(c: UOp, x: UOp) -> UOp | None:
  v, dt = x.arg, c.dtype
  if dtypes.is_int(dt) and isinstance(v, float):
    if not math.isfinite(v) or not _fits(dt, math.trunc(v)): return None  # out-of-range float->int is undefined in C
    return UOp.const(dt, math.trunc(v))
  if dt.scalar() == dtypes.bool: return UOp.const(dt, bool(v))
  return UOp.const(dt, v)

def _fold_bounds(a: UOp) -> UOp | None:
  # an integer or bool expression whose bounds meet is that constant
  if a.op is Ops.CONST or a.dtype.count > 1 or not (dtypes.is_int(a.dtype) or a.dtype == dtypes.bool): return None
  if a.vmin == a.vmax: return a.const_like(a.vmin)
  return None

def _swap_const(a: UOp) -> UOp | None:
  # canonical form: the constant on the right
  return a.replace(src=(a.src[1], a.src[0])) if a.src[0].op is Ops.CONST and a.src[1].op is not Ops.CONST else None

def _div_exact_split(a: UOp, b: UOp, c: UOp) -> tuple[UOp, UOp] | None:
  """For (a + b) // c with b a multiple of c, all non-negative and nothing wrapping: (a, b // c)."""
  if c.arg <= 0 or (q := b.divides(c.arg)) is None: return None
  if a.vmin < 0 or q.vmin < 0 or not _fits(a.dtype, q.vmax * c.arg, a.vmax + q.vmax * c.arg): return None
  return a, q

def _lt_add(x: UOp, c1: UOp, c2: UOp) -> UOp | None:
  if not _fits(x.dtype, x.vmin + c1.arg, x.vmax + c1.arg, c2.arg - c1.arg): return None
  return x < x.const_like(c2.arg - c1.arg)

def _lt_mul(x: UOp, c1: UOp, c2: UOp) -> UOp | None:
  if c1.arg <= 0 or not _no_overflow_mul(x, c1.arg): return None
  return x < x.const_like(-(-c2.arg // c1.arg))  # x*c1 < c2  <=>  x < ceil(c2/c1)

def _lt_div(x: UOp, c1: UOp, c2: UOp) -> UOp | None:
  if c1.arg <= 0 or x.vmin < 0 or not _fits(x.dtype, c2.arg * c1.arg): return None
  return x < x.const_like(c2.arg * c1.arg)  # for x >= 0: x//c1 < c2  <=>  x < c2*c1

def _end_drop(e: UOp) -> UOp | None:
  # END(*values, *ranges): values are void (stores, inner ENDs); a range that folded to a constant no longer loops
  vals = tuple(s for s in e.src if s.dtype == dtypes.void)
  rngs = tuple(s for s in e.src if s.dtype != dtypes.void)
  keep = tuple(r for r in rngs if r.op is Ops.RANGE)
  if len(keep) == len(rngs): return None
  if keep: return e.replace(src=vals + keep)
  return vals[0] if len(vals) == 1 else UOp(Ops.SINK, dtypes.void, vals)

# (name, pattern, function). Names are what `python -m tg_uop.verify` reports.
symbolic_rules: list[tuple[str, UPat, Callable]] = [
  # ---- constant folding ----
  ("fold_alu", UPat(GroupOp.ALU, src=UPat(Ops.CONST), name="a"), _fold_alu),
  ("fold_cast", UPat(Ops.CAST, src=(UPat(Ops.CONST, name="x"),), name="c"), _fold_cast),
  ("fold_bounds", UPat(GroupOp.ALU | {Ops.RANGE, Ops.SPECIAL, Ops.DEFINE_VAR, Ops.CAST}, name="a"), _fold_bounds),
  ("const_right", UPat({Ops.ADD, Ops.MUL, Ops.AND, Ops.OR, Ops.XOR, Ops.MAX}, name="a"), _swap_const),
  # ---- identities ----
  ("add_zero", xi + UPat.const(None, 0), lambda x: x),
  ("float_add_negzero", xf + UPat.const(None, -0.0), lambda x: x),  # x + -0.0 is x for every float, -0.0 included
  ("mul_one", x * UPat.const(None, 1), lambda x: x if x.dtype != dtypes.bool else None),
  ("mul_zero", xi * UPat.const(None, 0), lambda x: x.const_like(0)),
  ("div_one", x // UPat.const(None, 1), lambda x: x),
  ("div_neg_one", xs // UPat.const(None, -1), lambda x: x * -1),
  ("fdiv_one", xf / UPat.const(None, 1.0), lambda x: x),
  ("mod_one", xi % UPat.const(None, 1), lambda x: x.const_like(0)),
  ("idempotent", UPat({Ops.AND, Ops.OR, Ops.MAX}, src=(x, x)), lambda x: x),
  ("xor_self", UPat(Ops.XOR, src=(xi, xi)), lambda x: x.const_like(0)),
  ("self_lt", UPat(Ops.CMPLT, src=(xi, xi)), lambda x: UOp.const(dtypes.bool, False)),
  ("self_ne", UPat(Ops.CMPNE, src=(xi, xi)), lambda x: UOp.const(dtypes.bool, False)),
  ("self_eq", UPat(Ops.CMPEQ, src=(xi, xi)), lambda x: UOp.const(dtypes.bool, True)),
  ("where_same", UPat.var("c").where(x, x), lambda c, x: x),
  ("where_const", UPat.cvar("c", vec=False).where(x, y), lambda c, x, y: x if c.arg else y),
  ("neg_neg", UPat(Ops.NEG, src=(UPat(Ops.NEG, src=(x,)),)), lambda x: x),
  ("cast_noop", UPat(Ops.CAST, name="c", src=(x,)), lambda c, x: x if c.dtype == x.dtype else None),
  ("bool_and_true", UPat.var("x", dtypes.bool) & UPat.const(dtypes.bool, True), lambda x: x),
  ("bool_and_false", UPat.var("x", dtypes.bool) & UPat.const(dtypes.bool, False), lambda x: x.const_like(False)),
  ("bool_or_false", UPat.var("x", dtypes.bool) | UPat.const(dtypes.bool, False), lambda x: x),
  ("bool_or_true", UPat.var("x", dtypes.bool) | UPat.const(dtypes.bool, True), lambda x: x.const_like(True)),
  ("bool_not_not", UPat.var("x", dtypes.bool).ne(UPat.const(dtypes.bool, True)).ne(UPat.const(dtypes.bool, True)), lambda x: x),
  ("sub_to_add", UPat(Ops.SUB, src=(xi, yi)), lambda x, y: x + y * -1),
  # ---- combining terms (modular arithmetic: exact under wrap-around) ----
  ("add_consts", (xi + c1) + c2, lambda x, c1, c2: x + (c1.arg + c2.arg)),
  ("mul_consts", (xi * c1) * c2, lambda x, c1, c2: x * (c1.arg * c2.arg)),
  ("add_self", xi + xi, lambda x: x * 2),
  ("add_mul_terms", (xi * c1) + (xi * c2), lambda x, c1, c2: x * (c1.arg + c2.arg)),
  ("add_mul_term", (xi * c1) + xi, lambda x, c1: x * (c1.arg + 1)),
  ("distribute_const", (xi + c1) * c2, lambda x, c1, c2: x * c2.arg + c1.arg * c2.arg),
  ("divmod_recombine", ((xi // c1) * c1) + (xi % c1), lambda x, c1: x if c1.arg != 0 else None),
  # ---- division and modulo using bounds (divisor a positive constant) ----
  ("mod_in_range", xi % c1, lambda x, c1: x if c1.arg > 0 and x.vmin >= 0 and x.vmax < c1.arg else None),
  ("mod_one_period", xi % c1, lambda x, c1: x - (x.vmin // c1.arg) * c1.arg
   if c1.arg > 0 and x.vmin >= 0 and x.vmin // c1.arg == x.vmax // c1.arg and x.vmin >= c1.arg else None),
  ("mul_div_cancel", (xi * c1) // c2, lambda x, c1, c2: x * (c1.arg // c2.arg)
   if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_overflow_mul(x, c1.arg) else None),
  ("mul_mod_zero", (xi * c1) % c2, lambda x, c1, c2: x.const_like(0)
   if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_overflow_mul(x, c1.arg) else None),
  ("div_split_multiple", (xi + yi) // c1, lambda x, y, c1: (s[0] // c1.arg) + s[1] if (s := _div_exact_split(x, y, c1)) else None),
  ("mod_split_multiple", (xi + yi) % c1, lambda x, y, c1: s[0] % c1.arg if (s := _div_exact_split(x, y, c1)) else None),
  ("div_div", (xi // c1) // c2, lambda x, c1, c2: x // (c1.arg * c2.arg)
   if c1.arg > 0 and c2.arg > 0 and _fits(x.dtype, c1.arg * c2.arg) else None),
  ("mod_mod", (xi % c1) % c2, lambda x, c1, c2: x % c2.arg if c1.arg > 0 and c2.arg > 0 and c1.arg % c2.arg == 0 else None),
  # ---- comparisons ----
  ("lt_add_const", (xi + c1) < c2, _lt_add),
  ("lt_mul_const", (xi * c1) < c2, _lt_mul),
  ("lt_div_const", (xi // c1) < c2, _lt_div),
  ("max_dominant", UPat(Ops.MAX, src=[xi, yi]), lambda x, y: x if x.vmin >= y.vmax else None),
  # ---- ranges ----
  ("end_drop_folded", UPat(Ops.END, name="e", allow_any_len=True, src=(UPat(),)), _end_drop),
]

symbolic = PatternMatcher([(p, f) for _, p, f in symbolic_rules], name="symbolic")

# ---- rendering of index expressions, for errors and debugging ----
_infix = {Ops.ADD: "+", Ops.MUL: "*", Ops.IDIV: "//", Ops.MOD: "%", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "==", Ops.AND: "&",
          Ops.OR: "|", Ops.XOR: "^", Ops.SUB: "-", Ops.FDIV: "/", Ops.SHL: "<<", Ops.SHR: ">>"}

def render_expr(u: UOp) -> str:
  """An infix string for an index expression, e.g. `((gidx0*4)+ridx1)`."""
  out: dict[UOp, str] = {}
  for n in u.toposort():
    s = [out[x] for x in n.src]
    if n.op is Ops.CONST: out[n] = repr(n.arg)
    elif n.op is Ops.DEFINE_VAR: out[n] = n.arg[0]
    elif n.op is Ops.RANGE: out[n] = f"r{n.arg}" if not isinstance(n.arg, str) else n.arg
    elif n.op is Ops.SPECIAL: out[n] = n.arg
    elif n.op in _infix: out[n] = f"({s[0]}{_infix[n.op]}{s[1]})"
    elif n.op is Ops.MAX: out[n] = f"max({s[0]}, {s[1]})"
    elif n.op is Ops.WHERE: out[n] = f"({s[1]} if {s[0]} else {s[2]})"
    elif n.op is Ops.NEG: out[n] = f"(-{s[0]})"
    elif n.op is Ops.CAST: out[n] = f"{n.dtype.scalar().name}({s[0]})"
    else: out[n] = f"{n.op.name.lower()}({', '.join(s)})"
  return out[u]
