"""The transcendental decompositions, evaluated with exact dtype semantics by a small numpy interpreter of UOp graphs, against
numpy (float64 references rounded, for float32) over dense samples of the whole float range and every special value."""
import pytest
np = pytest.importorskip("numpy")
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import graph_rewrite
from tg_uop.uop import UOp
from tg_codegen.lower.transcendental import transcendental_rules

TRANSCENDENTAL = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW, Ops.SQRT}
BASIC = {Ops.ADD, Ops.MUL, Ops.NEG, Ops.FDIV, Ops.CMPLT, Ops.CMPNE, Ops.WHERE, Ops.MAX, Ops.CAST, Ops.BITCAST, Ops.AND, Ops.OR,
         Ops.SHL, Ops.SHR, Ops.CONST, Ops.VECTORIZE, Ops.GEP, Ops.LOAD, Ops.INDEX, Ops.DEFINE_GLOBAL, Ops.SINK}
NP = {dtypes.bool: np.bool_, dtypes.int32: np.int32, dtypes.uint32: np.uint32, dtypes.int64: np.int64, dtypes.uint64: np.uint64,
      dtypes.float16: np.float16, dtypes.float32: np.float32, dtypes.float64: np.float64, dtypes.index: np.int64}

# ---- a numpy interpreter of UOp graphs: lanes of a vector are the last axis, samples the first ----

def _bf16_round(a):
  """float32 values rounded (to nearest even) to bfloat16, kept as float32 (numpy has no bfloat16)."""
  b = np.asarray(a, np.float32).view(np.uint32)
  r = ((b + np.uint32(0x7fff) + ((b >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xffff0000)).view(np.float32)
  return np.where(np.isnan(a), a, r)

def _npdt(dt: DType):
  return np.float32 if dt.scalar() == dtypes.bfloat16 else NP[dt.scalar()]

def _cast(v, dt: DType):
  if dt.scalar() == dtypes.bfloat16: return _bf16_round(v.astype(np.float32))
  if dt.scalar() == dtypes.bool: return v != 0
  return v.astype(_npdt(dt))

def evaluate(out: UOp, inputs: list) -> np.ndarray:
  """Evaluate `out` where LOAD(INDEX(DEFINE_GLOBAL i, ...)) is inputs[i] (one sample per row)."""
  vals: dict[UOp, object] = {}
  n = len(inputs[0])
  with np.errstate(all="ignore"):
    for u in out.toposort():
      s = [vals.get(x) for x in u.src]
      if u.op in (Ops.DEFINE_GLOBAL, Ops.INDEX): r = None
      elif u.op is Ops.LOAD: r = inputs[u.src[0].src[0].arg]
      elif u.op is Ops.CONST: r = np.full(n, u.arg, dtype=_npdt(u.dtype))
      elif u.op is Ops.VECTORIZE: r = np.stack(s, axis=-1)
      elif u.op is Ops.GEP: r = s[0][..., u.arg[0]] if len(u.arg) == 1 else s[0][..., list(u.arg)]
      elif u.op is Ops.CAST: r = _cast(s[0], u.dtype)
      elif u.op is Ops.BITCAST: r = s[0].view(_npdt(u.dtype))
      elif u.op is Ops.ADD: r = s[0] + s[1]
      elif u.op is Ops.MUL: r = s[0] * s[1]
      elif u.op is Ops.NEG: r = -s[0]
      elif u.op is Ops.FDIV: r = s[0] / s[1]
      elif u.op is Ops.MAX: r = np.maximum(s[0], s[1])
      elif u.op is Ops.CMPLT: r = s[0] < s[1]
      elif u.op is Ops.CMPNE: r = s[0] != s[1]
      elif u.op is Ops.WHERE: r = np.where(s[0], s[1], s[2])
      elif u.op is Ops.AND: r = s[0] & s[1]
      elif u.op is Ops.OR: r = s[0] | s[1]
      elif u.op is Ops.SHL: r = s[0] << s[1].astype(s[0].dtype)
      elif u.op is Ops.SHR: r = s[0] >> s[1].astype(s[0].dtype)
      else: raise AssertionError(f"the evaluator has no {u.op}: the decomposition used an op outside the basic set")
      if r is not None:
        if u.dtype.scalar() != dtypes.bfloat16: assert r.dtype == _npdt(u.dtype), (u.op, u.dtype, r.dtype)
        if u.dtype.scalar() == dtypes.bfloat16 and u.op not in (Ops.CAST, Ops.LOAD, Ops.CONST, Ops.VECTORIZE, Ops.GEP, Ops.WHERE):
          r = _bf16_round(r)
      vals[u] = r
  return vals[out]

def _input(i: int, dt: DType) -> UOp:
  return UOp(Ops.DEFINE_GLOBAL, dt.ptr(), arg=i).index(UOp.const(dtypes.index, 0)).load()

def lowered(op: Ops, dt: DType, nargs: int = 1) -> UOp:
  """The graph of `op` on `nargs` loaded inputs of dtype `dt` after the rules (for a renderer without any transcendental)."""
  srcs = tuple(_input(i, dt) for i in range(nargs))
  g = graph_rewrite(UOp(op, dt, srcs), transcendental_rules(set(GroupOp.ALU) - TRANSCENDENTAL))
  used = {u.op for u in g.toposort()}
  assert used <= BASIC, f"{op} lowered to unsupported ops {used - BASIC}"
  return g

def run(op: Ops, dt: DType, *xs) -> np.ndarray:
  return evaluate(lowered(op, dt, len(xs)), [np.asarray(x, _npdt(dt)) for x in xs])

# ---- samples and error measures ----

def all_floats32(step: int = 997) -> np.ndarray:
  """Every `step`-th float32 bit pattern (both signs, subnormals, inf, nan) plus the special values."""
  bits = np.arange(0, 2**32, step, dtype=np.uint64).astype(np.uint32)
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, 0.5, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38,
                      -3.4028235e38, 128.0, -150.0, -149.0, 127.99999], np.float32)
  return np.concatenate([bits.view(np.float32), special])

