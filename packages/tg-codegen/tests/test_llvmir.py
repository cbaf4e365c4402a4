"""LLVMRenderer: rendered IR is compiled in-process with llvmlite for the host CPU, run through ctypes, and checked against numpy
(the conformance programs) and against `tg_uop.alu.exec_alu` (every ALU op on edge values)."""
import ctypes, math, struct
import pytest
np = pytest.importorskip("numpy")
llvm = pytest.importorskip("llvmlite.binding")
from tg_uop.alu import exec_alu
from tg_uop.dtype import DType, dtypes, to_np_name, truncate_float
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import ConformanceProgram, all_programs, check_results, linearize_steps, unsupported
from tg_codegen.renderer.llvmir import LLVMRenderer

_CTYPE = {4: ctypes.c_int32, 8: ctypes.c_int64}

class JitKernel:
  """One rendered kernel compiled with MCJIT for the host, callable with numpy arrays."""
  def __init__(self, src: str, name: str, nbufs: int, var_dtypes: list[DType], opt: int):
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    self.tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=opt)
    mod = llvm.parse_assembly(src)
    mod.verify()
    mod.triple, mod.data_layout = llvm.get_process_triple(), str(self.tm.target_data)
    if opt:
      pb = llvm.create_pass_builder(self.tm, llvm.create_pipeline_tuning_options(speed_level=opt))
      pb.getModulePassManager().run(mod, pb)
      mod.verify()
    self.ee = llvm.create_mcjit_compiler(mod, self.tm)
    self.ee.finalize_object()
    args = [ctypes.c_void_p] * nbufs + [ctypes.c_int32 for _ in var_dtypes] + [ctypes.c_int32, ctypes.c_int32]
    self.fn = ctypes.CFUNCTYPE(None, *args)(self.ee.get_function_address(name))
  def __call__(self, arrays: list, vals: tuple = (), core: tuple[int, int] = (0, 1)):
    self.fn(*[a.ctypes.data for a in arrays], *vals, *core)

def _np_dtype(dt: DType):
  return np.uint16 if dt == dtypes.bfloat16 else np.dtype(to_np_name(dt))

def run_conformance(prog: ConformanceProgram, opt: int, cores: list[tuple[int, int]] | None = None) -> dict:
  src = LLVMRenderer().render(prog.name, prog.uops)
  variables = [u for u in prog.uops if u.op is Ops.DEFINE_VAR]
  k = JitKernel(src, prog.name, len(prog.bufs), [v.dtype for v in variables], opt)
  arrays = [np.zeros(n, dtype=_np_dtype(dt)) for dt, n in prog.bufs]
  for i, x in prog.inputs.items(): arrays[i][:] = x
  for core in cores or [(0, prog.global_size[0])]: k(arrays, prog.vals, core)
  return {i: arrays[i] for i in prog.expected}

PROGS = [p for p in all_programs() if unsupported(p, LLVMRenderer()) is None]

def test_conformance_programs_cover_the_brief():
  names = {p.name for p in PROGS}
  assert {"elementwise", "reduce_rows", "matmul", "int32_alu", "gated", "casts", "cast_half", "vector", "define_var"} <= names

@pytest.mark.parametrize("opt", [0, 2])
@pytest.mark.parametrize("prog", PROGS, ids=lambda p: p.name)
def test_conformance_program_matches_numpy(prog, opt):
  assert check_results(prog, run_conformance(prog, opt)) is None

def test_gidx0_split_across_cores_matches_one_call():
  prog = next(p for p in PROGS if p.name == "elementwise_special")
  n = prog.global_size[0]
  assert check_results(prog, run_conformance(prog, 2, cores=[(0, 5), (5, 11), (11, n)])) is None

def test_local_program_is_refused_with_a_clear_error():
  prog = next(p for p in all_programs() if "local" in p.requires)
  with pytest.raises(ValueError, match="no local dims"): LLVMRenderer().render(prog.name, prog.uops)

def _g(i, dt, n): return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)

