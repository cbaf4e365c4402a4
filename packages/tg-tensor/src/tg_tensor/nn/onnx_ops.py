"""ONNX op implementations over the tg Tensor API, versioned by opset.

Each op is `fn(ctx, *inputs, **attributes)`; inputs are Tensors (None for an omitted optional input) and attributes are Python
values. `@onnx_op(name, since)` registers an implementation for opsets >= `since`; the runner picks the newest one not newer than
the model's opset. Arguments that decide shapes (Reshape's shape, Slice's starts, ...) are read back to the host, as ONNX
allows them to be computed tensors."""
from __future__ import annotations
import math
from typing import Any, Callable, Sequence
import numpy as np
from tg_uop.dtype import DType, dtypes
from tg_tensor.tensor import Tensor

class OnnxUnsupportedError(NotImplementedError):
  """An ONNX op, attribute value or data type the tg runner doesn't implement (the message names which)."""

_OPS: dict[tuple[str, str], list[tuple[int, Callable]]] = {}

def onnx_op(name: str, since: int = 1, domain: str = "") -> Callable[[Callable], Callable]:
  """Register `fn` as the implementation of op `name` for opsets >= `since`."""
  def deco(fn: Callable) -> Callable:
    for n in name.split():
      _OPS.setdefault((domain, n), []).append((since, fn))
      _OPS[(domain, n)].sort(key=lambda p: p[0])
    return fn
  return deco

def lookup_op(name: str, domain: str, opset: int) -> Callable:
  """The implementation of op `name` for `opset` (raises OnnxUnsupportedError when there is none)."""
  dom = "" if domain in ("", "ai.onnx") else domain
  impls = _OPS.get((dom, name))
  if not impls: raise OnnxUnsupportedError(f"ONNX op {name!r} (domain {domain!r}) is not supported by the tg ONNX runner")
  fit = [fn for since, fn in impls if since <= opset]
  return fit[-1] if fit else impls[0][1]

def supported_ops() -> list[str]:
  """The names of the ops this runner implements (default domain)."""
  return sorted(n for d, n in _OPS if d == "")

# ---- dtypes and constants ----

_ONNX_DTYPES: dict[int, DType] = {1: dtypes.float32, 2: dtypes.uint8, 3: dtypes.int8, 4: dtypes.uint16, 5: dtypes.int16, 6: dtypes.int32,
                                  7: dtypes.int64, 9: dtypes.bool, 10: dtypes.float16, 11: dtypes.float64, 12: dtypes.uint32,
                                  13: dtypes.uint64, 16: dtypes.bfloat16, 17: dtypes.fp8e4m3, 19: dtypes.fp8e5m2}
_ONNX_NAMES = {8: "string", 14: "complex64", 15: "complex128", 18: "float8e4m3fnuz", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
               23: "float4e2m1"}

def onnx_dtype(elem_type: int) -> DType:
  """The tg dtype of an ONNX TensorProto element type."""
  if (dt := _ONNX_DTYPES.get(elem_type)) is None:
    raise OnnxUnsupportedError(f"ONNX element type {_ONNX_NAMES.get(elem_type, elem_type)} has no tg dtype")
  return dt

_EXOTIC_NP = {"bfloat16": dtypes.bfloat16, "float8_e4m3fn": dtypes.fp8e4m3, "float8_e5m2": dtypes.fp8e5m2}

def np_to_tensor(arr: np.ndarray, device: str | None = None) -> Tensor:
  """A Tensor holding a numpy array's data and dtype (ml_dtypes' bfloat16/fp8 go through float32)."""
  arr = np.asarray(arr)
  if arr.dtype.name in _EXOTIC_NP: return Tensor(arr.astype(np.float32), device=device).cast(_EXOTIC_NP[arr.dtype.name])
  if arr.dtype.kind not in "biuf": raise OnnxUnsupportedError(f"tensors of numpy dtype {arr.dtype} (e.g. strings) are not supported")
  if arr.ndim == 0: return Tensor(arr.reshape(1), device=device).reshape(())  # Tensor(0-d array) would come out with shape (1,)
  return Tensor(np.ascontiguousarray(arr), device=device)

def _np(t: Tensor | None) -> np.ndarray | None:
  """A tensor's values on the host (shape-deciding inputs)."""
  return None if t is None else t.numpy()

def _ints(t: Tensor | None) -> list[int] | None:
  return None if t is None else [int(v) for v in _np(t).reshape(-1)]

def _scalar(t: Tensor | None, default: Any = None) -> Any:
  return default if t is None else _np(t).reshape(-1)[0].item()

def _axis(axis: int, ndim: int) -> int: return axis + ndim if axis < 0 else axis

def _like(x: Tensor, v: Any) -> Tensor: return Tensor._const(v, x.dtype, x.shape, x.device)

# ---- elementwise ----

def _unary(name: str, f: Callable[[Tensor], Tensor]) -> None:
  onnx_op(name)(lambda ctx, x, **kw: f(x))

for _n, _f in {"Neg": Tensor.neg, "Abs": Tensor.abs, "Sqrt": Tensor.sqrt, "Exp": Tensor.exp, "Log": Tensor.log, "Relu": Tensor.relu,
               "Sigmoid": Tensor.sigmoid, "Tanh": Tensor.tanh, "Erf": Tensor.erf, "Floor": Tensor.floor, "Ceil": Tensor.ceil,
               "Round": Tensor.round, "Reciprocal": Tensor.reciprocal, "Sin": Tensor.sin, "Cos": Tensor.cos, "Tan": Tensor.tan,
               "Sign": Tensor.sign, "Softsign": lambda x: x / (1 + x.abs()), "Mish": Tensor.mish, "IsNaN": Tensor.isnan,
               "Not": Tensor.logical_not, "BitwiseNot": Tensor.bitwise_not, "HardSwish": Tensor.hardswish,
               "Sinh": lambda x: (x.exp() - (-x).exp()) / 2, "Cosh": lambda x: (x.exp() + (-x).exp()) / 2,
               "Asinh": lambda x: (x + (x * x + 1).sqrt()).log(), "Acosh": lambda x: (x + (x * x - 1).sqrt()).log(),
               "Atanh": lambda x: ((1 + x) / (1 - x)).log() / 2, "Atan": lambda x: _atan(x),
               "Asin": lambda x: _atan(x / (1 - x * x).sqrt()), "Acos": lambda x: math.pi / 2 - _atan(x / (1 - x * x).sqrt())}.items():
  _unary(_n, _f)

def _atan(x: Tensor) -> Tensor:
  """arctan by range reduction to [0, tan(pi/12)] and a short odd polynomial (float32 accurate)."""
  ax = x.abs()
  inv = ax > 1
  a = inv.where(1 / ax, ax)
  red = a > 0.2679491924311227
  b = red.where((a * math.sqrt(3) - 1) / (a + math.sqrt(3)), a)
  b2 = b * b
  p = b * (1 + b2 * (-1 / 3 + b2 * (1 / 5 + b2 * (-1 / 7 + b2 * (1 / 9 - b2 / 11)))))
  p = red.where(p + math.pi / 6, p)
  p = inv.where(math.pi / 2 - p, p)
  return (x < 0).where(-p, p)

