"""exec_alu: the reference semantics of every ALU op, checked against numpy (wrapping ints, IEEE float32/float16) and C rules."""
import math
import numpy as np
import pytest
from tg_uop.alu import exec_alu, python_alu, bitcast_value
from tg_uop.dtype import dtypes, to_np_name
from tg_uop.ops import Ops, GroupOp

INTS = [dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64]
FLOATS = [dtypes.float16, dtypes.float32, dtypes.float64]

def _same(a, b) -> bool:
  if isinstance(a, float) and isinstance(b, float) and (math.isnan(a) or math.isnan(b)): return math.isnan(a) and math.isnan(b)
  if isinstance(a, float) and isinstance(b, float) and a == 0 and b == 0: return math.copysign(1, a) == math.copysign(1, b)
  return a == b and type(a) is type(b)

def _int_values(dt, n=60, seed=0):
  rng = np.random.default_rng(seed)
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  edge = [lo, hi, 0, 1, -1, 2, -2, 7, -7, lo + 1, hi - 1, hi // 2, lo // 2]
  edge = [v for v in edge if lo <= v <= hi]
  rand = [int(v) for v in rng.integers(lo, hi, n, dtype=np.dtype(to_np_name(dt)), endpoint=True)]
  return edge + rand

def _float_values(dt, n=60, seed=0):
  rng = np.random.default_rng(seed)
  edge = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, math.inf, -math.inf, math.nan, 1e-3, 100.0, -100.0, 1e30, -1e30, 1e-40, 65504.0]
  rand = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).tolist()
  with np.errstate(over="ignore"): return [float(np.array(v).astype(to_np_name(dt))) for v in edge + rand]  # exact values of the dtype

def _np_binary(op, a, b, dt):
  na, nb = np.array(a, dtype=to_np_name(dt)), np.array(b, dtype=to_np_name(dt))
  with np.errstate(all="ignore"):
    f = {Ops.ADD: np.add, Ops.SUB: np.subtract, Ops.MUL: np.multiply, Ops.MAX: np.maximum, Ops.AND: np.bitwise_and, Ops.OR: np.bitwise_or,
         Ops.XOR: np.bitwise_xor, Ops.CMPLT: np.less, Ops.CMPNE: np.not_equal, Ops.CMPEQ: np.equal, Ops.FDIV: np.true_divide}[op]
    r = f(na, nb)
  return r.item() if r.dtype == np.bool_ else (float(r) if dtypes.is_float(dt) else int(r))

@pytest.mark.parametrize("dt", INTS, ids=str)
@pytest.mark.parametrize("op", [Ops.ADD, Ops.SUB, Ops.MUL, Ops.MAX, Ops.AND, Ops.OR, Ops.XOR, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ], ids=lambda o: o.name)
def test_int_binary_ops_wrap_like_numpy(op, dt):
  vals = _int_values(dt, 25)
  for a in vals:
    for b in vals[:20]:
      assert _same(exec_alu(op, dt, (a, b)), _np_binary(op, a, b, dt)), f"{op.name} {dt} ({a}, {b})"

@pytest.mark.parametrize("dt", FLOATS, ids=str)
@pytest.mark.parametrize("op", [Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ], ids=lambda o: o.name)
def test_float_binary_ops_round_like_numpy(op, dt):
  vals = _float_values(dt, 30)
  for a in vals:
    for b in vals:
      if op is Ops.MAX and a == 0 and b == 0: continue  # the sign of max(-0.0, 0.0) is unspecified (C fmax, PTX max)
      got, ref = exec_alu(op, dt, (a, b)), _np_binary(op, a, b, dt)
      assert _same(got, ref), f"{op.name} {dt} ({a!r}, {b!r}): numpy {ref!r}, tg {got!r}"

def test_comparisons_return_bools_whatever_the_dtype_argument():
  assert exec_alu(Ops.CMPLT, dtypes.bool, (1.0, 2.0)) is True and exec_alu(Ops.CMPNE, dtypes.bool, (math.nan, math.nan)) is True
  assert exec_alu(Ops.CMPEQ, dtypes.bool, (math.nan, math.nan)) is False and exec_alu(Ops.CMPLT, dtypes.bool, (math.nan, 1.0)) is False

def _c_div(a, b):
  """C99 division by hand: truncate the exact quotient toward zero."""
  q = abs(a) // abs(b)
  return q if (a >= 0) == (b > 0) else -q

