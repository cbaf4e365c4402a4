"""The C renderer for the CPU: programs rendered, compiled with gcc and clang, run, and compared with numpy and exec_alu."""
from __future__ import annotations
import math, shutil
import pytest
np = pytest.importorskip("numpy")
from tg_uop.alu import exec_alu
from tg_uop.dtype import DType, dtypes, truncate_float, truncate_int
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import all_programs, run_program, check_results, unsupported, linearize_steps
from tg_codegen.renderer.cstyle import CRenderer, ClangRenderer, CStyleRenderer, RenderError
from tg_codegen.devices.cpu import CPUDevice, CCompiler

# gcc 12 has _Float16; clang 14 does not (its emulated path); "gcc-emulated" forces the emulated float16 path on gcc
COMPILERS = ["gcc", "clang", "gcc-emulated"]

def _device(which: str) -> CPUDevice:
  exe = "gcc" if which.startswith("gcc") else which
  if shutil.which(exe) is None: pytest.skip(f"{exe} is not installed")
  dev = CPUDevice("CPU")
  flags = CCompiler.base_flags + (("-U__FLT16_MAX__",) if which == "gcc-emulated" else ())
  dev.compiler = CCompiler(cc=[shutil.which(exe)], flags=flags)
  return dev

@pytest.fixture(params=COMPILERS)
def dev(request, tmp_path, monkeypatch) -> CPUDevice:
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  return _device(request.param)

@pytest.fixture
def gcc(tmp_path, monkeypatch) -> CPUDevice:
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  return _device("gcc")

def test_clang_renderer_is_the_c_renderer():
  assert ClangRenderer is CRenderer and issubclass(CRenderer, CStyleRenderer)
  r = CRenderer()
  assert (r.device, r.suffix, r.has_local, r.supports_float4) == ("CPU", "C", False, True)
  assert {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT, Ops.MAX, Ops.IDIV, Ops.MOD, Ops.WHERE} <= r.supported_ops
  assert Ops.POW not in r.supported_ops

@pytest.mark.parametrize("prog", all_programs(), ids=lambda p: p.name)
def test_conformance_programs_match_numpy(dev, prog):
  if (why := unsupported(prog, dev.renderer)) is not None: pytest.skip(why)
  assert check_results(prog, run_program(dev, prog)) is None

# ---- a tiny harness: out[i] = f(inputs[i]) over a RANGE loop ----
def _run(dev: CPUDevice, fn, in_dts: list[DType], out_dt: DType, inputs: list, out_np: str) -> np.ndarray:
  """Run out[i] = fn(*loads) over n elements; `inputs` are numpy arrays (raw bits for dtypes numpy lacks)."""
  n = len(inputs[0])
  out = UOp(Ops.DEFINE_GLOBAL, out_dt.ptr(n), (), 0)
  ins = [UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i + 1) for i, dt in enumerate(in_dts)]
  r = UOp.range(n, 0)
  st = out.index(r).store(fn(*[b.index(r).load() for b in ins]))
  end = st.end(r)
  uops = linearize_steps(UOp.sink(end), end)
  src = dev.renderer.render("k", uops)
  prg = dev.runtime(dev, "k", dev.compiler.compile_cached(src))
  bufs = [dev.allocator.alloc(n * out_dt.itemsize)] + [dev.allocator.alloc(a.nbytes) for a in inputs]
  for b, a in zip(bufs[1:], inputs): dev.allocator._copyin(b, memoryview(np.ascontiguousarray(a).tobytes()))
  prg(*bufs, global_size=(1, 1, 1), wait=True)
  res = np.empty(n, dtype=out_np)
  dev.allocator._copyout(memoryview(res).cast("B"), bufs[0])
  return res

def _bf16_rne(x: np.ndarray) -> np.ndarray:
  """Reference float32 -> bfloat16 bits, round to nearest even, nan kept as a quiet nan."""
  u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
  rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
  return np.where(np.isnan(x), ((u >> 16) | 0x40).astype(np.uint16), rounded)

