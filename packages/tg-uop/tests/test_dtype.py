"""Behaviour of tg_uop.dtype: promotion (vs torch.promote_types), limits, rounding of constants (vs numpy/torch), interning."""
import itertools, math, pickle, struct
import numpy as np
import pytest
from tg_uop.dtype import DType, dtypes, least_upper_dtype, to_dtype, truncate_int, truncate_float, int_to_float, sum_acc_dtype
from tg_uop.dtype import to_np_name, from_np_name

INTS = [dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64]
FLOATS = [dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64]
FP8 = [dtypes.fp8e4m3, dtypes.fp8e5m2]
ALL = [dtypes.bool] + INTS + FLOATS + FP8

def _torch_map(torch):
  m = {dtypes.bool: torch.bool, dtypes.int8: torch.int8, dtypes.uint8: torch.uint8, dtypes.int16: torch.int16, dtypes.uint16: torch.uint16,
       dtypes.int32: torch.int32, dtypes.uint32: torch.uint32, dtypes.int64: torch.int64, dtypes.uint64: torch.uint64,
       dtypes.float16: torch.float16, dtypes.bfloat16: torch.bfloat16, dtypes.float32: torch.float32, dtypes.float64: torch.float64}
  if hasattr(torch, "float8_e4m3fn"): m[dtypes.fp8e4m3] = torch.float8_e4m3fn
  if hasattr(torch, "float8_e5m2"): m[dtypes.fp8e5m2] = torch.float8_e5m2
  return m

def _torch_promote(torch, a, b):
  try: return torch.promote_types(a, b)
  except (RuntimeError, TypeError): return None

def _same_float(a: float, b: float) -> bool:
  """Equal including the sign of zero, with nan equal to nan."""
  if math.isnan(a) or math.isnan(b): return math.isnan(a) and math.isnan(b)
  return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)

# ---- promotion ----
def test_least_upper_dtype_matches_torch_promote_types_for_every_pair_torch_defines():
  torch = pytest.importorskip("torch")
  m = _torch_map(torch)
  checked = 0
  for a, b in itertools.product(m, m):
    if (ref := _torch_promote(torch, m[a], m[b])) is None: continue
    assert m[least_upper_dtype(a, b)] == ref, f"{a} + {b}: torch gives {ref}, tg gives {least_upper_dtype(a, b)}"
    checked += 1
  assert checked >= 13 * 13 - 60  # most of the table is defined by torch

def test_promotion_where_torch_refuses_gives_the_smallest_dtype_holding_both_or_a_clear_error():
  # deliberate difference: torch refuses uint16/32/64 with other ints and fp8 with anything else; tg extends the lattice
  torch = pytest.importorskip("torch")
  m = _torch_map(torch)
  for a, b in itertools.product(m, m):
    if _torch_promote(torch, m[a], m[b]) is not None: continue
    if {a, b} & {dtypes.uint64} and ({a, b} & {dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64}):
      with pytest.raises(TypeError, match="cast one of them explicitly"): least_upper_dtype(a, b)
      continue
    out = least_upper_dtype(a, b)
    if dtypes.is_float(a) or dtypes.is_float(b):
      assert dtypes.is_float(out)
      for d in (a, b):
        if dtypes.is_float(d): assert dtypes.finfo(out)[0] >= dtypes.finfo(d)[0] and dtypes.finfo(out)[1] >= dtypes.finfo(d)[1]
    else:
      for d in (a, b): assert dtypes.min(out) <= dtypes.min(d) and dtypes.max(d) <= dtypes.max(out), f"{a}+{b} -> {out} doesn't hold {d}"
      # and it is the smallest such int
      smaller = [c for c in INTS if c.itemsize < out.itemsize and all(dtypes.min(c) <= dtypes.min(d) and dtypes.max(d) <= dtypes.max(c)
                                                                      for d in (a, b))]
      assert not smaller, f"{a}+{b} -> {out} but {smaller} also hold both"

def test_uint64_with_signed_int_raises_a_clear_error():
  for s in (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64):
    with pytest.raises(TypeError, match="no integer dtype holds both"): least_upper_dtype(s, dtypes.uint64)

def test_least_upper_dtype_is_commutative_and_idempotent():
  for a, b in itertools.product(ALL, ALL):
    try: ab = least_upper_dtype(a, b)
    except TypeError:
      with pytest.raises(TypeError): least_upper_dtype(b, a)
      continue
    assert ab is least_upper_dtype(b, a)
  for a in ALL: assert least_upper_dtype(a, a) is a and least_upper_dtype(a) is a

