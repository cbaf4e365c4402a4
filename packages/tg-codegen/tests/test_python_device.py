"""The PYTHON device: an exact interpreter of linearized UOps. It passes the tg_uop.testing conformance suite, and its semantics
(C integer division, gates, vectors, barriers, casts, low-precision floats, bounds checks) match the numpy/`exec_alu` references."""
import math, struct, types
import pytest
import tg_uop.device as device_mod
from tg_uop.alu import exec_alu
from tg_uop.device import DeviceRegistry
from tg_uop.dtype import dtypes, truncate_float
from tg_uop.ops import Ops
from tg_uop.plugins import DeviceSpec, RendererSpec, hookimpl
from tg_uop.plugins.manager import PluginManager
from tg_uop.runtime import Buffer, CompileError
from tg_uop.testing import programs as P
from tg_uop.testing.conformance import AllocatorConformance, ImportCostConformance, ProgramConformance
from tg_uop.uop import UOp
from tg_codegen.devices.python import PythonAllocator, PythonDevice, PythonProgram, PythonRenderer

np = pytest.importorskip("numpy")

def python_plugin() -> types.ModuleType:
  """A throwaway plugin registering PYTHON the way tg_codegen.plugin does, so these tests don't depend on that module."""
  mod = types.ModuleType("python_device_plugin")
  mod.TG_API_VERSION = (1, 0)
  mod.tg_devices = hookimpl(lambda: [DeviceSpec("PYTHON", loader=lambda: PythonDevice, renderers=("PYTHON",))])
  mod.tg_renderers = hookimpl(lambda: [RendererSpec("PYTHON", loader=lambda: PythonRenderer, devices=("PYTHON",))])
  return mod

@pytest.fixture(autouse=True)
def registry(monkeypatch):
  """`tg_uop.device.Device` over a plugin manager holding only NULL and PYTHON (Buffer and the conformance suite resolve through it)."""
  pm = PluginManager()
  assert pm.load_module("tg_uop.null", name="null").state == "loaded"
  assert pm.load_module(python_plugin(), name="python").state == "loaded"
  reg = DeviceRegistry(lambda: pm)
  monkeypatch.setattr(device_mod, "Device", reg)
  return reg

class TestPythonAllocator(AllocatorConformance): device = "PYTHON"
class TestPythonPrograms(ProgramConformance): device = "PYTHON"
class TestPluginEntryImportCost(ImportCostConformance): device, entry_module = "PYTHON", "tg_codegen.plugin"

# ---- helpers
def g(i, dt, n): return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)
def run(sink, *steps, bufs, inputs=None, outputs=(0,), **launch) -> dict:
  """Run a hand-built program on a fresh PYTHON device; returns the output buffers as numpy arrays."""
  prog = P.ConformanceProgram("t", P.linearize_steps(sink, *steps), bufs, inputs or {}, {i: None for i in outputs}, **launch)
  P.validate_linear(prog.uops)
  return P.run_program(PythonDevice(), prog)

def elementwise(fn, dt_in, dt_out, *arrays):
  """out[i] = fn(in0[i], in1[i], ...) over a RANGE loop."""
  n = len(arrays[0])
  ins = [g(k + 1, dt_in, n) for k in range(len(arrays))]
  r = UOp.range(n, 0)
  end = g(0, dt_out, n).index(r).store(fn(*(b.index(r).load() for b in ins))).end(r)
  return run(UOp.sink(end), end, bufs=[(dt_out, n)] + [(dt_in, n)] * len(arrays), inputs={k + 1: a for k, a in enumerate(arrays)})[0]

# ---- the device
def test_registry_opens_python_with_its_renderer(registry):
  dev = registry["PYTHON"]
  assert isinstance(dev, PythonDevice) and isinstance(dev.renderer, PythonRenderer) and dev.executes

def test_every_conformance_program_matches_numpy_on_a_directly_built_device():
  dev = PythonDevice()
  for prog in P.all_programs(): assert P.check_results(prog, P.run_program(dev, prog)) is None

def test_rendered_source_is_a_readable_listing_and_compiles_to_itself():
  dev, prog = PythonDevice(), P.get_program("matmul")
  src = dev.renderer.render("mm", prog.uops)
  lines = src.splitlines()
  assert lines[0].startswith("# tg-python-v1 kernel mm") and sum(ln.startswith("# ") for ln in lines) == len(prog.uops) + 1
  assert any("DEFINE_REG" in ln for ln in lines) and dev.compiler.compile(src) == src.encode()

