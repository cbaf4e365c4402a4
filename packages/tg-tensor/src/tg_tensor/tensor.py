"""`Tensor`: the lazy, tinygrad-style array users touch. Its methods build tensor-level UOps; nothing runs until `realize()`.

The math, movement and reduction methods live in mixins (ops_math.py, ops_movement.py, ops_reduce.py); this module holds the
core: construction, creation functions, the counter-based RNG, dtype/device moves and realization."""
from __future__ import annotations
import math, time
from typing import Any, ClassVar
import numpy as np
from tg_uop import device as _device_mod
from tg_uop.dtype import DType, dtypes, to_dtype, to_np_name
from tg_uop.helpers import prod
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor.ops_math import MathMixin
from tg_tensor.ops_movement import MovementMixin
from tg_tensor.ops_reduce import ReduceMixin
from tg_tensor.ops_nn import NNMixin

_canon_cache: dict[str, str] = {}
def _canonical_device(device: str | None) -> str:
  """The canonical device name (`Device.DEFAULT` when None); cached because parsing is per op otherwise."""
  if device is None: return _device_mod.Device.DEFAULT
  if not isinstance(device, str): raise TypeError(f"device must be a string such as 'CPU' or 'PYTHON', got {type(device).__name__}")
  if (ret := _canon_cache.get(device)) is None: ret = _canon_cache[device] = _device_mod.Device.canonicalize(device)
  return ret

def _shape_arg(shape: tuple, what: str = "shape") -> tuple[int, ...]:
  """Shapes may be passed as `f(2, 3)` or `f((2, 3))`; every dimension must be a non-negative int."""
  if len(shape) == 1 and isinstance(shape[0], (tuple, list)): shape = tuple(shape[0])
  for s in shape:
    if not isinstance(s, int) or isinstance(s, bool) or s < 0:
      raise ValueError(f"{what} {tuple(shape)} is invalid: every dimension must be a non-negative int, got {s!r}")
  return tuple(shape)

def _graph_device(u: UOp) -> str | None:
  """The device of the data a tensor-level graph reads (None for graphs of constants only)."""
  for x in reversed(list(u.toposort())):
    if x.op is Ops.COPY: return x.src[1].arg
    if x.op is Ops.BUFFER: return x.src[0].arg
  return None

def _np_dtype_name(dt: DType) -> str:
  # bfloat16 and fp8 have no numpy dtype: data goes through float32
  return to_np_name(dt) or "float32"