def test_least_upper_dtype_is_independent_of_argument_order():
  # a join must not depend on the order of its operands (e.g. sum of a list of tensors of mixed dtypes)
  bad = []
  for t in itertools.combinations_with_replacement(ALL, 3):
    outs = set()
    for p in itertools.permutations(t):
      try: outs.add(least_upper_dtype(*p))
      except TypeError: outs.add("error")
    if len(outs) > 1: bad.append((t, outs))
  assert not bad, f"{len(bad)} triples promote differently by order, e.g. {bad[:3]}"

def test_least_upper_dtype_needs_an_argument():
  with pytest.raises(ValueError): least_upper_dtype()

def test_least_upper_dtype_uses_the_scalar_of_vectors():
  assert least_upper_dtype(dtypes.float16.vec(4), dtypes.int32) is dtypes.float16

# ---- sizes and limits ----
def test_itemsize_matches_numpy_and_torch():
  for d in ALL:
    if (n := to_np_name(d)) is not None: assert d.itemsize == np.dtype(n).itemsize
  assert dtypes.bfloat16.itemsize == 2 and dtypes.fp8e4m3.itemsize == 1 and dtypes.fp8e5m2.itemsize == 1
  torch = pytest.importorskip("torch")
  for d, t in _torch_map(torch).items(): assert d.itemsize == t.itemsize, d

def test_int_min_max_match_numpy_iinfo():
  for d in INTS:
    info = np.iinfo(to_np_name(d))
    assert (dtypes.min(d), dtypes.max(d)) == (int(info.min), int(info.max)), d
  assert (dtypes.min(dtypes.bool), dtypes.max(dtypes.bool)) == (False, True)

def test_float_min_max_are_infinities_and_finfo_bits_match_numpy():
  for d in FLOATS + FP8: assert dtypes.min(d) == -math.inf and dtypes.max(d) == math.inf
  for d in (dtypes.float16, dtypes.float32, dtypes.float64):
    fi = np.finfo(to_np_name(d))
    assert dtypes.finfo(d) == (fi.nexp, fi.nmant)
  with pytest.raises(TypeError): dtypes.finfo(dtypes.int32)

def test_largest_finite_float_survives_rounding_and_beyond_half_an_ulp_overflows():
  for d in (dtypes.float16, dtypes.float32):
    fi = np.finfo(to_np_name(d))
    fmax, ulp = float(fi.max), float(fi.max) - float(np.nextafter(fi.max, 0, dtype=fi.dtype))
    assert truncate_float(fmax, d) == fmax and truncate_float(-fmax, d) == -fmax
    assert truncate_float(fmax + ulp / 2, d) == math.inf and truncate_float(-(fmax + ulp / 2), d) == -math.inf  # tie rounds to even = inf
    assert truncate_float(fmax + ulp / 4, d) == fmax

# ---- float rounding ----
def _edge_values():
  vals = [0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 70000.0, -65520.0, 2.0**-24, 2.0**-25,
          2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14, 2.0**-14 - 2.0**-24, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 1 + 2.0**-11 + 2.0**-30,
          3.4028235e38, 3.5e38, 1e-40, 1e-46, 1.5e-45, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 0.1, 1 / 3]
  rng = np.random.default_rng(1)
  vals += (rng.standard_normal(3000) * 10.0 ** rng.integers(-45, 39, 3000)).tolist()
  vals += rng.uniform(-70000, 70000, 2000).tolist()
  return vals

def test_truncate_float16_matches_numpy_on_random_and_edge_values():
  for v in _edge_values():
    with np.errstate(over="ignore"): ref = float(np.float16(v))
    assert _same_float(truncate_float(v, dtypes.float16), ref), f"float16({v!r}): numpy {ref!r}, tg {truncate_float(v, dtypes.float16)!r}"

def test_truncate_float32_matches_numpy_on_random_and_edge_values():
  for v in _edge_values():
    with np.errstate(over="ignore"): ref = float(np.float32(v))
    assert _same_float(truncate_float(v, dtypes.float32), ref), v

def test_truncate_float64_is_identity():
  for v in _edge_values(): assert _same_float(truncate_float(v, dtypes.float64), v)

@pytest.mark.parametrize("name", ["bfloat16", "fp8e5m2"])
def test_bfloat16_and_fp8e5m2_rounding_matches_torch(name):
  torch = pytest.importorskip("torch")
  d = getattr(dtypes, name)
  if d not in _torch_map(torch): pytest.skip(f"torch lacks {name}")
  vals = [v for v in _edge_values() if math.isnan(v) or abs(v) < 3.3e38]  # torch converts from float32: keep inputs exact in f32
  vals = [float(np.float32(v)) for v in vals]
  ref = torch.tensor(vals, dtype=torch.float32).to(_torch_map(torch)[d]).float().tolist()
  for v, r in zip(vals, ref): assert _same_float(truncate_float(v, d), r), f"{name}({v!r}): torch {r!r}, tg {truncate_float(v, d)!r}"

