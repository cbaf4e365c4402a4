"""UOp: hash-consing, immutability, graph walks, bounds soundness, shape/dtype checks, repr and render."""
import math, pickle, random
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp, sym_infer

def var(name, lo, hi, dt=dtypes.index): return UOp.variable(name, lo, hi, dt)

# ---- hash-consing and immutability ----
def test_building_the_same_uop_twice_gives_the_same_object():
  a, b = var("a", 0, 10), var("b", 0, 10)
  assert (a + b) * 3 is (a + b) * 3
  assert UOp(Ops.CONST, dtypes.float32, arg=1.5) is UOp.const(dtypes.float32, 1.5)
  assert UOp(Ops.SINK, src=(a, b)) is UOp.sink(a, b) and UOp.sink(a, b) is not UOp.sink(b, a)
  assert UOp.const(dtypes.int32, 1) is not UOp.const(dtypes.int64, 1)

def test_negative_zero_and_zero_are_distinct_constants():
  assert UOp.const(dtypes.float32, -0.0) is not UOp.const(dtypes.float32, 0.0)
  assert math.copysign(1, UOp.const(dtypes.float32, -0.0).arg) == -1

def test_nan_constants_dedup():
  assert UOp.const(dtypes.float32, math.nan) is UOp.const(dtypes.float32, float("nan"))

def test_float_and_int_constant_args_are_distinct():
  assert UOp(Ops.CONST, dtypes.index, arg=1) is not UOp(Ops.CONST, dtypes.index, arg=1.0)

def test_constants_are_coerced_to_their_dtype():
  assert UOp.const(dtypes.uint8, 300).arg == 44 and UOp.const(dtypes.float32, 1).arg == 1.0 and isinstance(UOp.const(dtypes.float32, 1).arg, float)
  assert UOp.const(dtypes.float32, 0.1).arg == struct_f32(0.1)

def struct_f32(v):
  import struct
  return struct.unpack("f", struct.pack("f", v))[0]

def test_uops_are_immutable():
  u = var("a", 0, 3) + 1
  with pytest.raises(AttributeError, match="immutable.*replace"): u.arg = 5
  with pytest.raises(AttributeError): u.src = ()

def test_replace_returns_the_same_object_when_nothing_changes_and_a_new_one_otherwise():
  u = UOp.const(dtypes.int32, 3)
  assert u.replace() is u and u.replace(arg=3) is u
  assert u.replace(arg=4) is UOp.const(dtypes.int32, 4)
  assert UOp.const(dtypes.float32, 0.0).replace(arg=-0.0) is UOp.const(dtypes.float32, -0.0)
  a = var("a", 0, 9)
  assert (a + 1).replace(op=Ops.MUL) is a * 1
  with pytest.raises(TypeError, match="unknown fields"): u.replace(shape=(1,))

def test_pickle_round_trip_gives_the_same_uop():
  a = var("a", 0, 9)
  e = (a * 4 + 3) // 2
  assert pickle.loads(pickle.dumps(e)) is e

def test_bool_of_a_uop_raises():
  a = var("a", 0, 9)
  with pytest.raises(TypeError, match="no truth value"): bool(a < 3)
  with pytest.raises(TypeError):
    if a: pass

def test_eq_is_identity_and_builds_no_graph():
  a = var("a", 0, 9)
  assert (a == a) is True and (a == var("b", 0, 9)) is False
  assert a.eq(3).op is Ops.CMPEQ

# ---- graph walks ----
def test_toposort_puts_sources_before_users():
  rng = random.Random(0)
  a, b = var("a", 0, 9), var("b", 0, 9)
  nodes = [a, b]
  for _ in range(200): nodes.append(rng.choice(nodes) * rng.choice(nodes) + rng.randint(0, 5))
  sink = UOp.sink(*nodes[-10:])
  order = list(sink.toposort())
  pos = {u: i for i, u in enumerate(order)}
  assert order[-1] is sink and len(order) == len(set(order))
  for u in order:
    for s in u.src: assert pos[s] < pos[u]

def test_toposort_of_a_deep_chain_does_not_recurse():
  x = var("a", 0, 1)
  for i in range(20000): x = x + (i % 3)
  order = list(x.toposort())
  assert order[0].op in (Ops.DEFINE_VAR, Ops.CONST) and order[-1] is x
  assert sum(1 for u in order if u.op is Ops.ADD) == 20000

def test_toposort_gate_stops_at_rejected_nodes():
  a, b = var("a", 0, 9), var("b", 0, 9)
  e = (a + b) * 2
  assert a not in e.toposort(gate=lambda u: u.op is not Ops.ADD)

