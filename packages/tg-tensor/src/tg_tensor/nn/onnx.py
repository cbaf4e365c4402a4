"""`OnnxRunner`: run an ONNX model with tg Tensors, as tinygrad's runner does.

    runner = OnnxRunner("model.onnx")             # a path or an onnx.ModelProto
    outs = runner({"input": np_array_or_Tensor})  # {output name: Tensor}

The graph is walked once per call in its (already topological) node order; each node is dispatched to the implementation in
`tg_tensor.nn.onnx_ops` for the model's opset (ops are versioned by the opset they changed in). Initializers become Tensors
straight from their raw bytes (numpy views, no per-element Python loops) and keep their dtype, so float16 models stay float16.
The `onnx` package is needed only to parse the file."""
from __future__ import annotations
import os
from typing import Any
import numpy as np
from tg_uop.dtype import DType
from tg_tensor.tensor import Tensor
from tg_tensor.nn.onnx_ops import OnnxUnsupportedError, lookup_op, onnx_dtype, np_to_tensor

__all__ = ["OnnxRunner", "OnnxUnsupportedError", "onnx_dtype"]

def _import_onnx():
  try: import onnx
  except ImportError: raise ImportError("the ONNX runner needs the onnx package to read models: pip install onnx") from None
  return onnx

def tensor_proto_to_numpy(tp: Any) -> np.ndarray:
  """A TensorProto as a numpy array: raw bytes are viewed with np.frombuffer; typed fields go through numpy in one call."""
  from onnx import numpy_helper
  if tp.data_location == 1: raise ValueError(f"initializer {tp.name!r} stores its data in an external file: load the model with "
                                             f"onnx.load(path, load_external_data=True) and pass the ModelProto")
  return numpy_helper.to_array(tp)

def attribute_value(a: Any) -> Any:
  """A node attribute as a Python value (ints, floats, strings, lists, numpy arrays for tensors, GraphProtos kept)."""
  from onnx import AttributeProto as A
  if a.type == A.FLOAT: return float(a.f)
  if a.type == A.INT: return int(a.i)
  if a.type == A.STRING: return a.s.decode("utf-8", "replace")
  if a.type == A.TENSOR: return tensor_proto_to_numpy(a.t)
  if a.type == A.GRAPH: return a.g
  if a.type == A.FLOATS: return [float(v) for v in a.floats]
  if a.type == A.INTS: return [int(v) for v in a.ints]
  if a.type == A.STRINGS: return [s.decode("utf-8", "replace") for s in a.strings]
  if a.type == A.SPARSE_TENSOR: raise OnnxUnsupportedError(f"sparse tensor attribute {a.name!r} is not supported")
  if a.type == A.TYPE_PROTO: return a.tp
  raise OnnxUnsupportedError(f"attribute {a.name!r} of type {a.type} is not supported")