def _special_floats() -> np.ndarray:
  rng = np.random.default_rng(0)
  vals = [0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 65519.99, 1e-8, 6e-8, 3e-8, 2.98e-8, 1e-5, 1.00048828125, 1.0009765625, 2049.0, 2051.0,
          3.0e38, -3.4e38, 1e-40, 1e-45, np.inf, -np.inf, np.nan, 448.0, 464.0, 465.0, 57344.0, 61440.0, 0.0009765625]
  # ties between neighbouring float16 and bfloat16 values, and random values across the whole exponent range
  ties = [np.float32(1 + (2 * k + 1) * 2.0**-11) for k in range(8)] + [np.float32(1 + (2 * k + 1) * 2.0**-8) for k in range(8)]
  rand = rng.standard_normal(2000).astype(np.float32) * np.float32(2.0) ** rng.integers(-30, 30, 2000).astype(np.float32)
  return np.concatenate([np.array(vals, np.float32), np.array(ties, np.float32), rand]).astype(np.float32)

def test_float16_round_trip_is_numpy_float16(dev):
  x = _special_floats()
  with np.errstate(over="ignore"): ref = x.astype(np.float16)
  got = _run(dev, lambda v: v.cast(dtypes.float16), [dtypes.float32], dtypes.float16, [x], "float16")
  assert np.array_equal(got.view(np.uint16)[~np.isnan(ref)], ref.view(np.uint16)[~np.isnan(ref)])
  assert np.isnan(got[np.isnan(ref)]).all()
  bits = np.arange(65536, dtype=np.uint16)
  back = _run(dev, lambda v: v.cast(dtypes.float32), [dtypes.float16], dtypes.float32, [bits.view(np.float16)], "float32")
  ref_back = bits.view(np.float16).astype(np.float32)
  assert np.array_equal(np.isnan(back), np.isnan(ref_back)) and np.array_equal(back[~np.isnan(back)], ref_back[~np.isnan(ref_back)])

def test_float16_from_double_rounds_once(dev):
  x = np.array([1 + 2.0**-11 + 2.0**-40, 1 + 2.0**-11, 1 + 3 * 2.0**-11, 65519.0, 65520.0, 1e-300, -2.0**-25, -2.0**-25 * 1.0001],
               np.float64)
  got = _run(dev, lambda v: v.cast(dtypes.float16), [dtypes.float64], dtypes.float16, [x], "float16")
  assert np.array_equal(got.astype(np.float64), np.array([truncate_float(float(v), dtypes.float16) for v in x]))

def test_bfloat16_round_trip_is_round_to_nearest_even(dev):
  x = _special_floats()
  got = _run(dev, lambda v: v.cast(dtypes.bfloat16), [dtypes.float32], dtypes.bfloat16, [x], "uint16")
  assert np.array_equal(got, _bf16_rne(x))
  bits = np.arange(65536, dtype=np.uint16)
  back = _run(dev, lambda v: v.cast(dtypes.float32), [dtypes.bfloat16], dtypes.float32, [bits], "float32")
  assert np.array_equal(back.view(np.uint32), bits.astype(np.uint32) << 16)

def test_bfloat16_from_double_matches_truncate_float(gcc):
  x = np.array([1 + 2.0**-8 + 2.0**-40, 1 + 2.0**-8, 3.0e38, 3.4e38, 1e-39, -1e-45, 1e-300, 2.0**128], np.float64)
  got = _run(gcc, lambda v: v.cast(dtypes.bfloat16).cast(dtypes.float64), [dtypes.float64], dtypes.float64, [x], "float64")
  assert np.array_equal(got, np.array([truncate_float(float(v), dtypes.bfloat16) for v in x]))

def _decode_small(bits: int, ebits: int, mbits: int, e4m3: bool) -> float:
  """Reference decoder for fp8 bit patterns."""
  sign = -1.0 if bits >> (ebits + mbits) & 1 else 1.0
  e, m, bias = (bits >> mbits) & ((1 << ebits) - 1), bits & ((1 << mbits) - 1), (1 << (ebits - 1)) - 1
  if e4m3 and e == 15 and m == 7: return math.nan
  if not e4m3 and e == (1 << ebits) - 1: return math.nan if m else sign * math.inf
  return sign * (m * 2.0 ** (1 - bias - mbits) if e == 0 else (1 + m / 2**mbits) * 2.0 ** (e - bias))

