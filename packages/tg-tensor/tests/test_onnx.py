"""tg_tensor.nn.onnx.OnnxRunner on small models built with onnx.helper, compared against onnx's reference evaluator."""
import numpy as np
import pytest
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from tg_uop.dtype import dtypes
from tg_tensor import Tensor
from tg_tensor.nn.onnx import OnnxRunner, OnnxUnsupportedError

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT

def _model(nodes, inputs, outputs, inits=(), opset=17):
  """A checked ModelProto from nodes, (name, elem_type, shape) inputs/outputs and numpy initializers {name: array}."""
  g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
                        [numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
  m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
  m.ir_version = 8  # outputs may leave their shape open (None), which the strict checker rejects
  return m

def _check(model, feeds, atol=1e-5, rtol=1e-4):
  """Run the model with tg and with onnx's reference evaluator; every output must match in shape, dtype and value."""
  ours = OnnxRunner(model)(feeds)
  ref = ReferenceEvaluator(model).run(None, feeds)
  assert list(ours) == [o.name for o in model.graph.output]
  for (name, t), r in zip(ours.items(), ref):
    got = t.numpy()
    assert got.shape == r.shape, f"{name}: shape {got.shape} != {r.shape}"
    assert got.dtype == r.dtype, f"{name}: dtype {got.dtype} != {r.dtype}"
    np.testing.assert_allclose(got.astype(np.float64), r.astype(np.float64), atol=atol, rtol=rtol, err_msg=name)
  return ours

def _randn(*shape, dtype=np.float32): return RNG.standard_normal(shape).astype(dtype)

def test_mlp_with_gemm_relu_softmax_matches_reference():
  nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
           helper.make_node("MatMul", ["r", "w2"], ["m"]), helper.make_node("Add", ["m", "b2"], ["z"]),
           helper.make_node("Softmax", ["z"], ["y"], axis=-1)]
  m = _model(nodes, [("x", F, [4, 8])], [("y", F, [4, 3])], {"w1": _randn(16, 8), "b1": _randn(16), "w2": _randn(16, 3), "b2": _randn(3)})
  _check(m, {"x": _randn(4, 8)})

def test_cnn_conv_batchnorm_pool_matches_reference():
  nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
           helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["n"], epsilon=1e-5),
           helper.make_node("Relu", ["n"], ["r"]), helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
           helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
           helper.make_node("GlobalAveragePool", ["a"], ["g"]), helper.make_node("Flatten", ["g"], ["y"], axis=1)]
  inits = {"w": _randn(4, 3, 3, 3), "b": _randn(4), "s": _randn(4), "bb": _randn(4), "mu": _randn(4),
           "var": np.abs(_randn(4)) + 0.5}
  m = _model(nodes, [("x", F, [2, 3, 8, 8])], [("y", F, [2, 4])], inits)
  _check(m, {"x": _randn(2, 3, 8, 8)}, atol=1e-4)

def test_conv_transpose_with_output_padding_matches_reference():
  node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 1])
  m = _model([node], [("x", F, [1, 2, 4, 4])], [("y", F, None)], {"w": _randn(2, 3, 3, 3)})
  _check(m, {"x": _randn(1, 2, 4, 4)}, atol=1e-4)

def test_shape_arithmetic_chain_reshapes_with_computed_shape():
  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape: shape tensors computed in the graph decide the output shape
  nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
           helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]), helper.make_node("Concat", ["n1", "minus1"], ["ns"], axis=0),
           helper.make_node("Reshape", ["x", "ns"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
           helper.make_node("Slice", ["t", "st", "en", "axs", "stp"], ["y"])]
  inits = {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
           "st": np.array([-1, 0], np.int64), "en": np.array([-1000, 2**62], np.int64), "axs": np.array([0, 1], np.int64),
           "stp": np.array([-2, 1], np.int64)}
  m = _model(nodes, [("x", F, [3, 2, 4])], [("y", F, None)], inits)
  out = _check(m, {"x": _randn(3, 2, 4)})
  assert out["y"].shape == (4, 3)

def test_split_concat_pad_tile_expand_match_reference():
  nodes = [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1), helper.make_node("Concat", ["b", "a"], ["c"], axis=1),
           helper.make_node("Pad", ["c", "pads"], ["p"], mode="reflect"), helper.make_node("Tile", ["p", "reps"], ["t"]),
           helper.make_node("Expand", ["t", "eshape"], ["y"])]
  inits = {"sp": np.array([1, 3], np.int64), "pads": np.array([0, 1, 0, 2], np.int64), "reps": np.array([1, 2], np.int64),
           "eshape": np.array([2, 1, 1], np.int64)}
  m = _model(nodes, [("x", F, [3, 4])], [("y", F, None)], inits)
  _check(m, {"x": _randn(3, 4)})

