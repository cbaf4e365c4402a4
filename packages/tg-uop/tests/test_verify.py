"""`python -m tg_uop.verify`: every symbolic rule checks out, and wrong rules are caught."""
import json, math, os, subprocess, sys
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.rewrite import UPat
from tg_uop.uop import UOp
from tg_uop import verify
from tg_uop.verify import Config, QUICK, verify_rule, verify_rules

z3 = pytest.importorskip("z3", reason="the verifier needs z3-solver (pip install tg-uop[verify])")
from tg_uop.symbolic import symbolic_rules  # noqa: E402

SRC = os.path.join(os.path.dirname(__file__), "..", "src")
xi, c1, c2 = UPat.var("x", (dtypes.int32, dtypes.int64, dtypes.index)), UPat.cvar("c1", vec=False), UPat.cvar("c2", vec=False)
xf = UPat.var("x", (dtypes.float32, dtypes.float16))

@pytest.fixture(scope="module")
def results():
  return {r.name: r for r in verify_rules(symbolic_rules, QUICK)}

def test_no_symbolic_rule_is_refuted(results):
  bad = {n: r.detail() for n, r in results.items() if r.status == "refuted"}
  assert not bad, f"refuted rules: {bad}"

def test_every_symbolic_rule_is_exercised(results):
  assert [n for n, r in results.items() if r.status == "not exercised"] == []
  assert set(results) == {n for n, _, _ in symbolic_rules}

def test_integer_rules_are_proven_not_just_fuzzed(results):
  for name in ("add_consts", "mul_div_cancel", "mod_in_range", "lt_mul_const", "div_split_multiple", "sub_to_add"):
    assert results[name].status == "proven", (name, results[name].detail())