@pytest.mark.parametrize("dt,ebits,mbits", [(dtypes.fp8e4m3, 4, 3), (dtypes.fp8e5m2, 5, 2)], ids=["e4m3", "e5m2"])
def test_fp8_conversions_match_reference(gcc, dt, ebits, mbits):
  bits = np.arange(256, dtype=np.uint8)
  got = _run(gcc, lambda v: v.cast(dtypes.float32), [dt], dtypes.float32, [bits], "float32")
  ref = np.array([_decode_small(int(b), ebits, mbits, dt == dtypes.fp8e4m3) for b in bits], np.float32)
  assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(ref)], ref[~np.isnan(ref)])
  x = _special_floats()
  enc = _run(gcc, lambda v: v.cast(dt).cast(dtypes.float32), [dtypes.float32], dtypes.float32, [x], "float32")
  ref_enc = np.array([truncate_float(float(v), dt) for v in x], np.float32)
  assert np.array_equal(np.isnan(enc), np.isnan(ref_enc)) and np.array_equal(enc[~np.isnan(enc)], ref_enc[~np.isnan(ref_enc)])

@pytest.mark.parametrize("dt", [dtypes.float32, dtypes.float64, dtypes.float16], ids=str)
def test_max_propagates_nan(dev, dt):
  a = np.array([1.0, np.nan, 2.0, np.nan, -0.0, 0.0, -np.inf, 3.0], np.float32)
  b = np.array([np.nan, 1.0, 3.0, np.nan, 0.0, -0.0, np.inf, -3.0], np.float32)
  npdt = {dtypes.float32: "float32", dtypes.float64: "float64", dtypes.float16: "float16"}[dt]
  got = _run(dev, lambda x, y: x.maximum(y), [dt, dt], dt, [a.astype(npdt), b.astype(npdt)], npdt)
  ref = [exec_alu(Ops.MAX, dt, (float(x), float(y))) for x, y in zip(a, b)]
  for g, e in zip(got.tolist(), ref):
    assert (math.isnan(g) and math.isnan(e)) or (g == e and math.copysign(1, g) == math.copysign(1, e))

INT_DTYPES = [(dtypes.int8, "int8"), (dtypes.int16, "int16"), (dtypes.int32, "int32"), (dtypes.int64, "int64"), (dtypes.uint8, "uint8"),
              (dtypes.uint32, "uint32"), (dtypes.uint64, "uint64")]

@pytest.mark.parametrize("dt,npdt", INT_DTYPES, ids=lambda x: str(x))
@pytest.mark.parametrize("op", [Ops.IDIV, Ops.MOD])
def test_int_division_of_negatives_is_c_division(dev, dt, npdt, op):
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  # negatives wrap for unsigned dtypes, as the kernel sees them
  a = np.array([truncate_int(v, dt) for v in (7, -7, 7, -7, 0, lo, lo, hi, -1, 5, 13, -13)], dtype=npdt)
  b = np.array([truncate_int(v, dt) for v in (2, 2, -2, -2, 3, -1, 1, -1, 0, 0, 5, 5)], dtype=npdt)
  got = _run(dev, lambda x, y: UOp(op, dt, (x, y)), [dt, dt], dt, [a, b], npdt)
  assert got.tolist() == [exec_alu(op, dt, (int(x), int(y))) for x, y in zip(a, b)]