def all_floats64(n: int = 1_500_000, seed: int = 0) -> np.ndarray:
  """Random float64 bit patterns over the whole range plus special values."""
  bits = np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, 0.5, 5e-324, -5e-324, 2.2250738585072014e-308,
                      1.7976931348623157e308, 1024.0, -1075.0, -1074.0], np.float64)
  return np.concatenate([bits.view(np.float64), special])

def ulp_err(got: np.ndarray, ref: np.ndarray, dt) -> np.ndarray:
  """|got - ref| in units of the spacing of `dt` at ref (ref may be more precise than dt); 0 where both agree exactly,
  inf where exactly one is nan or they are different infinities."""
  with np.errstate(all="ignore"):
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    ref = np.where(np.isinf(ref.astype(dt)), ref.astype(dt), ref)  # beyond the largest finite value of dt, the answer is inf
    tiny = np.finfo(dt).smallest_subnormal
    spacing = np.maximum(np.spacing(np.abs(ref).astype(dt)).astype(np.float64), tiny)
    err = np.abs(got - ref) / spacing
  same = (got == ref) | (np.isnan(got) & np.isnan(ref))
  return np.where(same, 0.0, np.where(np.isfinite(err), err, np.inf))

def check(got, ref, dt, max_ulp, what):
  err = ulp_err(got, ref, dt)
  worst = int(np.argmax(err))
  assert err[worst] <= max_ulp, f"{what}: {err[worst]:.3g} ulp at sample {worst}: got {got.flat[worst]!r}, want {ref.flat[worst]!r}"
  return float(err.max())

# ---- exp2 ----

def test_exp2_float32_whole_range_within_1_5_ulp():
  x = np.concatenate([all_floats32(), np.linspace(-151, 129, 400_001, dtype=np.float32)])
  with np.errstate(all="ignore"): ref = np.exp2(x.astype(np.float64))
  check(run(Ops.EXP2, dtypes.float32, x), ref, np.float32, 1.5, "exp2 float32")

def test_exp2_float32_special_values_exact():
  x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 128.0, 127.0, -126.0, -149.0, -150.0, -149.5, 200.0, -200.0, 1e30], np.float32)
  got = run(Ops.EXP2, dtypes.float32, x)
  want = np.array([np.nan, np.inf, 0.0, 1.0, 1.0, np.inf, 2.0**127, 2.0**-126, 2.0**-149, 0.0, 2.0**-149, np.inf, 0.0, np.inf],
                  np.float32)
  np.testing.assert_array_equal(got, want)

def test_exp2_float64_whole_range_within_1_ulp():
  x = np.concatenate([all_floats64(), np.linspace(-1080, 1030, 300_001)])
  with np.errstate(all="ignore"): ref = np.exp2(x)
  check(run(Ops.EXP2, dtypes.float64, x), ref, np.float64, 1.0, "exp2 float64")