def test_garbage_source_is_a_compile_error():
  with pytest.raises(CompileError, match="not a PYTHON program"): PythonDevice().compiler.compile("int main() {}")
  with pytest.raises(CompileError, match="corrupt"): PythonDevice().compiler.compile("# tg-python-v1 kernel x\n!!!notbase64")

def test_unbalanced_loops_are_a_compile_error():
  prog = P.get_program("elementwise")
  uops = [u for u in prog.uops[:-1] if u.op is not Ops.END] + [UOp.sink()]
  src = PythonRenderer().render("bad", uops)
  with pytest.raises(CompileError, match="never closed"): PythonDevice().compiler.compile(src)

def test_sources_missing_from_the_program_are_refused_when_rendering():
  prog = P.get_program("elementwise")
  with pytest.raises(CompileError, match="not in the program"): PythonRenderer().render("k", [u for u in prog.uops if u.op is not Ops.RANGE])

def test_unsupported_ops_are_refused_when_rendering():
  custom = UOp(Ops.CUSTOM, dtypes.float32, (), "f()")
  with pytest.raises(CompileError, match="CUSTOM"): PythonRenderer().render("k", [custom, UOp.sink(custom)])

def test_launch_argument_errors_are_clear():
  dev, prog = PythonDevice(), P.get_program("define_var")
  _, _, fxn = P.compile_program(dev, prog)
  bufs = [dev.allocator.alloc(dt.itemsize * n) for dt, n in prog.bufs]
  with pytest.raises(ValueError, match="takes 2 buffers"): fxn(bufs[0], vals=(3,))
  with pytest.raises(ValueError, match="variable values"): fxn(*bufs)
  with pytest.raises(ValueError, match=r"n=99 is outside \[1, 16\]"): fxn(*bufs, vals=(99,))
  assert isinstance(fxn(*bufs, vals=(3,), wait=True), float)

def test_out_of_bounds_access_names_the_buffer_and_index():
  n = 4
  r = UOp.range(n + 1, 0)
  end = g(0, dtypes.float32, n).index(r).store(g(1, dtypes.float32, n).index(r).load()).end(r)
  with pytest.raises(IndexError, match=r"data1\[4\] is out of bounds: it holds 4 elements"):
    run(UOp.sink(end), end, bufs=[(dtypes.float32, n)] * 2, inputs={1: np.ones(n, np.float32)})