def test_int_division_by_constants(dev):
  a = np.array([7, -7, 100, -100, -2147483648, 2147483647], np.int32)
  f = lambda x: (x // -3) * 1000 + (x % 7) * 10 + (x // 4) % 3
  got = _run(dev, f, [dtypes.int32], dtypes.int32, [a], "int32")
  c = lambda op, x, y: exec_alu(op, dtypes.int32, (x, y))
  ref = [c(Ops.ADD, c(Ops.ADD, c(Ops.MUL, c(Ops.IDIV, x, -3), 1000), c(Ops.MUL, c(Ops.MOD, x, 7), 10)), c(Ops.MOD, c(Ops.IDIV, x, 4), 3))
         for x in a.tolist()]
  assert got.tolist() == ref

@pytest.mark.parametrize("dt,npdt", [(dtypes.int8, "int8"), (dtypes.int32, "int32"), (dtypes.uint16, "uint16"), (dtypes.uint64, "uint64")],
                         ids=lambda x: str(x))
def test_shifts_by_any_amount_match_exec_alu(dev, dt, npdt):
  a = np.array([truncate_int(v, dt) for v in (1, -1, 100, -100, 77, 5, -3, 9)], dtype=npdt)
  # (exec_alu computes x << y with Python ints, so unsigned amounts stay small instead of a wrapped -1)
  s = np.array([truncate_int(v, dt) for v in (0, 3, 7, 9, 31, 40, 200 if dtypes.is_unsigned(dt) else -1, 64)], dtype=npdt)
  for op in (Ops.SHL, Ops.SHR):
    got = _run(dev, lambda x, y: UOp(op, dt, (x, y)), [dt, dt], dt, [a, s], npdt)
    assert got.tolist() == [exec_alu(op, dt, (int(x), int(y))) for x, y in zip(a, s)], op

def test_narrow_ints_wrap_after_every_op(dev):
  a = np.array([100, -100, 127, -128, 50], np.int8)
  got = _run(dev, lambda x: (x + x) // 3 * 5 - x, [dtypes.int8], dtypes.int8, [a], "int8")
  c = lambda op, x, y: exec_alu(op, dtypes.int8, (x, y))
  assert got.tolist() == [c(Ops.ADD, c(Ops.MUL, c(Ops.IDIV, c(Ops.ADD, x, x), 3), 5), c(Ops.MUL, x, -1)) for x in a.tolist()]

def test_mulacc_float32_rounds_like_exec_alu(dev):
  rng = np.random.default_rng(3)
  a, b, c = (rng.standard_normal(64).astype(np.float32) for _ in range(3))
  got = _run(dev, lambda x, y, z: UOp(Ops.MULACC, dtypes.float32, (x, y, z)), [dtypes.float32] * 3, dtypes.float32, [a, b, c], "float32")
  assert got.tolist() == [exec_alu(Ops.MULACC, dtypes.float32, (float(x), float(y), float(z))) for x, y, z in zip(a, b, c)]

def test_bfloat16_arithmetic_rounds_every_op(dev):
  x = _special_floats()[:200]
  xb = _bf16_rne(x)
  got = _run(dev, lambda v: (v * v + v).cast(dtypes.float32), [dtypes.bfloat16], dtypes.float32, [xb], "float32")
  ref = []
  for v in (xb.astype(np.uint32) << 16).view(np.float32).tolist():
    sq = exec_alu(Ops.MUL, dtypes.bfloat16, (v, v))
    ref.append(exec_alu(Ops.ADD, dtypes.bfloat16, (sq, v)))
  ref = np.array(ref, np.float32)
  assert np.array_equal(np.isnan(got), np.isnan(ref)) and np.array_equal(got[~np.isnan(ref)], ref[~np.isnan(ref)])

def test_threefry_matches_exec_alu(dev):
  x = np.array([0, 1, 2**40 + 5, 2**64 - 1, 12345678901234], np.uint64)
  k = np.array([0, 7, 2**33, 2**63, 99], np.uint64)
  got = _run(dev, lambda a, b: UOp(Ops.THREEFRY, dtypes.uint64, (a, b)), [dtypes.uint64] * 2, dtypes.uint64, [x, k], "uint64")
  assert got.tolist() == [exec_alu(Ops.THREEFRY, dtypes.uint64, (int(a), int(b))) for a, b in zip(x, k)]

def test_float_transcendentals_and_trunc(dev):
  x = np.array([0.5, 1.0, 2.5, -3.75, 10.0, 0.0, -0.0, 100.0], np.float32)
  for op, ref in ((Ops.EXP2, np.exp2), (Ops.SIN, np.sin), (Ops.TRUNC, np.trunc)):
    got = _run(dev, lambda v: UOp(op, dtypes.float32, (v,)), [dtypes.float32], dtypes.float32, [x], "float32")
    np.testing.assert_allclose(got, ref(x), rtol=1e-6, atol=1e-7)
  pos = np.abs(x) + 0.25
  for op, ref in ((Ops.LOG2, np.log2), (Ops.SQRT, np.sqrt)):
    got = _run(dev, lambda v: UOp(op, dtypes.float32, (v,)), [dtypes.float32], dtypes.float32, [pos], "float32")
    np.testing.assert_allclose(got, ref(pos), rtol=1e-6)

def test_unaligned_vector_loads_and_stores(dev):
  n = 4 * 6 + 1
  out, a = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n), (), 0), UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(n), (), 1)
  r = UOp.range(6, 0)
  v = UOp(Ops.LOAD, dtypes.float32.vec(4), (a.index(r * 4 + 1),))  # one element past the 16-byte boundary
  end = out.index(r * 4 + 1).store(v * UOp.const(dtypes.float32.vec(4), 2.0)).end(r)
  uops = linearize_steps(UOp.sink(end), end)
  prg = dev.runtime(dev, "vec", dev.compiler.compile_cached(dev.renderer.render("vec", uops)))
  x = np.arange(n, dtype=np.float32)
  bo, ba = dev.allocator.alloc(n * 4), dev.allocator.alloc(n * 4)
  dev.allocator._copyin(bo, memoryview(np.zeros(n, np.float32).tobytes()))
  dev.allocator._copyin(ba, memoryview(x.tobytes()))
  prg(bo, ba, wait=True)
  res = np.empty(n, np.float32)
  dev.allocator._copyout(memoryview(res).cast("B"), bo)
  assert np.array_equal(res, np.concatenate([[0.0], x[1:] * 2]).astype(np.float32))