def test_softmax_before_opset_13_flattens_from_axis():
  # Softmax-11 normalizes over all axes from `axis` on (a 2-d view), Softmax-13 over `axis` alone. onnx's reference evaluator
  # applies the new rule to both, so opset 11 is checked against numpy on the spec's 2-d view.
  x = _randn(2, 3, 4)
  def m(opset): return _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [("x", F, [2, 3, 4])], [("y", F, [2, 3, 4])], opset=opset)
  flat = np.exp(x.reshape(2, 12) - x.reshape(2, 12).max(1, keepdims=True))
  np.testing.assert_allclose(OnnxRunner(m(11))({"x": x})["y"].numpy(), (flat / flat.sum(1, keepdims=True)).reshape(x.shape), rtol=1e-5)
  _check(m(13), {"x": x})

@pytest.mark.parametrize("opset", [13, 18])
def test_reductions_take_axes_as_attribute_or_input_by_opset(opset):
  x = _randn(2, 3, 4)
  ax = np.array([0, 2], np.int64)
  ops = ["ReduceMean", "ReduceMax", "ReduceProd", "ReduceL2"] + (["ReduceSum"] if opset >= 13 else [])
  nodes, outs = [], []
  for op in ops:
    axes_as_input = op == "ReduceSum" or opset >= 18
    nodes.append(helper.make_node(op, ["x", "axes"] if axes_as_input else ["x"], [op], keepdims=1,
                                  **({} if axes_as_input else {"axes": [0, 2]})))
    outs.append((op, F, None))
  m = _model(nodes, [("x", F, [2, 3, 4])], outs, {"axes": ax}, opset=opset)
  _check(m, {"x": x}, atol=1e-4)

def test_indexing_and_search_ops_match_reference():
  nodes = [helper.make_node("ArgMax", ["x"], ["am"], axis=1, keepdims=0), helper.make_node("TopK", ["x", "k"], ["tv", "ti"], axis=-1),
           helper.make_node("Gather", ["x", "gi"], ["g"], axis=1), helper.make_node("GatherElements", ["x", "ge"], ["gel"], axis=1),
           helper.make_node("CumSum", ["x", "cax"], ["cs"], exclusive=1, reverse=1),
           helper.make_node("Greater", ["x", "zero"], ["gt"]), helper.make_node("Where", ["gt", "x", "zero"], ["wh"]),
           helper.make_node("Einsum", ["x", "x"], ["es"], equation="ij,kj->ik")]
  inits = {"k": np.array([2], np.int64), "gi": np.array([[3, -1], [0, 2]], np.int64), "ge": np.array([[0, 4], [2, 1], [3, 3]], np.int64),
           "cax": np.array(1, np.int64), "zero": np.array(0, np.float32)}
  outs = [(n, t, None) for n, t in [("am", TensorProto.INT64), ("tv", F), ("ti", TensorProto.INT64), ("g", F), ("gel", F), ("cs", F),
                                    ("gt", TensorProto.BOOL), ("wh", F), ("es", F)]]
  m = _model(nodes, [("x", F, [3, 5])], outs, inits)
  _check(m, {"x": _randn(3, 5)}, atol=1e-4)

def test_generators_range_constant_of_shape_and_cast():
  nodes = [helper.make_node("Range", ["s", "l", "d"], ["r"]), helper.make_node("Cast", ["r"], ["rf"], to=F),
           helper.make_node("ConstantOfShape", ["shp"], ["c"], value=helper.make_tensor("v", TensorProto.INT32, [1], [7])),
           helper.make_node("Constant", [], ["k"], value_floats=[1.5, -2.0]), helper.make_node("Mul", ["rf", "k"], ["y"])]
  inits = {"s": np.array(1, np.int64), "l": np.array(5, np.int64), "d": np.array(2, np.int64), "shp": np.array([2, 3], np.int64)}
  m = _model(nodes, [], [("r", TensorProto.INT64, None), ("c", TensorProto.INT32, None), ("y", F, None)], inits)
  _check(m, {})