@onnx_op("Identity")
def Identity(ctx, x, **kw): return x
@onnx_op("Softplus")
def Softplus(ctx, x): return (1 + x.exp()).log()
@onnx_op("Elu")
def Elu(ctx, x, alpha=1.0): return x.elu(alpha)
@onnx_op("Selu")
def Selu(ctx, x, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875): return gamma * (x > 0).where(x, alpha * (x.exp() - 1))
@onnx_op("Celu")
def Celu(ctx, x, alpha=1.0): return x.celu(alpha)
@onnx_op("LeakyRelu")
def LeakyRelu(ctx, x, alpha=0.01): return x.leaky_relu(alpha)
@onnx_op("PRelu")
def PRelu(ctx, x, slope): return (x < 0).where(x * slope, x)
@onnx_op("ThresholdedRelu")
def ThresholdedRelu(ctx, x, alpha=1.0): return (x > alpha).where(x, 0)
@onnx_op("HardSigmoid")
def HardSigmoid(ctx, x, alpha=0.2, beta=0.5): return (x * alpha + beta).clip(0, 1)
@onnx_op("Shrink")
def Shrink(ctx, x, bias=0.0, lambd=0.5): return (x < -lambd).where(x + bias, (x > lambd).where(x - bias, 0)).cast(x.dtype)
@onnx_op("Gelu")
def Gelu(ctx, x, approximate="none"): return x.gelu("tanh" if approximate == "tanh" else "none")
@onnx_op("IsInf")
def IsInf(ctx, x, detect_negative=1, detect_positive=1):
  return ((x == math.inf) & bool(detect_positive)) | ((x == -math.inf) & bool(detect_negative))

def _binary(name: str, f: Callable[[Tensor, Tensor], Tensor]) -> None:
  onnx_op(name)(lambda ctx, a, b, **kw: f(a, b))

for _n, _f in {"Add": Tensor.add, "Sub": Tensor.sub, "Mul": Tensor.mul, "Equal": Tensor.eq, "Less": Tensor.lt, "Greater": Tensor.gt,
               "LessOrEqual": Tensor.le, "GreaterOrEqual": Tensor.ge, "And": Tensor.logical_and, "Or": Tensor.logical_or,
               "Xor": Tensor.logical_xor, "BitwiseAnd": Tensor.bitwise_and, "BitwiseOr": Tensor.bitwise_or,
               "BitwiseXor": Tensor.bitwise_xor}.items():
  _binary(_n, _f)

@onnx_op("Div")
def Div(ctx, a, b, **kw):
  return a.div(b, rounding_mode="trunc") if not dtypes.is_float(a.dtype) else a / b

@onnx_op("Pow")
def Pow(ctx, a, b):
  if dtypes.is_float(a.dtype): return a.pow(b.cast(a.dtype))
  if not dtypes.is_float(b.dtype):
    n = _np(b)
    if n.size == 1 and 0 <= n.reshape(-1)[0] < 64: return a.pow(int(n.reshape(-1)[0]))
  return a.cast(dtypes.float64).pow(b.cast(dtypes.float64)).round().cast(a.dtype)

@onnx_op("Mod")
def Mod(ctx, a, b, fmod=0):
  if fmod or dtypes.is_float(a.dtype): return a - (a / b).trunc() * b if dtypes.is_float(a.dtype) else a - a.div(b, rounding_mode="trunc") * b
  return a.mod(b)

@onnx_op("BitShift")
def BitShift(ctx, x, y, direction="LEFT"):
  p = _pow2(y.cast(x.dtype))
  return (x * p if direction == "LEFT" else x.div(p, rounding_mode="trunc")).cast(x.dtype)

def _pow2(y: Tensor) -> Tensor:
  """2**y for an unsigned integer tensor (built from bits, exact)."""
  out = Tensor._const(1, y.dtype, y.shape, y.device)
  for b in range(6):
    bit = (y.div(1 << b, rounding_mode="trunc") % 2) == 1
    out = bit.where(out * (1 << (1 << b)), out)
  return out

def _variadic(name: str, f: Callable[[Tensor, Tensor], Tensor], post: Callable[[Tensor, int], Tensor] = lambda t, n: t) -> None:
  def impl(ctx, *xs, **kw):
    out = xs[0]
    for x in xs[1:]: out = f(out, x)
    return post(out, len(xs))
  onnx_op(name)(impl)
_variadic("Sum", Tensor.add)
_variadic("Max", Tensor.maximum)
_variadic("Min", Tensor.minimum)
_variadic("Mean", Tensor.add, lambda t, n: t / n)

@onnx_op("Where")
def Where(ctx, c, x, y): return c.where(x, y)

@onnx_op("Clip")
def Clip_v1(ctx, x, min=None, max=None, **kw):
  if min is None and max is None: return x
  return x.clip(min, max)
@onnx_op("Clip", 11)
def Clip(ctx, x, min=None, max=None):
  if min is not None: x = x.maximum(min.cast(x.dtype))
  if max is not None: x = x.minimum(max.cast(x.dtype))
  return x

@onnx_op("Cast")
def Cast(ctx, x, to, saturate=1, **kw):
  dt = onnx_dtype(to)
  if dt in (dtypes.fp8e4m3, dtypes.fp8e5m2) and saturate and dtypes.is_float(x.dtype): x = x.clip(-dtypes.max(dt), dtypes.max(dt))
  return x.cast(dt)
@onnx_op("CastLike")
def CastLike(ctx, x, target, **kw): return x.cast(target.dtype)

# ---- constants and shapes ----

@onnx_op("Constant")
def Constant(ctx, value=None, value_float=None, value_floats=None, value_int=None, value_ints=None, **kw):
  if value is not None: return np_to_tensor(value, ctx.device)
  if value_float is not None: return Tensor(np.array(value_float, dtype=np.float32), device=ctx.device)
  if value_floats is not None: return Tensor(np.array(value_floats, dtype=np.float32), device=ctx.device)
  if value_int is not None: return Tensor(np.array(value_int, dtype=np.int64), device=ctx.device)
  if value_ints is not None: return Tensor(np.array(value_ints, dtype=np.int64), device=ctx.device)
  raise OnnxUnsupportedError(f"Constant with attributes {sorted(kw)} is not supported (strings and sparse tensors have no tg form)")

@onnx_op("Shape")
def Shape(ctx, x, start=0, end=None):
  return Tensor(np.array(x.shape[slice(start, end)], dtype=np.int64), device=x.device)