def test_odd_vector_widths_render_and_run(dev):
  n = 3 * 5
  out, a = UOp(Ops.DEFINE_GLOBAL, dtypes.int32.ptr(n), (), 0), UOp(Ops.DEFINE_GLOBAL, dtypes.int32.ptr(n), (), 1)
  r = UOp.range(5, 0)
  v = UOp(Ops.LOAD, dtypes.int32.vec(3), (a.index(r * 3),))
  end = out.index(r * 3).store(v + UOp.const(dtypes.int32.vec(3), (1, 2, 3))).end(r)
  uops = linearize_steps(UOp.sink(end), end)
  prg = dev.runtime(dev, "vec3", dev.compiler.compile_cached(dev.renderer.render("vec3", uops)))
  x = np.arange(n, dtype=np.int32)
  bo, ba = dev.allocator.alloc(n * 4), dev.allocator.alloc(n * 4)
  dev.allocator._copyin(ba, memoryview(x.tobytes()))
  prg(bo, ba, wait=True)
  res = np.empty(n, np.int32)
  dev.allocator._copyout(memoryview(res).cast("B"), bo)
  assert np.array_equal(res, x + np.tile([1, 2, 3], 5))

def test_local_dims_are_refused_with_a_clear_error():
  out = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(4), (), 0)
  l = UOp.special(4, "lidx0")
  st = out.index(l).store(UOp.const(dtypes.float32, 1.0))
  with pytest.raises(RenderError, match="no local dims"):
    CRenderer().render("k", linearize_steps(UOp.sink(st), st))

def test_unsupported_op_is_refused_with_a_clear_error():
  out, a = UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(4), (), 0), UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(4), (), 1)
  r = UOp.range(4, 0)
  v = a.index(r).load()
  end = out.index(r).store(UOp(Ops.POW, dtypes.float32, (v, v))).end(r)
  with pytest.raises(RenderError, match="POW"):
    CRenderer().render("k", linearize_steps(UOp.sink(end), end))
