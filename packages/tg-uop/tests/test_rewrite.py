"""UPat matching, PatternMatcher rule order and ctx, graph_rewrite order/fixed point/loops, rewrite tracking and match stats."""
import pytest
from tg_uop.dtype import dtypes
from tg_uop.helpers import Context
from tg_uop.ops import Ops
from tg_uop.rewrite import UPat, PatternMatcher, graph_rewrite, track_rewrites, add_rewrite_hook, RewriteLoopError, match_stats
from tg_uop.uop import UOp, sym_infer

def var(name, lo=0, hi=9, dt=dtypes.index): return UOp.variable(name, lo, hi, dt)
def c(v, dt=dtypes.index): return UOp.const(dt, v)
def matches(p: UPat, u: UOp) -> list: return p.match(u, {})

# ---- UPat ----
def test_upat_matches_op_dtype_and_arg():
  a = var("a")
  assert matches(UPat(Ops.ADD), a + 1) and not matches(UPat(Ops.MUL), a + 1)
  assert matches(UPat((Ops.ADD, Ops.MUL)), a * 2) and matches(UPat({Ops.ADD, Ops.MUL}), a + 2)
  assert matches(UPat(dtype=dtypes.index), a) and not matches(UPat(dtype=dtypes.int32), a)
  assert matches(UPat(dtype=(dtypes.int32, dtypes.index)), a)
  assert matches(UPat(dtype=dtypes.float32), UOp.const(dtypes.float32.vec(4), 1.0))  # a scalar dtype matches its vectors
  assert matches(UPat(Ops.CONST, arg=3), c(3)) and not matches(UPat(Ops.CONST, arg=3), c(4))

def test_upat_const_zero_matches_zero_but_not_negative_zero():
  p = UPat.const(dtypes.float32, 0)
  assert matches(p, UOp.const(dtypes.float32, 0.0))
  assert not matches(p, UOp.const(dtypes.float32, -0.0))
  assert matches(UPat.const(dtypes.float32, -0.0), UOp.const(dtypes.float32, -0.0))
  assert not matches(UPat.const(dtypes.float32, -0.0), UOp.const(dtypes.float32, 0.0))

def test_upat_binds_names_and_a_repeated_name_must_be_the_same_uop():
  a, b = var("a"), var("b")
  p = UPat(Ops.ADD, src=(UPat.var("x"), UPat.var("x")))
  assert matches(p, a + a) == [{"x": a}]
  assert matches(p, a + b) == []
  (store,) = matches(UPat(Ops.ADD, src=(UPat.var("x"), UPat.cvar("k"))), a + 5)
  assert store["x"] is a and store["k"] is c(5)

def test_upat_tuple_src_matches_in_order_and_list_src_in_any_order():
  a = var("a")
  tup = UPat(Ops.ADD, src=(UPat.var("x"), UPat.cvar("k")))
  lst = UPat(Ops.ADD, src=[UPat.var("x"), UPat.cvar("k")])
  fwd, rev = a + 5, c(5) + a
  assert matches(tup, fwd) and not matches(tup, rev)
  assert matches(lst, fwd) and matches(lst, rev)
  assert all(s["k"] is c(5) and s["x"] is a for s in matches(lst, rev))

def test_upat_single_src_pattern_must_match_every_source():
  p = UPat(Ops.SINK, src=UPat(Ops.CONST))
  assert matches(p, UOp.sink(c(1), c(2), c(3)))
  assert not matches(p, UOp.sink(c(1), var("a"), c(3)))

def test_upat_source_count_must_match_unless_allow_any_len():
  s = UOp.sink(c(1), var("a"), var("b"))
  assert not matches(UPat(Ops.SINK, src=(UPat(Ops.CONST),)), s)
  assert matches(UPat(Ops.SINK, src=(UPat(Ops.CONST),), allow_any_len=True), s)
  assert not matches(UPat(Ops.SINK, src=(UPat(Ops.DEFINE_VAR),), allow_any_len=True), s)

def test_upat_operators_build_patterns_like_uops():
  a, b = var("a"), var("b")
  p = (UPat.var("x") + UPat.var("y")) * UPat.cvar("k")
  (store, *_) = matches(p, c(3) * (b + a))  # MUL and ADD are commutative: sources in any order
  assert store["k"] is c(3) and {store["x"], store["y"]} == {a, b}

# ---- PatternMatcher ----
def test_first_rule_that_returns_a_uop_wins():
  a = var("a")
  calls = []
  pm = PatternMatcher([
    (UPat(Ops.ADD, name="x"), lambda x: calls.append("declines") or None),
    (UPat(Ops.ADD, name="x"), lambda x: calls.append("first") or c(1)),
    (UPat(Ops.ADD, name="x"), lambda x: calls.append("second") or c(2)),
  ])
  assert pm.rewrite(a + 1) is c(1) and calls == ["declines", "first"]
  assert pm.rewrite(a * 2) is None