@onnx_op("Size")
def Size(ctx, x): return Tensor(np.array(x.numel(), dtype=np.int64), device=x.device)

@onnx_op("ConstantOfShape")
def ConstantOfShape(ctx, shape, value=None):
  v = np.zeros(1, dtype=np.float32) if value is None else value.reshape(-1)
  dt = np_to_tensor(v[:1]).dtype
  return Tensor._const(v[0].item(), dt, tuple(_ints(shape)), ctx.device)

@onnx_op("Range")
def Range(ctx, start, limit, delta):
  s, l, d = _scalar(start), _scalar(limit), _scalar(delta)
  n = max(0, math.ceil((l - s) / d))
  return np_to_tensor(np.asarray(s + np.arange(n) * d).astype(_np(start).dtype), ctx.device)

@onnx_op("EyeLike")
def EyeLike(ctx, x, dtype=None, k=0):
  dt = onnx_dtype(dtype) if dtype is not None else x.dtype
  return np_to_tensor(np.eye(x.shape[0], x.shape[1], k=k), ctx.device).cast(dt)

@onnx_op("Reshape")
def Reshape(ctx, x, shape, allowzero=0):
  s = _ints(shape)
  if not allowzero: s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
  return x.reshape(s)

@onnx_op("Transpose")
def Transpose(ctx, x, perm=None): return x.permute(perm if perm is not None else list(range(x.ndim))[::-1])

@onnx_op("Flatten")
def Flatten(ctx, x, axis=1):
  a = _axis(axis, x.ndim)
  return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))

@onnx_op("Concat")
def Concat(ctx, *xs, axis):
  xs = [x for x in xs if x.numel() > 0] or list(xs[:1])
  return xs[0].cat(*xs[1:], dim=axis) if len(xs) > 1 else xs[0]

@onnx_op("Split")
def Split(ctx, x, split=None, axis=0, num_outputs=None):
  a = _axis(axis, x.ndim)
  sizes = _ints(split) if isinstance(split, Tensor) else split
  if sizes is None:
    n = num_outputs or ctx.n_outputs
    c = math.ceil(x.shape[a] / n)
    sizes = [c] * (x.shape[a] // c) + ([x.shape[a] % c] if x.shape[a] % c else [])
  outs, off = [], 0
  for s in sizes:
    outs.append(x.shrink(tuple((off, off + s) if i == a else None for i in range(x.ndim))))
    off += s
  return outs

@onnx_op("Slice")
def Slice_v1(ctx, x, starts=None, ends=None, axes=None, steps=None):
  return _slice(x, starts, ends, axes, steps)
@onnx_op("Slice", 10)
def Slice(ctx, x, starts, ends, axes=None, steps=None):
  return _slice(x, _ints(starts), _ints(ends), _ints(axes), _ints(steps))

def _slice(x: Tensor, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None) -> Tensor:
  axes = [_axis(a, x.ndim) for a in (axes if axes is not None else range(len(starts)))]
  steps = steps if steps is not None else [1] * len(starts)
  idx: list[Any] = [slice(None)] * x.ndim
  for a, s, e, st in zip(axes, starts, ends, steps):
    n = x.shape[a]
    # ONNX clamps (the large sentinels for "to the end" included) the way Python slices do
    s, e = max(min(s, 2 * n + 1), -2 * n - 1), max(min(e, 2 * n + 1), -2 * n - 1)
    idx[a] = slice(s, e, st)
  return x[tuple(idx)]

@onnx_op("Squeeze")
def Squeeze(ctx, x, axes=None):
  ax = _ints(axes) if isinstance(axes, Tensor) else axes
  if ax is None: return x.reshape([s for s in x.shape if s != 1])
  ax = {_axis(a, x.ndim) for a in ax}
  return x.reshape([s for i, s in enumerate(x.shape) if i not in ax])

@onnx_op("Unsqueeze")
def Unsqueeze(ctx, x, axes=None):
  ax = _ints(axes) if isinstance(axes, Tensor) else axes
  n = x.ndim + len(ax)
  ax = sorted(_axis(a, n) for a in ax)
  shape = list(x.shape)
  for a in ax: shape.insert(a, 1)
  return x.reshape(shape)

@onnx_op("Expand")
def Expand(ctx, x, shape):
  s = _ints(shape)
  n = max(len(s), x.ndim)
  xs, ss = [1] * (n - x.ndim) + list(x.shape), [1] * (n - len(s)) + s
  return x.reshape(xs).expand([a if b == 1 else b for a, b in zip(xs, ss)])

@onnx_op("Tile")
def Tile(ctx, x, repeats, **kw): return x.repeat(_ints(repeats))

@onnx_op("Pad")
def Pad_v1(ctx, x, pads=None, paddings=None, mode="constant", value=0.0):
  return _pad(x, pads if pads is not None else paddings, mode, value, None)
@onnx_op("Pad", 11)
def Pad(ctx, x, pads, constant_value=None, axes=None, mode="constant"):
  return _pad(x, _ints(pads), mode, _scalar(constant_value, 0), _ints(axes))

def _pad(x: Tensor, pads: list[int], mode: str, value: Any, axes: list[int] | None) -> Tensor:
  axes = [_axis(a, x.ndim) for a in (axes if axes is not None else range(x.ndim))]
  k = len(axes)
  pairs = [(0, 0)] * x.ndim
  for j, a in enumerate(axes): pairs[a] = (pads[j], pads[j + k])
  if mode == "constant": return x.pad(pairs, value=value)
  # crops first, then reflect/edge/wrap pads one axis at a time from slices of the data
  x = x.pad([(min(b, 0), min(e, 0)) for b, e in pairs])
  for a, (b, e) in enumerate(pairs):
    b, e, n = max(b, 0), max(e, 0), x.shape[a]
    if not b and not e: continue
    def sl(lo: int, hi: int, step: int = 1) -> Tensor:
      idx: list[Any] = [slice(None)] * x.ndim
      idx[a] = slice(lo, hi, step)
      return x[tuple(idx)]
    if mode == "edge": parts = [sl(0, 1).repeat([b if i == a else 1 for i in range(x.ndim)])] * bool(b) + [x] + \
                               [sl(n - 1, n).repeat([e if i == a else 1 for i in range(x.ndim)])] * bool(e)
    elif mode == "reflect": parts = [sl(b, 0, -1)] * bool(b) + [x] + [sl(n - 2, n - 2 - e, -1)] * bool(e)
    elif mode == "wrap": parts = [sl(n - b, n)] * bool(b) + [x] + [sl(0, e)] * bool(e)
    else: raise OnnxUnsupportedError(f"Pad mode {mode!r} is not supported: constant, reflect, edge or wrap")
    x = parts[0].cat(*parts[1:], dim=a)
  return x

# ---- indexing ----

@onnx_op("Gather")
def Gather(ctx, x, indices, axis=0):
  a = _axis(axis, x.ndim)
  idx = indices if indices.dtype in (dtypes.int32, dtypes.int64) else indices.cast(dtypes.int64)
  if indices.ndim == 0 and indices._is_realized():
    i = int(_np(indices))
    return x[(slice(None),) * a + (i,)]
  if indices.numel() == 0: return Tensor.zeros(*x.shape[:a], *indices.shape, *x.shape[a + 1:], dtype=x.dtype, device=x.device)
  return x[(slice(None),) * a + (idx,)]

@onnx_op("GatherElements")
def GatherElements(ctx, x, indices, axis=0): return x.gather(axis, indices)

@onnx_op("GatherND")
def GatherND(ctx, x, indices, batch_dims=0):
  idx = _np(indices)
  bshape, k = x.shape[:batch_dims], idx.shape[-1]
  xb = x.reshape((math.prod(bshape),) + x.shape[batch_dims:])
  ib = idx.reshape(math.prod(bshape), -1, k)
  n = np.array(x.shape[batch_dims:batch_dims + k])
  ib = np.where(ib < 0, ib + n, ib)
  flat_idx = np.ravel_multi_index(tuple(ib[..., j] for j in range(k)), tuple(n)) if k else np.zeros(ib.shape[:2], dtype=np.int64)
  rest = x.shape[batch_dims + k:]
  flat = xb.reshape(xb.shape[0], math.prod(x.shape[batch_dims:batch_dims + k]), *rest)
  bi = np.arange(ib.shape[0])[:, None].repeat(ib.shape[1], 1)
  out = flat[Tensor(bi.astype(np.int32), device=x.device), Tensor(flat_idx.astype(np.int32), device=x.device)]
  return out.reshape(bshape + idx.shape[batch_dims:-1] + rest)

@onnx_op("ScatterElements Scatter")
def ScatterElements(ctx, x, indices, updates, axis=0, reduction="none"):
  idx = (indices < 0).where(indices + x.shape[_axis(axis, x.ndim)], indices)
  if reduction == "none": return x.scatter(axis, idx, updates)
  red = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}.get(reduction)
  if red is None: raise OnnxUnsupportedError(f"ScatterElements reduction {reduction!r} is not supported")
  return x.scatter_reduce(axis, idx, updates, red)