@pytest.mark.parametrize("dt", INTS, ids=str)
def test_idiv_truncates_and_mod_takes_the_dividends_sign(dt):
  vals = _int_values(dt, 30, seed=5)
  for a in vals:
    for b in vals:
      if b == 0: continue
      q = _c_div(a, b)
      r = a - q * b
      assert exec_alu(Ops.IDIV, dt, (a, b)) == _wrap(q, dt), f"IDIV {dt} {a} {b}"
      assert exec_alu(Ops.MOD, dt, (a, b)) == _wrap(r, dt), f"MOD {dt} {a} {b}"
      if r != 0: assert (r < 0) == (a < 0)
  assert exec_alu(Ops.IDIV, dtypes.int32, (-7, 2)) == -3 and exec_alu(Ops.MOD, dtypes.int32, (-7, 2)) == -1
  assert exec_alu(Ops.IDIV, dtypes.int32, (7, -2)) == -3 and exec_alu(Ops.MOD, dtypes.int32, (7, -2)) == 1

def _wrap(v, dt):
  bits = 8 * dt.itemsize
  v &= (1 << bits) - 1
  return v - (1 << bits) if dt in (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64) and v >= 1 << (bits - 1) else v

def test_idiv_of_int_min_by_minus_one_wraps():
  # INT_MIN / -1 overflows: tg wraps (two's complement) rather than raising
  for dt in (dtypes.int8, dtypes.int32, dtypes.int64):
    assert exec_alu(Ops.IDIV, dt, (dtypes.min(dt), -1)) == dtypes.min(dt)
    assert exec_alu(Ops.MOD, dt, (dtypes.min(dt), -1)) == 0

def test_idiv_matches_numpy_where_both_operands_are_positive():
  a, b = np.arange(0, 1000, 7, dtype=np.int32), np.arange(1, 1000, 7, dtype=np.int32)
  for x, y in zip(a.tolist(), b[::-1].tolist()): assert exec_alu(Ops.IDIV, dtypes.int32, (x, y)) == x // y

@pytest.mark.parametrize("dt", INTS, ids=str)
def test_shifts_match_numpy_logical_for_unsigned_arithmetic_for_signed(dt):
  bits = 8 * dt.itemsize
  for a in _int_values(dt, 30, seed=9):
    for s in (0, 1, 3, bits // 2, bits - 1):
      na = np.array(a, dtype=to_np_name(dt))
      with np.errstate(all="ignore"):
        ref_l = int(np.left_shift(na, np.array(s, dtype=to_np_name(dt))))
        ref_r = int(np.right_shift(na, np.array(s, dtype=to_np_name(dt))))
      assert exec_alu(Ops.SHL, dt, (a, s)) == ref_l, f"SHL {dt} {a} {s}"
      assert exec_alu(Ops.SHR, dt, (a, s)) == ref_r, f"SHR {dt} {a} {s}"

def test_shr_of_unsigned_is_logical_even_for_negative_python_operands():
  # a value folded from signed arithmetic may arrive as a negative Python int: SHR of an unsigned dtype must see its bits
  assert exec_alu(Ops.SHR, dtypes.uint8, (-1, 4)) == 15
  assert exec_alu(Ops.SHR, dtypes.uint32, (-2**31, 31)) == 1
  assert exec_alu(Ops.SHR, dtypes.int32, (-2**31, 31)) == -1

@pytest.mark.parametrize("dt", INTS[::2] + [dtypes.int64], ids=str)
def test_neg_wraps_like_numpy(dt):
  for a in _int_values(dt, 30):
    with np.errstate(all="ignore"): ref = int(np.negative(np.array(a, dtype=to_np_name(dt))))
    assert exec_alu(Ops.NEG, dt, (a,)) == ref

def test_neg_of_unsigned_wraps():
  assert exec_alu(Ops.NEG, dtypes.uint8, (1,)) == 255 and exec_alu(Ops.NEG, dtypes.uint32, (0,)) == 0

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float16], ids=str)
def test_fdiv_by_signed_zero_follows_ieee(dt):
  for a, b, ref in [(1.0, 0.0, math.inf), (1.0, -0.0, -math.inf), (-1.0, 0.0, -math.inf), (-1.0, -0.0, math.inf), (0.0, 0.0, math.nan),
                    (math.nan, 0.0, math.nan), (math.inf, 0.0, math.inf), (0.0, 1.0, 0.0), (-0.0, 1.0, -0.0), (0.0, -1.0, -0.0)]:
    assert _same(exec_alu(Ops.FDIV, dt, (a, b)), ref), (a, b)
  assert _same(exec_alu(Ops.RECIP, dt, (-0.0,)), -math.inf) and _same(exec_alu(Ops.RECIP, dt, (math.inf,)), 0.0)
  assert _same(exec_alu(Ops.RECIP, dt, (-math.inf,)), -0.0)