def test_returning_the_same_uop_counts_as_no_rewrite():
  a = var("a")
  pm = PatternMatcher([(UPat(Ops.ADD, name="x"), lambda x: x), (UPat(Ops.ADD), lambda: c(7))])
  assert pm.rewrite(a + 1) is c(7)

def test_ctx_is_passed_to_rules_that_ask_for_it():
  a = var("a")
  seen = []
  pm = PatternMatcher([(UPat(Ops.ADD, name="x"), lambda ctx, x: (seen.append(ctx), c(ctx["n"]))[1])])
  assert graph_rewrite(a + 1, pm, ctx={"n": 42}) is c(42) and seen == [{"n": 42}]

def test_pattern_matcher_rejects_non_upat_rules_and_adds():
  with pytest.raises(TypeError, match="needs a UPat"): PatternMatcher([(Ops.ADD, lambda: None)])
  pm = PatternMatcher([(UPat(Ops.ADD), lambda: c(1))], "a") + PatternMatcher([(UPat(Ops.MUL), lambda: c(2))], "b")
  assert len(pm) == 2 and pm.rewrite(var("a") * 3) is c(2)

# ---- graph_rewrite ----
def _order_rules():
  # rule 1 rewrites any ADD into MAX; rule 2 rewrites MUL(ADD(..), z) into the variable "top"
  return PatternMatcher([
    (UPat(Ops.ADD, name="s"), lambda s: s.replace(op=Ops.MAX)),
    (UPat(Ops.MUL, src=[UPat(Ops.ADD), UPat.var("z")]), lambda z: var("top")),
  ])

def test_default_graph_rewrite_rewrites_sources_before_users():
  a, b, z = var("a"), var("b"), var("z")
  e = (a + b) * z
  assert graph_rewrite(e, _order_rules()) is a.maximum(b) * z  # the ADD changed first, so the MUL rule never saw it

def test_bottom_up_graph_rewrite_rewrites_users_before_sources():
  a, b, z = var("a"), var("b"), var("z")
  e = (a + b) * z
  assert graph_rewrite(e, _order_rules(), bottom_up=True) is var("top")

def test_rewrite_results_are_rewritten_again_to_a_fixed_point():
  pm = PatternMatcher([
    (UPat(Ops.MAX, src=(UPat.cvar("x"), UPat.cvar("y"))), lambda x, y: x + y),  # its result enables the next rule
    (UPat(Ops.ADD, src=(UPat.cvar("x"), UPat.cvar("y"))), lambda x, y: c(x.arg + y.arg)),
    (UPat(Ops.MUL, src=[UPat.var("x"), UPat.const(dtypes.index, 1)]), lambda x: x),
    (UPat(Ops.ADD, src=[UPat.var("x"), UPat.const(dtypes.index, 0)]), lambda x: x),
  ])
  a = var("a")
  e = (c(1).maximum(c(2)) + c(4)) * (a * 1 + 0 + 0) * 1
  for bu in (False, True):
    out = graph_rewrite(e, pm, bottom_up=bu)
    assert out is c(7) * a, bu
    assert graph_rewrite(out, pm, bottom_up=bu) is out

def test_graph_rewrite_with_no_applicable_rule_returns_the_same_graph():
  a = var("a")
  e = (a + 1) * 3
  assert graph_rewrite(e, PatternMatcher([(UPat(Ops.SQRT), lambda: c(0))])) is e

def test_a_looping_rule_set_raises_a_clear_error():
  pm = PatternMatcher([(UPat(Ops.ADD, src=(UPat.var("x"), UPat.var("y"))), lambda x, y: y + x)], name="swapper")
  a, b = var("a"), var("b")
  with pytest.raises(RewriteLoopError, match="swapper.*loop.*rewritten back into itself"): graph_rewrite(a + b, pm)

def test_a_looping_rule_set_is_detected_as_a_cycle_bottom_up_too():
  # a 2-cycle should be reported as such at once, not only after max_steps rewrites (1M by default: seconds of work)
  pm = PatternMatcher([(UPat(Ops.ADD, src=(UPat.var("x"), UPat.var("y"))), lambda x, y: y + x)], name="swapper")
  with pytest.raises(RewriteLoopError, match="swapper.*loop"): graph_rewrite(var("a") + var("b"), pm, bottom_up=True, max_steps=10_000)
  with pytest.raises(RewriteLoopError, match="rewritten back into itself"):
    graph_rewrite(var("a") + var("b"), pm, bottom_up=True, max_steps=10_000)