def test_substitute_replaces_nodes_and_keeps_untouched_subgraphs():
  a, b, c = var("a", 0, 9), var("b", 0, 9), var("c", 0, 9)
  e = (a + b) * (b + 2)
  e2 = e.substitute({a: c})
  assert e2 is (c + b) * (b + 2) and e2.src[1] is e.src[1]
  assert e.substitute({}) is e
  assert sym_infer(e.substitute({b: UOp.const(dtypes.index, 4)}), {"a": 3}) == (3 + 4) * (4 + 2)

def test_substitute_on_a_deep_chain():
  a, b = var("a", 0, 9), var("b", 0, 9)
  x = a
  for _ in range(20000): x = x + 1
  assert sym_infer(x.substitute({a: b}), {"b": 5}) == 20005

# ---- bounds ----
def _random_expr(rng, leaves, dt, depth):
  if depth == 0 or rng.random() < 0.2:
    return rng.choice(leaves) if rng.random() < 0.8 else UOp.const(dt, rng.randint(int(max(dtypes.min(dt), -100)), int(min(dtypes.max(dt), 100))))
  a = _random_expr(rng, leaves, dt, depth - 1)
  b = _random_expr(rng, leaves, dt, depth - 1)
  k = rng.choice([c for c in (-7, -3, -1, 1, 2, 3, 5, 8, 64) if dtypes.min(dt) <= c <= dtypes.max(dt)])
  choice = rng.randrange(13)
  if choice == 0: return a + b
  if choice == 1: return a * b
  if choice == 2: return a - b
  if choice == 3: return a // k
  if choice == 4: return a % abs(k) if k != -1 else a % 3
  if choice == 5: return a.maximum(b)
  if choice == 6: return -a
  if choice == 7: return (a < b).where(a, b)
  if choice == 8: return a * k
  if choice == 9: return a & b
  if choice == 10: return a << rng.randrange(0, 4)
  if choice == 11: return a // b
  return a % b

@pytest.mark.parametrize("dt", [dtypes.int8, dtypes.int32, dtypes.index, dtypes.uint8], ids=str)
def test_vmin_vmax_contain_every_value_of_random_expressions(dt):
  rng = random.Random(hash(str(dt)) & 0xffff)
  lo, hi = (0, 200) if dt is dtypes.uint8 else (-100, 100) if dt is dtypes.int8 else (-2**20, 2**20)
  bounds = {n: sorted((rng.randint(lo, hi), rng.randint(lo, hi))) for n in "abc"}
  leaves = [var(n, b0, b1, dt) for n, (b0, b1) in bounds.items()]
  for _ in range(300):
    e = _random_expr(rng, leaves, dt, rng.randint(1, 5))
    if e.op is Ops.DEFINE_VAR or e.op is Ops.CONST: continue
    assert dtypes.min(dt) <= e.vmin <= e.vmax <= dtypes.max(dt)
    for _ in range(20):
      vals = {n: rng.choice([b0, b1, rng.randint(b0, b1)]) for n, (b0, b1) in bounds.items()}
      v = sym_infer(e, vals)
      assert e.vmin <= v <= e.vmax, f"{e.render()} = {v} with {vals}, but bounds are [{e.vmin}, {e.vmax}]"

def test_bounds_fall_back_to_the_full_range_when_arithmetic_can_wrap():
  a = var("a", 100, 120, dtypes.int8)
  s = a + 10
  assert s.vmax == 127 and s.vmin == -128  # 120+10 wraps in int8: nothing is known
  for v in (100, 120): assert s.vmin <= sym_infer(s, {"a": v}) <= s.vmax
  b = var("b", 0, 2**30, dtypes.int32)
  assert ((b * 4).vmin, (b * 4).vmax) == (dtypes.min(dtypes.int32), dtypes.max(dtypes.int32))
  assert ((b * 1).vmin, (b * 1).vmax) == (0, 2**30)

