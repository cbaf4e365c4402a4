"""Neural-network Tensor ops: sliding windows (`_pool`), convolutions, pooling, normalization, losses, attention, dropout and
resampling, all composed from movement, elementwise and reduce ops, so autograd differentiates them for free and the scheduler
fuses them (a convolution is one reduction over a view of the input: one kernel).

Windows without copies: an axis of size i is repeated e times (expand), flattened, and re-cut into rows of length i+d, so that
row k starts at element k*d of the input; taking every s-th column of the first o*s gives x[o*s + k*d] at (k, o)."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING, Any, Sequence
import numpy as np
from tg_uop.dtype import DType, dtypes, least_upper_dtype, to_dtype, to_np_name
from tg_uop.helpers import prod, ceildiv
if TYPE_CHECKING: from tg_tensor.tensor import Tensor

def _ntuple(x: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
  """An int repeated n times, or a sequence of n ints."""
  if isinstance(x, int) and not isinstance(x, bool): return (x,) * n
  t = tuple(x)
  if len(t) != n or not all(isinstance(v, int) for v in t): raise ValueError(f"{what} must be an int or {n} ints, got {x!r}")
  return t

def _flat(pairs) -> tuple: return tuple(v for p in pairs for v in p)

def _pad_pairs(padding: Any, k_: tuple[int, ...], dilation: tuple[int, ...], what: str = "padding") -> list[tuple[int, int]]:
  """(before, after) per spatial axis from an int, one int per axis, PyTorch's flat form (2 per axis, last axis first),
  explicit pairs, or the strings 'valid' and 'same' (stride 1: output size equals input size, extra padding after)."""
  n = len(k_)
  if isinstance(padding, str):
    if padding == "valid": return [(0, 0)] * n
    if padding == "same":
      tot = [d * (k - 1) for k, d in zip(k_, dilation)]
      return [(t // 2, t - t // 2) for t in tot]
    raise ValueError(f"{what} string must be 'valid' or 'same', got {padding!r}")
  if isinstance(padding, int) and not isinstance(padding, bool): return [(padding, padding)] * n
  p = tuple(padding)
  if len(p) == n and all(isinstance(v, (tuple, list)) and len(v) == 2 for v in p): return [tuple(v) for v in p]
  if all(isinstance(v, int) for v in p):
    if len(p) == n: return [(v, v) for v in p]
    if len(p) == 2 * n: return [(p[2 * i], p[2 * i + 1]) for i in range(n - 1, -1, -1)]
  raise ValueError(f"{what} {padding!r} doesn't fit {n} spatial axes: use an int, {n} ints, {2 * n} ints (PyTorch's pad order), "
                   f"'valid' or 'same'")

def _interp_matrix(i: int, o: int, mode: str, align_corners: bool) -> np.ndarray:
  """The (o, i) matrix that resamples an axis of size i to size o (each row holds the weights of one output element)."""
  w = np.zeros((o, i), dtype=np.float64)
  j = np.arange(o, dtype=np.float64)
  if mode == "nearest": src = np.minimum(np.floor(j * (i / o)), i - 1).astype(np.int64)
  elif mode == "nearest-exact": src = np.minimum(np.floor((j + 0.5) * (i / o)), i - 1).astype(np.int64)
  else:
    if align_corners: pos = j * ((i - 1) / (o - 1)) if o > 1 else np.zeros(o)
    else: pos = np.maximum((j + 0.5) * (i / o) - 0.5, 0.0)
    lo = np.minimum(np.floor(pos).astype(np.int64), i - 1)
    hi = np.minimum(lo + 1, i - 1)
    frac = pos - lo
    np.add.at(w, (np.arange(o), lo), 1 - frac)
    np.add.at(w, (np.arange(o), hi), frac)
    return w
  w[np.arange(o), src] = 1.0
  return w

class NNMixin:
  __slots__ = ()
  # ---- sliding windows ----
  def _pool(self: Tensor, k_: tuple[int, ...], stride: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1) -> Tensor:
    """Windows over the last len(k_) axes: shape (..., *i) becomes (..., *o, *k_) with o = (i - d*(k-1) - 1) // s + 1, a view."""
    n = len(k_)
    if self.ndim < n: raise ValueError(f"a {n}-d window needs at least {n} dims, the input has shape {self.shape}")
    s_, d_ = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation")
    if any(v <= 0 for v in k_ + s_ + d_): raise ValueError(f"kernel size {k_}, stride {s_} and dilation {d_} must be positive")
    pre, i_ = self.shape[:-n], self.shape[-n:]
    o_ = tuple((i - d * (k - 1) - 1) // s + 1 for i, d, k, s in zip(i_, d_, k_, s_))
    if any(o <= 0 for o in o_):
      raise ValueError(f"the window (kernel {k_}, dilation {d_}) is larger than the (padded) input {i_}: the output would be empty")
    keep, np_ = (None,) * len(pre), len(pre)
    if all(k <= s for k, s in zip(k_, s_)) and all(d == 1 for d in d_):
      # non-overlapping windows: cut each axis into rows of s and keep the first k of each row
      x = self.pad(keep + tuple((0, o * s - i) for o, s, i in zip(o_, s_, i_)))
      x = x.reshape(pre + _flat((o, s) for o, s in zip(o_, s_)))
      x = x.shrink(keep + _flat(((0, o), (0, k)) for o, k in zip(o_, k_)))
      return x.permute(tuple(range(np_)) + tuple(np_ + 2 * j for j in range(n)) + tuple(np_ + 2 * j + 1 for j in range(n)))
    e_ = tuple(ceildiv(k * (i + d), i) for k, i, d in zip(k_, i_, d_))
    x = self.reshape(pre + _flat((1, i) for i in i_)).expand(pre + _flat((e, i) for e, i in zip(e_, i_)))
    x = x.reshape(pre + tuple(e * i for e, i in zip(e_, i_)))
    x = x.shrink(keep + tuple((0, k * (i + d)) for k, i, d in zip(k_, i_, d_)))
    x = x.reshape(pre + _flat((k, i + d) for k, i, d in zip(k_, i_, d_)))  # row k starts at element k*d
    x = x.pad(keep + _flat((None, (0, o * s - (i + d))) for o, s, i, d in zip(o_, s_, i_, d_)))
    x = x.reshape(pre + _flat((k, o, s) for k, o, s in zip(k_, o_, s_)))
    x = x.shrink(keep + _flat(((0, k), (0, o), (0, 1)) for k, o in zip(k_, o_)))
    x = x.reshape(pre + _flat((k, o) for k, o in zip(k_, o_)))
    return x.permute(tuple(range(np_)) + tuple(np_ + 2 * j + 1 for j in range(n)) + tuple(np_ + 2 * j for j in range(n)))

  # ---- convolutions ----
  def conv2d(self: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1, stride: int | Sequence[int] = 1,
             dilation: int | Sequence[int] = 1, padding: Any = 0, dtype: DType | str | None = None) -> Tensor:
    """N-d convolution (cross-correlation, as PyTorch): input (N, C_in, *spatial), weight (C_out, C_in/groups, *kernel).
    `padding`: int, one per spatial axis, 2 per axis in PyTorch's flat pad order, or 'same'/'valid'."""
    if self.ndim < 3 or weight.ndim != self.ndim:
      raise ValueError(f"conv needs input (N, C, *spatial) and weight (C_out, C_in/groups, *kernel) of the same rank, "
                       f"got {self.shape} and {weight.shape}")
    (bs, cin_), (cout, cin), k_ = self.shape[:2], weight.shape[:2], weight.shape[2:]
    if groups <= 0 or cin * groups != cin_ or cout % groups:
      raise ValueError(f"conv with groups={groups}: input channels {cin_} must equal weight.shape[1] ({cin}) * groups, and "
                       f"output channels {cout} must divide by groups (input {self.shape}, weight {weight.shape})")
    n = len(k_)
    d_ = _ntuple(dilation, n, "dilation")
    if isinstance(padding, str) and padding == "same" and any(s != 1 for s in _ntuple(stride, n, "stride")):
      raise ValueError("padding='same' needs stride 1 (as PyTorch)")
    pads = _pad_pairs(padding, k_, d_)
    x = self.pad(((0, 0), (0, 0)) + tuple(pads))._pool(k_, stride, d_)  # (bs, cin_, *o, *k)
    o_, rcout = x.shape[2:2 + n], cout // groups
    x = x.reshape((bs, groups, cin, 1) + o_ + k_).expand((bs, groups, cin, rcout) + o_ + k_)
    x = x.permute((0, 1, 3) + tuple(4 + j for j in range(n)) + (2,) + tuple(4 + n + j for j in range(n)))  # (bs, g, rcout, *o, cin, *k)
    w = weight.reshape((1, groups, rcout) + (1,) * n + (cin,) + k_)
    out_dt = to_dtype(dtype) if dtype is not None else least_upper_dtype(self.dtype, weight.dtype)
    ret = (x.cast(out_dt) * w.cast(out_dt)).sum(tuple(range(-1 - n, 0)), dtype=out_dt).reshape((bs, cout) + o_)
    return ret if bias is None else ret + bias.reshape((1, -1) + (1,) * n)
  def conv1d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
             groups: int = 1) -> Tensor:
    """1-d convolution (PyTorch's argument order): input (N, C, L), weight (C_out, C_in/groups, K)."""
    if self.ndim != 3: raise ValueError(f"conv1d needs input (N, C, L), got {self.shape}")
    return self.conv2d(weight, bias, groups, stride, dilation, padding)
  def conv3d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
             groups: int = 1) -> Tensor:
    """3-d convolution (PyTorch's argument order): input (N, C, D, H, W)."""
    if self.ndim != 5: raise ValueError(f"conv3d needs input (N, C, D, H, W), got {self.shape}")
    return self.conv2d(weight, bias, groups, stride, dilation, padding)
  def conv_transpose2d(self: Tensor, weight: Tensor, bias: Tensor | None = None, groups: int = 1, stride: Any = 1,
                       dilation: Any = 1, padding: Any = 0, output_padding: Any = 0) -> Tensor:
    """N-d transposed convolution: input (N, C_in, *spatial), weight (C_in, C_out/groups, *kernel), as PyTorch. Built as a
    convolution of the input spread out by the stride (zeros in between) with the flipped, transposed weight."""
    if self.ndim < 3 or weight.ndim != self.ndim:
      raise ValueError(f"conv_transpose needs input (N, C, *spatial) and weight (C_in, C_out/groups, *kernel), got {self.shape} and {weight.shape}")
    k_, n = weight.shape[2:], weight.ndim - 2
    if weight.shape[0] != self.shape[1] or weight.shape[0] % groups:
      raise ValueError(f"conv_transpose: input channels {self.shape[1]} must equal weight.shape[0] ({weight.shape[0]}), divisible by groups={groups}")
    s_, d_, op_ = _ntuple(stride, n, "stride"), _ntuple(dilation, n, "dilation"), _ntuple(output_padding, n, "output_padding")
    pads = _pad_pairs(padding, k_, d_)
    if any(o >= max(s, d) for o, s, d in zip(op_, s_, d_)):
      raise ValueError(f"output_padding {op_} must be smaller than stride {s_} or dilation"
        f" {d_}")
    cin = weight.shape[0]
    w = weight.reshape((groups, cin // groups) + weight.shape[1:]).transpose(1, 2).flip(tuple(range(3, 3 + n)))
    w = w.reshape((groups * weight.shape[1], cin // groups) + k_)
    x = self
    if any(s > 1 for s in s_):
      pre, i_ = x.shape[:2], x.shape[2:]
      x = x.reshape(pre + _flat((i, 1) for i in i_)).pad(((0, 0), (0, 0)) + _flat((None, (0, s - 1)) for s in s_))
      x = x.reshape(pre + tuple(i * s for i, s in zip(i_, s_))).shrink((None, None) + tuple((0, (i - 1) * s + 1) for i, s in zip(i_, s_)))
    tp = tuple((d * (k - 1) - b, d * (k - 1) - a + o) for (b, a), k, d, o in zip(pads, k_, d_, op_))
    return x.conv2d(w, bias, groups, 1, d_, list(tp))
  def conv_transpose1d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
                       output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    """1-d transposed convolution (PyTorch's argument order)."""
    if self.ndim != 3: raise ValueError(f"conv_transpose1d needs input (N, C, L), got {self.shape}")
    return self.conv_transpose2d(weight, bias, groups, stride, dilation, padding, output_padding)
  def conv_transpose3d(self: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0,
                       output_padding: Any = 0, groups: int = 1, dilation: Any = 1) -> Tensor:
    if self.ndim != 5: raise ValueError(f"conv_transpose3d needs input (N, C, D, H, W), got {self.shape}")
    return self.conv_transpose2d(weight, bias, groups, stride, dilation, padding, output_padding)

  # ---- pooling ----
  def _pool_setup(self: Tensor, kernel_size: Any, stride: Any, dilation: Any, padding: Any, ceil_mode: bool):
    k_ = _ntuple(kernel_size, 2 if isinstance(kernel_size, int) else len(tuple(kernel_size)), "kernel_size")
    n = len(k_)
    if self.ndim < n: raise ValueError(f"a {n}-d pool needs at least {n} dims, got shape {self.shape}")
    s_ = k_ if stride is None or (not isinstance(stride, int) and len(tuple(stride)) == 0) else _ntuple(stride, n, "stride")
    d_ = _ntuple(dilation, n, "dilation")
    pads = _pad_pairs(padding, k_, d_)
    if any(2 * max(b, a) > (k - 1) * d + 1 for (b, a), k, d in zip(pads, k_, d_)):
      raise ValueError(f"pool padding {padding} should be at most half of the effective kernel size {k_} (as PyTorch)")
    extra = [0] * n
    if ceil_mode:  # more windows at the end as long as each starts inside the input or the left padding (PyTorch's rule)
      for j, (i, k, s, d, (b, a)) in enumerate(zip(self.shape[-n:], k_, s_, d_, pads)):
        eff = i + b + a - d * (k - 1) - 1
        o = -(-eff // s) + 1
        if (o - 1) * s >= i + b: o -= 1
        extra[j] = max(0, (o - 1) * s + d * (k - 1) + 1 - (i + b + a))
    return k_, s_, d_, pads, extra
  def max_pool2d(self: Tensor, kernel_size: Any = (2, 2), stride: Any = None, dilation: Any = 1, padding: Any = 0,
                 ceil_mode: bool = False, return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Max over windows of the last len(kernel_size) axes (an int kernel_size means 2 axes); stride defaults to the kernel.
    Padding counts as -inf. return_indices also gives each max's flat index in the input (int64, as PyTorch)."""
    k_, s_, d_, pads, extra = self._pool_setup(kernel_size, stride, dilation, padding, ceil_mode)
    n = len(k_)
    lo = -math.inf if dtypes.is_float(self.dtype) else dtypes.min(self.dtype)
    keep = (None,) * (self.ndim - n)
    win = self.pad(keep + tuple((b, a + e) for (b, a), e in zip(pads, extra)), value=lo)._pool(k_, s_, d_)
    out = win.max(tuple(range(-n, 0)))
    if not return_indices: return out
    # which element of each window holds the max (the first one), turned into a flat index of the unpadded input
    flatwin = win.reshape(win.shape[:-n] + (prod(k_),))
    local = flatwin.argmax(-1).cast(dtypes.int64)
    o_ = out.shape[-n:]
    idx = self._const(0, dtypes.int64, out.shape, self.device)
    for j in range(n):
      kk = (local // prod(k_[j + 1:])) % k_[j]
      oj = self._index(o_[j], dtypes.int64, self.device).reshape((o_[j],) + (1,) * (n - 1 - j))
      coord = oj * s_[j] - pads[j][0] + kk * d_[j]
      idx = idx + coord * prod(self.shape[self.ndim - n + j + 1:])
    return out, idx
  def max_pool1d(self: Tensor, kernel_size: int = 2, stride: Any = None, dilation: int = 1, padding: int = 0,
                 ceil_mode: bool = False, return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    return self.max_pool2d((kernel_size,), stride, dilation, padding, ceil_mode, return_indices)
  def avg_pool2d(self: Tensor, kernel_size: Any = (2, 2), stride: Any = None, dilation: Any = 1, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """Mean over windows of the last len(kernel_size) axes; padding counts in the divisor when count_include_pad, and the
    extra windows of ceil_mode divide by the elements they actually cover (as PyTorch)."""
    k_, s_, d_, pads, extra = self._pool_setup(kernel_size, stride, dilation, padding, ceil_mode)
    n = len(k_)
    keep = (None,) * (self.ndim - n)
    x = self._float()
    total = x.pad(keep + tuple((b, a + e) for (b, a), e in zip(pads, extra)))._pool(k_, s_, d_).sum(tuple(range(-n, 0)))
    if (count_include_pad or not any(b or a for b, a in pads)) and not any(extra): return (total / prod(k_)).cast(x.dtype)
    # the divisor: how many counted positions each window covers; it depends on the shapes only, so numpy computes it (per axis,
    # the count of window taps inside the counted region of the padded axis; the windows' counts multiply across axes)
    div = np.ones((), dtype=np.float64)
    for i, o, k, s, d, (b, a) in zip(self.shape[-n:], total.shape[-n:], k_, s_, d_, pads):
      lo, hi = (0, i + b + a) if count_include_pad else (b, b + i)
      taps = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
      div = np.multiply.outer(div, ((taps >= lo) & (taps < hi)).sum(1))
    from tg_tensor.tensor import Tensor
    return total / Tensor(div.astype(to_np_name(x.dtype) or "float32"), device=self.device).cast(x.dtype)
  def avg_pool1d(self: Tensor, kernel_size: int = 2, stride: Any = None, padding: int = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> Tensor:
    return self.avg_pool2d((kernel_size,), stride, 1, padding, ceil_mode, count_include_pad)
  def adaptive_avg_pool2d(self: Tensor, output_size: Any) -> Tensor:
    """Average over PyTorch's adaptive windows [floor(j*i/o), ceil((j+1)*i/o)) of the last len(output_size) axes (an int means 2);
    None keeps an axis. Global pooling (output 1) is a mean; other sizes contract each axis with a constant averaging matrix."""
    o_ = (output_size,) * 2 if isinstance(output_size, int) else tuple(output_size)
    n = len(o_)
    i_ = self.shape[-n:]
    o_ = tuple(i if o is None else o for o, i in zip(o_, i_))
    x = self._float()
    if all(o == 1 for o in o_): return x.mean(tuple(range(-n, 0)), keepdim=True)
    if all(i % o == 0 for i, o in zip(i_, o_)): return x.avg_pool2d(tuple(i // o for i, o in zip(i_, o_)))
    for j, (i, o) in enumerate(zip(i_, o_)):
      if i == o: continue
      w = np.zeros((o, i), dtype=np.float64)
      for r in range(o):
        a, b = (r * i) // o, -((-(r + 1) * i) // o)
        w[r, a:b] = 1.0 / (b - a)
      ax = x.ndim - n + j
      from tg_tensor.tensor import Tensor
      wt = Tensor(w.astype(to_np_name(x.dtype) or "float32"), device=self.device).cast(x.dtype)
      x = (x.transpose(ax, -1) @ wt.T).transpose(ax, -1)
    return x
  def adaptive_avg_pool1d(self: Tensor, output_size: int) -> Tensor: return self.adaptive_avg_pool2d((output_size,))

  # ---- normalization ----
  def layernorm(self: Tensor, axis: int | Sequence[int] = -1, eps: float = 1e-5) -> Tensor:
    """(x - mean) / sqrt(var + eps) over `axis` (biased variance, as PyTorch's layer_norm; no affine part)."""
    y = self._float() - self._float().mean(axis, keepdim=True)
    return y * ((y * y).mean(axis, keepdim=True) + eps).rsqrt()
  def rms_norm(self: Tensor, axis: int | Sequence[int] = -1, eps: float = 1e-6) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over `axis` (no weight)."""
    x = self._float()
    return x * ((x * x).mean(axis, keepdim=True) + eps).rsqrt()
  def batchnorm(self: Tensor, weight: Tensor | None, bias: Tensor | None, mean: Tensor, invstd: Tensor,
                axis: int | Sequence[int] = 1) -> Tensor:
    """(x - mean) * invstd * weight + bias with the statistics laid along `axis` (channels by default), as tinygrad."""
    axes = tuple(self._axis(a) for a in ((axis,) if isinstance(axis, int) else axis))
    shape = tuple(s if i in axes else 1 for i, s in enumerate(self.shape))
    x = self - mean.reshape(shape)
    if weight is not None: x = x * weight.reshape(shape)
    ret = x * (invstd.reshape(shape) if invstd.ndim == len(axes) else invstd)
    return ret + bias.reshape(shape) if bias is not None else ret
  def normalize(self: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along `dim` (PyTorch's F.normalize)."""
    x = self._float()
    nrm = x.abs().pow(p).sum(dim, keepdim=True).pow(1.0 / p) if p != 2 else (x * x).sum(dim, keepdim=True).sqrt()
    return x / nrm.maximum(eps)

  # ---- losses ----
  def _do_reduction(self: Tensor, reduction: str = "mean") -> Tensor:
    if reduction == "none": return self
    if reduction == "sum": return self.sum()
    if reduction == "mean": return self.mean()
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
  def logsigmoid(self: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), without overflow."""
    x = self._float()
    return x.minimum(0) - (1 + (-x.abs()).exp()).log()
  def one_hot(self: Tensor, num_classes: int = -1) -> Tensor:
    """An integer tensor with a new last axis of `num_classes`: 1 at each value, 0 elsewhere (int64, as PyTorch)."""
    if dtypes.is_float(self.dtype): raise TypeError(f"one_hot needs an integer tensor, got {self.dtype}")
    if num_classes == -1: num_classes = int(self.max().item()) + 1
    return (self.unsqueeze(-1) == self._index(num_classes, self.dtype, self.device)).cast(dtypes.int64)
  def binary_crossentropy(self: Tensor, Y: Tensor, reduction: str = "mean") -> Tensor:
    """-(y log p + (1-y) log(1-p)) for probabilities p = self; the logs are clamped at -100, as PyTorch."""
    Y = self._operand(Y)
    return (-Y * self.log().maximum(-100) - (1 - Y) * (1 - self).log().maximum(-100))._do_reduction(reduction)
  def binary_crossentropy_logits(self: Tensor, Y: Tensor, reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """binary_crossentropy of sigmoid(self), computed stably from the logits (PyTorch's BCEWithLogits)."""
    Y = self._operand(Y)
    log_p, log_1mp = self.logsigmoid(), (-self).logsigmoid()
    pos = Y * log_p if pos_weight is None else pos_weight * Y * log_p
    return (-(pos + (1 - Y) * log_1mp))._do_reduction(reduction)
  def sparse_categorical_crossentropy(self: Tensor, Y: Tensor, ignore_index: int = -1, label_smoothing: float = 0.0,
                                      reduction: str = "mean") -> Tensor:
    """Cross entropy of logits (..., C) (classes LAST, as tinygrad) against integer labels (...); labels equal to
    `ignore_index` add nothing, and the mean is over the others."""
    if not 0.0 <= label_smoothing <= 1.0: raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if Y.shape != self.shape[:-1]: raise ValueError(f"labels of shape {Y.shape} don't fit logits {self.shape}: they need shape {self.shape[:-1]}")
    log_probs = self.log_softmax(-1)
    keep = (Y != ignore_index)
    picked = (Y.unsqueeze(-1) == self._index(self.shape[-1], Y.dtype, self.device)).where(log_probs, 0).sum(-1)
    loss = -((1 - label_smoothing) * picked + label_smoothing * log_probs.mean(-1))
    loss = keep.where(loss, 0)
    if reduction == "mean": return loss.sum() / keep.sum().cast(loss.dtype)
    return loss._do_reduction(reduction)
  def nll_loss(self: Tensor, Y: Tensor, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of log-probabilities (N, C, *d) (or (C,)) at integer targets (N, *d), as PyTorch."""
    return self._nll(Y, weight, ignore_index, reduction, 0.0)
  def _nll(self: Tensor, Y: Tensor, weight: Tensor | None, ignore_index: int, reduction: str, smoothing: float) -> Tensor:
    cd = 0 if self.ndim == 1 else 1
    C = self.shape[cd]
    if Y.shape != self.shape[:cd] + self.shape[cd + 1:]:
      raise ValueError(f"targets of shape {Y.shape} don't fit input {self.shape} (classes on axis {cd}): they need"
                       f" shape {self.shape[:cd] + self.shape[cd + 1:]}")
    lp = self.transpose(cd, -1) if cd != self.ndim - 1 else self  # classes last
    hit = Y.unsqueeze(-1) == self._index(C, Y.dtype, self.device)
    keep = (Y != ignore_index)
    w = weight if weight is not None else self._const(1.0, lp.dtype, (C,), self.device)
    wy = hit.where(w, 0).sum(-1) * keep  # each target's class weight (0 where ignored)
    loss = -(hit.where(lp, 0).sum(-1)) * wy
    if smoothing: loss = (1 - smoothing) * loss - (smoothing / C) * keep.where((lp * w).sum(-1), 0)
    if reduction == "mean": return loss.sum() / wy.sum()
    return loss._do_reduction(reduction)
  def cross_entropy(self: Tensor, Y: Tensor, reduction: str = "mean", label_smoothing: float = 0.0, weight: Tensor | None = None,
                    ignore_index: int = -100) -> Tensor:
    """Cross entropy of logits (N, C, *d) (or (C,)), as PyTorch: Y holds class indices (N, *d) or class probabilities (the
    input's shape)."""
    if not 0.0 <= label_smoothing <= 1.0: raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    cd = 0 if self.ndim == 1 else 1
    lp = self.log_softmax(cd)
    if Y.shape != self.shape or not dtypes.is_float(Y.dtype): return lp._nll(Y, weight, ignore_index, reduction, label_smoothing)
    C = self.shape[cd]
    Y = Y * (1 - label_smoothing) + label_smoothing / C
    if weight is not None: Y = Y * weight.reshape((C,) + (1,) * (self.ndim - cd - 1))
    return (-(lp * Y).sum(cd))._do_reduction(reduction)
  def mse_loss(self: Tensor, Y: Tensor, reduction: str = "mean") -> Tensor:
    return (self - Y).square()._do_reduction(reduction)
  def l1_loss(self: Tensor, Y: Tensor, reduction: str = "mean") -> Tensor:
    return (self - Y).abs()._do_reduction(reduction)

  # ---- attention, dropout, linear ----
  def scaled_dot_product_attention(self: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                   is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) v, as PyTorch: a bool mask keeps where true, a float mask is added; is_causal keeps the
    lower triangle. enable_gqa repeats the key/value heads to the query's."""
    if enable_gqa and key.ndim >= 3 and key.shape[-3] != self.shape[-3]:
      rep = self.shape[-3] // key.shape[-3]
      key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    sc = 1 / math.sqrt(self.shape[-1]) if scale is None else scale
    qk = self.matmul(key.transpose(-2, -1)) * sc
    L, S = self.shape[-2], key.shape[-2]
    if is_causal:
      if attn_mask is not None: raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
      attn_mask = self._const(True, dtypes.bool, (L, S), self.device).tril()
    if attn_mask is not None:
      qk = attn_mask.where(qk, -math.inf) if attn_mask.dtype == dtypes.bool else qk + attn_mask
    return qk.softmax(-1).dropout(dropout_p) @ value
  def dropout(self: Tensor, p: float = 0.5) -> Tensor:
    """In training mode (Tensor.training), zero each element with probability p and scale the rest by 1/(1-p); else identity."""
    from tg_tensor.tensor import Tensor
    if not 0.0 <= p <= 1.0: raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not Tensor.training or p == 0: return self
    if p == 1: return self * 0
    keep = Tensor.rand(*self.shape, device=self.device) >= p
    return keep.contiguous().where(self, 0) * (1.0 / (1.0 - p))
  def linear(self: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """self @ weight + bias, with weight of shape (in, out) as tinygrad (a 1-d weight scales elementwise)."""
    x = self * weight if weight.ndim == 1 else self.dot(weight)
    return x + bias if bias is not None else x
  def sequential(self: Tensor, ll: list) -> Tensor:
    """Apply each callable in `ll` in turn."""
    x = self
    for f in ll: x = f(x)
    return x

  # ---- resampling ----
  def interpolate(self: Tensor, size: Any = None, mode: str = "linear", align_corners: bool = False, scale_factor: Any = None) -> Tensor:
    """Resize the last len(size) axes to `size` (or by `scale_factor` over the axes after (N, C)): mode 'linear' (also
    'bilinear'/'trilinear'), 'nearest' or 'nearest-exact', with PyTorch's coordinate rules."""
    if mode in ("bilinear", "trilinear"): mode = "linear"
    if mode not in ("linear", "nearest", "nearest-exact"):
      raise ValueError(f"interpolate mode {mode!r} is not supported: use linear, nearest or"
        f" nearest-exact")
    if align_corners and mode != "linear": raise ValueError("align_corners only applies to mode='linear'")
    if size is None:
      if scale_factor is None: raise ValueError("interpolate needs size or scale_factor")
      n = self.ndim - 2
      sf = _ntuple(scale_factor, n, "scale_factor") if not isinstance(scale_factor, float) else (scale_factor,) * n
      size = tuple(int(math.floor(i * f)) for i, f in zip(self.shape[2:], sf))
    size = (size,) if isinstance(size, int) else tuple(size)
    n = len(size)
    if not 0 < n <= self.ndim or any(s <= 0 for s in size): raise ValueError(f"interpolate size {size} doesn't fit a tensor of shape {self.shape}")
    from tg_tensor.tensor import Tensor
    x = self if dtypes.is_float(self.dtype) else self._float()
    for j, (i, o) in enumerate(zip(self.shape[-n:], size)):
      if i == o: continue
      ax = x.ndim - n + j
      if mode == "nearest" and o % i == 0:  # integer upsampling: repeat each element (a view, no arithmetic)
        f = o // i
        pre, post = x.shape[:ax + 1], x.shape[ax + 1:]
        x = x.reshape(pre + (1,) + post).expand(pre + (f,) + post).reshape(x.shape[:ax] + (o,) + post)
        continue
      w = _interp_matrix(i, o, mode, align_corners)
      wt = Tensor(w.astype(to_np_name(x.dtype) or "float32"), device=self.device).cast(x.dtype)
      x = (x.transpose(ax, -1) @ wt.T).transpose(ax, -1)
    return x.cast(self.dtype) if x.dtype != self.dtype else x