def test_exp2_float64_subnormal_results_within_1_ulp():
  x = np.linspace(-1075, -1020, 100_001)
  check(run(Ops.EXP2, dtypes.float64, x), np.exp2(x), np.float64, 1.0, "exp2 float64 subnormal")

# ---- log2 ----

def test_log2_float32_whole_range_within_1_ulp():
  x = all_floats32()
  with np.errstate(all="ignore"): ref = np.log2(x.astype(np.float64))
  check(run(Ops.LOG2, dtypes.float32, x), ref, np.float32, 1.0, "log2 float32")

def test_log2_float32_near_one_within_1_ulp():
  x = np.concatenate([np.linspace(0.5, 2.0, 500_001, dtype=np.float32),
                      (np.float32(1) + np.arange(-2000, 2000, dtype=np.float32) * np.float32(2**-24))])
  check(run(Ops.LOG2, dtypes.float32, x), np.log2(x.astype(np.float64)), np.float32, 1.0, "log2 float32 near 1")

def test_log2_special_values_exact():
  for dt, npdt in ((dtypes.float32, np.float32), (dtypes.float64, np.float64)):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -1e-30, 1.0, 2.0, 0.5, 1024.0], npdt)
    want = np.array([np.nan, np.inf, np.nan, -np.inf, -np.inf, np.nan, np.nan, 0.0, 1.0, -1.0, 10.0], npdt)
    np.testing.assert_array_equal(run(Ops.LOG2, dt, x), want)
  sub = np.array([2.0**-149, 2.0**-140, 2.0**-127], np.float32)
  np.testing.assert_array_equal(run(Ops.LOG2, dtypes.float32, sub), np.array([-149.0, -140.0, -127.0], np.float32))

def test_log2_float64_whole_range_within_1_ulp():
  x = np.concatenate([all_floats64(), np.linspace(0.5, 2.0, 300_001), 1.0 + np.arange(-1000, 1000) * 2.0**-52])
  with np.errstate(all="ignore"): ref = np.log2(x)
  check(run(Ops.LOG2, dtypes.float64, x), ref, np.float64, 1.0, "log2 float64")

# ---- sin ----

def _sin_ref32(x): return np.sin(x.astype(np.float64))

def test_sin_float32_small_arguments_within_1_ulp():
  x = np.concatenate([np.linspace(-1e4, 1e4, 1_000_001, dtype=np.float32), np.linspace(-10, 10, 200_001, dtype=np.float32)])
  check(run(Ops.SIN, dtypes.float32, x), _sin_ref32(x), np.float32, 1.0, "sin float32 |x| <= 1e4")

def test_sin_float32_whole_range_within_1_ulp():
  x = all_floats32(499)
  with np.errstate(all="ignore"): ref = _sin_ref32(x)
  check(run(Ops.SIN, dtypes.float32, x), ref, np.float32, 1.0, "sin float32 whole range")

def test_sin_float32_near_multiples_of_pi_over_2():
  # the hardest inputs for range reduction: floats closest to k*pi/2, where almost all bits cancel
  k = np.arange(1, 400_000, dtype=np.float64)
  base = (k * (np.pi / 2)).astype(np.float32)
  x = np.concatenate([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(0)),
                      np.array([16367173 * 2.0**72, 13176795.0, 1.0e38, 3.4028235e38, 16777215.0], np.float32)])
  check(run(Ops.SIN, dtypes.float32, x), _sin_ref32(x), np.float32, 1.0, "sin float32 near k*pi/2")

def test_sin_float32_large_arguments_absolute_error():
  x = np.geomspace(1e4, 3e38, 300_001, dtype=np.float32)
  x = np.concatenate([x, -x])
  got = run(Ops.SIN, dtypes.float32, x)
  assert np.abs(got.astype(np.float64) - _sin_ref32(x)).max() < 1e-7

def test_sin_special_values():
  for dt, npdt in ((dtypes.float32, np.float32), (dtypes.float64, np.float64)):
    got = run(Ops.SIN, dt, np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], npdt))
    assert np.isnan(got[:3]).all() and got[3] == 0 and not np.signbit(got[3]) and got[4] == 0 and np.signbit(got[4])

def test_sin_float64_within_1_ulp():
  x = np.concatenate([all_floats64(800_000), np.linspace(-1e6, 1e6, 500_001), np.linspace(-4, 4, 100_001)])
  with np.errstate(all="ignore"): ref = np.sin(x)
  check(run(Ops.SIN, dtypes.float64, x), ref, np.float64, 1.0, "sin float64")