def test_bfloat16_rounds_ties_to_even():
  # 1 + 2**-8 is halfway between 1 and 1 + 2**-7: ties go to the even mantissa (1.0); 1 + 3*2**-8 goes up to 1 + 2**-6
  assert truncate_float(1 + 2.0**-8, dtypes.bfloat16) == 1.0
  assert truncate_float(1 + 3 * 2.0**-8, dtypes.bfloat16) == 1 + 2.0**-6

def test_fp8e4m3_in_range_rounding_matches_torch():
  torch = pytest.importorskip("torch")
  if not hasattr(torch, "float8_e4m3fn"): pytest.skip("torch lacks float8_e4m3fn")
  vals = [float(np.float32(v)) for v in _edge_values() if math.isfinite(v) and abs(v) <= 448]
  ref = torch.tensor(vals, dtype=torch.float32).to(torch.float8_e4m3fn).float().tolist()
  for v, r in zip(vals, ref): assert _same_float(truncate_float(v, dtypes.fp8e4m3), r), f"e4m3({v!r}): torch {r!r}"
  assert math.isnan(truncate_float(math.nan, dtypes.fp8e4m3))

def test_fp8e4m3_overflow_saturates_like_torch():
  # torch (2.13, CPU) saturates every out-of-range value, ±inf included, to ±448; e4m3fn has no inf
  torch = pytest.importorskip("torch")
  if not hasattr(torch, "float8_e4m3fn"): pytest.skip("torch lacks float8_e4m3fn")
  vals = [449.0, 464.0, 465.0, 479.0, 480.0, 500.0, 1e4, 1e30, math.inf, -449.0, -500.0, -math.inf]
  ref = torch.tensor(vals, dtype=torch.float32).to(torch.float8_e4m3fn).float().tolist()
  got = [truncate_float(v, dtypes.fp8e4m3) for v in vals]
  assert all(_same_float(g, r) for g, r in zip(got, ref)), f"torch {ref}\ntg    {got}"

def test_truncate_int_wraps_like_numpy():
  rng = np.random.default_rng(2)
  vals = [0, 1, -1, 127, 128, -129, 255, 256, 2**31, 2**31 - 1, -2**31 - 1, 2**63, 2**64 - 1, -2**63 - 1, 2**64 + 5, -2**70 + 3]
  vals += [int(x) for x in rng.integers(-2**62, 2**62, 200)] + [int(x) * 2**10 + 7 for x in rng.integers(-2**60, 2**60, 100)]
  for d in INTS:
    for v in vals:
      ref = int(np.array(v % 2**64, dtype=np.uint64).astype(to_np_name(d)))  # numpy's modular conversion
      assert truncate_int(v, d) == ref, f"{d}: {v} -> numpy {ref}, tg {truncate_int(v, d)}"
  assert truncate_int(5, dtypes.bool) is True and truncate_int(0, dtypes.bool) is False

def test_int_to_float_rounds_big_ints_once_like_numpy():
  rng = np.random.default_rng(3)
  vals = [2**53 + 1, 2**24 + 1, 2**24 + 3, 2**53 + 2**29 + 1, 2**62 + 2**38 + 1, 2**63 - 1, -2**63, -(2**53 + 2**29 + 1), 2**60 + 2**36]
  vals += [int(x) for x in rng.integers(-2**63, 2**63 - 1, 500, dtype=np.int64)]
  vals += [int(x) >> int(s) for x, s in zip(rng.integers(-2**63, 2**63 - 1, 500, dtype=np.int64), rng.integers(0, 40, 500))]
  for v in vals:
    for d in (dtypes.float32, dtypes.float64, dtypes.float16):
      with np.errstate(over="ignore"): ref = float(np.array(v, dtype=np.int64).astype(to_np_name(d)))
      assert int_to_float(v, d) == ref, f"{v} -> {d}: numpy {ref!r}, tg {int_to_float(v, d)!r}"
  for v in [2**64 - 1, 2**63 + 2**39 + 1, 2**63 + 2**39]:
    assert int_to_float(v, dtypes.float32) == float(np.array(v, dtype=np.uint64).astype(np.float32))

def test_int_to_float_matches_torch_int64_to_float32():
  torch = pytest.importorskip("torch")
  vals = [2**53 + 1, 2**24 + 1, 2**62 + 2**38 + 1, -(2**62 + 2**38 + 1), 2**63 - 1, 123456789123456789]
  ref = torch.tensor(vals, dtype=torch.int64).to(torch.float32).tolist()
  assert [int_to_float(v, dtypes.float32) for v in vals] == ref

