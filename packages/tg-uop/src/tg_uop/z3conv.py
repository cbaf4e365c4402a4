"""UOp graphs as z3 terms: fixed-width bit-vectors for ints (wrap-around, C truncating division), IEEE floats with
round-to-nearest-even, Booleans. Used by `python -m tg_uop.verify`; imports z3, so the core never imports this module."""
from __future__ import annotations
import math
from typing import Any
import z3
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp

class Unmodeled(Exception):
  """The graph holds an op or dtype this translation has no exact z3 model for (transcendentals, fp8, vectors...)."""
  def __init__(self, msg: str, kind: str = "op"):
    super().__init__(msg)
    self.kind = kind  # "dtype": only the format is missing (fp8), the ops themselves are exact

# (exponent bits, significand bits including the hidden one) of the float formats z3 models exactly
FP_SORTS = {dtypes.float16: (5, 11), dtypes.bfloat16: (8, 8), dtypes.float32: (8, 24), dtypes.float64: (11, 53)}
RNE, RTZ = z3.RNE(), z3.RTZ()

def bits(dt: DType) -> int: return 8 * dt.scalar().itemsize
def is_bool(dt: DType) -> bool: return dt.scalar() == dtypes.bool
def is_int(dt: DType) -> bool: return dtypes.is_int(dt) and not is_bool(dt)
def is_signed(dt: DType) -> bool: return is_int(dt) and not dtypes.is_unsigned(dt)

def _sort(dt: DType) -> z3.SortRef:
  if dt.count != 1: raise Unmodeled(f"vector dtype {dt}")
  if is_bool(dt): return z3.BoolSort()
  if is_int(dt): return z3.BitVecSort(bits(dt))
  if dt in FP_SORTS: return z3.FPSort(*FP_SORTS[dt])
  raise Unmodeled(f"dtype {dt.name}", "dtype")

def const(dt: DType, v: Any) -> z3.ExprRef:
  """The z3 value of a constant `v` of dtype `dt`."""
  srt = _sort(dt)
  if is_bool(dt): return z3.BoolVal(bool(v))
  if is_int(dt): return z3.BitVecVal(int(v) % (1 << bits(dt)), bits(dt))
  v = float(v)
  if math.isnan(v): return z3.fpNaN(srt)
  if math.isinf(v): return z3.fpPlusInfinity(srt) if v > 0 else z3.fpMinusInfinity(srt)
  if v == 0: return z3.fpMinusZero(srt) if math.copysign(1.0, v) < 0 else z3.fpPlusZero(srt)
  return z3.FPVal(v, srt)

def _lt(dt: DType, a, b):
  if is_bool(dt): return z3.And(z3.Not(a), b)
  if is_signed(dt): return a < b
  if is_int(dt): return z3.ULT(a, b)
  return z3.fpLT(a, b)
def _le(dt: DType, a, b): return a <= b if is_signed(dt) else z3.ULE(a, b)

def _cast(v, src: DType, dst: DType) -> tuple[z3.ExprRef, z3.BoolRef]:
  """(value, defined) of C's conversion from `src` to `dst`."""
  if src == dst: return v, z3.BoolVal(True)
  if is_bool(dst):
    if is_int(src): return v != z3.BitVecVal(0, bits(src)), z3.BoolVal(True)
    return z3.Not(z3.fpIsZero(v)), z3.BoolVal(True)  # nan converts to true, as C's `x != 0`
  if is_bool(src): return z3.If(v, const(dst, 1), const(dst, 0)), z3.BoolVal(True)
  if is_int(src) and is_int(dst):
    sb, db = bits(src), bits(dst)
    if db == sb: return v, z3.BoolVal(True)
    if db < sb: return z3.Extract(db - 1, 0, v), z3.BoolVal(True)
    return (z3.SignExt if is_signed(src) else z3.ZeroExt)(db - sb, v), z3.BoolVal(True)
  if is_int(src):
    return (z3.fpSignedToFP if is_signed(src) else z3.fpUnsignedToFP)(RNE, v, _sort(dst)), z3.BoolVal(True)
  if not is_int(dst): return z3.fpFPToFP(RNE, v, _sort(dst)), z3.BoolVal(True)
  # float -> int: defined only where the truncated value fits (nan and inf don't)
  t, srt = z3.fpRoundToIntegral(RTZ, v), _sort(src)
  lo, hi = (-(1 << (bits(dst) - 1)), 1 << (bits(dst) - 1)) if is_signed(dst) else (0, 1 << bits(dst))
  ok = z3.And(z3.Not(z3.fpIsNaN(v)), z3.Not(z3.fpIsInf(v)), z3.fpGEQ(t, z3.FPVal(lo, srt)), z3.fpLT(t, z3.FPVal(hi, srt)))
  return (z3.fpToSBV if is_signed(dst) else z3.fpToUBV)(RTZ, v, z3.BitVecSort(bits(dst))), ok