class Tensor(MathMixin, MovementMixin, ReduceMixin, NNMixin):
  """A lazily evaluated n-dimensional array on one device."""
  __slots__ = ("uop", "device", "requires_grad", "grad", "_graph", "__weakref__")
  training: ClassVar[bool] = False
  _seed: ClassVar[int] = int(time.time())
  _rng_counter: ClassVar[int] = 0

  def __init__(self, data: Any, device: str | None = None, dtype: DType | str | None = None, requires_grad: bool | None = None):
    dt = to_dtype(dtype) if dtype is not None else None
    if isinstance(data, UOp):
      if data.shape is None: raise TypeError(f"Tensor needs a tensor-level UOp (one with a shape), got a kernel-level {data.op.name}")
      dev = _canonical_device(device) if device is not None else _canonical_device(_graph_device(data))
      uop = data
    elif isinstance(data, Tensor):
      dev = _canonical_device(device) if device is not None else data.device
      uop = data.to(dev).uop
    else:
      dev = _canonical_device(device)
      uop = _uop_from_data(data, dev, dt)
    self.uop: UOp = uop if dt is None else uop.cast(dt)
    self.device: str = dev
    self.requires_grad: bool | None = None
    self.grad: Tensor | None = None
    self._graph: UOp | None = None  # the lazy graph before realize(), kept while gradients may still be asked for
    if requires_grad is not None: self.requires_grad_(requires_grad)

  @staticmethod
  def _of(uop: UOp, device: str) -> Tensor:
    """A new Tensor over the tensor-level `uop` on the canonical `device`, without `__init__`'s checks (TinyJit's replay outputs)."""
    t = Tensor.__new__(Tensor)
    t.uop, t.device, t.requires_grad, t.grad, t._graph = uop, device, None, None, None
    return t
  def _wrap(self, uop: UOp) -> Tensor:
    """A new Tensor over `uop` on this tensor's device."""
    t = Tensor.__new__(Tensor)
    t.uop, t.device, t.requires_grad, t.grad, t._graph = uop, self.device, None, None, None
    return t

  # ---- properties ----
  @property
  def shape(self) -> tuple[int, ...]: return self.uop.shape
  @property
  def dtype(self) -> DType: return self.uop.dtype
  @property
  def ndim(self) -> int: return len(self.shape)
  def numel(self) -> int:
    """The number of elements."""
    return prod(self.shape)
  def element_size(self) -> int: return self.dtype.itemsize
  def nbytes(self) -> int: return self.numel() * self.dtype.itemsize
  def size(self, dim: int | None = None) -> tuple[int, ...] | int:
    """The shape, or the size of axis `dim`."""
    return self.shape if dim is None else self.shape[self._axis(dim)]
  def __len__(self) -> int:
    if not self.shape: raise TypeError("len() of a 0-d tensor: it has no length; use .item() or .numel()")
    return self.shape[0]
  def __repr__(self) -> str: return f"<Tensor shape={self.shape} dtype={self.dtype!r} device={self.device!r}>"
  __hash__ = object.__hash__
  def __bool__(self) -> bool:
    if self.numel() != 1: raise RuntimeError(f"the truth value of a tensor with {self.numel()} elements is ambiguous: use .any() or .all()")
    return bool(self.item())
  def __iter__(self):
    if not self.shape: raise TypeError("iteration over a 0-d tensor: use .item()")
    return (self[i] for i in range(self.shape[0]))

  # ---- realization ----
  def _is_realized(self) -> bool:
    u = self.uop
    while u.op is Ops.RESHAPE: u = u.src[0]
    return u.op is Ops.BUFFER
  def _realize_target(self) -> UOp:
    # a graph of constants only has no device: write it into a fresh buffer on this tensor's device
    if _graph_device(self.uop) is not None: return self.uop
    from tg_tensor.buffers import new_buffer, assign_ids
    return UOp(Ops.ASSIGN, self.dtype, (new_buffer(self.device, self.numel(), self.dtype).reshape(self.shape), self.uop), next(assign_ids))
  def realize(self, *lst: Tensor) -> Tensor:
    """Compute this tensor (and `lst`) now, in one schedule; returns self."""
    todo = [t for t in (self, *lst) if t.numel() > 0 and not t._is_realized()]
    if todo:
      from tg_tensor.engine import realize as engine_realize
      from tg_tensor.gradient import live_grad_tensors, remember_graph
      keep_graph = bool(live_grad_tensors())
      # tensors built from constants alone have no device in their graph: they are realized with their own device as the default
      # (a CONTIGUOUS inside would otherwise land on Device.DEFAULT); the rest in one schedule
      groups: dict[str | None, list[Tensor]] = {}
      for t in todo: groups.setdefault(t.device if _graph_device(t.uop) is None else None, []).append(t)
      outs = {id(t): o for dev, ts in groups.items() for t, o in zip(ts, engine_realize(*[t._realize_target() for t in ts], default_device=dev))}
      for t, out in ((t, outs[id(t)]) for t in todo):
        if keep_graph and not t.requires_grad:
          t._graph = t._graph if t._graph is not None else t.uop
          remember_graph(out, t._graph)  # graphs built on `out` later still differentiate through it
        t.uop = out
    return self
  def numpy(self) -> np.ndarray:
    """A numpy copy of the data (bfloat16 and fp8 come back as float32, which numpy can hold)."""
    if to_np_name(self.dtype) is None: return self.cast(dtypes.float32).numpy()
    if self.numel() == 0: return np.zeros(self.shape, dtype=to_np_name(self.dtype))
    from tg_tensor.buffers import get_buffer
    self.realize()
    return get_buffer(self.uop).numpy()[:self.numel()].reshape(self.shape).copy()
  def tolist(self) -> Any:
    """The data as (nested) Python lists, or a scalar for a 0-d tensor."""
    return self.numpy().tolist()
  def item(self) -> Any:
    """The one value of a one-element tensor as a Python scalar."""
    if self.numel() != 1:
      raise ValueError(f"item() needs a tensor with exactly one element, this one has shape {self.shape}: index or reduce it first")
    return self.numpy().reshape(()).item()
  def data(self) -> memoryview:
    """The raw bytes of the realized data."""
    return memoryview(self.numpy().tobytes())

  # ---- dtype, device, graph barriers ----
  def cast(self, dtype: DType | str) -> Tensor:
    """This tensor converted to `dtype` (float to int truncates toward zero, as C)."""
    dt = to_dtype(dtype)
    return self if dt == self.dtype else self._wrap(self.uop.cast(dt))
  def bitcast(self, dtype: DType | str) -> Tensor:
    """The same bits reinterpreted as `dtype` (which must have the same size)."""
    dt = to_dtype(dtype)
    if dt.itemsize != self.dtype.itemsize:
      raise ValueError(f"can't bitcast {self.dtype} ({self.dtype.itemsize} bytes) to {dt} ({dt.itemsize} bytes): the sizes must match; "
                       f"use .cast() to convert values instead")
    return self if dt == self.dtype else self._wrap(self.uop.bitcast(dt))
  def float(self) -> Tensor: return self.cast(dtypes.float32)
  def half(self) -> Tensor: return self.cast(dtypes.float16)
  def int(self) -> Tensor: return self.cast(dtypes.int32)
  def long(self) -> Tensor: return self.cast(dtypes.int64)
  def bool(self) -> Tensor: return self.cast(dtypes.bool)
  def double(self) -> Tensor: return self.cast(dtypes.float64)
  def to(self, device: str | None) -> Tensor:
    """This tensor on `device` (a lazy copy; the same tensor if it is already there)."""
    dev = _canonical_device(device)
    if dev == self.device: return self
    t = Tensor.__new__(Tensor)
    uop = self.uop if _graph_device(self.uop) is None else UOp(Ops.COPY, self.dtype, (self.uop, UOp(Ops.DEVICE, arg=dev)))
    t.uop, t.device, t.requires_grad, t.grad, t._graph = uop, dev, None, None, None
    return t
  def shard(self, devices, axis=None):
    """This tensor split along `axis` across `devices` (replicated on each when axis is None): see tg_tensor.multi."""
    from tg_tensor.multi import shard
    return shard(self, devices, axis)
  def contiguous(self, opts: Any = None) -> Tensor:
    """A materialization barrier: the data is computed into its own buffer (with optional kernel opts attached)."""
    return self._wrap(self.uop.contiguous(tuple(opts) if opts is not None else None))
  def detach(self) -> Tensor:
    """The same values, cut off from the autograd graph."""
    return self._wrap(UOp(Ops.DETACH, self.dtype, (self.uop,)))
  def clone(self) -> Tensor: return self.contiguous()
  def requires_grad_(self, requires_grad: bool | None = True) -> Tensor:
    """Mark this tensor as one backward() computes a .grad for."""
    if requires_grad and not dtypes.is_float(self.dtype): raise TypeError(f"only float tensors can require gradients, this one is {self.dtype}")
    self.requires_grad = requires_grad
    if requires_grad:
      from tg_tensor.gradient import track
      track(self)
    return self
  def assign(self, x: Any) -> Tensor:
    """Write `x` into this tensor's buffer (in place); returns self."""
    if not isinstance(x, Tensor): x = Tensor(x, device=self.device, dtype=self.dtype)
    if x.shape != self.shape: raise ValueError(f"assign needs the same shape: target {self.shape}, value {x.shape}; broadcast the value first")
    if x.device != self.device: raise ValueError(f"assign across devices ({x.device} into {self.device}): move the value with .to() first")
    if x.dtype != self.dtype: raise ValueError(f"assign needs the same dtype: target {self.dtype}, value {x.dtype}; cast the value first")
    if not self._is_realized(): self.realize()
    if not self._is_realized(): self.uop = self.contiguous().realize().uop  # constants or an empty tensor
    from tg_tensor.buffers import assign_ids
    self.uop = UOp(Ops.ASSIGN, self.dtype, (self.uop, x.uop), next(assign_ids))
    return self

  # ---- creation ----
  @staticmethod
  def _const(value: Any, dtype: DType, shape: tuple[int, ...] = (), device: str | None = None) -> Tensor:
    """A tensor of `shape` filled with `value` (a broadcast constant, no memory)."""
    u = UOp.const(dtype, value)
    if shape: u = u.reshape((1,) * len(shape)).expand(shape)
    t = Tensor.__new__(Tensor)
    t.uop, t.device, t.requires_grad, t.grad, t._graph = u, _canonical_device(device), None, None, None
    return t
  @staticmethod
  def empty(*shape, device: str | None = None, dtype: DType | str | None = None, **kwargs) -> Tensor:
    """An uninitialized tensor (fresh memory)."""
    from tg_tensor.buffers import new_buffer
    s, dt = _shape_arg(shape), to_dtype(dtype or dtypes.default_float)
    return Tensor(new_buffer(_canonical_device(device), prod(s), dt).reshape(s), device=device, **kwargs)
  @staticmethod
  def full(shape: tuple[int, ...] | int, fill_value: Any, device: str | None = None, dtype: DType | str | None = None, **kwargs) -> Tensor:
    """A tensor of `shape` filled with `fill_value`."""
    s = _shape_arg((shape,) if isinstance(shape, int) else tuple(shape))
    t = Tensor._const(fill_value, to_dtype(dtype) if dtype is not None else dtypes.from_py(fill_value), s, device)
    return t.requires_grad_(kwargs["requires_grad"]) if kwargs.get("requires_grad") is not None else t
  @staticmethod
  def zeros(*shape, **kwargs) -> Tensor:
    """A tensor of zeros (default dtype float32)."""
    return Tensor.full(_shape_arg(shape), 0.0, **{"dtype": dtypes.default_float, **kwargs})
  @staticmethod
  def ones(*shape, **kwargs) -> Tensor:
    """A tensor of ones (default dtype float32)."""
    return Tensor.full(_shape_arg(shape), 1.0, **{"dtype": dtypes.default_float, **kwargs})
  def full_like(self, fill_value: Any, **kwargs) -> Tensor:
    return Tensor.full(self.shape, fill_value, **{"dtype": self.dtype, "device": self.device, **kwargs})
  def zeros_like(self, **kwargs) -> Tensor: return self.full_like(0, **kwargs)
  def ones_like(self, **kwargs) -> Tensor: return self.full_like(1, **kwargs)
  def empty_like(self, **kwargs) -> Tensor: return Tensor.empty(self.shape, **{"dtype": self.dtype, "device": self.device, **kwargs})
  @staticmethod
  def _index(n: int, dtype: DType = dtypes.int32, device: str | None = None) -> Tensor:
    """0, 1, ..., n-1 built from constants and padding only (no memory, no reduction): the sum of its base-2 digits, each a
    padded constant broadcast over one axis of a (2, 2, ..., 2) tensor."""
    if n <= 1: return Tensor._const(0, dtype, (n,), device)
    k = (n - 1).bit_length()
    acc: Tensor | None = None
    for b in range(k):
      digit = UOp.const(dtype, 1 << (k - 1 - b)).reshape((1,)).pad(((1, 0),))  # [0, 2**(k-1-b)] on axis b
      d = Tensor._const(0, dtype, (), device)._wrap(digit.reshape((1,) * b + (2,) + (1,) * (k - 1 - b)).expand((2,) * k))
      acc = d if acc is None else acc + d
    return acc.reshape(1 << k)[:n]
  @staticmethod
  def arange(start: int | float, stop: int | float | None = None, step: int | float = 1, device: str | None = None,
             dtype: DType | str | None = None, **kwargs) -> Tensor:
    """start, start+step, ... up to (excluding) stop; one argument means arange(0, start)."""
    if stop is None: start, stop = 0, start
    if step == 0: raise ValueError("arange step must be nonzero")
    dt = to_dtype(dtype) if dtype is not None else dtypes.from_py([start, stop, step])
    n = max(0, math.ceil((stop - start) / step))
    idt = dtypes.int32 if n < 2**31 else dtypes.int64
    idx = Tensor._index(n, idt, device)
    if dtypes.is_float(dt): return (idx.cast(dt) * step + start).cast(dt)
    return (idx.cast(dt) * int(step) + int(start)).cast(dt)
  @staticmethod
  def linspace(start: int | float, stop: int | float, steps: int, device: str | None = None, dtype: DType | str | None = None) -> Tensor:
    """`steps` evenly spaced values from start to stop, both included."""
    if steps < 0: raise ValueError(f"linspace needs steps >= 0, got {steps}")
    dt = to_dtype(dtype) if dtype is not None else dtypes.default_float
    if steps == 1: return Tensor.full((1,), start, device=device, dtype=dt)
    step = (stop - start) / max(steps - 1, 1)
    i = Tensor._index(steps, dtypes.int32, device).cast(dtypes.float64 if dt == dtypes.float64 else dtypes.float32)
    # the first half counts up from start, the second down from stop, so both ends are exact (as PyTorch)
    return (i < steps // 2).where(i * step + start, stop - (steps - 1 - i) * step).cast(dt)
  @staticmethod
  def eye(n: int, m: int | None = None, device: str | None = None, dtype: DType | str | None = None) -> Tensor:
    """The n x m identity matrix."""
    m = n if m is None else m
    _shape_arg((n, m))
    r, c = Tensor._index(n, device=device).reshape(n, 1), Tensor._index(m, device=device).reshape(1, m)
    return (r == c).cast(to_dtype(dtype) if dtype is not None else dtypes.default_float)

  # ---- random numbers: threefry of (seed, counter + element index), so draws are reproducible and independent of the device ----
  @staticmethod
  def manual_seed(seed: int = 0) -> None:
    """Seed the random generator and restart its counter."""
    Tensor._seed, Tensor._rng_counter = int(seed), 0
  @staticmethod
  def _random_bits(n: int, device: str | None = None) -> Tensor:
    """`n` random uint64 values: threefry(counter + i, seed)."""
    if n == 0: return Tensor._const(0, dtypes.uint64, (0,), device)
    counter = Tensor._rng_counter
    Tensor._rng_counter += n
    idx = Tensor._index(n, dtypes.int32 if n < 2**31 else dtypes.int64, device).cast(dtypes.uint64) + counter
    key = UOp.const(dtypes.uint64, Tensor._seed & (2**64 - 1)).reshape((1,)).expand((n,))
    return idx._wrap(idx.uop.alu(Ops.THREEFRY, key))
  @staticmethod
  def rand(*shape, device: str | None = None, dtype: DType | str | None = None, **kwargs) -> Tensor:
    """Uniform random numbers in [0, 1)."""
    s, dt = _shape_arg(shape), to_dtype(dtype or dtypes.default_float)
    if not dtypes.is_float(dt): raise TypeError(f"rand makes floats, got dtype {dt}: use randint for integers")
    bits = dtypes.finfo(dt)[1] + 1  # as many random bits as the mantissa holds, so every value is exact and < 1
    wide = dt == dtypes.float64
    r = Tensor._random_bits(prod(s), device) >> (64 - bits)
    f = r.cast(dtypes.int64 if wide else dtypes.int32).cast(dtypes.float64 if wide else dtypes.float32) * (2.0 ** -bits)
    return f.cast(dt).reshape(s).requires_grad_(kwargs.get("requires_grad"))
  @staticmethod
  def randn(*shape, device: str | None = None, dtype: DType | str | None = None, **kwargs) -> Tensor:
    """Standard normal random numbers (Box-Muller)."""
    s, dt = _shape_arg(shape), to_dtype(dtype or dtypes.default_float)
    ft = dtypes.float64 if dt == dtypes.float64 else dtypes.float32
    u = Tensor.rand(2, prod(s), device=device, dtype=ft)
    z = ((1 - u[0]).log() * -2).sqrt() * (u[1] * (2 * math.pi)).cos()
    return z.cast(dt).reshape(s).requires_grad_(kwargs.get("requires_grad"))
  @staticmethod
  def randint(*shape, low: int = 0, high: int = 10, device: str | None = None, dtype: DType | str | None = None) -> Tensor:
    """Uniform random integers in [low, high)."""
    s, dt = _shape_arg(shape), to_dtype(dtype or dtypes.int32)
    if high <= low: raise ValueError(f"randint needs low < high, got low={low}, high={high}")
    if not dtypes.is_int(dt): raise TypeError(f"randint makes integers, got dtype {dt}: use rand or uniform for floats")
    r = Tensor._random_bits(prod(s), device) % (high - low)
    return (r.cast(dtypes.int64) + low).cast(dt).reshape(s)
  @staticmethod
  def uniform(*shape, low: float = 0.0, high: float = 1.0, **kwargs) -> Tensor:
    """Uniform random numbers in [low, high)."""
    dt = to_dtype(kwargs.pop("dtype", None) or dtypes.default_float)
    return (Tensor.rand(*shape, dtype=dt, **kwargs) * (high - low) + low).cast(dt)
  @staticmethod
  def normal(*shape, mean: float = 0.0, std: float = 1.0, **kwargs) -> Tensor:
    """Normal random numbers with `mean` and `std`."""
    dt = to_dtype(kwargs.pop("dtype", None) or dtypes.default_float)
    return (Tensor.randn(*shape, dtype=dt, **kwargs) * std + mean).cast(dt)
  # ---- initializers (tinygrad's names): uniform or normal, scaled by the fan-in / fan-out of `shape` ----
  @staticmethod
  def scaled_uniform(*shape, **kwargs) -> Tensor:
    """Uniform in [-1, 1) scaled by 1/sqrt(numel)."""
    s = _shape_arg(shape)
    return Tensor.uniform(*s, low=-1.0, high=1.0, **kwargs) * (prod(s) ** -0.5)
  @staticmethod
  def glorot_uniform(*shape, **kwargs) -> Tensor:
    """Xavier/Glorot uniform: bound sqrt(6 / (fan_out + fan_in)), fan_out = shape[0], fan_in = prod(shape[1:])."""
    s = _shape_arg(shape)
    b = math.sqrt(6 / (s[0] + prod(s[1:])))
    return Tensor.uniform(*s, low=-b, high=b, **kwargs)
  @staticmethod
  def kaiming_uniform(*shape, a: float = 0.01, **kwargs) -> Tensor:
    """He/Kaiming uniform for leaky-relu slope `a`: bound sqrt(3) * gain / sqrt(fan_in), fan_in = prod(shape[1:])."""
    s = _shape_arg(shape)
    b = math.sqrt(3.0) * math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(prod(s[1:]))
    return Tensor.uniform(*s, low=-b, high=b, **kwargs)
  @staticmethod
  def kaiming_normal(*shape, a: float = 0.01, **kwargs) -> Tensor:
    """He/Kaiming normal for leaky-relu slope `a`: std gain / sqrt(fan_in)."""
    s = _shape_arg(shape)
    return Tensor.normal(*s, mean=0.0, std=math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(prod(s[1:])), **kwargs)
  def rand_like(self, **kwargs) -> Tensor: return Tensor.rand(self.shape, **{"dtype": self.dtype, "device": self.device, **kwargs})
  def randn_like(self, **kwargs) -> Tensor: return Tensor.randn(self.shape, **{"dtype": self.dtype, "device": self.device, **kwargs})

  # ---- autograd ----
  def _lazy(self) -> UOp: return self._graph if self._graph is not None else self.uop
  def gradient(self, *targets: Tensor, gradient: Tensor | None = None) -> list[Tensor]:
    """The gradients of this (scalar) tensor with respect to `targets`."""
    from tg_tensor.gradient import compute_gradient, unrealize
    if gradient is None:
      if self.shape != (): raise ValueError(f"gradient() of a tensor of shape {self.shape} needs `gradient=` (or call it on a scalar, e.g. .sum())")
      gradient = Tensor._const(1, self.dtype, (), self.device)
    tset = {t.uop for t in targets}
    grads = compute_gradient(unrealize(self._lazy(), tset), gradient.uop, tset)
    out = []
    for t in targets:
      g = grads.get(t.uop)
      out.append(t._wrap(g) if g is not None else t.zeros_like())  # a gradient lives on its tensor's device
    return out
  def backward(self, gradient: Tensor | None = None) -> Tensor:
    """Accumulate d(self)/d(t) into `t.grad` for every tensor `t` with requires_grad that this one depends on."""
    from tg_tensor.gradient import live_grad_tensors
    targets = [t for t in live_grad_tensors() if t.requires_grad]
    from tg_tensor.gradient import unrealize
    topo = unrealize(self._lazy(), {t.uop for t in targets}).toposort()
    targets = [t for t in targets if t.uop in topo]
    if not targets: raise RuntimeError("backward() found no tensor with requires_grad=True in this graph: set requires_grad=True on the inputs")
    for t, g in zip(targets, self.gradient(*targets, gradient=gradient)):
      t.grad = g if t.grad is None else t.grad + g
    return self

def _uop_from_data(data: Any, device: str, dtype: DType | None) -> UOp:
  """The tensor-level UOp for Python or numpy data."""
  from tg_tensor.buffers import from_numpy, from_bytes
  if isinstance(data, (bool, int, float)): return UOp.const(dtype or dtypes.from_py(data), data)
  if data is None: return from_numpy(np.zeros((0,), dtype=_np_dtype_name(dtype or dtypes.default_float)), device)
  if isinstance(data, (bytes, bytearray, memoryview)): return from_bytes(bytes(data), dtypes.uint8, device)
  if isinstance(data, (list, tuple)):
    dt = dtype or dtypes.from_py(_flat_sample(data))
    try: arr = np.array(data, dtype=_np_dtype_name(dt))
    except (ValueError, OverflowError) as e:
      raise ValueError(f"can't make a Tensor from this list ({e}): nested lists must be rectangular and the values must fit {dt}") from None
    return from_numpy(arr, device)
  if isinstance(data, (np.ndarray, np.generic)):
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf": raise TypeError(f"numpy arrays of dtype {arr.dtype} can't become Tensors: cast to a bool, int or float dtype")
    if dtype is not None and to_np_name(dtype) is not None: arr = arr.astype(to_np_name(dtype))
    return from_numpy(arr, device)
  raise TypeError(f"can't make a Tensor from {type(data).__name__}: pass a numpy array, a (nested) list, a Python scalar, bytes or a UOp")

def _flat_sample(data: list | tuple) -> list:
  """All leaves of a nested list (for dtype inference)."""
  out: list = []
  stack = [data]
  while stack:
    x = stack.pop()
    if isinstance(x, (list, tuple)): stack.extend(x)
    elif isinstance(x, np.generic): out.append(x.item())
    else: out.append(x)
  return out