@onnx_op("ScatterND")
def ScatterND(ctx, x, indices, updates, reduction="none"):
  idx = _np(indices)
  k = idx.shape[-1]
  flat_idx = np.ravel_multi_index(tuple(np.where(idx[..., j] < 0, idx[..., j] + x.shape[j], idx[..., j]) for j in range(k)), x.shape[:k])
  rest = x.shape[k:]
  flat = x.reshape(math.prod(x.shape[:k]), *rest)
  upd = updates.reshape(-1, *rest)
  ii = Tensor(flat_idx.reshape(-1, *(1,) * len(rest)).astype(np.int64), device=x.device).expand(upd.shape)
  if reduction == "none": out = flat.scatter(0, ii, upd)
  else:
    red = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}.get(reduction)
    if red is None: raise OnnxUnsupportedError(f"ScatterND reduction {reduction!r} is not supported")
    out = flat.scatter_reduce(0, ii, upd, red)
  return out.reshape(x.shape)

@onnx_op("NonZero")
def NonZero(ctx, x): return Tensor(np.stack(np.nonzero(_np(x))).astype(np.int64).reshape(x.ndim, -1), device=x.device)

@onnx_op("Compress")
def Compress(ctx, x, condition, axis=None):
  keep = np.nonzero(_np(condition).astype(bool))[0]
  if axis is None: x, axis = x.reshape(-1), 0
  a = _axis(axis, x.ndim)
  keep = keep[keep < x.shape[a]]
  return x[(slice(None),) * a + (Tensor(keep.astype(np.int32), device=x.device),)]

@onnx_op("OneHot")
def OneHot(ctx, indices, depth, values, axis=-1):
  d = int(_scalar(depth))
  idx = indices.cast(dtypes.int64)
  idx = (idx < 0).where(idx + d, idx)
  a = _axis(axis, indices.ndim + 1)
  cls = Tensor.arange(d, device=indices.device, dtype=dtypes.int64).reshape([d if i == a else 1 for i in range(indices.ndim + 1)])
  hot = idx.unsqueeze(a) == cls
  off, on = values[0], values[1]
  return hot.where(on, off)

@onnx_op("Trilu")
def Trilu(ctx, x, k=None, upper=1):
  kk = int(_scalar(k, 0))
  return x.triu(kk) if upper else x.tril(kk)