def test_gidx1_and_gidx2_loop_over_their_whole_bound():
  # out[g2, g1, g0] = g0 + 10*g1 + 100*g2; gidx0 is split by core_start/core_end, the others loop fully
  s0, s1, s2 = 3, 4, 2
  out = _g(0, dtypes.int32, s0 * s1 * s2)
  g0, g1, g2 = UOp.special(s0, "gidx0"), UOp.special(s1, "gidx1"), UOp.special(s2, "gidx2")
  st = out.index((g2 * s1 + g1) * s0 + g0).store((g0 + g1 * 10 + g2 * 100).cast(dtypes.int32))
  uops = linearize_steps(UOp.sink(st), g0, g1, g2, st)
  k = JitKernel(LLVMRenderer().render("grid", uops), "grid", 1, [], 2)
  arr = np.zeros(s0 * s1 * s2, np.int32)
  k([arr], core=(0, 1))
  k([arr], core=(1, s0))
  i2, i1, i0 = np.meshgrid(np.arange(s2), np.arange(s1), np.arange(s0), indexing="ij")
  np.testing.assert_array_equal(arr, (i0 + 10 * i1 + 100 * i2).reshape(-1))

# ---- every ALU op against exec_alu, on edge values ----
def _edge_values(dt: DType) -> list:
  if dt == dtypes.bool: return [False, True]
  if dtypes.is_int(dt):
    lo, hi = dtypes.min(dt), dtypes.max(dt)
    vals = [0, 1, 2, 3, 7, 31, 32, 33, 64, hi, hi - 1, lo, lo + 1, -1, -2, -7, -33]
    return [v for v in vals if lo <= v <= hi]
  return [truncate_float(v, dt) for v in (0.0, -0.0, 1.0, -1.0, 0.5, 2.75, -3.5, 1e-3, 100.25, 1e4, -7.0, math.inf, -math.inf, math.nan, 1 / 3)]

def _pairs(dt: DType) -> tuple[list, list]:
  vs = _edge_values(dt)
  xs = [x for x in vs for _ in vs]
  ys = [y for _ in vs for y in vs]
  return xs, ys

def _to_np(vals: list, dt: DType):
  if dt == dtypes.bfloat16:  # round to bf16 first: then the top 16 bits of the float32 are the exact bf16 bits
    return np.array([struct.unpack("<I", struct.pack("<f", truncate_float(v, dt)))[0] >> 16 for v in vals], np.uint16)
  return np.array(vals, dtype=_np_dtype(dt))

def _from_np(arr, dt: DType) -> list:
  if dt == dtypes.bfloat16: return [struct.unpack("<f", struct.pack("<I", int(b) << 16))[0] for b in arr]
  return arr.tolist()

def _run_alu(op: Ops, dt: DType, out_dt: DType, operands: list[list], opt: int = 2) -> list:
  n = len(operands[0])
  out = _g(0, out_dt, n)
  ins = [_g(i + 1, dt if not (op is Ops.WHERE and i == 0) else dtypes.bool, n) for i in range(len(operands))]
  r = UOp.range(n, 0)
  srcs = tuple(b.index(r).load() for b in ins)
  st = out.index(r).store(UOp(op, out_dt, srcs))
  uops = linearize_steps(UOp.sink(st.end(r)), r, st, st.end(r))
  k = JitKernel(LLVMRenderer().render("alu", uops), "alu", len(ins) + 1, [], opt)
  arrays = [np.zeros(n, dtype=_np_dtype(out_dt))] + [_to_np(v, b.dtype.base) for v, b in zip(operands, ins)]
  k(arrays)
  return _from_np(arrays[0], out_dt)

def _same(got, exp, dt: DType, rel: float) -> bool:
  if dtypes.is_float(dt):
    if math.isnan(exp): return math.isnan(got)
    if rel == 0: return got == exp and math.copysign(1, got) == math.copysign(1, exp)
    return got == exp or abs(got - exp) <= rel * abs(exp)
  return got == exp

INT_DTYPES = [dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64]
FLOAT_DTYPES = [dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64]
INT_BINARY = [Ops.ADD, Ops.SUB, Ops.MUL, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ]
FLOAT_BINARY = [Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.POW]
FLOAT_UNARY = [Ops.NEG, Ops.RECIP, Ops.SQRT, Ops.TRUNC, Ops.EXP2, Ops.LOG2, Ops.SIN]
APPROX = {Ops.EXP2: 2e-7, Ops.LOG2: 2e-7, Ops.SIN: 2e-7, Ops.POW: 2e-7, Ops.MULACC: 2e-7}