# ---- semantics
def test_int_division_and_modulo_follow_c_for_every_sign():
  a = np.array([7, -7, 7, -7, 1, -1, 0, 100, -100], np.int32)
  b = np.array([2, 2, -2, -2, 3, 3, -5, 7, 7], np.int32)
  np.testing.assert_array_equal(elementwise(lambda x, y: x // y, dtypes.int32, dtypes.int32, a, b), np.trunc(a / b).astype(np.int32))
  np.testing.assert_array_equal(elementwise(lambda x, y: x % y, dtypes.int32, dtypes.int32, a, b), np.fmod(a, b))

def test_integer_arithmetic_wraps_to_the_dtype():
  a = np.array([127, -128, 100, 5], np.int8)
  np.testing.assert_array_equal(elementwise(lambda x, y: x + y, dtypes.int8, dtypes.int8, a, a), (a.astype(np.int16) * 2).astype(np.int8))
  u = np.array([0xffffffff, 0x80000000, 1, 12345], np.uint32)
  np.testing.assert_array_equal(elementwise(lambda x: x * 3, dtypes.uint32, dtypes.uint32, u), u * np.uint32(3))

def test_shift_right_is_logical_for_unsigned_and_arithmetic_for_signed():
  u = np.array([0x80000000, 0xffffffff, 16], np.uint32)
  np.testing.assert_array_equal(elementwise(lambda x: x >> 4, dtypes.uint32, dtypes.uint32, u), u >> 4)
  s = np.array([-256, -1, 16], np.int32)
  np.testing.assert_array_equal(elementwise(lambda x: x >> 4, dtypes.int32, dtypes.int32, s), s >> 4)

def test_float_max_propagates_nan_and_recip_of_zero_is_inf():
  x = np.array([1.0, np.nan, -2.0, 0.0], np.float32)
  y = np.array([np.nan, 1.0, -3.0, -0.0], np.float32)
  np.testing.assert_array_equal(elementwise(lambda a, b: a.maximum(b), dtypes.float32, dtypes.float32, x, y), np.maximum(x, y))
  with np.errstate(divide="ignore"):
    np.testing.assert_array_equal(elementwise(lambda a: UOp(Ops.RECIP, dtypes.float32, (a,)), dtypes.float32, dtypes.float32, x[[0, 2, 3]]),
                                  np.float32(1) / x[[0, 2, 3]])

def test_float32_ops_round_each_result_to_float32():
  x = np.array([1 / 3, 1e-8, 16777216.0], np.float32)
  y = np.array([3.0, 1.0, 1.0], np.float32)
  np.testing.assert_array_equal(elementwise(lambda a, b: a * b + a, dtypes.float32, dtypes.float32, x, y), x * y + x)

@pytest.mark.parametrize("dt", [dtypes.bfloat16, dtypes.fp8e4m3, dtypes.fp8e5m2, dtypes.float16])
def test_low_precision_floats_round_trip_through_memory_with_nearest_even(dt):
  x = np.array([1.0, 1 / 3, -2.71828, 0.1, 3.0e-3, 240.0, -0.0, 1000.0], np.float32)
  n = len(x)
  r = UOp.range(n, 0)
  st = g(1, dt, n).index(r).store(g(2, dtypes.float32, n).index(r).load().cast(dt))
  st2 = g(0, dtypes.float32, n).index(r).store(g(1, dt, n).index(r).load().cast(dtypes.float32))
  end = UOp(Ops.END, dtypes.void, (st, st2, r))
  out = run(UOp.sink(end), r, st, st2, end, bufs=[(dtypes.float32, n), (dt, n), (dtypes.float32, n)], inputs={2: x})[0]
  ref = np.array([truncate_float(float(v), dt) for v in x], np.float32)
  np.testing.assert_array_equal(out, ref)
  assert math.copysign(1, out[6]) == -1.0

def test_bfloat16_bits_in_memory_are_the_top_half_of_float32():
  x = np.array([1.0, -2.5, 3.140625], np.float32)
  n = len(x)
  out = elementwise(lambda a: a.cast(dtypes.bfloat16).bitcast(dtypes.uint16), dtypes.float32, dtypes.uint16, x)
  np.testing.assert_array_equal(out, (x.view(np.uint32) >> 16).astype(np.uint16))
  assert n == 3

def test_fp8e4m3_saturates_and_has_no_infinity():
  # as torch's float8_e4m3fn conversion: out-of-range values and inf saturate to +-448, nan stays nan
  x = np.array([448.0, 460.0, 1e6, 0.001953125, -0.0, np.inf, -np.inf, np.nan], np.float32)
  out = elementwise(lambda a: a.cast(dtypes.fp8e4m3).cast(dtypes.float32), dtypes.float32, dtypes.float32, x)
  assert out[0] == 448.0 and out[1] == 448.0 and out[2] == 448.0 and out[3] == 0.001953125
  assert out[5] == 448.0 and out[6] == -448.0 and math.isnan(out[7])

def test_casts_follow_c_conversions():
  x = np.array([-2.9, -0.1, 0.0, 0.7, 2.5, np.nan], np.float32)
  np.testing.assert_array_equal(elementwise(lambda a: a.cast(dtypes.int32), dtypes.float32, dtypes.int32, x[:5]), np.trunc(x[:5]).astype(np.int32))
  np.testing.assert_array_equal(elementwise(lambda a: a.cast(dtypes.bool), dtypes.float32, dtypes.bool, x), x != 0)
  i = np.array([-1, 256, 255, 65537], np.int32)
  np.testing.assert_array_equal(elementwise(lambda a: a.cast(dtypes.uint8), dtypes.int32, dtypes.uint8, i), i.astype(np.uint8))
  big = np.array([2**31 - 1, -2**31, 16777217], np.int32)
  np.testing.assert_array_equal(elementwise(lambda a: a.cast(dtypes.float32), dtypes.int32, dtypes.float32, big), big.astype(np.float32))

def test_vector_gather_and_per_lane_gated_vector_load():
  n = 8
  x = np.arange(n, dtype=np.float32) * 10
  r = UOp.range(2, 0)
  base = r * 4
  idx = UOp.vectorize(base + 3, base + 1, base + 0, base + 2)  # a gather: one address per lane
  gate = UOp.vectorize(*(UOp.const(dtypes.bool, b) for b in (True, False, True, False)))
  src = g(1, dtypes.float32, n)
  gathered = UOp(Ops.LOAD, dtypes.float32.vec(4), (UOp(Ops.INDEX, src.dtype.vec(4), (src, idx)),))
  gated = UOp(Ops.LOAD, dtypes.float32.vec(4), (src.index(base, gate=gate), UOp.const(dtypes.float32.vec(4), -1.0)))
  st0 = g(0, dtypes.float32, n).index(base).store(gathered)
  st2 = g(2, dtypes.float32, n).index(base).store(gated)
  end = UOp(Ops.END, dtypes.void, (st0, st2, r))
  out = run(UOp.sink(end), r, st0, st2, end, bufs=[(dtypes.float32, n)] * 3, inputs={1: x, 2: np.zeros(n, np.float32)}, outputs=(0, 2))
  np.testing.assert_array_equal(out[0], x.reshape(2, 4)[:, [3, 1, 0, 2]].reshape(-1))
  np.testing.assert_array_equal(out[2], np.where(np.tile([True, False, True, False], 2), x, -1.0).astype(np.float32))

def test_gated_load_never_touches_memory_where_the_gate_is_false():
  # index 1000 is far out of bounds: a gated-off load must not read it (the bounds check would raise)
  n = 4
  r = UOp.range(n, 0)
  src = g(1, dtypes.int32, n)
  idx = (r < 2).where(r, UOp.const(dtypes.index, 1000))
  v = UOp(Ops.LOAD, dtypes.int32, (src.index(idx, gate=r < 2), UOp.const(dtypes.int32, -7)))
  end = g(0, dtypes.int32, n).index(r).store(v).end(r)
  out = run(UOp.sink(end), end, bufs=[(dtypes.int32, n)] * 2, inputs={1: np.array([5, 6, 7, 8], np.int32)})[0]
  np.testing.assert_array_equal(out, [5, 6, -7, -7])

def test_threads_of_a_block_meet_at_barriers_in_lockstep():
  # each thread writes its id to shared memory, then (after the barrier) reads its neighbour's: only correct in lockstep
  blocks, threads = 3, 16
  n = blocks * threads
  gi, li = UOp.special(blocks, "gidx0"), UOp.special(threads, "lidx0")
  lm = UOp(Ops.DEFINE_LOCAL, dtypes.int32.ptr(threads, "local"), (), 0)
  st1 = lm.index(li).store((gi * 100 + li).cast(dtypes.int32))
  bar = UOp(Ops.BARRIER, dtypes.void, (st1,))
  st2 = g(0, dtypes.int32, n).index(gi * threads + li).store(lm.index((li + 1) % threads).load())
  out = run(UOp.sink(bar, st2), gi, li, st1, bar, st2, bufs=[(dtypes.int32, n)], global_size=(blocks, 1, 1), local_size=(threads, 1, 1))[0]
  ref = np.array([b * 100 + (t + 1) % threads for b in range(blocks) for t in range(threads)], np.int32)
  np.testing.assert_array_equal(out, ref)

def test_a_barrier_not_reached_by_every_thread_is_an_error():
  li = UOp.special(4, "lidx0")
  if_ = UOp(Ops.IF, dtypes.void, (li < 2,))
  bar = UOp(Ops.BARRIER, dtypes.void, ())
  endif = UOp(Ops.ENDIF, dtypes.void, (if_,))
  st = g(0, dtypes.int32, 4).index(li).store(UOp.const(dtypes.int32, 1))
  with pytest.raises(RuntimeError, match="BARRIER"):
    run(UOp.sink(bar, endif, st), li, if_, bar, endif, st, bufs=[(dtypes.int32, 4)], local_size=(4, 1, 1))

def test_multi_dimensional_launch_covers_every_block_and_thread():
  g0, g1, l0 = UOp.special(3, "gidx0"), UOp.special(2, "gidx1"), UOp.special(4, "lidx0")
  flat = (g1 * 3 + g0) * 4 + l0
  st = g(0, dtypes.int32, 24).index(flat).store(flat.cast(dtypes.int32))
  out = run(UOp.sink(st), g0, g1, l0, st, bufs=[(dtypes.int32, 24)], global_size=(3, 2, 1), local_size=(4, 1, 1))[0]
  np.testing.assert_array_equal(out, np.arange(24))

def test_nested_if_and_empty_loop():
  n = 6
  r, e = UOp.range(n, 0), UOp.range(0, 1)
  out = g(0, dtypes.int32, n)
  if1 = UOp(Ops.IF, dtypes.void, (r < 4,))
  if2 = UOp(Ops.IF, dtypes.void, ((r % 2).eq(0),))
  st = out.index(r).store(UOp.const(dtypes.int32, 1))
  end2, end1 = UOp(Ops.ENDIF, dtypes.void, (if2,)), UOp(Ops.ENDIF, dtypes.void, (if1,))
  st_empty = out.index(e).store(UOp.const(dtypes.int32, 99))
  ende = st_empty.end(e)
  end = UOp(Ops.END, dtypes.void, (st, end2, end1, ende, r))
  res = run(UOp.sink(end), r, if1, if2, st, end2, end1, e, st_empty, ende, end, bufs=[(dtypes.int32, n)], inputs={0: np.zeros(n, np.int32)})[0]
  np.testing.assert_array_equal(res, [1, 0, 1, 0, 0, 0])

@pytest.mark.parametrize("op", [Ops.ADD, Ops.MUL, Ops.MAX, Ops.AND, Ops.OR, Ops.XOR, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ, Ops.IDIV, Ops.MOD, Ops.SHL])
def test_int_binary_ops_agree_with_exec_alu(op):
  a = np.array([-9, 5, 2**31 - 1, 3, -1], np.int32)
  b = np.array([4, -3, 2, 1, 7], np.int32)
  odt = dtypes.bool if op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ) else dtypes.int32
  out = elementwise(lambda x, y: UOp(op, odt, (x, y)), dtypes.int32, odt, a, b)
  ref = [exec_alu(op, odt, (int(x), int(y))) for x, y in zip(a, b)]
  np.testing.assert_array_equal(out, np.array(ref, dtype=out.dtype))

def test_threefry_and_mulacc_run():
  x = np.array([0, 1, 2**40 + 5], np.uint64)
  k = np.array([7, 7, 123], np.uint64)
  out = elementwise(lambda a, b: UOp(Ops.THREEFRY, dtypes.uint64, (a, b)), dtypes.uint64, dtypes.uint64, x, k)
  np.testing.assert_array_equal(out, np.array([exec_alu(Ops.THREEFRY, dtypes.uint64, (int(a), int(b))) for a, b in zip(x, k)], np.uint64))
  f = np.array([1.5, -2.0], np.float32)
  np.testing.assert_array_equal(elementwise(lambda a: UOp(Ops.MULACC, dtypes.float32, (a, a, a)), dtypes.float32, dtypes.float32, f), f * f + f)

def test_bitcast_between_vector_shapes():
  x = np.array([1.0, -2.0], np.float32)
  out = elementwise(lambda a: a.bitcast(dtypes.int32), dtypes.float32, dtypes.int32, x)
  np.testing.assert_array_equal(out, x.view(np.int32))
  assert struct.pack("<f", 1.0) == out[:1].tobytes()

# ---- memory
def test_allocator_views_are_slices_of_the_same_bytes(registry):
  b = Buffer("PYTHON", 8, dtypes.int32).copyin(np.arange(8, dtype=np.int32))
  v = b.view(2, dtypes.int32, 8)
  np.testing.assert_array_equal(v.numpy(), [2, 3])
  v.copyin(np.array([-1, -2], np.int32))
  np.testing.assert_array_equal(b.numpy(), [0, 1, -1, -2, 4, 5, 6, 7])

def test_allocator_refuses_external_memory_clearly():
  from tg_uop.runtime.allocator import BufferSpec
  with pytest.raises(ValueError, match="external"): PythonAllocator("PYTHON").alloc(16, BufferSpec(external_ptr=1234))

def test_program_reads_and_writes_views():
  dev = PythonDevice()
  prog = P.get_program("elementwise")
  _, _, fxn = P.compile_program(dev, prog)
  assert isinstance(fxn, PythonProgram)
  base = dev.allocator.alloc(4 * 16 * 4)
  views = [dev.allocator._offset(base, 64, 64 * i) for i in (1, 2, 3)]
  for vw, arr in zip(views[1:], (prog.inputs[1], prog.inputs[2])): dev.allocator._copyin(vw, memoryview(arr.tobytes()))
  fxn(*views)
  out = np.frombuffer(bytes(base[64:128]), np.float32)
  np.testing.assert_allclose(out, prog.expected[0], rtol=1e-6)
  assert bytes(base[:64]) == bytes(64)