class OnnxRunner:
  """Runs an ONNX model: `OnnxRunner(model)(inputs: dict[str, np.ndarray | Tensor]) -> dict[str, Tensor]`."""
  def __init__(self, model: Any, device: str | None = None):
    onnx = _import_onnx()
    if isinstance(model, (str, os.PathLike)):
      if not os.path.exists(model): raise FileNotFoundError(f"no ONNX model at {os.fspath(model)!r}")
      model = onnx.load(os.fspath(model))
    if not isinstance(model, onnx.ModelProto):
      raise TypeError(f"OnnxRunner needs a path or an onnx.ModelProto, got {type(model).__name__}")
    self.model, self.device = model, device
    self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    self.graph = model.graph
    self.initializers: dict[str, Tensor] = {t.name: np_to_tensor(tensor_proto_to_numpy(t), device) for t in self.graph.initializer}
    self.inputs = [i for i in self.graph.input if i.name not in self.initializers]
    self.output_names = [o.name for o in self.graph.output]
    # resolve every op now, so a model with an unsupported op fails when loaded, naming all of them
    missing = sorted({f"{n.op_type} (domain {n.domain!r})" for n in _all_nodes(self.graph) if not self._known(n)})
    if missing: raise OnnxUnsupportedError(f"this model uses ops the tg ONNX runner doesn't implement for opset {self.opset}: "
                                           f"{', '.join(missing)}")

  def _known(self, node: Any) -> bool:
    try: lookup_op(node.op_type, node.domain, self.opset)
    except OnnxUnsupportedError: return False
    return True

  def _input_tensor(self, name: str, v: Any) -> Any:
    if isinstance(v, Tensor): return v if self.device is None else v.to(self.device)
    if v is None or isinstance(v, list): return v
    return np_to_tensor(np.asarray(v), self.device)

  def __call__(self, inputs: dict[str, Any] | None = None, debug: bool = False) -> dict[str, Any]:
    """Run the graph on `inputs` (by name); returns {output name: Tensor (or list for sequences, None for empty optionals)}."""
    inputs = dict(inputs or {})
    env: dict[str, Any] = dict(self.initializers)
    for inp in self.inputs:
      if inp.name not in inputs:
        if inp.type.HasField("optional_type"): env[inp.name] = None; continue
        raise ValueError(f"missing model input {inp.name!r}: the model needs {[i.name for i in self.inputs]}, got {sorted(inputs)}")
      env[inp.name] = self._input_tensor(inp.name, inputs.pop(inp.name))
    if inputs: raise ValueError(f"unknown model inputs {sorted(inputs)}: the model's inputs are {[i.name for i in self.inputs]}")
    run_graph(self.graph, env, self.opset, self.device, debug)
    return {n: env[n] for n in self.output_names}

def _all_nodes(graph: Any):
  """Every node of a graph, including those in subgraphs (If/Loop bodies)."""
  for n in graph.node:
    yield n
    for a in n.attribute:
      if a.g.node: yield from _all_nodes(a.g)
      for g in a.graphs: yield from _all_nodes(g)

class Ctx:
  """What an op implementation may need beyond its inputs and attributes."""
  __slots__ = ("opset", "device", "env", "debug", "n_outputs")
  def __init__(self, opset: int, device: str | None, env: dict[str, Any], debug: bool, n_outputs: int):
    self.opset, self.device, self.env, self.debug, self.n_outputs = opset, device, env, debug, n_outputs
  def run_subgraph(self, graph: Any, feeds: dict[str, Any]) -> list[Any]:
    """Run a subgraph (If/Loop body) seeing the enclosing values; returns its outputs in order."""
    env = {**self.env, **feeds}
    for t in graph.initializer: env[t.name] = np_to_tensor(tensor_proto_to_numpy(t), self.device)
    run_graph(graph, env, self.opset, self.device, self.debug)
    return [env[o.name] for o in graph.output]

def run_graph(graph: Any, env: dict[str, Any], opset: int, device: str | None = None, debug: bool = False) -> None:
  """Execute the nodes of `graph` in order, reading and writing values in `env`."""
  for node in graph.node:
    fn = lookup_op(node.op_type, node.domain, opset)
    args = [env[i] if i else None for i in node.input]
    for i, name in zip(args, node.input):
      if name and name not in env: raise ValueError(f"node {node.name!r} ({node.op_type}) reads {name!r}, which nothing produced")
    attrs = {a.name: attribute_value(a) for a in node.attribute}
    try: out = fn(Ctx(opset, device, env, debug, len(node.output)), *args, **attrs)
    except OnnxUnsupportedError: raise
    except TypeError as e:
      if "unexpected keyword argument" in str(e): raise OnnxUnsupportedError(f"{node.op_type}: {e}") from None
      raise
    outs = list(out) if isinstance(out, (tuple, list)) and not getattr(fn, "returns_sequence", False) else [out]
    if debug: print(f"{node.op_type:>20s} {node.name!r}: " + ", ".join(f"{getattr(o, 'shape', o)} {getattr(o, 'dtype', '')}" for o in outs))
    for name, v in zip(node.output, outs):
      if name: env[name] = v

def input_dtype(value_info: Any) -> DType | None:
  """The tg dtype a graph input declares (None when it declares no tensor type)."""
  tt = value_info.type.tensor_type
  return onnx_dtype(tt.elem_type) if tt.elem_type else None