def _check_alu(op: Ops, dt: DType, operands: list[list]):
  out_dt = dtypes.bool if op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ) else dt
  got = _run_alu(op, dt, out_dt, operands)
  rel = APPROX.get(op, 0.0) * (1 if dt in (dtypes.float32, dtypes.float64) else 0) + (2**-8 if dt == dtypes.bfloat16 and op in APPROX else 0) \
    + (2**-10 if dt == dtypes.float16 and op in APPROX else 0)
  if op is Ops.SIN and dt == dtypes.float64: rel = 1e-12
  bad = []
  for i, args in enumerate(zip(*operands)):
    exp = exec_alu(op, out_dt, args)
    if not _same(got[i], exp, out_dt, rel): bad.append((args, got[i], exp))
  assert not bad, f"{op.name} {dt}: {len(bad)} mismatches, first {bad[:5]}"

@pytest.mark.parametrize("dt", INT_DTYPES, ids=str)
@pytest.mark.parametrize("op", INT_BINARY, ids=lambda o: o.name)
def test_int_binary_op_matches_exec_alu(op, dt):
  xs, ys = _pairs(dt)
  if op in (Ops.SHL, Ops.SHR):  # exec_alu builds the whole Python int for x << huge (MemoryError): keep amounts below 128
    keep = [i for i, y in enumerate(ys) if y < 128]
    xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
  _check_alu(op, dt, [xs, ys])

@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("op", FLOAT_BINARY, ids=lambda o: o.name)
def test_float_binary_op_matches_exec_alu(op, dt):
  xs, ys = _pairs(dt)
  if op is Ops.POW:  # libm pow and math.pow disagree only on which overflowing values are exact; keep to finite, modest results
    keep = [i for i, (x, y) in enumerate(zip(xs, ys)) if math.isfinite(x) and math.isfinite(y) and abs(y) < 8 and (x > 0 or y == int(y))]
    xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
  _check_alu(op, dt, [xs, ys])