# ---- constants, names, python values ----
def test_as_const_wraps_rounds_and_booleanizes():
  assert dtypes.as_const(300, dtypes.uint8) == 44 and dtypes.as_const(-1, dtypes.uint32) == 2**32 - 1
  assert dtypes.as_const(3.9, dtypes.int32) == 3 and dtypes.as_const(-3.9, dtypes.int32) == -3  # C truncation
  assert dtypes.as_const(math.nan, dtypes.int32) == 0 and dtypes.as_const(math.inf, dtypes.int8) == 0
  assert dtypes.as_const(0.1, dtypes.float32) == float(np.float32(0.1))
  assert dtypes.as_const(0.1, dtypes.float16) == float(np.float16(0.1))
  assert dtypes.as_const(2**24 + 1, dtypes.float32) == float(2**24)
  assert isinstance(dtypes.as_const(1, dtypes.float32), float)
  assert dtypes.as_const(2, dtypes.bool) is True and dtypes.as_const(0.0, dtypes.bool) is False
  assert dtypes.as_const((1.5, 300), dtypes.uint8) == (1, 44)

def test_to_dtype_accepts_dtypes_and_names_and_rejects_unknown_names():
  assert to_dtype(dtypes.int8) is dtypes.int8
  assert to_dtype("float32") is dtypes.float32 and to_dtype("half") is dtypes.float16 and to_dtype("bfloat16") is dtypes.bfloat16
  with pytest.raises(TypeError, match="unknown dtype 'float33'.*float32"): to_dtype("float33")
  with pytest.raises(TypeError): to_dtype(3)

def test_from_py_picks_default_dtypes():
  assert dtypes.from_py(1.0) is dtypes.float32 and dtypes.from_py(True) is dtypes.bool and dtypes.from_py(3) is dtypes.int32
  assert dtypes.from_py([1, 2.0]) is dtypes.float32 and dtypes.from_py([True, 1]) is dtypes.int32 and dtypes.from_py([[True], [False]]) is dtypes.bool
  assert dtypes.from_py([]) is dtypes.float32
  with pytest.raises(TypeError, match="can't infer a dtype from str"): dtypes.from_py("x")

def test_from_py_matches_torch_tensor_default_dtypes():
  torch = pytest.importorskip("torch")
  # torch's default int is int64, tg's is int32 (as tinygrad): compare only the kind
  for v in (1.0, True, [True, False], [1, 2.5], [[1.0], [2.0]]):
    assert _torch_map(torch)[dtypes.from_py(v)] == torch.tensor(v).dtype

def test_sum_acc_dtype_matches_torch_sum_result_dtype():
  torch = pytest.importorskip("torch")
  m = _torch_map(torch)
  for d in [dtypes.bool] + INTS + FLOATS:
    if d is dtypes.uint64: continue  # deliberate difference, see the next test
    assert m[sum_acc_dtype(d)] == torch.zeros(2, dtype=m[d]).sum().dtype, d

def test_sum_acc_dtype_of_uint64_stays_uint64():
  # torch sums uint64 into int64 (wrapping values >= 2**63); tg keeps uint64 so such sums stay exact
  assert sum_acc_dtype(dtypes.uint64) is dtypes.uint64

def test_np_names_round_trip_and_unknown_numpy_dtype_errors():
  for d in [dtypes.bool] + INTS + [dtypes.float16, dtypes.float32, dtypes.float64]:
    assert from_np_name(to_np_name(d)) is d and np.dtype(to_np_name(d)).itemsize == d.itemsize
  assert to_np_name(dtypes.bfloat16) is None
  with pytest.raises(TypeError, match="complex64"): from_np_name("complex64")

# ---- interning ----
def test_dtypes_are_interned():
  assert DType(13, 4, "float", "f", 1, None) is dtypes.float32
  assert dtypes.float32.vec(4) is dtypes.float32.vec(4) and dtypes.float32.ptr(16) is dtypes.float32.ptr(16)
  assert dtypes.float32.ptr(16) is not dtypes.float32.ptr(16, "local")
  assert dtypes.float32.vec(4).scalar() is dtypes.float32 and dtypes.float32.ptr(16).base is dtypes.float32

def test_pickle_round_trip_keeps_dtype_identity():
  for d in ALL + [dtypes.float32.vec(4), dtypes.int8.ptr(32, "local"), dtypes.half.ptr(8).vec(2), dtypes.index, dtypes.void]:
    assert pickle.loads(pickle.dumps(d)) is d, d

def test_vec_and_ptr_errors():
  with pytest.raises(ValueError): dtypes.float32.vec(4).vec(2)
  with pytest.raises(ValueError): dtypes.float32.vec(0)
  assert dtypes.float32.vec(1) is dtypes.float32 and dtypes.float32.vec(4).count == 4 and dtypes.float32.vec(4).itemsize == 16

def test_struct_formats_are_consistent_with_itemsize():
  for d in ALL:
    if d.fmt is not None: assert struct.calcsize(d.fmt) == d.itemsize, d