def test_a_growing_rule_set_is_stopped_by_max_steps():
  pm = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="x"), lambda x: var(x.arg[0] + "'"))], name="grower")
  with pytest.raises(RewriteLoopError, match="grower"): graph_rewrite(var("a") + 1, pm, max_steps=1000)

def test_shared_subgraphs_are_rewritten_once():
  a = var("a")
  s = a * 1
  calls = []
  pm = PatternMatcher([(UPat(Ops.MUL, src=[UPat.var("x"), UPat.const(dtypes.index, 1)]), lambda x: calls.append(1) or x)])
  assert graph_rewrite(UOp.sink(s + 1, s + 2, s * 3), pm) is UOp.sink(a + 1, a + 2, a * 3)
  assert len(calls) == 1

def test_rewriting_a_10k_node_graph_gives_the_right_result():
  pm = PatternMatcher([
    (UPat(Ops.MUL, src=[UPat.var("x"), UPat.const(dtypes.index, 1)]), lambda x: x),
    (UPat(Ops.ADD, src=[UPat.var("x"), UPat.const(dtypes.index, 0)]), lambda x: x),
  ])
  vs = [var(f"v{i}") for i in range(2500)]
  wide = UOp.sink(*[(v * 1 + 0) * 1 for v in vs])
  assert len(wide.toposort()) > 10000
  assert graph_rewrite(wide, pm) is UOp.sink(*vs) and graph_rewrite(wide, pm, bottom_up=True) is UOp.sink(*vs)
  deep = vs[0]
  for i in range(5000): deep = (deep * 1 + (i % 2)) if i % 2 else (deep + 0)
  out = graph_rewrite(deep, pm)
  assert len(out.toposort()) < len(deep.toposort()) and sym_infer(out, {"v0": 3}) == sym_infer(deep, {"v0": 3}) == 3 + 2500

# ---- tracking ----
def test_track_rewrites_records_every_step_with_before_after_and_rule_location():
  pm = PatternMatcher([
    (UPat(Ops.MUL, src=[UPat.var("x"), UPat.const(dtypes.index, 1)]), lambda x: x),
    (UPat(Ops.ADD, src=[UPat.var("x"), UPat.const(dtypes.index, 0)]), lambda x: x),
  ], name="ident")
  a = var("a")
  e = (a * 1 + 0) * 1
  with track_rewrites() as steps: out = graph_rewrite(e, pm)
  assert out is a and len(steps) == 3
  for st in steps:
    assert st.matcher == "ident" and st.rule.startswith("test_rewrite.py:") and st.before is not st.after
    assert sym_infer(st.before, {"a": 5}) == sym_infer(st.after, {"a": 5})
  assert [st.before.op for st in steps] == [Ops.MUL, Ops.ADD, Ops.MUL]
  with track_rewrites() as steps2: graph_rewrite(a + 5, pm)
  assert steps2 == []

def test_rewrite_hook_is_called_until_removed():
  pm = PatternMatcher([(UPat(Ops.ADD, src=[UPat.var("x"), UPat.const(dtypes.index, 0)]), lambda x: x)])
  seen = []
  remove = add_rewrite_hook(seen.append)
  try: graph_rewrite(var("a") + 0, pm)
  finally: remove()
  assert len(seen) == 1 and seen[0].after is var("a")
  graph_rewrite(var("b") + 0, pm)
  assert len(seen) == 1

def test_track_match_stats_counts_tries_and_rewrites_per_rule():
  def fold(x): return x
  def never(x): return None
  pm = PatternMatcher([(UPat(Ops.ADD, src=[UPat.var("x"), UPat.const(dtypes.index, 0)]), fold), (UPat(Ops.MUL, name="x"), never)])
  loc_fold = f"test_rewrite.py:{fold.__code__.co_firstlineno}"
  loc_never = f"test_rewrite.py:{never.__code__.co_firstlineno}"
  before = {k: list(v) for k, v in match_stats.items()}
  graph_rewrite(var("a") * 2 + 0, pm)  # TRACK_MATCH_STATS off: nothing counted
  assert {k: list(v) for k, v in match_stats.items()} == before
  with Context(TRACK_MATCH_STATS=1): graph_rewrite((var("a") * 2 + 0) * 3, pm)
  f0, n0 = before.get(loc_fold, [0, 0]), before.get(loc_never, [0, 0])
  assert match_stats[loc_fold][1] - f0[1] == 1 and match_stats[loc_fold][0] - f0[0] >= 1
  assert match_stats[loc_never][0] - n0[0] == 2 and match_stats[loc_never][1] - n0[1] == 0