@pytest.mark.parametrize("dt", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("op", FLOAT_UNARY, ids=lambda o: o.name)
def test_float_unary_op_matches_exec_alu(op, dt):
  vals = _edge_values(dt)
  if op is Ops.SIN: vals = [v for v in vals if not math.isfinite(v) or abs(v) < 1e3]
  _check_alu(op, dt, [vals])

@pytest.mark.parametrize("dt", [dtypes.int32, dtypes.uint8, dtypes.float32, dtypes.bfloat16], ids=str)
def test_where_and_mulacc_match_exec_alu(dt):
  xs, ys = _pairs(dt)
  conds = [i % 3 == 0 for i in range(len(xs))]
  _check_alu(Ops.WHERE, dt, [conds, xs, ys])
  _check_alu(Ops.MULACC, dt, [xs, ys, list(reversed(xs))])

def test_bool_logic_matches_exec_alu():
  for op in (Ops.AND, Ops.OR, Ops.XOR, Ops.CMPNE, Ops.CMPEQ, Ops.CMPLT, Ops.MAX):
    _check_alu(op, dtypes.bool, list(_pairs(dtypes.bool)))

# ---- casts between every pair of dtypes, against the C conversion (numpy, or exec semantics for bf16) ----
CAST_DTYPES = [dtypes.bool, dtypes.int8, dtypes.uint8, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.float16, dtypes.bfloat16,
               dtypes.float32, dtypes.float64]

def _cast_ref(v, f: DType, t: DType):
  if t == dtypes.bool: return bool(v)
  if dtypes.is_float(t): return truncate_float(float(v) if f != dtypes.bfloat16 or t != dtypes.float64 else v, t)
  return exec_alu(Ops.ADD, t, (int(v), 0))  # wraps like C

@pytest.mark.parametrize("t", CAST_DTYPES, ids=str)
@pytest.mark.parametrize("f", CAST_DTYPES, ids=str)
def test_cast_matches_c_conversion(f, t):
  vals = [v for v in _edge_values(f) if not (isinstance(v, float) and dtypes.is_int(t) and not (math.isfinite(v) and
          (dtypes.min(t) <= math.trunc(v) <= dtypes.max(t))))]  # float->int out of range is undefined in C too
  n = len(vals)
  out, inp = _g(0, t, n), _g(1, f, n)
  r = UOp.range(n, 0)
  st = out.index(r).store(inp.index(r).load().cast(t))
  uops = linearize_steps(UOp.sink(st.end(r)), r, st, st.end(r))
  k = JitKernel(LLVMRenderer().render("cast", uops), "cast", 2, [], 2)
  arrays = [np.zeros(n, dtype=_np_dtype(t)), _to_np(vals, f)]
  k(arrays)
  got = _from_np(arrays[0], t)
  for v, g in zip(vals, got):
    e = _cast_ref(v, f, t)
    assert (isinstance(e, float) and math.isnan(e) and math.isnan(g)) or g == e, f"cast {f}->{t} of {v}: got {g}, expected {e}"

def test_vector_bfloat16_and_bool_loads_round_trip():
  # 4-wide loads/stores of the emulated types: bf16 (i16 in memory) doubled, bool (i8 in memory) negated
  n = 8
  ob, ib, oq, iq = _g(0, dtypes.bfloat16, n), _g(1, dtypes.bfloat16, n), _g(2, dtypes.bool, n), _g(3, dtypes.bool, n)
  r = UOp.range(n // 4, 0)
  vb = UOp(Ops.LOAD, dtypes.bfloat16.vec(4), (ib.index(r * 4),))
  vq = UOp(Ops.LOAD, dtypes.bool.vec(4), (iq.index(r * 4),))
  s1 = ob.index(r * 4).store(vb * UOp.const(dtypes.bfloat16.vec(4), 2.0))
  s2 = oq.index(r * 4).store(vq.logical_not())
  end = UOp(Ops.END, dtypes.void, (s1, s2, r))
  uops = linearize_steps(UOp.sink(end), r, s1, s2, end)
  k = JitKernel(LLVMRenderer().render("vec", uops), "vec", 4, [], 2)
  xs = [1.5, -2.25, 3.0, 0.0078125, 100.0, -0.5, 7.0, 1e30]
  qs = np.array([True, False, False, True, True, True, False, False])
  arrays = [np.zeros(n, np.uint16), _to_np(xs, dtypes.bfloat16), np.zeros(n, bool), qs]
  k(arrays)
  assert _from_np(arrays[0], dtypes.bfloat16) == [truncate_float(truncate_float(x, dtypes.bfloat16) * 2, dtypes.bfloat16) for x in xs]
  np.testing.assert_array_equal(arrays[2], ~qs)

def test_renderer_attributes():
  r = LLVMRenderer()
  assert (r.device, r.suffix, r.has_local, r.supports_float4) == ("CPU", "LL", False, True)
  assert Ops.THREEFRY not in r.supported_ops and {Ops.EXP2, Ops.SIN, Ops.IDIV, Ops.MAX} <= r.supported_ops

def test_fp8_is_refused_with_a_clear_error():
  out = _g(0, dtypes.fp8e4m3, 4)
  r = UOp.range(4, 0)
  st = out.index(r).store(UOp.const(dtypes.fp8e4m3, 1.0))
  uops = linearize_steps(UOp.sink(st.end(r)), r, st, st.end(r))
  with pytest.raises(ValueError, match="fp8"): LLVMRenderer().render("f8", uops)

def test_double_to_half_rounds_once():
  # values just off a float16 tie, where rounding to float32 first would land exactly on the tie and round the wrong way
  e = 2.0 ** -11
  xs = np.array([1 + e + 2**-40, 1 + e - 2**-40, -(1 + e + 2**-40), 1 + 3 * e - 2**-45, 65519.99, 65520.0, 6e-8, 2.9e-8, 1e300, -0.0],
                np.float64)
  n = len(xs)
  out, inp = _g(0, dtypes.float16, n), _g(1, dtypes.float64, n)
  r = UOp.range(n, 0)
  st = out.index(r).store(inp.index(r).load().cast(dtypes.float16))
  uops = linearize_steps(UOp.sink(st.end(r)), r, st, st.end(r))
  k = JitKernel(LLVMRenderer().render("d2h", uops), "d2h", 2, [], 2)
  arrays = [np.zeros(n, np.float16), xs]
  k(arrays)
  with np.errstate(over="ignore"): np.testing.assert_array_equal(arrays[0].view(np.uint16), xs.astype(np.float16).view(np.uint16))
