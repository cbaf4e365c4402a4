"""Tensor reductions (sum, max, mean, var, argmax, ...), scans (cumsum, cumprod, cummax), softmax and matmul.

A reduce removes its axes (DESIGN.md point 2); keepdim=True is a reshape afterwards. Reducing over a zero-size axis gives the
identity (0 for sum, 1 for prod) without a kernel; max/min of nothing raise, as PyTorch."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING, Any, Callable
from tg_uop.dtype import DType, dtypes, sum_acc_dtype, least_upper_dtype, least_upper_float, to_dtype
from tg_uop.helpers import prod, ceildiv
from tg_uop.ops import Ops
if TYPE_CHECKING: from tg_tensor.tensor import Tensor

Axis = int | tuple[int, ...] | list[int] | None

class ReduceMixin:
  __slots__ = ()
  def _axes(self: Tensor, axis: Axis) -> tuple[int, ...]:
    if axis is None: return tuple(range(self.ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = tuple(sorted({self._axis(a) for a in axes}))
    if len(out) != len(axes): raise ValueError(f"axis {axis} names an axis twice")
    return out
  def _reduce(self: Tensor, op: Ops, axis: Axis, keepdim: bool, identity: Any = None, what: str = "") -> Tensor:
    axes = self._axes(axis)
    kept = tuple(1 if i in axes else s for i, s in enumerate(self.shape))
    out_shape = tuple(s for i, s in enumerate(self.shape) if i not in axes)
    if any(self.shape[a] == 0 for a in axes):
      if identity is None:
        raise ValueError(f"{what}() of an empty axis has no value (shape {self.shape}, axis {axis}): reduce a non-empty axis or check the shape")
      ret = self._const(identity, self.dtype, out_shape, self.device)
    else: ret = self._wrap(self.uop.reduce_axis(op, axes))
    return ret.reshape(kept) if keepdim else ret

  def sum(self: Tensor, axis: Axis = None, keepdim: bool = False, dtype: DType | str | None = None) -> Tensor:
    """The sum over `axis` (all axes when None). Ints and bools accumulate in int64, as PyTorch; half floats in float32."""
    out_dt = to_dtype(dtype) if dtype is not None else sum_acc_dtype(self.dtype)
    acc_dt = dtypes.float32 if out_dt in (dtypes.float16, dtypes.bfloat16) or dtypes.is_fp8(out_dt) else out_dt
    return self.cast(acc_dt)._reduce(Ops.ADD, axis, keepdim, 0).cast(out_dt)
  def prod(self: Tensor, axis: Axis = None, keepdim: bool = False, dtype: DType | str | None = None) -> Tensor:
    """The product over `axis` (ints accumulate in int64, as PyTorch)."""
    out_dt = to_dtype(dtype) if dtype is not None else sum_acc_dtype(self.dtype)
    return self.cast(out_dt)._reduce(Ops.MUL, axis, keepdim, 1)
  def max(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """The maximum over `axis`; nan wins, as PyTorch."""
    if self.dtype == dtypes.bool: return self.cast(dtypes.uint8)._reduce(Ops.MAX, axis, keepdim, what="max").cast(dtypes.bool)
    return self._reduce(Ops.MAX, axis, keepdim, what="max")
  def min(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """The minimum over `axis`; nan wins, as PyTorch."""
    if self.dtype == dtypes.bool: return self.logical_not().max(axis, keepdim).logical_not()
    if dtypes.is_float(self.dtype): return -((-self).max(axis, keepdim))
    return ~((~self).max(axis, keepdim))  # flipping all bits reverses the order of signed and unsigned ints alike
  def any(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """True where any element along `axis` is nonzero."""
    b = self.cast(dtypes.bool)
    if any(self.shape[a] == 0 for a in self._axes(axis)): return b._reduce(Ops.MAX, axis, keepdim, False)
    return b.max(axis, keepdim)
  def all(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """True where every element along `axis` is nonzero."""
    return self.logical_not().any(axis, keepdim).logical_not()
  def mean(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """The mean over `axis` (ints give the default float; an empty axis gives nan, as PyTorch)."""
    out_dt = least_upper_float(self.dtype)
    n = prod(self.shape[a] for a in self._axes(axis))
    s = self.sum(axis, keepdim, dtype=dtypes.float32 if out_dt.itemsize < 4 else out_dt)
    return (s / n if n else s / 0.0).cast(out_dt)
  def var(self: Tensor, axis: Axis = None, keepdim: bool = False, correction: int | float = 1) -> Tensor:
    """The variance over `axis`, dividing by N - correction (Bessel's correction by default, as PyTorch)."""
    n = prod(self.shape[a] for a in self._axes(axis))
    x = self._float()
    sq = (x - x.mean(axis, keepdim=True)).square().sum(axis, keepdim)
    return sq / max(n - correction, 0) if n - correction > 0 else sq / 0.0
  def std(self: Tensor, axis: Axis = None, keepdim: bool = False, correction: int | float = 1) -> Tensor:
    """The standard deviation over `axis` (sqrt of var)."""
    return self.var(axis, keepdim, correction).sqrt()
  def var_mean(self: Tensor, axis: Axis = None, keepdim: bool = False, correction: int | float = 1) -> tuple[Tensor, Tensor]:
    return self.var(axis, keepdim, correction), self.mean(axis, keepdim)
  def std_mean(self: Tensor, axis: Axis = None, keepdim: bool = False, correction: int | float = 1) -> tuple[Tensor, Tensor]:
    return self.std(axis, keepdim, correction), self.mean(axis, keepdim)
  def argmax(self: Tensor, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """The index of the first maximum along `axis` (over the flattened tensor when None); nan counts as the maximum."""
    if axis is None:
      r = self.flatten().argmax(0)
      return r.reshape((1,) * self.ndim) if keepdim else r
    a = self._axis(axis)
    n = self.shape[a]
    if n == 0: raise ValueError(f"argmax() of an empty axis has no value (shape {self.shape}, axis {axis})")
    m = self.max(a, keepdim=True)
    hit = self == m
    if dtypes.is_float(self.dtype): hit = hit | (self.isnan() & m.isnan())
    # the first hit has the largest (n - index): take its max
    rev = (self._index(n, dtypes.int32, self.device) * -1 + n).reshape((n,) + (1,) * (self.ndim - a - 1))
    score = hit.where(rev, 0).max(a, keepdim)
    return (score * -1 + n).cast(dtypes.int32)
  def argmin(self: Tensor, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """The index of the first minimum along `axis`; nan counts as the minimum."""
    if self.dtype == dtypes.bool: return self.logical_not().argmax(axis, keepdim)
    return (-self if dtypes.is_float(self.dtype) else ~self).argmax(axis, keepdim)
  def logsumexp(self: Tensor, axis: Axis = None, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably (shifted by the max; all -inf gives -inf)."""
    x = self._float()
    m = x.max(axis, keepdim=True)
    m = m.isinf().where(0.0, m)
    out = (x - m).exp().sum(axis, keepdim=True).log() + m
    return out if keepdim else out.squeeze_axes(self._axes(axis))
  def squeeze_axes(self: Tensor, axes: tuple[int, ...]) -> Tensor:
    """Size-1 axes `axes` removed."""
    return self.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))
  def softmax(self: Tensor, axis: int = -1, dtype: DType | str | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max for stability."""
    x = self.cast(dtype) if dtype is not None else self._float()
    e = (x - x.max(axis, keepdim=True)).exp()
    return e / e.sum(axis, keepdim=True)
  def log_softmax(self: Tensor, axis: int = -1, dtype: DType | str | None = None) -> Tensor:
    """x - logsumexp(x) along `axis`."""
    x = self.cast(dtype) if dtype is not None else self._float()
    return x - x.logsumexp(axis, keepdim=True)

  # ---- scans ----
  def _scan(self: Tensor, axis: int, combine: Callable[[Tensor, Tensor], Tensor], reduce: Callable[[Tensor, int], Tensor], identity: Any) -> Tensor:
    a = self._axis(axis)
    x = self.transpose(a, -1) if a != self.ndim - 1 else self
    out = _scan_last(x, combine, reduce, identity) if x.shape[-1] > 0 else x
    return out.transpose(a, -1) if a != self.ndim - 1 else out
  def cumsum(self: Tensor, axis: int = 0) -> Tensor:
    """Running sums along `axis` (ints accumulate in int64, as PyTorch)."""
    x = self.cast(sum_acc_dtype(self.dtype)) if self.ndim else self.cast(sum_acc_dtype(self.dtype)).reshape(1)
    out = x._scan(axis if self.ndim else 0, lambda p, q: p + q, lambda t, ax: t.sum(ax, dtype=t.dtype), 0)
    return out if self.ndim else out.reshape(())
  def cumprod(self: Tensor, axis: int = 0) -> Tensor:
    """Running products along `axis`."""
    x = self.cast(sum_acc_dtype(self.dtype)) if self.ndim else self.cast(sum_acc_dtype(self.dtype)).reshape(1)
    out = x._scan(axis if self.ndim else 0, lambda p, q: p * q, lambda t, ax: t.prod(ax, dtype=t.dtype), 1)
    return out if self.ndim else out.reshape(())
  def cummax(self: Tensor, axis: int = 0) -> Tensor:
    """Running maxima along `axis` (values only)."""
    lo = dtypes.min(self.dtype)
    return self._scan(axis, lambda p, q: p.maximum(q), lambda t, ax: t.max(ax), lo)

  # ---- products ----
  def dot(self: Tensor, w: Tensor, dtype: DType | str | None = None) -> Tensor:
    """Matrix product with NumPy's rules for 1-D operands and broadcast batch axes."""
    w = self._operand(w)
    n1, n2 = self.ndim, w.ndim
    if n1 == 0 or n2 == 0: raise ValueError(f"matmul needs tensors with at least 1 dim, got shapes {self.shape} and {w.shape}")
    k_w = w.shape[-min(n2, 2)]
    if self.shape[-1] != k_w:
      raise ValueError(f"matmul of {self.shape} and {w.shape}: the last axis of the first ({self.shape[-1]}) must equal the "
                       f"{'second-to-last' if n2 > 1 else 'only'} axis of the second ({k_w})")
    one = (1,) if n1 > 1 and n2 > 1 else ()
    x = self.reshape(self.shape[:-1] + one + self.shape[-1:])
    wt = w.reshape(w.shape[:-2] + one + w.shape[-2:]).transpose(-1, -2) if n2 > 1 else w
    out_dt = to_dtype(dtype) if dtype is not None else least_upper_dtype(self.dtype, w.dtype)
    acc = dtypes.float32 if out_dt in (dtypes.float16, dtypes.bfloat16) else out_dt
    prod_ = x.cast(out_dt) * wt.cast(out_dt)
    return prod_.sum(-1, dtype=acc).cast(out_dt)
  def matmul(self: Tensor, w: Tensor, reverse: bool = False, dtype: DType | str | None = None) -> Tensor:
    """self @ w."""
    return self._operand(w).dot(self, dtype) if reverse else self.dot(w, dtype)

  # ---- sorting: each element's rank is a count of comparisons, then a one-hot sum places it (n*n work, no data-dependent control) ----
  def sort(self: Tensor, dim: int = -1, descending: bool = False) -> tuple[Tensor, Tensor]:
    """(values, indices) sorted along `dim`; stable (equal values keep their order), nan sorts as the largest value, as
    PyTorch. The values' gradient flows back to the elements they came from."""
    return self._sort(dim, descending, None)
  def argsort(self: Tensor, dim: int = -1, descending: bool = False) -> Tensor:
    """The indices that sort the tensor along `dim` (int64)."""
    return self._sort(dim, descending, None)[1]
  def topk(self: Tensor, k: int, dim: int = -1, largest: bool = True, sorted_: bool = True) -> tuple[Tensor, Tensor]:
    """(values, indices) of the k largest (or smallest) elements along `dim`, in sorted order."""
    n = self.shape[self._axis(dim)] if self.ndim else 1
    if not 0 <= k <= n: raise ValueError(f"topk k={k} is out of range for an axis of size {n}")
    return self._sort(dim, largest, k)
  def _sort(self: Tensor, dim: int, descending: bool, k: int | None) -> tuple[Tensor, Tensor]:
    if self.ndim == 0: return self, self._const(0, dtypes.int64, (), self.device)
    d = self._axis(dim)
    x = self.transpose(d, -1) if d != self.ndim - 1 else self
    src_dt = x.dtype
    if src_dt == dtypes.bool: x = x.cast(dtypes.uint8)
    n = x.shape[-1]
    r = n if k is None else k
    if n == 0 or r == 0:
      shp = x.shape[:-1] + (r,)
      vals, idx = self._const(0, src_dt, shp, self.device), self._const(0, dtypes.int64, shp, self.device)
    else:
      a, b = x.unsqueeze(-1), x.unsqueeze(-2)  # [..., i, j]: a is element i, b is element j
      if dtypes.is_float(x.dtype):
        an, bn = a.isnan(), b.isnan()
        before = ((b > a) | (bn & an.logical_not())) if descending else ((b < a) | (an & bn.logical_not()))
        same = (b == a) | (an & bn)
      else: before, same = ((b > a) if descending else (b < a)), (b == a)
      i = self._index(n, dtypes.int32, self.device)
      rank = (before | (same & (i.reshape(1, n) < i.reshape(n, 1)))).sum(-1)  # how many elements go before element i
      onehot = rank.unsqueeze(-2) == self._index(r, dtypes.int64, self.device).reshape(r, 1)  # [..., slot, i]
      vals = onehot.where(x.unsqueeze(-2), x._const(0, x.dtype, (), x.device)).sum(-1, dtype=x.dtype).cast(src_dt)
      idx = onehot.where(self._index(n, dtypes.int64, self.device), 0).sum(-1, dtype=dtypes.int64)
    if d != self.ndim - 1: vals, idx = vals.transpose(d, -1), idx.transpose(d, -1)
    return vals, idx

  # ---- einsum: operands laid out on one set of axes (one per letter), multiplied and summed over the letters not kept ----
  @staticmethod
  def einsum(formula: str, *operands: Any, dtype: DType | str | None = None) -> Tensor:
    """Einstein summation as numpy/PyTorch: 'ij,jk->ik', implicit outputs ('ij,jk' keeps the letters used once, sorted),
    '...' for broadcast axes, and repeated letters within an operand (diagonals, e.g. 'ii->i' or the trace 'ii')."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)): operands = tuple(operands[0])
    f = formula.replace(" ", "")
    lhs, rhs = f.split("->") if "->" in f else (f, None)
    specs = lhs.split(",")
    if len(specs) != len(operands): raise ValueError(f"einsum '{formula}' names {len(specs)} operands, got {len(operands)}")
    for sp in specs + ([rhs] if rhs is not None else []):
      if any(not (c.isalpha() or c == ".") for c in sp) or (sp.count(".") not in (0, 3)) or ("." in sp and "..." not in sp):
        raise ValueError(f"einsum '{formula}': subscripts must be letters, with at most one '...' per operand")
    n_ell = max([t.ndim - (len(sp) - 3) for sp, t in zip(specs, operands) if "..." in sp], default=0)
    ell = "".join(chr(0x391 + i) for i in range(n_ell))  # placeholder letters (Greek capitals) for the '...' axes
    full = []
    for sp, t in zip(specs, operands):
      if "..." in sp: sp = sp.replace("...", ell[n_ell - (t.ndim - (len(sp) - 3)):])
      if len(sp) != t.ndim: raise ValueError(f"einsum '{formula}': operand '{sp}' has {len(sp)} subscripts but shape {t.shape}")
      full.append(sp)
    counts = "".join(full)
    implicit = ell + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in ell))
    xs = list(operands)
    for k, (sp, t) in enumerate(zip(full, xs)):  # repeated letters: take the diagonal
      while (rep := next((c for c in sp if sp.count(c) > 1), None)) is not None:
        p1, p2 = sp.index(rep), sp.index(rep, sp.index(rep) + 1)
        if t.shape[p1] != t.shape[p2]: raise ValueError(f"einsum '{formula}': repeated subscript '{rep}' has sizes {t.shape[p1]} and {t.shape[p2]}")
        order = [a for a in range(t.ndim) if a not in (p1, p2)] + [p1, p2]
        m = t.shape[p1]
        x = t.permute(order)
        pre = x.shape[:-2]  # flattened (m, m) padded to (m, m+1): column 0 of each row is the diagonal
        t = x.reshape(pre + (m * m,)).pad(tuple([None] * len(pre) + [(0, m)])).reshape(pre + (m, m + 1))[..., 0]
        sp = "".join(sp[a] for a in order[:-2]) + rep
      full[k], xs[k] = sp, t
    sizes: dict[str, int] = {}
    for sp, t in zip(full, xs):
      for c, s in zip(sp, t.shape):
        if sizes.get(c, 1) != 1 and s != 1 and sizes[c] != s: raise ValueError(f"einsum '{formula}': subscript '{c}' has sizes {sizes[c]} and {s}")
        if s != 1 or c not in sizes: sizes[c] = s
    if rhs is None: out = implicit
    else:
      out = rhs.replace("...", ell)
      if len(set(out)) != len(out) or any(c not in sizes for c in out): raise ValueError(f"einsum '{formula}': bad output subscripts '{rhs}'")
    letters = out + "".join(sorted(set(sizes) - set(out)))
    shape = tuple(sizes[c] for c in letters)
    prod_: Tensor | None = None
    for sp, t in zip(full, xs):
      have = [c for c in letters if c in sp]
      t = t.permute([sp.index(c) for c in have]).reshape(tuple(t.shape[sp.index(c)] if c in sp else 1 for c in letters))
      t = t._broadcast_to(shape)
      prod_ = t if prod_ is None else prod_ * t
    dt = to_dtype(dtype) if dtype is not None else prod_.dtype
    if len(letters) == len(out): return prod_.cast(dt)
    return prod_.sum(tuple(range(len(out), len(letters))), dtype=dt if dt != dtypes.bool else None).cast(dt)


def _scan_last(x: Tensor, combine: Callable, reduce: Callable, identity: Any) -> Tensor:
  """Inclusive scan along the last axis. Short axes: a triangular mask and one reduction (n*n work). Long axes: blocks of
  about sqrt(n) scanned that way, plus a scan of the block totals, so the work is n*sqrt(n) rather than n*n."""
  n = x.shape[-1]
  if n <= 32:
    i = x._index(n, dtypes.int32, x.device)
    tri = i.reshape(n, 1) >= i.reshape(1, n)  # [out position, source position]: source <= out
    xe = x.unsqueeze(-2)._broadcast_to(x.shape[:-1] + (n, n))
    return reduce(tri.where(xe, x._const(identity, x.dtype, (), x.device)), -1)
  b = math.isqrt(n - 1) + 1
  nb = ceildiv(n, b)
  xp = x.pad(tuple(None for _ in x.shape[:-1]) + ((0, nb * b - n),), value=identity).reshape(x.shape[:-1] + (nb, b))
  inner = _scan_last(xp, combine, reduce, identity)
  totals = inner[..., -1]
  before = _scan_last(totals, combine, reduce, identity).pad(tuple(None for _ in totals.shape[:-1]) + ((1, -1),), value=identity)
  return combine(inner, before.unsqueeze(-1)).reshape(x.shape[:-1] + (nb * b,))[..., :n]