@pytest.mark.parametrize("mode,ctm", [("nearest", "asymmetric"), ("linear", "half_pixel"), ("linear", "align_corners")])
def test_resize_matches_reference(mode, ctm):
  node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, coordinate_transformation_mode=ctm)
  m = _model([node], [("x", F, [1, 2, 3, 4])], [("y", F, None)], {"scales": np.array([1, 1, 2, 1.5], np.float32)}, opset=13)
  _check(m, {"x": _randn(1, 2, 3, 4)}, atol=1e-5)

def test_layernorm_gelu_erf_transformer_block_matches_reference():
  nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], axis=-1, epsilon=1e-5),
           helper.make_node("MatMul", ["n", "w"], ["h"]), helper.make_node("Gelu", ["h"], ["a"]),
           helper.make_node("Erf", ["a"], ["y"])]
  m = _model(nodes, [("x", F, [2, 5, 8])], [("y", F, None)], {"g": _randn(8), "b": _randn(8), "w": _randn(8, 8)}, opset=20)
  _check(m, {"x": _randn(2, 5, 8)}, atol=1e-4)

def test_float16_model_stays_float16():
  x = _randn(3, 4, dtype=np.float16)
  nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
  m = _model(nodes, [("x", TensorProto.FLOAT16, [3, 4])], [("y", TensorProto.FLOAT16, [3, 2])],
             {"w": _randn(4, 2, dtype=np.float16), "b": _randn(2, dtype=np.float16)})
  runner = OnnxRunner(m)
  assert runner.initializers["w"].dtype == dtypes.float16
  out = runner({"x": x})["y"]
  assert out.dtype == dtypes.float16
  np.testing.assert_allclose(out.numpy().astype(np.float32), (x.astype(np.float32) @ numpy_helper.to_array(m.graph.initializer[0])
                             .astype(np.float32)) + numpy_helper.to_array(m.graph.initializer[1]).astype(np.float32), atol=2e-2, rtol=1e-2)

def test_large_initializer_loads_from_raw_bytes(tmp_path):
  w = _randn(1 << 20)
  m = _model([helper.make_node("ReduceSum", ["w"], ["y"], keepdims=0)], [], [("y", F, None)], {"w": w})
  assert m.graph.initializer[0].raw_data  # stored as raw bytes: loaded with one frombuffer, not element by element
  path = tmp_path / "big.onnx"
  onnx.save(m, str(path))
  runner = OnnxRunner(str(path))
  np.testing.assert_array_equal(runner.initializers["w"].numpy(), w)
  np.testing.assert_allclose(runner({})["y"].numpy(), w.sum(dtype=np.float64), rtol=1e-4)

def test_accepts_tensor_inputs():
  m = _model([helper.make_node("Sqrt", ["x"], ["y"])], [("x", F, [4])], [("y", F, [4])])
  out = OnnxRunner(m)({"x": Tensor([1.0, 4.0, 9.0, 16.0])})["y"]
  np.testing.assert_allclose(out.numpy(), [1, 2, 3, 4])

def test_if_runs_the_branch_the_condition_picks():
  then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [3])])
  else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, [3])])
  m = _model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
             [("c", TensorProto.BOOL, []), ("x", F, [3])], [("y", F, [3])])
  x = np.array([-1.0, 2.0, -3.0], np.float32)
  for c in (True, False): _check(m, {"c": np.array(c), "x": x})

def test_unsupported_op_fails_at_load_naming_it():
  m = helper.make_model(helper.make_graph([helper.make_node("StringNormalizer", ["x"], ["y"])], "g",
                                          [helper.make_tensor_value_info("x", TensorProto.STRING, [2])],
                                          [helper.make_tensor_value_info("y", TensorProto.STRING, [2])]))
  with pytest.raises(OnnxUnsupportedError, match="StringNormalizer"): OnnxRunner(m)

def test_missing_input_names_the_input():
  m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("y", F, [2])])
  with pytest.raises(ValueError, match="'x'"): OnnxRunner(m)({})
  with pytest.raises(ValueError, match="unknown model inputs"): OnnxRunner(m)({"x": np.zeros(2, np.float32), "z": np.zeros(1)})

def test_bad_model_argument_says_what_is_expected(tmp_path):
  with pytest.raises(FileNotFoundError, match="no ONNX model"): OnnxRunner(tmp_path / "missing.onnx")
  with pytest.raises(TypeError, match="path or an onnx.ModelProto"): OnnxRunner(42)