def test_max_propagates_nan_in_either_position():
  for dt in FLOATS:
    assert math.isnan(exec_alu(Ops.MAX, dt, (1.0, math.nan))) and math.isnan(exec_alu(Ops.MAX, dt, (math.nan, 1.0)))
    assert exec_alu(Ops.MAX, dt, (-math.inf, 2.0)) == 2.0

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64, dtypes.float16], ids=str)
def test_unary_float_ops_match_numpy_computed_exactly_then_rounded(dt):
  # tg computes transcendentals in double precision and rounds once to the dtype: compare with numpy float64 rounded
  np_f = {Ops.LOG2: np.log2, Ops.EXP2: np.exp2, Ops.SQRT: np.sqrt, Ops.SIN: np.sin, Ops.RECIP: np.reciprocal, Ops.NEG: np.negative,
          Ops.TRUNC: np.trunc}
  vals = _float_values(dt, 60, seed=3) + [2.0**-149 if dt is dtypes.float32 else 0.25, 1000.0, -1000.0, 128.0, 127.5, -150.0]
  for op, f in np_f.items():
    for v in vals:
      with np.errstate(all="ignore"): ref = float(np.array(f(np.float64(v))).astype(to_np_name(dt)))
      got = exec_alu(op, dt, (v,))
      if dt is dtypes.float64 and math.isfinite(ref) and math.isfinite(got) and ref != 0:  # libm and Python may differ by one ulp in double
        assert abs(got - ref) <= math.ulp(ref), f"{op.name} {v!r}: numpy {ref!r}, tg {got!r}"
      else: assert _same(got, ref), f"{op.name} {dt} {v!r}: numpy {ref!r}, tg {got!r}"

def test_transcendental_edge_values():
  f32 = dtypes.float32
  cases = [(Ops.LOG2, 0.0, -math.inf), (Ops.LOG2, -0.0, -math.inf), (Ops.LOG2, -1.0, math.nan), (Ops.LOG2, math.inf, math.inf),
           (Ops.LOG2, math.nan, math.nan), (Ops.LOG2, 8.0, 3.0), (Ops.EXP2, -math.inf, 0.0), (Ops.EXP2, math.inf, math.inf),
           (Ops.EXP2, 200.0, math.inf), (Ops.EXP2, -200.0, 0.0), (Ops.EXP2, 3.0, 8.0), (Ops.SQRT, -0.0, -0.0),
           (Ops.SQRT, -1.0, math.nan), (Ops.SQRT, math.inf, math.inf), (Ops.SIN, math.inf, math.nan), (Ops.SIN, -0.0, -0.0),
           (Ops.SIN, math.nan, math.nan), (Ops.TRUNC, -0.5, -0.0), (Ops.TRUNC, math.inf, math.inf), (Ops.TRUNC, 2.7, 2.0)]
  for op, v, ref in cases: assert _same(exec_alu(op, f32, (v,)), ref), f"{op.name}({v!r})"

def test_float32_results_are_rounded_to_float32():
  a, b = float(np.float32(0.1)), float(np.float32(0.2))
  assert exec_alu(Ops.ADD, dtypes.float32, (a, b)) == float(np.float32(a) + np.float32(b)) != a + b
  assert exec_alu(Ops.MUL, dtypes.float32, (3.4e38, 10.0)) == math.inf
  assert exec_alu(Ops.MUL, dtypes.float16, (300.0, 300.0)) == math.inf
  assert exec_alu(Ops.ADD, dtypes.float16, (2048.0, 1.0)) == float(np.float16(2048) + np.float16(1)) == 2048.0