def test_bounds_of_ranges_specials_and_comparisons():
  r = UOp.range(16, 0)
  assert (r.vmin, r.vmax) == (0, 15)
  g = UOp.special(4, "gidx0")
  assert ((g * 16 + r).vmin, (g * 16 + r).vmax) == (0, 63)
  assert ((r // 4).vmin, (r // 4).vmax) == (0, 3) and ((r % 4).vmin, (r % 4).vmax) == (0, 3)
  assert ((r < 16).vmin, (r < 16).vmax) == (True, True) and ((r < 0).vmin, (r < 0).vmax) == (False, False)
  assert ((r < 8).vmin, (r < 8).vmax) == (False, True)

def test_float_bounds_are_infinite():
  x = UOp(Ops.DEFINE_VAR, dtypes.float32, arg=("x", 0, 1))
  y = x.alu(Ops.SQRT)
  assert (y.vmin, y.vmax) == (-math.inf, math.inf)

def test_bounds_of_casts_between_int_dtypes():
  a = var("a", -5, 300, dtypes.int32)
  c = a.cast(dtypes.uint8)
  assert dtypes.min(dtypes.uint8) <= c.vmin <= c.vmax <= dtypes.max(dtypes.uint8)
  assert (c.vmin, c.vmax) == (0, 255)  # -5 and 300 don't fit uint8: full range
  b = var("b", 3, 9, dtypes.int32)
  assert (b.cast(dtypes.int8).vmin, b.cast(dtypes.int8).vmax) == (3, 9)

def test_sym_infer_wraps_casts_to_the_target_dtype():
  # a CAST to a narrower int dtype wraps, so the evaluated value must lie in the target's range (and its bounds)
  a = var("a", 0, 300, dtypes.int32)
  c = a.cast(dtypes.uint8)
  assert sym_infer(c, {"a": 300}) == 300 % 256

def test_sym_infer_names_a_missing_variable():
  with pytest.raises(KeyError, match="'zz'"): sym_infer(var("zz", 0, 3) + 1, {})

def test_variable_with_empty_range_is_rejected():
  with pytest.raises(ValueError, match="min 5 > max 2"): UOp.variable("v", 5, 2)

# ---- dtype checks ----
def test_alu_with_mixed_dtypes_raises_a_helpful_type_error():
  i, f = UOp.const(dtypes.int32, 1), UOp.const(dtypes.float32, 1.0)
  with pytest.raises(TypeError, match=r"ADD needs operands of one dtype.*cast them first"): i + f
  with pytest.raises(TypeError, match="MUL"): f * UOp.const(dtypes.float16, 2.0)

def test_where_needs_a_bool_condition():
  a = var("a", 0, 9)
  with pytest.raises(TypeError, match="WHERE needs a bool condition"): a.where(1, 2)
  w = (a < 3).where(a, 7)
  assert w.dtype is dtypes.index and sym_infer(w, {"a": 1}) == 1 and sym_infer(w, {"a": 5}) == 7
  with pytest.raises(TypeError): (a < 3).where(UOp.const(dtypes.float32, 1.0), UOp.const(dtypes.int32, 1))

def test_comparisons_give_bool_and_python_scalars_take_the_uops_dtype():
  a = UOp.variable("a", 0, 9, dtypes.int32)
  assert (a < 3).dtype is dtypes.bool and (a + 1).src[1].dtype is dtypes.int32 and (2 * a).src[0].dtype is dtypes.int32
  v = UOp.const(dtypes.float32.vec(4), 1.0)
  assert (v < v).dtype is dtypes.bool.vec(4)

def test_index_needs_a_pointer_and_gep_checks_lanes():
  with pytest.raises(TypeError, match="pointer"): UOp.const(dtypes.int32, 0).index(UOp.const(dtypes.index, 0))
  v = UOp.vectorize(*[UOp.const(dtypes.float32, float(i)) for i in range(4)])
  with pytest.raises(IndexError): v.gep(4)
  assert v.gep(2).dtype is dtypes.float32 and v.gep((0, 1)).dtype is dtypes.float32.vec(2)
  with pytest.raises(TypeError, match="one dtype"): UOp.vectorize(UOp.const(dtypes.float32, 1.0), UOp.const(dtypes.int32, 1))

# ---- tensor-level shapes ----
def buf(n, dt=dtypes.float32): return UOp(Ops.BUFFER, dt, arg=n)
def mv(op, x, arg): return UOp(op, x.dtype, (x,), arg)

def test_shape_inference_of_movement_ops_matches_numpy():
  np = pytest.importorskip("numpy")
  ref = np.arange(24)
  x, r = buf(24), ref
  x, r = mv(Ops.RESHAPE, x, (2, 3, 4)), r.reshape(2, 3, 4)
  assert x.shape == r.shape
  x, r = mv(Ops.PERMUTE, x, (2, 0, 1)), r.transpose(2, 0, 1)
  assert x.shape == r.shape
  x, r = mv(Ops.SHRINK, x, ((1, 3), (0, 2), (0, 3))), r[1:3, 0:2, 0:3]
  assert x.shape == r.shape
  x, r = mv(Ops.PAD, x, ((0, 1), (2, 0), (1, 1))), np.pad(r, ((0, 1), (2, 0), (1, 1)))
  assert x.shape == r.shape
  x, r = mv(Ops.FLIP, x, (True, False, True)), r[::-1, :, ::-1]
  assert x.shape == r.shape
  y = mv(Ops.EXPAND, mv(Ops.RESHAPE, buf(3), (1, 3, 1)), (4, 3, 5))
  assert y.shape == np.broadcast_to(np.zeros((1, 3, 1)), (4, 3, 5)).shape
  red = UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.ADD, (0, 2)))
  assert red.shape == r.sum(axis=(0, 2)).shape
  assert (x + x).shape == x.shape and x.cast(dtypes.int32).shape == x.shape