def test_sin_float64_near_multiples_of_pi_over_2():
  k = np.arange(1, 300_000, dtype=np.float64)
  base = k * (np.pi / 2)
  x = np.concatenate([base, np.nextafter(base, np.inf), np.array([6381956970095103 * 2.0**797, 5165925776298580 * 2.0**-51])])
  check(run(Ops.SIN, dtypes.float64, x), np.sin(x), np.float64, 1.0, "sin float64 near k*pi/2")

# ---- pow ----

POW_SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, 1e-40, 1e30, np.inf, -np.inf, np.nan]

@pytest.mark.parametrize("dt,npdt", [(dtypes.float32, np.float32), (dtypes.float64, np.float64)])
def test_pow_special_values_match_c(dt, npdt):
  v = np.array(POW_SPECIAL, npdt)
  x, y = (a.ravel() for a in np.meshgrid(v, v, indexing="ij"))
  got = run(Ops.POW, dt, x, y)
  with np.errstate(all="ignore"): ref = np.power(x, y)
  for i in range(len(x)):
    # C99 powf: compare the values and the signs (of zeros and infinities too)
    ok = (np.isnan(got[i]) and np.isnan(ref[i])) or (got[i] == ref[i] and np.signbit(got[i]) == np.signbit(ref[i])) \
         or (np.isfinite(ref[i]) and ref[i] != 0 and abs(got[i] - ref[i]) <= 2 * np.spacing(abs(ref[i])))
    assert ok, f"pow({x[i]!r}, {y[i]!r}) = {got[i]!r}, C says {ref[i]!r}"

def test_pow_float32_within_2_ulp():
  rng = np.random.default_rng(1)
  n = 1_000_000
  x = np.concatenate([rng.uniform(0, 4, n), np.exp2(rng.uniform(-149, 128, n)), -np.exp2(rng.uniform(-20, 20, n))]).astype(np.float32)
  y = np.concatenate([rng.uniform(-40, 40, n), rng.uniform(-2, 2, n), np.round(rng.uniform(-30, 30, n))]).astype(np.float32)
  with np.errstate(all="ignore"): ref = np.power(x.astype(np.float64), y.astype(np.float64))
  check(run(Ops.POW, dtypes.float32, x, y), ref, np.float32, 2.0, "pow float32")

def test_pow_float32_large_results_within_2_ulp():
  # results near the overflow and underflow thresholds, where y*log2(x) is large and its rounding would cost many ulp
  rng = np.random.default_rng(2)
  x = rng.uniform(1.0001, 3, 1_000_000).astype(np.float32)
  y = (rng.uniform(-149, 127.9, x.size) / np.log2(x.astype(np.float64))).astype(np.float32)
  with np.errstate(all="ignore"): ref = np.power(x.astype(np.float64), y.astype(np.float64))
  check(run(Ops.POW, dtypes.float32, x, y), ref, np.float32, 2.0, "pow float32 large exponents")

def test_pow_float64_within_3_5_ulp():
  rng = np.random.default_rng(3)
  n = 500_000
  x = np.concatenate([rng.uniform(0, 4, n), np.exp2(rng.uniform(-1070, 1020, n)), -np.exp2(rng.uniform(-20, 20, n)),
                      rng.uniform(1.0001, 3, n)])
  y = np.concatenate([rng.uniform(-300, 300, n), rng.uniform(-1, 1, n), np.round(rng.uniform(-60, 60, n)),
                      rng.uniform(-1074, 1023, n)])
  y[3 * n:] /= np.log2(x[3 * n:])
  with np.errstate(all="ignore"): ref = np.power(x, y)
  check(run(Ops.POW, dtypes.float64, x, y), ref, np.float64, 3.5, "pow float64")

# ---- sqrt (for renderers without it) ----

@pytest.mark.parametrize("dt,npdt,xs", [(dtypes.float32, np.float32, all_floats32), (dtypes.float64, np.float64, all_floats64)])
def test_sqrt_within_1_ulp(dt, npdt, xs):
  x = xs()
  with np.errstate(all="ignore"): ref = np.sqrt(x)
  check(run(Ops.SQRT, dt, x), ref, npdt, 1.0, f"sqrt {dt}")

# ---- half types, vectors, the rule set ----