def _alu(u: UOp, s: list) -> tuple[z3.ExprRef, z3.BoolRef]:
  """(value, defined) of ALU op `u` on z3 source values `s`."""
  op, dt = u.op, u.src[-1].dtype if u.op is Ops.WHERE else u.src[0].dtype
  T = z3.BoolVal(True)
  if op is Ops.WHERE: return z3.If(s[0], s[1], s[2]), T
  if op is Ops.CMPNE: return (z3.Not(z3.fpEQ(s[0], s[1])) if not (is_int(dt) or is_bool(dt)) else s[0] != s[1]), T
  if op is Ops.CMPEQ: return (z3.fpEQ(s[0], s[1]) if not (is_int(dt) or is_bool(dt)) else s[0] == s[1]), T
  if op is Ops.CMPLT: return _lt(dt, s[0], s[1]), T
  if is_bool(dt):
    # bools as exec_alu computes them: bool(x + y), bool(x * y), max
    if op in (Ops.AND, Ops.MUL): return z3.And(s[0], s[1]), T
    if op in (Ops.OR, Ops.ADD, Ops.MAX): return z3.Or(s[0], s[1]), T
    if op is Ops.XOR: return z3.Xor(s[0], s[1]), T
    raise Unmodeled(f"{op.name} on bool")
  if is_int(dt):
    n, sg = bits(dt), is_signed(dt)
    if op is Ops.ADD: return s[0] + s[1], T
    if op is Ops.SUB: return s[0] - s[1], T
    if op is Ops.MUL: return s[0] * s[1], T
    if op is Ops.NEG: return -s[0], T
    if op is Ops.MULACC: return s[0] * s[1] + s[2], T
    if op in (Ops.IDIV, Ops.MOD):
      # division by zero and INT_MIN / -1 are undefined in C
      ok = s[1] != 0
      if sg: ok = z3.And(ok, z3.Not(z3.And(s[0] == z3.BitVecVal(1 << (n - 1), n), s[1] == z3.BitVecVal(-1 % (1 << n), n))))
      if op is Ops.IDIV: return (s[0] / s[1] if sg else z3.UDiv(s[0], s[1])), ok  # z3py `/` is bvsdiv: truncating
      return (z3.SRem(s[0], s[1]) if sg else z3.URem(s[0], s[1])), ok  # SRem: sign of the dividend, as C's %
    if op in (Ops.SHL, Ops.SHR):
      amt = _cast(s[1], u.src[1].dtype, dt)[0] if u.src[1].dtype != dt else s[1]
      ok = z3.ULT(s[1], z3.BitVecVal(n, bits(u.src[1].dtype))) if is_int(u.src[1].dtype) else T
      if op is Ops.SHL: return s[0] << amt, ok
      return (s[0] >> amt if sg else z3.LShR(s[0], amt)), ok
    if op is Ops.AND: return s[0] & s[1], T
    if op is Ops.OR: return s[0] | s[1], T
    if op is Ops.XOR: return s[0] ^ s[1], T
    if op is Ops.MAX: return z3.If(_lt(dt, s[0], s[1]), s[1], s[0]), T
    raise Unmodeled(f"{op.name} on {dt.name}")
  # floats, IEEE with round-to-nearest-even; the exact ops only (transcendentals have no exact model)
  if op is Ops.ADD: return z3.fpAdd(RNE, s[0], s[1]), T
  if op is Ops.SUB: return z3.fpSub(RNE, s[0], s[1]), T
  if op is Ops.MUL: return z3.fpMul(RNE, s[0], s[1]), T
  if op is Ops.FDIV: return z3.fpDiv(RNE, s[0], s[1]), T
  if op is Ops.NEG: return z3.fpNeg(s[0]), T
  if op is Ops.SQRT: return z3.fpSqrt(RNE, s[0]), T
  if op is Ops.RECIP: return z3.fpDiv(RNE, const(dt, 1.0), s[0]), T
  if op is Ops.TRUNC: return z3.fpRoundToIntegral(RTZ, s[0]), T
  if op is Ops.MAX:
    # nan propagates; otherwise Python's max(x, y): y only where y > x (so max(0.0, -0.0) is 0.0 and max(-0.0, 0.0) is -0.0)
    return z3.If(z3.Or(z3.fpIsNaN(s[0]), z3.fpIsNaN(s[1])), z3.fpNaN(_sort(dt)), z3.If(z3.fpGT(s[1], s[0]), s[1], s[0])), T
  raise Unmodeled(f"{op.name} on {dt.name}")