def test_reshape_with_a_different_size_raises():
  with pytest.raises(ValueError, match=r"RESHAPE: can't reshape \(12,\) \(12 elements\) to \(5, 2\)"): mv(Ops.RESHAPE, buf(12), (5, 2)).shape
  with pytest.raises(ValueError, match="negative"): mv(Ops.RESHAPE, buf(12), (-1, 12)).shape

def test_bad_permute_raises():
  x = mv(Ops.RESHAPE, buf(6), (2, 3))
  for bad in [(0, 0), (0,), (0, 2), (1, 0, 2)]:
    with pytest.raises(ValueError, match="not a permutation"): mv(Ops.PERMUTE, x, bad).shape

def test_expand_of_a_non_one_axis_raises():
  x = mv(Ops.RESHAPE, buf(6), (2, 3))
  with pytest.raises(ValueError, match="only size-1 axes expand"): mv(Ops.EXPAND, x, (4, 3)).shape
  with pytest.raises(ValueError, match="number of axes"): mv(Ops.EXPAND, x, (1, 2, 3)).shape

def test_shrink_out_of_range_raises():
  x = mv(Ops.RESHAPE, buf(6), (2, 3))
  for bad in [((0, 3), (0, 3)), ((1, 0), (0, 3)), ((-1, 1), (0, 3)), ((0, 2),)]:
    with pytest.raises(ValueError, match="shrink .* doesn't fit"): mv(Ops.SHRINK, x, bad).shape

def test_pad_with_negative_amounts_raises():
  with pytest.raises(ValueError, match="non-negative"): mv(Ops.PAD, buf(6), ((-1, 0),)).shape

def test_reduce_removes_axes_and_rejects_out_of_range_axes():
  x = mv(Ops.RESHAPE, buf(24), (2, 3, 4))
  assert UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.ADD, (1,))).shape == (2, 4)
  assert UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.MAX, (0, 1, 2))).shape == ()
  with pytest.raises(ValueError, match="out of range"): UOp(Ops.REDUCE_AXIS, dtypes.float32, (x,), (Ops.ADD, (3,))).shape

def test_elementwise_of_mismatched_shapes_raises():
  a, b = mv(Ops.RESHAPE, buf(6), (2, 3)), mv(Ops.RESHAPE, buf(6), (3, 2))
  with pytest.raises(ValueError, match="differ"): (a + b).shape

def test_movement_of_a_kernel_level_uop_raises_and_kernel_uops_have_no_shape():
  r = UOp.range(4, 0)
  assert r.shape is None and (r + 1).shape is None
  with pytest.raises(ValueError, match="no shape"): mv(Ops.RESHAPE, r, (4,)).shape

# ---- repr and render ----
def test_repr_names_the_ops_and_prints_shared_nodes_once():
  a, b = var("a", 0, 9), var("b", 0, 9)
  s = a * 7 + b
  e = (s * s).maximum(s)
  text = repr(e)
  for name in ("Ops.MAX", "Ops.MUL", "Ops.ADD", "Ops.DEFINE_VAR", "dtypes.index"): assert name in text
  assert text.count("Ops.ADD") == 1 and text.count("arg=7") == 1  # the shared (a*7+b) is printed once, then referenced
  assert text.count("('a', 0, 9)") == 1

def test_repr_of_a_huge_graph_is_a_short_summary():
  x = var("a", 0, 1)
  for _ in range(1000): x = x + 1
  assert len(repr(x)) < 200 and "ADD" in repr(x)

def test_render_of_index_expressions_evaluates_like_sym_infer():
  rng = random.Random(7)
  names = ["a", "b", "c"]
  vs = [var(n, 0, 50) for n in names]
  for _ in range(200):
    e = rng.choice(vs)
    for _ in range(rng.randint(1, 6)):
      k = rng.randint(1, 9)
      e = rng.choice([lambda: e + rng.choice(vs), lambda: e * k, lambda: e // k, lambda: e % k, lambda: e + k, lambda: rng.choice(vs) * e])()
    vals = {n: rng.randint(0, 50) for n in names}
    assert eval(e.render(), {}, dict(vals)) == sym_infer(e, vals), e.render()

def test_render_names_variables_ranges_and_specials():
  text = (UOp.special(4, "gidx0") * 4 + UOp.range(4, 1) + var("n", 0, 8)).render()
  assert "gidx0" in text and "n" in text and "1" in text
