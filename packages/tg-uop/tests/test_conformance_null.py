"""The NULL device passes the tg_uop.testing conformance suite; the suite's programs are well-formed and its helpers behave."""
import importlib.metadata, subprocess, sys
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.runtime.renderer import Renderer
from tg_uop.uop import UOp
from tg_uop.testing import programs as P
from tg_uop.testing.conformance import AllocatorConformance, ImportCostConformance, ProgramConformance, measure_import

pytest_plugins = ["pytester"]

class TestNullAllocator(AllocatorConformance): device = "NULL"
class TestNullPrograms(ProgramConformance): device = "NULL"
class TestNullImportCost(ImportCostConformance): device = "NULL"

def test_every_program_has_a_reference_for_each_output():
  pytest.importorskip("numpy")
  for prog in P.all_programs():
    assert prog.expected and prog.uops[-1].op is Ops.SINK
    for i, exp in prog.expected.items():
      dt, n = prog.bufs[i]
      assert exp.size == n and exp.dtype.itemsize == dt.itemsize, f"{prog.name}: reference {i} doesn't match buffer {i}"
    params = sorted(u.arg for u in prog.uops if u.op is Ops.DEFINE_GLOBAL)
    assert params == list(range(len(prog.bufs))), f"{prog.name}: DEFINE_GLOBAL args must be 0..{len(prog.bufs) - 1}"
    assert len([u for u in prog.uops if u.op is Ops.DEFINE_VAR]) == len(prog.vals)

def test_validate_linear_rejects_a_use_outside_its_loop():
  pytest.importorskip("numpy")
  prog = P.get_program("reduce_rows")
  uops = list(prog.uops)
  # move the in-loop accumulator load after the END of its loop
  load = next(u for u in uops if u.op is Ops.LOAD and u.src[0].src[0].op is Ops.DEFINE_REG)
  end = next(u for u in uops if u.op is Ops.END)
  uops.remove(load)
  uops.insert(uops.index(end) + 1, load)
  with pytest.raises(ValueError): P.validate_linear(uops)

def test_validate_linear_rejects_unclosed_loops_and_missing_sink():
  r = UOp.range(4, 0)
  buf = UOp(Ops.DEFINE_GLOBAL, dtypes.int32.ptr(4), (), 0)
  st = buf.index(r).store(UOp.const(dtypes.int32, 1))
  with pytest.raises(ValueError, match="never closed"): P.validate_linear([buf, r.src[0], r, st.src[0], st.src[1], st, UOp.sink(st)])
  with pytest.raises(ValueError, match="SINK"): P.validate_linear([buf])

def test_unknown_program_name_is_a_clear_error():
  with pytest.raises(ValueError, match="elementwise"): P.get_program("nope")

def test_unsupported_reports_missing_renderer_features():
  pytest.importorskip("numpy")
  class NoLocals: has_local, has_shared, supports_float4 = False, False, False
  assert P.unsupported(P.get_program("local_reverse"), NoLocals()) is not None
  assert P.unsupported(P.get_program("vector"), NoLocals()) is not None
  assert P.unsupported(P.get_program("elementwise"), NoLocals()) is None
  class NoExp2: supported_ops = {Ops.MUL, Ops.ADD}
  assert "EXP2" in P.unsupported(P.get_program("float_alu"), NoExp2())
  class Exp2OnlyF64(Renderer):  # EXP2 native, but not on the float32 the program computes on
    supported_ops, native_dtypes = frozenset(GroupOp.ALU), {Ops.EXP2: frozenset({dtypes.float64})}
    def render(self, name, uops): return name
  assert "EXP2 on dtypes.float32" in P.unsupported(P.get_program("float_alu"), Exp2OnlyF64())
  assert P.unsupported(P.get_program("float_alu"), type("AllOps", (Exp2OnlyF64,), {"native_dtypes": {}})()) is None

def test_check_results_names_the_wrong_elements():
  pytest.importorskip("numpy")
  prog = P.get_program("elementwise")
  good = {0: prog.expected[0].copy()}
  assert P.check_results(prog, good) is None
  good[0][3] += 1.0
  assert "[3]" in P.check_results(prog, good)

def test_probe_reports_errors_as_text():
  assert P.probe_device("NULL") is None
  assert "unknown device" in P.probe_device("NOSUCHDEVICE")

def test_measure_import_sees_heavy_modules():
  res = measure_import("json", ("json", "numpy_is_not_here"))
  assert res["heavy"] == ["json"] and res["ms"] >= 0

def test_importing_the_testing_package_is_cheap():
  code = "import sys, tg_uop.testing, tg_uop.testing.plugin; print(sorted(m for m in ('numpy', 'tg_uop.testing.programs') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": ":".join(sys.path)})
  assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr

def test_pytest_plugin_fixtures_run_programs(pytester):
  pytester.makepyfile("""
    def test_fixture_device(tg_device, tg_device_name):
      assert tg_device_name == "NULL" and tg_device.device == "NULL"
    def test_each_program(tg_program, tg_check):
      tg_check(tg_program)
  """)
  # installed, the plugin comes in through its pytest11 entry point; from a source checkout it has to be named
  installed = any(ep.value == "tg_uop.testing.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
  res = pytester.runpytest(*(() if installed else ("-p", "tg_uop.testing.plugin")), "--tg-device", "NULL")
  res.assert_outcomes(passed=1 + len(P.PROGRAMS))