class Z3Graph:
  """z3 terms for the UOps of one or more graphs, sharing variables; records each variable's domain and each node's definedness."""
  def __init__(self):
    self.vals: dict[UOp, z3.ExprRef] = {}
    self.ok: dict[UOp, z3.BoolRef] = {}
    self.domain: list[z3.BoolRef] = []
    self.vars: dict[UOp, z3.ExprRef] = {}

  def _var(self, u: UOp, name: str) -> z3.ExprRef:
    v = z3.Const(f"{name}#{len(self.vars)}", _sort(u.dtype))
    self.vars[u] = v
    return v

  def value(self, root: UOp) -> z3.ExprRef:
    """The z3 term of `root` (raises `Unmodeled` for what has no exact model)."""
    for u in root.toposort():
      if u in self.vals: continue
      s = [self.vals[x] for x in u.src]
      ok: z3.BoolRef = z3.BoolVal(True)
      if u.op is Ops.CONST: v = const(u.dtype, u.arg)
      elif u.op is Ops.DEFINE_VAR:
        v = self._var(u, u.arg[0])
        if is_int(u.dtype): self.domain += [_le(u.dtype, const(u.dtype, u.arg[1]), v), _le(u.dtype, v, const(u.dtype, u.arg[2]))]
      elif u.op in (Ops.RANGE, Ops.SPECIAL):
        if not is_int(u.dtype) or u.src[0].dtype != u.dtype: raise Unmodeled(f"{u.op.name} of dtype {u.dtype}")
        v = self._var(u, u.arg if isinstance(u.arg, str) else f"r{u.arg}")
        self.domain += [_le(u.dtype, const(u.dtype, 0), v), _lt(u.dtype, v, s[0])]
      elif u.op is Ops.CAST: v, ok = _cast(s[0], u.src[0].dtype, u.dtype)
      elif u.op is Ops.END: v = s[0]  # an END passes on the value it closes
      elif u.op in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.NEG, Ops.MULACC, Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR,
                    Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.WHERE, Ops.FDIV, Ops.SQRT, Ops.RECIP, Ops.TRUNC):
        if u.dtype.count != 1 or any(x.dtype.count != 1 for x in u.src): raise Unmodeled("vector ALU")
        v, ok = _alu(u, s)
      else: raise Unmodeled(f"op {u.op.name}")
      self.vals[u], self.ok[u] = v, ok
    return self.vals[root]

  def defined(self, root: UOp) -> z3.BoolRef:
    """Where `root` has no undefined behaviour (no division by zero, INT_MIN / -1, shift out of range, bad float->int)."""
    return z3.And(*[self.ok[u] for u in root.toposort() if not z3.is_true(self.ok[u])])

  def model_values(self, m: z3.ModelRef) -> dict[str, Any]:
    """Python values of the variables in model `m`, keyed by their rendered names."""
    return {(u.arg[0] if u.op is Ops.DEFINE_VAR else str(v).split("#")[0]): py_value(m, v, u.dtype) for u, v in self.vars.items()}

def py_value(m: z3.ModelRef, v: z3.ExprRef, dt: DType) -> Any:
  """The Python value of term `v` of dtype `dt` in model `m` (floats as z3 prints them)."""
  r = m.eval(v, model_completion=True)
  if is_bool(dt): return z3.is_true(r)
  if is_int(dt):
    x = r.as_long()
    return x - (1 << bits(dt)) if is_signed(dt) and x >= 1 << (bits(dt) - 1) else x
  if z3.is_fp_value(r) and r.isNaN(): return "nan"
  return str(r)

def check_equal(lhs: UOp, rhs: UOp, timeout_ms: int = 2000) -> tuple[str, dict[str, Any] | str | None]:
  """Is `lhs == rhs` for every value of the variables where `lhs` is defined? ("proven", None), ("refuted", model),
  or ("unknown", why). The model holds "values" (of the variables), "before", "after", "after_defined".
  Raises `Unmodeled` where either side has no exact model. Floats compare bitwise, any nan equal to any nan."""
  g = Z3Graph()
  lv, rv = g.value(lhs), g.value(rhs)
  claim = z3.And(g.defined(rhs), lv == rv)
  query = z3.And(*g.domain, g.defined(lhs), z3.Not(claim))
  simp = z3.simplify(query)
  if z3.is_false(simp): return "proven", None
  s = z3.SolverFor("QF_FPBV") if any(not (is_int(u.dtype) or is_bool(u.dtype)) for u in g.vals) else z3.SolverFor("QF_BV")
  s.set("timeout", timeout_ms)
  s.add(query)
  r = s.check()
  if r == z3.unsat: return "proven", None
  if r == z3.sat:
    m = s.model()
    vdt = lhs.src[0].dtype if lhs.op is Ops.END else lhs.dtype
    return "refuted", {"values": g.model_values(m), "before": py_value(m, lv, vdt), "after": py_value(m, rv, vdt),
                       "after_defined": z3.is_true(m.eval(g.defined(rhs), model_completion=True))}
  return "unknown", s.reason_unknown()