@pytest.mark.parametrize("op,ref", [(Ops.EXP2, np.exp2), (Ops.LOG2, np.log2), (Ops.SIN, np.sin), (Ops.SQRT, np.sqrt)])
def test_float16_every_value_within_1_ulp(op, ref):
  x = np.arange(0, 2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
  with np.errstate(all="ignore"): want = ref(x.astype(np.float64))
  check(run(op, dtypes.float16, x), want, np.float16, 0.51, f"{op} float16")

def test_bfloat16_computes_in_float32_and_rounds_once():
  x = (np.arange(0, 2**16, dtype=np.uint32) << 16).view(np.float32)
  got = run(Ops.EXP2, dtypes.bfloat16, x)
  with np.errstate(all="ignore"): want = _bf16_round(np.exp2(x.astype(np.float64)).astype(np.float32))
  finite = np.isfinite(want) & (np.abs(x) < 100)
  np.testing.assert_array_equal(got[finite], want[finite])
  assert np.isnan(got[np.isnan(x)]).all()

def test_pow_float16():
  rng = np.random.default_rng(4)
  x, y = rng.uniform(0, 8, 100_000).astype(np.float16), rng.uniform(-5, 5, 100_000).astype(np.float16)
  with np.errstate(all="ignore"): ref = np.power(x.astype(np.float64), y.astype(np.float64))
  check(run(Ops.POW, dtypes.float16, x, y), ref, np.float16, 0.51, "pow float16")

@pytest.mark.parametrize("op", [Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT])
def test_vectors_match_scalars(op):
  x = np.linspace(-50, 50, 4000, dtype=np.float32).reshape(-1, 4)
  vec = UOp.vectorize(*(_input(i, dtypes.float32) for i in range(4)))
  g = graph_rewrite(UOp(op, dtypes.float32.vec(4), (vec,)), transcendental_rules(set()))
  got = evaluate(g, [x[:, i] for i in range(4)])
  want = run(op, dtypes.float32, x.ravel()).reshape(-1, 4)
  np.testing.assert_array_equal(got, want)

def test_vector_pow_matches_scalar():
  x, y = np.linspace(0, 5, 4000, dtype=np.float32).reshape(-1, 2), np.linspace(-3, 3, 4000, dtype=np.float32).reshape(-1, 2)
  vx = UOp.vectorize(_input(0, dtypes.float32), _input(1, dtypes.float32))
  vy = UOp.vectorize(_input(2, dtypes.float32), _input(3, dtypes.float32))
  g = graph_rewrite(UOp(Ops.POW, dtypes.float32.vec(2), (vx, vy)), transcendental_rules(set()))
  got = evaluate(g, [x[:, 0], x[:, 1], y[:, 0], y[:, 1]])
  np.testing.assert_array_equal(got, run(Ops.POW, dtypes.float32, x.ravel(), y.ravel()).reshape(-1, 2))

def test_supported_ops_are_left_alone():
  x = _input(0, dtypes.float32)
  pm = transcendental_rules({Ops.EXP2, Ops.SIN, Ops.SQRT})
  assert graph_rewrite(x.alu(Ops.EXP2), pm) is x.alu(Ops.EXP2)
  assert graph_rewrite(x.alu(Ops.SQRT), pm) is x.alu(Ops.SQRT)
  assert Ops.LOG2 not in {u.op for u in graph_rewrite(x.alu(Ops.LOG2), pm).toposort()}
  assert len(transcendental_rules(set(GroupOp.ALU))) == 0

def test_ops_native_on_some_dtypes_are_decomposed_on_the_others():
  # PTX's case: ex2 exists for f32 (halves compute through it) but not for f64
  pm = transcendental_rules({Ops.EXP2}, {Ops.EXP2: frozenset({dtypes.float16, dtypes.bfloat16, dtypes.float32})})
  for dt in (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float32.vec(4)):
    x = _input(0, dt)
    assert graph_rewrite(x.alu(Ops.EXP2), pm) is x.alu(Ops.EXP2), dt
  for dt in (dtypes.float64, dtypes.float64.vec(2)):
    assert Ops.EXP2 not in {u.op for u in graph_rewrite(_input(0, dt).alu(Ops.EXP2), pm).toposort()}, dt
  # native on no dtype is decomposed everywhere; an op missing from supported_ops is decomposed whatever its dtype entry says
  x = _input(0, dtypes.float32)
  for sup, only in [({Ops.EXP2}, {Ops.EXP2: frozenset()}), (set(), {Ops.EXP2: frozenset({dtypes.float32})})]:
    assert Ops.EXP2 not in {u.op for u in graph_rewrite(x.alu(Ops.EXP2), transcendental_rules(sup, only)).toposort()}, (sup, only)

def test_integer_ops_are_not_touched():
  i = _input(0, dtypes.int32)
  assert graph_rewrite(i.alu(Ops.MAX, i), transcendental_rules(set())) is i.alu(Ops.MAX, i)
