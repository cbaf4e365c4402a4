"""tg_tensor.nn: layers as plain classes holding Tensors (`Linear`, `Conv2d`, `BatchNorm`, ...), called like functions.

Parameters are ordinary Tensors found by `tg_tensor.nn.state.get_parameters`; the optimizers in `tg_tensor.nn.optim` mark them
as requiring gradients. Training mode is explicit, as in tinygrad: set `Tensor.training = True` (BatchNorm uses batch statistics
and Dropout drops only then). Initializations follow PyTorch's defaults (uniform in +-1/sqrt(fan_in))."""
from __future__ import annotations
import math
from typing import Sequence
from tg_uop.dtype import dtypes
from tg_tensor.tensor import Tensor

__all__ = ["Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "LayerNorm",
           "GroupNorm", "InstanceNorm", "RMSNorm", "Embedding", "LSTMCell", "Dropout"]

def _tuple(x: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
  """An int repeated n times, or a sequence of n ints."""
  if isinstance(x, int): return (x,) * n
  if len(x) != n: raise ValueError(f"{what} {tuple(x)} needs {n} values (one per spatial axis) or a single int")
  return tuple(x)

def _uniform(shape: tuple[int, ...], bound: float) -> Tensor:
  """A realized tensor uniform in [-bound, bound): parameters are real buffers, not a random graph recomputed on every use."""
  return Tensor.uniform(*shape, low=-bound, high=bound).contiguous().realize()

# ---- layers ----

class Linear:
  """y = x @ weight.T + bias, weight (out_features, in_features)."""
  def __init__(self, in_features: int, out_features: int, bias: bool = True):
    bound = 1 / math.sqrt(in_features) if in_features else 0.0
    self.weight = _uniform((out_features, in_features), bound)
    self.bias = _uniform((out_features,), bound) if bias else None
  def __call__(self, x: Tensor) -> Tensor:
    y = x @ self.weight.T
    return y if self.bias is None else y + self.bias

class Conv2d:
  """2-d convolution (cross-correlation) as PyTorch's Conv2d; weight (out, in/groups, kh, kw)."""
  nd = 2
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
               padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True):
    if in_channels % groups or out_channels % groups:
      raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by groups ({groups})")
    self.kernel_size = _tuple(kernel_size, self.nd, "kernel_size")
    self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
    bound = 1 / math.sqrt(in_channels // groups * math.prod(self.kernel_size))
    self.weight = _uniform((out_channels, in_channels // groups, *self.kernel_size), bound)
    self.bias = _uniform((out_channels,), bound) if bias else None
  def __call__(self, x: Tensor) -> Tensor:
    pads = self._pad_pairs()
    if self.groups != 1 or pads is None or not hasattr(x, "_pool"):
      return x.conv2d(self.weight, self.bias, groups=self.groups, stride=self.stride, dilation=self.dilation, padding=self.padding)
    # im2col: the windows are materialized once and the convolution is a plain matmul over them. On CPU this runs several times
    # faster (forward and backward) than the single fused window kernel, whose index arithmetic dominates with small channels.
    n, cin, nd = x.shape[0], x.shape[1], self.nd
    if x.ndim != nd + 2 or cin != self.weight.shape[1]:
      raise ValueError(f"{type(self).__name__} expects input (N, {self.weight.shape[1]}, {nd} spatial axes), got {x.shape}")
    win = x.pad(((0, 0), (0, 0), *pads))._pool(self.kernel_size, self.stride, self.dilation)  # (N, Cin, *out, *k)
    out = win.shape[2:2 + nd]
    col = win.permute(0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd)).contiguous().reshape(n * math.prod(out), -1)
    y = col @ self.weight.reshape(self.weight.shape[0], -1).T
    if self.bias is not None: y = y + self.bias
    return y.contiguous().reshape(n, *out, -1).permute(0, nd + 1, *range(1, nd + 1))
  def _pad_pairs(self) -> list[tuple[int, int]] | None:
    """(before, after) per spatial axis for int or per-axis int padding; None for other forms (left to Tensor.conv2d)."""
    if isinstance(self.padding, int): return [(self.padding, self.padding)] * self.nd
    if isinstance(self.padding, (tuple, list)) and len(self.padding) == self.nd and all(isinstance(p, int) for p in self.padding):
      return [(p, p) for p in self.padding]
    return None

class Conv1d(Conv2d):
  """1-d convolution as PyTorch's Conv1d; weight (out, in/groups, k)."""
  nd = 1

class ConvTranspose2d:
  """2-d transposed convolution as PyTorch's ConvTranspose2d; weight (in, out/groups, kh, kw)."""
  nd = 2
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride: int | Sequence[int] = 1,
               padding: int | Sequence[int] = 0, output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
               dilation: int | Sequence[int] = 1):
    if in_channels % groups or out_channels % groups:
      raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by groups ({groups})")
    self.kernel_size = _tuple(kernel_size, self.nd, "kernel_size")
    self.stride, self.padding, self.output_padding, self.dilation, self.groups = stride, padding, output_padding, dilation, groups
    # PyTorch computes fan_in from weight.shape[1] * kernel area for transposed convs
    bound = 1 / math.sqrt(out_channels // groups * math.prod(self.kernel_size))
    self.weight = _uniform((in_channels, out_channels // groups, *self.kernel_size), bound)
    self.bias = _uniform((out_channels,), bound) if bias else None
  def __call__(self, x: Tensor) -> Tensor:
    return x.conv_transpose2d(self.weight, self.bias, groups=self.groups, stride=self.stride, dilation=self.dilation, padding=self.padding,
                              output_padding=self.output_padding)

class ConvTranspose1d(ConvTranspose2d):
  """1-d transposed convolution as PyTorch's ConvTranspose1d; weight (in, out/groups, k)."""
  nd = 1

class BatchNorm:
  """Batch normalization over axis 1 (any number of trailing axes): batch statistics while `Tensor.training`, running ones otherwise.
  Running stats update with `momentum` and the unbiased batch variance, as PyTorch; they are realized by the optimizer's step
  when passed to it (get_parameters(model) includes them)."""
  def __init__(self, sz: int, eps: float = 1e-5, affine: bool = True, track_running_stats: bool = True, momentum: float = 0.1):
    self.eps, self.track_running_stats, self.momentum = eps, track_running_stats, momentum
    self.weight: Tensor | None = Tensor.ones(sz).contiguous().realize() if affine else None
    self.bias: Tensor | None = Tensor.zeros(sz).contiguous().realize() if affine else None
    self.num_batches_tracked = Tensor.zeros((), dtype=dtypes.int64).contiguous().realize().requires_grad_(False)
    if track_running_stats:
      self.running_mean = Tensor.zeros(sz).contiguous().realize().requires_grad_(False)
      self.running_var = Tensor.ones(sz).contiguous().realize().requires_grad_(False)
  def calc_stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
    """The batch mean and biased variance per channel."""
    axes = tuple(i for i in range(x.ndim) if i != 1)
    mean = x.mean(axes)
    var = (x - mean.reshape(1, -1, *(1,) * (x.ndim - 2))).square().mean(axes)
    return mean, var
  def __call__(self, x: Tensor) -> Tensor:
    if x.ndim < 2: raise ValueError(f"BatchNorm needs an input of at least 2 dims (N, C, ...), got {x.shape}")
    shape = (1, -1, *(1,) * (x.ndim - 2))
    if Tensor.training or not self.track_running_stats:
      mean, var = self.calc_stats(x)
      if Tensor.training and self.track_running_stats:
        n = x.numel() // x.shape[1]
        m = self.momentum
        self.running_mean.assign((1 - m) * self.running_mean + m * mean.detach())
        self.running_var.assign((1 - m) * self.running_var + m * var.detach() * (n / max(n - 1, 1)))
        self.num_batches_tracked.assign(self.num_batches_tracked + 1)
    else: mean, var = self.running_mean, self.running_var
    y = (x - mean.reshape(shape)) * (var.reshape(shape) + self.eps).rsqrt()
    if self.weight is not None: y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
    return y
BatchNorm1d = BatchNorm2d = BatchNorm3d = BatchNorm

def _normalize(x: Tensor, axes: tuple[int, ...], eps: float) -> Tensor:
  """(x - mean) / sqrt(var + eps) over `axes` (biased variance)."""
  mean = x.mean(axes, keepdim=True)
  xc = x - mean
  return xc * (xc.square().mean(axes, keepdim=True) + eps).rsqrt()

class LayerNorm:
  """Normalization over the trailing `normalized_shape` axes, with an elementwise affine, as PyTorch's LayerNorm."""
  def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True):
    self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    self.eps = eps
    self.weight = Tensor.ones(*self.normalized_shape).contiguous().realize() if elementwise_affine else None
    self.bias = Tensor.zeros(*self.normalized_shape).contiguous().realize() if elementwise_affine else None
  def __call__(self, x: Tensor) -> Tensor:
    k = len(self.normalized_shape)
    if x.shape[-k:] != self.normalized_shape:
      raise ValueError(f"LayerNorm over {self.normalized_shape} got an input of shape {x.shape}: its last axes must match")
    y = _normalize(x, tuple(range(x.ndim - k, x.ndim)), self.eps)
    return y if self.weight is None else y * self.weight + self.bias

class GroupNorm:
  """Normalization over groups of channels (and all spatial positions), with a per-channel affine, as PyTorch's GroupNorm."""
  def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
    if num_channels % num_groups: raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
    self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
    self.weight = Tensor.ones(num_channels).contiguous().realize() if affine else None
    self.bias = Tensor.zeros(num_channels).contiguous().realize() if affine else None
  def __call__(self, x: Tensor) -> Tensor:
    if x.ndim < 2 or x.shape[1] != self.num_channels:
      raise ValueError(f"GroupNorm for {self.num_channels} channels got an input of shape {x.shape} (need (N, {self.num_channels}, ...))")
    g = x.reshape(x.shape[0], self.num_groups, -1)
    y = _normalize(g, (2,), self.eps).reshape(x.shape)
    if self.weight is None: return y
    shape = (1, -1, *(1,) * (x.ndim - 2))
    return y * self.weight.reshape(shape) + self.bias.reshape(shape)

class InstanceNorm:
  """Normalization of each channel of each sample over its spatial positions, as PyTorch's InstanceNorm (affine on by default,
  as tinygrad's)."""
  def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
    self.num_features, self.eps = num_features, eps
    self.weight = Tensor.ones(num_features).contiguous().realize() if affine else None
    self.bias = Tensor.zeros(num_features).contiguous().realize() if affine else None
  def __call__(self, x: Tensor) -> Tensor:
    if x.ndim < 3 or x.shape[1] != self.num_features:
      raise ValueError(f"InstanceNorm for {self.num_features} channels got an input of shape {x.shape} (need (N, {self.num_features}, ...))")
    y = _normalize(x, tuple(range(2, x.ndim)), self.eps)
    if self.weight is None: return y
    shape = (1, -1, *(1,) * (x.ndim - 2))
    return y * self.weight.reshape(shape) + self.bias.reshape(shape)

class RMSNorm:
  """x / sqrt(mean(x^2) + eps) over the last axis, times a learned scale, as PyTorch's RMSNorm."""
  def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
    self.eps = eps
    self.weight = Tensor.ones(dim).contiguous().realize() if elementwise_affine else None
  def __call__(self, x: Tensor) -> Tensor:
    y = x * (x.square().mean(-1, keepdim=True) + self.eps).rsqrt()
    return y if self.weight is None else y * self.weight

class Embedding:
  """A lookup table: integer indices of any shape to rows of `weight` (vocab_size, embed_size), initialized N(0, 1) as PyTorch."""
  def __init__(self, vocab_size: int, embed_size: int):
    self.vocab_sz, self.embed_sz = vocab_size, embed_size
    self.weight = Tensor.randn(vocab_size, embed_size).contiguous().realize()
  def __call__(self, idx: Tensor) -> Tensor:
    if dtypes.is_float(idx.dtype): raise TypeError(f"Embedding needs integer indices, got {idx.dtype}: cast them with .int()")
    # a one-hot matmul: no scatter/gather op needed and the gradient is a plain reduction
    onehot = idx.reshape(*idx.shape, 1) == Tensor.arange(self.vocab_sz, device=idx.device).reshape(*(1,) * idx.ndim, self.vocab_sz)
    return onehot.cast(self.weight.dtype) @ self.weight

class LSTMCell:
  """One LSTM step as PyTorch's LSTMCell: gates (input, forget, cell, output) from x and h; returns (h, c)."""
  def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
    bound = 1 / math.sqrt(hidden_size)
    self.hidden_size = hidden_size
    self.weight_ih = _uniform((4 * hidden_size, input_size), bound)
    self.weight_hh = _uniform((4 * hidden_size, hidden_size), bound)
    self.bias_ih = _uniform((4 * hidden_size,), bound) if bias else None
    self.bias_hh = _uniform((4 * hidden_size,), bound) if bias else None
  def __call__(self, x: Tensor, hc: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    if hc is None: hc = (Tensor.zeros(*x.shape[:-1], self.hidden_size, dtype=x.dtype, device=x.device),) * 2
    h, c = hc
    gates = x @ self.weight_ih.T + h @ self.weight_hh.T
    if self.bias_ih is not None: gates = gates + self.bias_ih + self.bias_hh
    i, f, g, o = gates.chunk(4, -1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c

class Dropout:
  """Zero each element with probability p (scaling the rest by 1/(1-p)) while `Tensor.training`; the identity otherwise."""
  def __init__(self, p: float = 0.5):
    if not 0 <= p <= 1: raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    self.p = p
  def __call__(self, x: Tensor) -> Tensor:
    if not Tensor.training or self.p == 0: return x
    return x.dropout(self.p)