def _c99_pow_special(a: float, b: float):
  """C99 Annex F results where numpy's pow deviates (numpy gives nan for pow(-inf, 0.5) and -0.0 for pow(-0.0, 0.5))."""
  odd_int = math.isfinite(b) and b.is_integer() and int(b) % 2 == 1
  if a == -math.inf and b > 0 and not odd_int: return math.inf
  if a == 0 and b > 0 and not odd_int: return 0.0
  return None

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64], ids=str)
def test_pow_matches_numpy_and_c99(dt):
  vals = [float(np.array(v, dtype=to_np_name(dt))) for v in (0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -8.0, 3.0, math.inf, -math.inf, math.nan,
                                                               10.0, 1.0 / 3, -0.5, 100.0)]
  for a in vals:
    for b in vals:
      with np.errstate(all="ignore"): ref = float(np.power(np.array(a, dtype=to_np_name(dt)), np.array(b, dtype=to_np_name(dt))))
      if (c99 := _c99_pow_special(a, b)) is not None: ref = c99
      got = exec_alu(Ops.POW, dt, (a, b))
      if math.isfinite(ref) and math.isfinite(got) and ref != 0:  # libm's pow is within 1 ulp, not always correctly rounded
        assert abs(got - ref) <= float(np.spacing(np.array(abs(ref), dtype=to_np_name(dt)))), (a, b, got, ref)
      else: assert _same(got, ref), f"POW {dt} ({a!r}, {b!r}): numpy/C99 {ref!r}, tg {got!r}"

def test_pow_of_ints_is_exact_and_wraps_like_numpy():
  for dt, a, b in [(dtypes.int64, 3, 39), (dtypes.int64, 7, 22), (dtypes.int32, 3, 25), (dtypes.uint64, 3, 40), (dtypes.int8, 3, 5)]:
    with np.errstate(all="ignore"): ref = int(np.power(np.array(a, dtype=to_np_name(dt)), np.array(b, dtype=to_np_name(dt))))
    assert exec_alu(Ops.POW, dt, (a, b)) == ref, f"{a}**{b} in {dt}"

def test_where_and_mulacc():
  assert exec_alu(Ops.WHERE, dtypes.int32, (True, 3, 4)) == 3 and exec_alu(Ops.WHERE, dtypes.int32, (False, 3, 4)) == 4
  assert exec_alu(Ops.MULACC, dtypes.int8, (100, 3, 1)) == _wrap(100 * 3 + 1, dtypes.int8) == 45
  a, b, c = (float(np.float32(v)) for v in (1.1, 2.3, -0.7))
  assert exec_alu(Ops.MULACC, dtypes.float32, (a, b, c)) == float(np.float32(a * b + c))  # one rounding, as a fused multiply-add

def test_bool_logic_ops():
  for a in (False, True):
    for b in (False, True):
      assert exec_alu(Ops.AND, dtypes.bool, (a, b)) is (a and b) and exec_alu(Ops.OR, dtypes.bool, (a, b)) is (a or b)
      assert exec_alu(Ops.XOR, dtypes.bool, (a, b)) is (a != b) and exec_alu(Ops.CMPNE, dtypes.bool, (a, b)) is (a != b)

def test_threefry_matches_random123_known_answers():
  # threefry2x32-20 known-answer vectors from Random123 (counter, key) -> output, packed as (hi << 32) | lo
  kat = [((0, 0), (0, 0), (0x6b200159, 0x99ba4efe)),
         ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
         ((0x243f6a88, 0x85a308d3), (0x13198a2e, 0x03707344), (0xc4923a9c, 0x483df7a0))]
  for (c0, c1), (k0, k1), (r0, r1) in kat:
    assert exec_alu(Ops.THREEFRY, dtypes.uint64, ((c1 << 32) | c0, (k1 << 32) | k0)) == (r1 << 32) | r0

def test_every_alu_op_has_a_reference_and_non_alu_ops_are_rejected():
  assert set(python_alu) == GroupOp.ALU
  with pytest.raises(ValueError, match="not an ALU op"): exec_alu(Ops.LOAD, dtypes.int32, (1,))

def test_bitcast_value_matches_numpy_view():
  for v in (1.0, -0.0, math.inf, 3.14159):
    assert bitcast_value(v, dtypes.float32, dtypes.uint32) == int(np.array(v, dtype=np.float32).view(np.uint32))
  assert math.isnan(bitcast_value(-1, dtypes.int16, dtypes.float16))
  with pytest.raises(ValueError, match="sizes differ"): bitcast_value(1, dtypes.int32, dtypes.float64)