def test_div_by_two_is_not_shift_right():
  # -1 // 2 == 0 (C truncates) but -1 >> 1 == -1
  r = verify_rule("bad_div_shift", xi // c1, lambda x, c1: x >> x.const_like(1) if c1.arg == 2 else None, QUICK)
  assert r.status == "refuted"
  vals, before, after = r.counterexample["values"], r.counterexample["before"], r.counterexample["after"]
  assert vals["x"] < 0 and vals["x"] % 2 == 1 and before == after + 1

def test_dropping_an_added_constant_in_a_comparison_is_refuted():
  r = verify_rule("bad_lt", (xi + c1) < c2, lambda x, c1, c2: x < c2 if c1.arg != 0 else None, QUICK)
  assert r.status == "refuted"
  cex = r.counterexample
  assert isinstance(cex["before"], bool) and cex["before"] != cex["after"]

def test_counterexample_values_reproduce_the_difference():
  # x % c == x needs -c < x < c under C's truncation: this rule forgot the lower bound, wrong for x <= -c
  cfg = Config(**{**QUICK.__dict__, "bounds": QUICK.bounds + (("abs", -20, -1),)})
  r = verify_rule("bad_mod", xi % c1, lambda x, c1: x if c1.arg > 0 and x.vmax < c1.arg else None, cfg)
  assert r.status == "refuted" and r.refuted_pair is not None
  vals = r.counterexample["values"]
  before, after = (verify.evaluate(u, lambda v, end: vals[v.arg[0]]) for u in r.refuted_pair)
  assert vals["x"] <= -2 and (before, after) == (r.counterexample["before"], r.counterexample["after"]) and before != after

def test_float_times_zero_is_not_zero():
  # nan * 0, inf * 0 and -1 * 0 are not +0.0
  r = verify_rule("bad_fmul_zero", xf * UPat.const(None, 0.0), lambda x: x.const_like(0.0), QUICK)
  assert r.status == "refuted"

def test_transcendental_rule_is_fuzzed():
  pat = UPat(Ops.MUL, src=[UPat(Ops.EXP2, src=(xf,), name="e"), UPat.const(None, 1.0)])
  r = verify_rule("exp2_mul_one", pat, lambda e, x: e, QUICK)
  assert r.status == "unprovable" and r.fuzz_cases > 0

def test_wrong_transcendental_rule_is_refuted_by_fuzzing():
  r = verify_rule("bad_exp2", UPat(Ops.EXP2, src=(xf,)), lambda x: x * x.const_like(2.0), QUICK)
  assert r.status == "refuted" and "fuzzing" in r.counterexample["reason"]

def test_fp8_rule_is_proven_by_evaluating_every_value():
  x8, cfg = UPat.var("x", dtypes.fp8e4m3), Config(**{**QUICK.__dict__, "floats": (dtypes.fp8e4m3,)})
  ok = verify_rule("fp8_add_negzero", x8 + UPat.const(None, -0.0), lambda x: x, cfg)
  assert ok.status == "proven" and ok.exhaustive == ok.instances > 0
  bad = verify_rule("fp8_add_zero", x8 + UPat.const(None, 0.0), lambda x: x, cfg)  # -0.0 + 0.0 is +0.0
  assert bad.status == "refuted" and bad.counterexample["values"]["x"] == 0.0

def test_rule_that_changes_the_dtype_is_refuted():
  r = verify_rule("bad_dtype", xi + UPat.const(None, 0), lambda x: x.cast(dtypes.int8), QUICK)
  assert r.status == "refuted" and "dtype" in r.counterexample["reason"]

def test_rule_that_introduces_division_by_zero_is_refuted():
  # x // (x - x) is undefined for every x, so it may not appear where the original was defined
  r = verify_rule("bad_ub", xi * UPat.const(None, 1), lambda x: (x // (x - x)) * 0 + x, QUICK)
  assert r.status == "refuted" and "undefined" in str(r.counterexample["after"])

def test_a_rule_that_never_fires_is_not_exercised():
  r = verify_rule("never", xi + c1, lambda x, c1: None, QUICK)
  assert r.status == "not exercised" and r.instances == 0

def test_correct_custom_rule_is_proven():
  r = verify_rule("mul_two_is_add", xi * UPat.const(None, 2), lambda x: x + x, QUICK)
  assert r.status == "proven" and r.proven == r.instances > 0

def test_fuzz_evaluator_matches_c_semantics():
  x = UOp.variable("x", -10, 10, dtypes.int32)
  assert verify.evaluate(x // 3, lambda u, e: -7) == -2 and verify.evaluate(x % 3, lambda u, e: -7) == -1
  with pytest.raises(verify.UndefinedBehaviour): verify.evaluate(x // (x - x), lambda u, e: 1)
  assert verify.cast_value((1 << 60) + (1 << 36) + 1, dtypes.int64, dtypes.float32) == float((1 << 60) + (1 << 37))
  assert verify.same_value(math.nan, -math.nan) and not verify.same_value(0.0, -0.0)

def _run(*args, env=None):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC, **(env or {})})

def test_cli_json_for_one_rule():
  p = _run("-m", "tg_uop.verify", "--quick", "--json", "--rule", "add_zero", "--rule", "mod_in_range")
  assert p.returncode == 0, p.stderr
  out = json.loads(p.stdout)
  assert {r["name"]: r["status"] for r in out["rules"]} == {"add_zero": "proven", "mod_in_range": "proven"}

def test_cli_unknown_rule_is_a_clear_error():
  p = _run("-m", "tg_uop.verify", "--rule", "no_such_rule")
  assert p.returncode == 2 and "no_such_rule" in p.stderr and "add_zero" in p.stderr

def test_core_does_not_import_z3():
  p = _run("-c", "import sys, tg_uop, tg_uop.symbolic, tg_uop.verify; print('z3' in sys.modules)")
  assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr

def test_missing_z3_says_what_to_install():
  block = ("import sys, importlib.abc\n"
           "class Block(importlib.abc.MetaPathFinder):\n"
           "  def find_spec(self, name, path, target=None):\n"
           "    if name == 'z3' or name.startswith('z3.'): raise ImportError('no z3 here')\n"
           "sys.meta_path.insert(0, Block())\n"
           "from tg_uop.verify import main\n"
           "sys.exit(main(['--quick']))\n")
  p = _run("-c", block)
  assert p.returncode == 2 and "pip install tg-uop[verify]" in p.stderr