@onnx_op("DepthToSpace")
def DepthToSpace(ctx, x, blocksize, mode="DCR"):
  b, c, h, w = x.shape
  if mode == "DCR": y = x.reshape(b, blocksize, blocksize, c // blocksize ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
  else: y = x.reshape(b, c // blocksize ** 2, blocksize, blocksize, h, w).permute(0, 1, 4, 2, 5, 3)
  return y.reshape(b, c // blocksize ** 2, h * blocksize, w * blocksize)

@onnx_op("SpaceToDepth")
def SpaceToDepth(ctx, x, blocksize):
  b, c, h, w = x.shape
  y = x.reshape(b, c, h // blocksize, blocksize, w // blocksize, blocksize).permute(0, 3, 5, 1, 2, 4)
  return y.reshape(b, c * blocksize ** 2, h // blocksize, w // blocksize)

# ---- reductions ----

def _reduce_axes(x: Tensor, axes: Any, noop_with_empty_axes: int) -> tuple[int, ...] | None:
  """The axes to reduce; None means 'return the input unchanged' (empty axes with noop_with_empty_axes)."""
  ax = _ints(axes) if isinstance(axes, Tensor) else axes
  if not ax: return None if noop_with_empty_axes else tuple(range(x.ndim))
  return tuple(_axis(a, x.ndim) for a in ax)

def _reduce(name: str, f: Callable[[Tensor, tuple[int, ...], bool], Tensor], pre: Callable[[Tensor], Tensor] = lambda t: t) -> None:
  def impl(ctx, x, axes=None, keepdims=1, noop_with_empty_axes=0):
    ax = _reduce_axes(x, axes, noop_with_empty_axes)
    if ax is None: return pre(x)
    return f(pre(x), ax, bool(keepdims))
  onnx_op(name)(impl)

def _sum_keep(t: Tensor, ax: tuple[int, ...], k: bool) -> Tensor: return t.sum(ax, keepdim=k, dtype=t.dtype if t.dtype != dtypes.bool else None)
_reduce("ReduceSum", _sum_keep)
_reduce("ReduceMean", lambda t, ax, k: t.mean(ax, keepdim=k))
_reduce("ReduceMax", lambda t, ax, k: t.max(ax, keepdim=k))
_reduce("ReduceMin", lambda t, ax, k: t.min(ax, keepdim=k))
_reduce("ReduceProd", lambda t, ax, k: t.prod(ax, keepdim=k, dtype=t.dtype))
_reduce("ReduceL1", _sum_keep, Tensor.abs)
_reduce("ReduceL2", lambda t, ax, k: _sum_keep(t * t, ax, k).sqrt().cast(t.dtype))
_reduce("ReduceSumSquare", _sum_keep, lambda t: t * t)
_reduce("ReduceLogSum", lambda t, ax, k: _sum_keep(t, ax, k).log())
_reduce("ReduceLogSumExp", lambda t, ax, k: t.logsumexp(ax, keepdim=k))

def _arg(name: str, f: Callable[[Tensor, int, bool], Tensor]) -> None:
  def impl(ctx, x, axis=0, keepdims=1, select_last_index=0):
    a = _axis(axis, x.ndim)
    if select_last_index:
      r = f(x.flip(a), a, bool(keepdims))
      return (x.shape[a] - 1 - r.cast(dtypes.int64)).cast(dtypes.int64)
    return f(x, a, bool(keepdims)).cast(dtypes.int64)
  onnx_op(name)(impl)
_arg("ArgMax", lambda x, a, k: x.argmax(a, keepdim=k))
_arg("ArgMin", lambda x, a, k: x.argmin(a, keepdim=k))

def _softmax_like(name: str, f: Callable[[Tensor, int], Tensor]) -> None:
  def old(ctx, x, axis=1):
    a = _axis(axis, x.ndim)
    return f(x.reshape(math.prod(x.shape[:a]), -1), -1).reshape(x.shape)
  def new(ctx, x, axis=-1): return f(x, axis)
  onnx_op(name)(old)
  onnx_op(name, 13)(new)
_softmax_like("Softmax", lambda x, a: x.softmax(a))
_softmax_like("LogSoftmax", lambda x, a: x.log_softmax(a))
_softmax_like("Hardmax", lambda x, a: (x.argmax(a, keepdim=True) == Tensor.arange(x.shape[a], device=x.device).reshape(
  [x.shape[a] if i == _axis(a, x.ndim) else 1 for i in range(x.ndim)])).cast(x.dtype))

@onnx_op("CumSum")
def CumSum(ctx, x, axis, exclusive=0, reverse=0):
  a = _axis(int(_scalar(axis)), x.ndim)
  y = x.flip(a) if reverse else x
  if exclusive: y = y.pad([(1, -1) if i == a else (0, 0) for i in range(y.ndim)])
  y = y.cumsum(a).cast(x.dtype)
  return y.flip(a) if reverse else y

@onnx_op("TopK")
def TopK(ctx, x, k, axis=-1, largest=1, sorted=1):
  v, i = x.topk(int(_scalar(k)), dim=axis, largest=bool(largest))
  return v, i.cast(dtypes.int64)

@onnx_op("Einsum")
def Einsum(ctx, *xs, equation): return Tensor.einsum(equation, *xs)

# ---- linear algebra ----

@onnx_op("MatMul")
def MatMul(ctx, a, b): return a @ b

@onnx_op("Gemm")
def Gemm(ctx, a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0, **kw):
  y = (a.T if transA else a) @ (b.T if transB else b)
  if alpha != 1.0: y = y * alpha
  if c is not None: y = y + (c * beta if beta != 1.0 else c)
  return y

# ---- convolution and pooling ----

def _auto_pads(auto_pad: str, in_sp: Sequence[int], k_: Sequence[int], s_: Sequence[int], d_: Sequence[int],
               pads: list[int] | None) -> list[tuple[int, int]]:
  """(before, after) per spatial axis from ONNX's pads ([b1, b2, ..., e1, e2, ...]) or auto_pad."""
  n = len(k_)
  if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
    out = []
    for i, k, s, d in zip(in_sp, k_, s_, d_):
      tot = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
      lo = tot // 2 if auto_pad == "SAME_UPPER" else tot - tot // 2
      out.append((lo, tot - lo))
    return out
  if auto_pad == "VALID" or pads is None: return [(0, 0)] * n
  return [(pads[j], pads[j + n]) for j in range(n)]

@onnx_op("Conv")
def Conv(ctx, x, w, b=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
  k_ = w.shape[2:]
  n = len(k_)
  s_, d_ = strides or [1] * n, dilations or [1] * n
  pp = _auto_pads(auto_pad, x.shape[2:], k_, s_, d_, pads)
  return x.conv2d(w, b, groups=group, stride=s_, dilation=d_, padding=pp)

@onnx_op("ConvTranspose")
def ConvTranspose(ctx, x, w, b=None, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, output_padding=None,
                  output_shape=None, pads=None, strides=None):
  k_ = w.shape[2:]
  n = len(k_)
  s_, d_, op_ = strides or [1] * n, dilations or [1] * n, output_padding or [0] * n
  full = [s * (i - 1) + (k - 1) * d + 1 for i, k, s, d in zip(x.shape[2:], k_, s_, d_)]
  if output_shape is not None:
    tot = [f + o - t for f, o, t in zip(full, op_, output_shape[-n:])]
    # a negative total (a larger output than the full result) grows the end, as output_padding does
    pp = [(0, t) if t < 0 else (t - t // 2, t // 2) if auto_pad == "SAME_LOWER" else (t // 2, t - t // 2) for t in tot]
  elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
    tot = [f + o - i * s for f, o, i, s in zip(full, op_, x.shape[2:], s_)]
    pp = [(t // 2, t - t // 2) if auto_pad == "SAME_UPPER" else (t - t // 2, t // 2) for t in tot]
  else: pp = _auto_pads(auto_pad, x.shape[2:], k_, s_, d_, pads)
  y = x.conv_transpose2d(w, None, groups=group, stride=s_, dilation=d_, padding=0)
  y = y.pad([(0, 0), (0, 0)] + [(-bb, -e + o) for (bb, e), o in zip(pp, op_)])
  return y if b is None else y + b.reshape(1, -1, *(1,) * n)

def _pool_pads(x: Tensor, auto_pad: str, kernel_shape: list[int], strides: list[int] | None, dilations: list[int] | None,
               pads: list[int] | None, ceil_mode: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
  n = len(kernel_shape)
  s_, d_ = strides or [1] * n, dilations or [1] * n
  if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
    pp = []
    for i, k, s, d in zip(x.shape[2:], kernel_shape, s_, d_):
      tot = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
      lo = tot // 2 if auto_pad == "SAME_UPPER" else tot - tot // 2
      pp.append((lo, tot - lo))
  else: pp = _auto_pads(auto_pad, x.shape[2:], kernel_shape, s_, d_, pads)
  return s_, d_, pp

def _ceil_extra(x: Tensor, k_: list[int], s_: list[int], d_: list[int], pp: list[tuple[int, int]]) -> list[int]:
  """Extra padding at the end so ceil_mode's last window fits (windows starting in the right padding are dropped)."""
  extra = []
  for i, k, s, d, (b, e) in zip(x.shape[2:], k_, s_, d_, pp):
    eff = i + b + e - d * (k - 1) - 1
    o = -(-eff // s) + 1
    if (o - 1) * s >= i + b: o -= 1
    extra.append(max(0, (o - 1) * s + d * (k - 1) + 1 - (i + b + e)))
  return extra

@onnx_op("MaxPool")
def MaxPool(ctx, x, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, pads=None, storage_order=0, strides=None):
  s_, d_, pp = _pool_pads(x, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
  extra = _ceil_extra(x, kernel_shape, s_, d_, pp) if ceil_mode else [0] * len(kernel_shape)
  lo = -math.inf if dtypes.is_float(x.dtype) else dtypes.min(x.dtype)
  xp = x.pad([(0, 0), (0, 0)] + [(b, e + ex) for (b, e), ex in zip(pp, extra)], value=lo)
  out, idx = xp.max_pool2d(tuple(kernel_shape), s_, d_, 0, return_indices=True)
  if ctx.n_outputs < 2: return out
  # indices of the padded input back to the unpadded one (row-major, or column-major with storage_order=1)
  n, sp = len(kernel_shape), x.shape[2:]
  psp = xp.shape[2:]
  coords, rem = [], idx
  for j in range(n - 1, -1, -1):
    coords.insert(0, rem % psp[j] - pp[j][0])
    rem = rem.div(psp[j], rounding_mode="trunc")
  flat = Tensor._const(0, dtypes.int64, idx.shape, x.device)
  order = range(n) if not storage_order else range(n - 1, -1, -1)
  for j in order: flat = flat * sp[j] + coords[j]
  base = (Tensor.arange(x.shape[0] * x.shape[1], device=x.device, dtype=dtypes.int64) * math.prod(sp)).reshape(x.shape[0], x.shape[1], *(1,) * n)
  return out, flat + base

@onnx_op("AveragePool")
def AveragePool(ctx, x, kernel_shape, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None, pads=None, strides=None):
  s_, d_, pp = _pool_pads(x, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
  n = len(kernel_shape)
  extra = _ceil_extra(x, kernel_shape, s_, d_, pp) if ceil_mode else [0] * n
  full = [(b, e + ex) for (b, e), ex in zip(pp, extra)]
  xf = x.cast(dtypes.float32) if not dtypes.is_float(x.dtype) else x
  total = xf.pad([(0, 0), (0, 0)] + full)._pool(tuple(kernel_shape), s_, d_).sum(tuple(range(-n, 0)))
  # the divisor depends on shapes only: count the taps inside the counted region (input, plus explicit pads if counted)
  div = np.ones((), dtype=np.float64)
  for i, o, k, s, d, (b, e), ex in zip(x.shape[2:], total.shape[2:], kernel_shape, s_, d_, pp, extra):
    lo, hi = (0, i + b + e) if count_include_pad else (b, b + i)
    taps = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
    div = np.multiply.outer(div, ((taps >= lo) & (taps < hi)).sum(1))
  return (total / np_to_tensor(div.astype(np.float32), x.device).cast(xf.dtype)).cast(x.dtype)

@onnx_op("LpPool")
def LpPool(ctx, x, kernel_shape, auto_pad="NOTSET", ceil_mode=0, dilations=None, p=2, pads=None, strides=None):
  s_, d_, pp = _pool_pads(x, auto_pad, kernel_shape, strides, dilations, pads, ceil_mode)
  n = len(kernel_shape)
  extra = _ceil_extra(x, kernel_shape, s_, d_, pp) if ceil_mode else [0] * n
  xp = x.abs().pow(p).pad([(0, 0), (0, 0)] + [(b, e + ex) for (b, e), ex in zip(pp, extra)])
  return xp._pool(tuple(kernel_shape), s_, d_).sum(tuple(range(-n, 0))).pow(1 / p)

@onnx_op("GlobalAveragePool")
def GlobalAveragePool(ctx, x): return x.mean(tuple(range(2, x.ndim)), keepdim=True)
@onnx_op("GlobalMaxPool")
def GlobalMaxPool(ctx, x): return x.max(tuple(range(2, x.ndim)), keepdim=True)
@onnx_op("GlobalLpPool")
def GlobalLpPool(ctx, x, p=2): return x.abs().pow(p).sum(tuple(range(2, x.ndim)), keepdim=True).pow(1 / p)

# ---- normalization ----

def _chan(t: Tensor, ndim: int) -> Tensor: return t.reshape(1, -1, *(1,) * (ndim - 2))

@onnx_op("BatchNormalization")
def BatchNormalization(ctx, x, scale, bias, mean, var, epsilon=1e-5, momentum=0.9, training_mode=0, **kw):
  if training_mode:
    axes = tuple(i for i in range(x.ndim) if i != 1)
    bm, bv = x.mean(axes), x.var(axes, correction=0)
    y = (x - _chan(bm, x.ndim)) * (_chan(bv, x.ndim) + epsilon).rsqrt() * _chan(scale, x.ndim) + _chan(bias, x.ndim)
    return y, mean * momentum + bm * (1 - momentum), var * momentum + bv * (1 - momentum)
  return (x - _chan(mean, x.ndim)) * (_chan(var, x.ndim) + epsilon).rsqrt() * _chan(scale, x.ndim) + _chan(bias, x.ndim)

@onnx_op("InstanceNormalization")
def InstanceNormalization(ctx, x, scale, bias, epsilon=1e-5):
  axes = tuple(range(2, x.ndim))
  m = x.mean(axes, keepdim=True)
  y = (x - m) * ((x - m).square().mean(axes, keepdim=True) + epsilon).rsqrt()
  return y * _chan(scale, x.ndim) + _chan(bias, x.ndim)

@onnx_op("LayerNormalization")
def LayerNormalization(ctx, x, scale, bias=None, axis=-1, epsilon=1e-5, stash_type=1):
  a = _axis(axis, x.ndim)
  axes = tuple(range(a, x.ndim))
  xf = x.cast(dtypes.float32) if stash_type == 1 else x
  m = xf.mean(axes, keepdim=True)
  inv = ((xf - m).square().mean(axes, keepdim=True) + epsilon).rsqrt()
  y = ((xf - m) * inv).cast(x.dtype) * scale
  if bias is not None: y = y + bias
  return y, m, inv

@onnx_op("GroupNormalization")
def GroupNormalization(ctx, x, scale, bias, num_groups, epsilon=1e-5, stash_type=1):
  g = x.reshape(x.shape[0], num_groups, -1)
  m = g.mean(-1, keepdim=True)
  y = ((g - m) * ((g - m).square().mean(-1, keepdim=True) + epsilon).rsqrt()).reshape(x.shape)
  if ctx.opset < 21 and scale.shape[0] == num_groups != x.shape[1]:  # opset 18 scales per group
    scale = scale.reshape(-1, 1).expand(num_groups, x.shape[1] // num_groups).reshape(-1)
    bias = bias.reshape(-1, 1).expand(num_groups, x.shape[1] // num_groups).reshape(-1)
  return y * _chan(scale, x.ndim) + _chan(bias, x.ndim)

@onnx_op("MeanVarianceNormalization")
def MeanVarianceNormalization(ctx, x, axes=(0, 2, 3)):
  m = x.mean(tuple(axes), keepdim=True)
  return (x - m) / ((x - m).square().mean(tuple(axes), keepdim=True).sqrt() + 1e-9)

@onnx_op("LRN")
def LRN(ctx, x, size, alpha=1e-4, beta=0.75, bias=1.0):
  sq = (x * x).pad([(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
  win = sum(sq.shrink([None, (i, i + x.shape[1])] + [None] * (x.ndim - 2)) for i in range(size))
  return x / (bias + alpha / size * win).pow(beta)

@onnx_op("Dropout")
def Dropout(ctx, x, ratio=None, training_mode=None, seed=None):
  mask = Tensor._const(True, dtypes.bool, x.shape, x.device)
  return (x, mask) if ctx.n_outputs > 1 else x

# ---- resampling ----

def _resize_matrix(i: int, o: int, scale: float, mode: str, ctm: str, nearest_mode: str, cubic_a: float, exclude_outside: int,
                   roi: tuple[float, float] | None, extrapolation_value: float) -> tuple[np.ndarray, np.ndarray]:
  """The (o, i) weights that resample one axis as ONNX Resize does, and a mask of outputs outside the input (tf_crop_and_resize)."""
  j = np.arange(o, dtype=np.float64)
  if ctm == "half_pixel": x = (j + 0.5) / scale - 0.5
  elif ctm == "half_pixel_symmetric":
    adj = o / (scale * i)
    x = i / 2 * (1 - adj) + (j + 0.5) / scale - 0.5
  elif ctm == "pytorch_half_pixel": x = (j + 0.5) / scale - 0.5 if o > 1 else np.zeros(o)
  elif ctm == "align_corners": x = j * (i - 1) / (o - 1) if o > 1 else np.zeros(o)
  elif ctm == "asymmetric": x = j / scale
  elif ctm == "tf_crop_and_resize":
    s, e = roi if roi is not None else (0.0, 1.0)
    x = s * (i - 1) + j * (e - s) * (i - 1) / (o - 1) if o > 1 else np.full(o, 0.5 * (s + e) * (i - 1))
  else: raise OnnxUnsupportedError(f"Resize coordinate_transformation_mode {ctm!r} is not supported")
  outside = (x < 0) | (x > i - 1) if ctm == "tf_crop_and_resize" else np.zeros(o, dtype=bool)
  w = np.zeros((o, i), dtype=np.float64)
  rows = np.arange(o)
  if mode == "nearest":
    if nearest_mode == "round_prefer_floor": k = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif nearest_mode == "round_prefer_ceil": k = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    elif nearest_mode == "floor": k = np.floor(x)
    elif nearest_mode == "ceil": k = np.ceil(x)
    else: raise OnnxUnsupportedError(f"Resize nearest_mode {nearest_mode!r} is not supported")
    w[rows, np.clip(k, 0, i - 1).astype(np.int64)] = 1
  elif mode == "linear":
    xc = np.clip(x, 0, i - 1)
    lo = np.floor(xc).astype(np.int64)
    hi = np.minimum(lo + 1, i - 1)
    f = xc - lo
    np.add.at(w, (rows, lo), 1 - f)
    np.add.at(w, (rows, hi), f)
  elif mode == "cubic":
    base = np.floor(x).astype(np.int64)
    for t in range(-1, 3):
      idx = base + t
      d = np.abs(x - idx)
      a = cubic_a
      c = np.where(d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, np.where(d < 2, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a, 0))
      inside = (idx >= 0) & (idx < i)
      if exclude_outside: c = np.where(inside, c, 0)
      np.add.at(w, (rows, np.clip(idx, 0, i - 1)), c)
    if exclude_outside: w = w / w.sum(1, keepdims=True)
  else: raise OnnxUnsupportedError(f"Resize mode {mode!r} is not supported: nearest, linear or cubic")
  return w, outside

def _resize(x: Tensor, sizes: list[int], scales: list[float], mode: str, ctm: str, nearest_mode: str, cubic_a: float,
            exclude_outside: int, roi: list[float] | None, extrapolation_value: float) -> Tensor:
  y = x.cast(dtypes.float32) if not dtypes.is_float(x.dtype) else x
  n = x.ndim
  for ax in range(n):
    i, o = x.shape[ax], sizes[ax]
    if i == o and scales[ax] == 1.0 and ctm != "tf_crop_and_resize": continue
    r = (roi[ax], roi[ax + n]) if roi else None
    w, outside = _resize_matrix(i, o, scales[ax], mode, ctm, nearest_mode, cubic_a, exclude_outside, r, extrapolation_value)
    wt = np_to_tensor(w.astype(np.float32), x.device).cast(y.dtype)
    y = (y.transpose(ax, -1) @ wt.T).transpose(ax, -1)
    if outside.any():
      m = np_to_tensor(outside.reshape([o if k == ax else 1 for k in range(n)]), x.device)
      y = m.where(extrapolation_value, y)
  if not dtypes.is_float(x.dtype): y = y.round()
  return y.cast(x.dtype)

@onnx_op("Resize")
def Resize(ctx, x, roi=None, scales=None, sizes=None, antialias=0, axes=None, coordinate_transformation_mode="half_pixel",
           cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
  if antialias: raise OnnxUnsupportedError("Resize with antialias=1 is not supported")
  if ctx.opset < 11: scales, roi = roi, None  # Resize-10: (X, scales)
  n = x.ndim
  ax = [_axis(a, n) for a in axes] if axes is not None else list(range(n))
  r = [float(v) for v in _np(roi).reshape(-1)] if roi is not None and roi.numel() else None
  if r is not None and axes is not None:
    full = [0.0] * n + [1.0] * n
    for j, a in enumerate(ax): full[a], full[a + n] = r[j], r[j + len(ax)]
    r = full
  sz, sc = list(x.shape), [1.0] * n
  if sizes is not None and sizes.numel():
    req = _ints(sizes)
    if keep_aspect_ratio_policy != "stretch":
      ratios = [req[j] / x.shape[a] for j, a in enumerate(ax)]
      s = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
      for a in ax: sz[a], sc[a] = int(round(s * x.shape[a])), s
    else:
      for j, a in enumerate(ax): sz[a], sc[a] = req[j], req[j] / x.shape[a]
  elif scales is not None and scales.numel():
    fs = [float(v) for v in _np(scales).reshape(-1)]
    for j, a in enumerate(ax): sc[a], sz[a] = fs[j], int(math.floor(x.shape[a] * fs[j]))
  return _resize(x, sz, sc, mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside, r, extrapolation_value)

@onnx_op("Upsample")
def Upsample(ctx, x, scales=None, mode="nearest", **kw):
  fs = kw["scales"] if "scales" in kw else [float(v) for v in _np(scales).reshape(-1)]
  sz = [int(math.floor(s * f)) for s, f in zip(x.shape, fs)]
  return _resize(x, sz, fs, mode, "asymmetric", "floor", -0.75, 0, None, 0.0)

# ---- control flow ----

@onnx_op("If")
def If(ctx, cond, then_branch, else_branch):
  outs = ctx.run_subgraph(then_branch if bool(_scalar(cond)) else else_branch, {})
  return outs if len(outs) != 1 else outs[0]

@onnx_op("Loop")
def Loop(ctx, M, cond, *v_initial, body):
  trip = int(_scalar(M)) if M is not None else None
  keep = bool(_scalar(cond, True))
  carried = list(v_initial)
  n_carried = len(carried)
  scans: list[list[Tensor]] = []
  it = 0
  while keep and (trip is None or it < trip):
    outs = ctx.run_subgraph(body, {body.input[0].name: Tensor(np.array(it, dtype=np.int64), device=ctx.device),
                                   body.input[1].name: Tensor(np.array(keep), device=ctx.device),
                                   **{body.input[2 + j].name: v for j, v in enumerate(carried)}})
    keep, carried = bool(_scalar(outs[0])), list(outs[1:1 + n_carried])
    if not scans: scans = [[] for _ in outs[1 + n_carried:]]
    for s, v in zip(scans, outs[1 + n_carried:]): s.append(v.unsqueeze(0))
    it += 1
  scan_outs = [s[0].cat(*s[1:]) if s else Tensor.zeros(0) for s in scans]
  return carried + scan_outs

# ---- domain com.microsoft ops common in exported transformer models ----

@onnx_op("Gelu", domain="com.microsoft")
def MsGelu(ctx, x): return x.gelu()
@onnx_op("FastGelu", domain="com.microsoft")
def MsFastGelu(ctx, x, bias=None): return (x if bias is None else x + bias).gelu("tanh")
@onnx_op("BiasGelu", domain="com.microsoft")
def MsBiasGelu(ctx, x, bias): return (x + bias).gelu()

# ---- more activations, normalizations, losses and quantization ----

@onnx_op("Swish")
def Swish(ctx, x, alpha=1.0): return x * (x * alpha).sigmoid()

@onnx_op("CumProd")
def CumProd(ctx, x, axis, exclusive=0, reverse=0):
  a = _axis(int(_scalar(axis)), x.ndim)
  y = x.flip(a) if reverse else x
  if exclusive: y = y.pad([(1, -1) if i == a else (0, 0) for i in range(y.ndim)], value=1)
  y = y.cumprod(a).cast(x.dtype)
  return y.flip(a) if reverse else y

@onnx_op("RMSNormalization")
def RMSNormalization(ctx, x, scale, axis=-1, epsilon=1e-5, stash_type=1):
  axes = tuple(range(_axis(axis, x.ndim), x.ndim))
  xf = x.cast(dtypes.float32) if stash_type == 1 else x
  return (xf * (xf.square().mean(axes, keepdim=True) + epsilon).rsqrt()).cast(x.dtype) * scale

@onnx_op("LpNormalization")
def LpNormalization(ctx, x, axis=-1, p=2):
  norm = x.abs().sum(axis, keepdim=True) if p == 1 else x.square().sum(axis, keepdim=True).sqrt()
  return x / norm

def _nll(x: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None, reduction: str) -> Tensor:
  """ONNX's NegativeLogLikelihoodLoss on (N, C, d...) log-probabilities and (N, d...) class indices."""
  t = target.cast(dtypes.int64)
  valid = t != ignore_index if ignore_index is not None else Tensor._const(True, dtypes.bool, t.shape, t.device)
  safe = valid.where(t, 0)
  picked = -x.gather(1, safe.unsqueeze(1)).squeeze(1)
  w = valid.cast(x.dtype) if weight is None else valid.where(weight[safe], 0).cast(x.dtype)
  loss = picked * w
  if reduction == "none": return loss
  if reduction == "sum": return loss.sum()
  if reduction == "mean": return loss.sum() / w.sum()
  raise OnnxUnsupportedError(f"loss reduction {reduction!r} is not supported: none, sum or mean")

@onnx_op("NegativeLogLikelihoodLoss")
def NegativeLogLikelihoodLoss(ctx, x, target, weight=None, ignore_index=None, reduction="mean"):
  return _nll(x, target, weight, ignore_index, reduction)

@onnx_op("SoftmaxCrossEntropyLoss")
def SoftmaxCrossEntropyLoss(ctx, scores, labels, weights=None, ignore_index=None, reduction="mean"):
  logp = scores.log_softmax(1)
  loss = _nll(logp, labels, weights, ignore_index, reduction)
  return (loss, logp) if ctx.n_outputs > 1 else loss

def _per_axis(p: Tensor, x: Tensor, axis: int, block_size: int) -> Tensor:
  """A scale or zero point broadcast against x: scalar, 1-d along `axis`, or blocked along `axis`."""
  if p.ndim == 0 or p.numel() == 1: return p.reshape(())
  a = _axis(axis, x.ndim)
  if block_size: return p.repeat_interleave(block_size, a).shrink(tuple((0, s) for s in x.shape))
  return p.reshape([x.shape[a] if i == a else 1 for i in range(x.ndim)])

@onnx_op("DequantizeLinear")
def DequantizeLinear(ctx, x, scale, zero_point=None, axis=1, block_size=0, output_dtype=0):
  s = _per_axis(scale, x, axis, block_size)
  xf = x.cast(dtypes.float32)
  if zero_point is not None: xf = xf - _per_axis(zero_point, x, axis, block_size).cast(dtypes.float32)
  return (xf * s.cast(dtypes.float32)).cast(onnx_dtype(output_dtype) if output_dtype else scale.dtype)

@onnx_op("QuantizeLinear")
def QuantizeLinear(ctx, x, scale, zero_point=None, axis=1, saturate=1, block_size=0, output_dtype=0, precision=0):
  dt = zero_point.dtype if zero_point is not None else onnx_dtype(output_dtype) if output_dtype else dtypes.uint8
  y = (x.cast(dtypes.float32) / _per_axis(scale, x, axis, block_size).cast(dtypes.float32)).round()
  if zero_point is not None: y = y + _per_axis(zero_point, x, axis, block_size).cast(dtypes.float32)
  if not dtypes.is_float(dt): y = y.clip(dtypes.min(dt), dtypes.max(dt))
  return y.cast(dt)
