"""Tensor movement: reshape, permute, expand, pad, shrink, flip, joining and splitting, and `__getitem__`.

All of it is views (movement UOps) of the same data: nothing is copied until a kernel reads through the view."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING, Any, Sequence
from tg_uop.dtype import dtypes, least_upper_dtype
from tg_uop.helpers import prod, ceildiv
if TYPE_CHECKING: from tg_tensor.tensor import Tensor

def _args(first: Any, rest: tuple) -> tuple:
  """Methods take `f(2, 3)` or `f((2, 3))`."""
  if rest: return (first, *rest)
  return tuple(first) if isinstance(first, (tuple, list)) else (first,)

class MovementMixin:
  __slots__ = ()
  def _axis(self: Tensor, axis: int, extra: int = 0) -> int:
    """`axis` made non-negative, with a clear error when out of range (extra=1 for positions such as unsqueeze's)."""
    n = self.ndim + extra
    if not isinstance(axis, int) or isinstance(axis, bool): raise TypeError(f"an axis must be an int, got {type(axis).__name__}")
    if not -max(n, 1) <= axis < max(n, 1):
      raise IndexError(f"axis {axis} is out of range for a tensor with {self.ndim} dims (shape {self.shape}): use -{max(n, 1)}..{max(n, 1) - 1}")
    return axis + n if axis < 0 else axis

  def reshape(self: Tensor, shape: Any, *args: int) -> Tensor:
    """The same elements in a new shape; one dimension may be -1 (inferred)."""
    new = _args(shape, args)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < -1 for s in new):
      raise ValueError(f"reshape to {new}: dimensions must be ints >= 0, or one -1 to infer it")
    if new.count(-1) > 1: raise ValueError(f"reshape to {new}: only one dimension can be -1")
    if -1 in new:
      known = prod(s for s in new if s != -1)
      if known == 0 or self.numel() % known:
        raise ValueError(f"can't reshape {self.shape} ({self.numel()} elements) to {new}: the -1 dimension can't be inferred")
      new = tuple(self.numel() // known if s == -1 else s for s in new)
    if prod(new) != self.numel():
      raise ValueError(f"can't reshape {self.shape} ({self.numel()} elements) to {new} ({prod(new)} elements): the number of elements must match")
    return self._wrap(self.uop.reshape(new))
  def view(self: Tensor, shape: Any, *args: int) -> Tensor: return self.reshape(shape, *args)
  def permute(self: Tensor, order: Any, *args: int) -> Tensor:
    """The axes reordered: axis i of the result is axis order[i] of self."""
    o = tuple(self._axis(a) for a in _args(order, args))
    if sorted(o) != list(range(self.ndim)): raise ValueError(f"permute order {o} is not a permutation of the {self.ndim} axes of {self.shape}")
    return self._wrap(self.uop.permute(o))
  def expand(self: Tensor, shape: Any, *args: int) -> Tensor:
    """Size-1 axes repeated (without copying) to `shape`; -1 keeps a size; new axes may be added in front."""
    new = _args(shape, args)
    if len(new) < self.ndim: raise ValueError(f"can't expand {self.shape} to {new}: the target needs at least {self.ndim} dims")
    old = (1,) * (len(new) - self.ndim) + self.shape
    out = tuple(o if n == -1 else n for o, n in zip(old, new))
    if any(o != n and o != 1 for o, n in zip(old, out)):
      raise ValueError(f"can't expand {self.shape} to {new}: only size-1 axes can be expanded (repeat() copies other axes)")
    return self._broadcast_to(out)
  def pad(self: Tensor, padding: Sequence, mode: str = "constant", value: Any = 0.0) -> Tensor:
    """Pad (or, with negative amounts, crop) each axis. `padding` is ((before, after) or None per axis), or PyTorch's flat form
    (left, right, top, bottom, ...) starting from the last axis."""
    if mode != "constant": raise ValueError(f"pad mode {mode!r} is not supported: use mode='constant' (with value=...)")
    if all(isinstance(p, int) for p in padding):
      if len(padding) % 2 or len(padding) > 2 * self.ndim:
        raise ValueError(f"flat padding {tuple(padding)} needs an even number of values, at most 2 per axis ({self.ndim} axes)")
      pairs = [(0, 0)] * (self.ndim - len(padding) // 2) + [(padding[i], padding[i + 1]) for i in range(len(padding) - 2, -1, -2)]
    else:
      if len(padding) != self.ndim: raise ValueError(f"padding {tuple(padding)} needs one (before, after) or None per axis of {self.shape}")
      pairs = [(0, 0) if p is None else tuple(p) for p in padding]
    for (b, a), s in zip(pairs, self.shape):
      if s + b + a < 0 or min(b, 0) + s < 0 or min(a, 0) + s < 0:
        raise ValueError(f"padding {tuple(pairs)} crops more than the size of {self.shape}")
    x = self.shrink(tuple((-min(b, 0), s + min(a, 0)) for (b, a), s in zip(pairs, self.shape)))
    pos = tuple((max(b, 0), max(a, 0)) for b, a in pairs)
    if not any(b or a for b, a in pos): return x
    out = x._wrap(x.uop.pad(pos))
    if value == 0 or (isinstance(value, bool) and not value): return out
    inside = x._const(True, dtypes.bool, x.shape, x.device)
    return inside._wrap(inside.uop.pad(pos)).where(out, value)
  def shrink(self: Tensor, arg: Sequence) -> Tensor:
    """The sub-box [start, end) on each axis (None keeps an axis whole)."""
    if len(arg) != self.ndim: raise ValueError(f"shrink {tuple(arg)} needs one (start, end) or None per axis of {self.shape}")
    box = tuple((0, s) if a is None else tuple(a) for a, s in zip(arg, self.shape))
    for (b, e), s in zip(box, self.shape):
      if not 0 <= b <= e <= s: raise ValueError(f"shrink {box} doesn't fit {self.shape}: each axis needs 0 <= start <= end <= size")
    return self._wrap(self.uop.shrink(box))
  def flip(self: Tensor, axis: Any, *args: int) -> Tensor:
    """The order of elements reversed along `axis` (an int or several)."""
    axes = {self._axis(a) for a in _args(axis, args)}
    return self._wrap(self.uop.flip(tuple(i in axes for i in range(self.ndim))))
  def squeeze(self: Tensor, dim: int | None = None) -> Tensor:
    """Size-1 axes removed (only `dim`, if given and of size 1)."""
    if dim is None: return self.reshape(tuple(s for s in self.shape if s != 1))
    if self.ndim == 0: return self
    d = self._axis(dim)
    return self if self.shape[d] != 1 else self.reshape(self.shape[:d] + self.shape[d + 1:])
  def unsqueeze(self: Tensor, dim: int) -> Tensor:
    """A size-1 axis inserted at `dim`."""
    d = self._axis(dim, extra=1)
    return self.reshape(self.shape[:d] + (1,) + self.shape[d:])
  def transpose(self: Tensor, dim0: int = 1, dim1: int = 0) -> Tensor:
    """Axes dim0 and dim1 swapped."""
    order = list(range(self.ndim))
    a, b = self._axis(dim0), self._axis(dim1)
    order[a], order[b] = order[b], order[a]
    return self.permute(order)
  @property
  def T(self: Tensor) -> Tensor: return self.permute(tuple(reversed(range(self.ndim))))
  def flatten(self: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Axes start_dim..end_dim merged into one."""
    if self.ndim == 0: return self.reshape(1)
    s, e = self._axis(start_dim), self._axis(end_dim)
    return self.reshape(self.shape[:s] + (prod(self.shape[s:e + 1]),) + self.shape[e + 1:])
  def unflatten(self: Tensor, dim: int, sizes: tuple[int, ...]) -> Tensor:
    d = self._axis(dim)
    return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d + 1:])

  # ---- joining and splitting ----
  def cat(self: Tensor, *args: Tensor, dim: int = 0) -> Tensor:
    """self and `args` joined along `dim` (dtypes promote, other axes must match)."""
    ts = [self, *args]
    if any(t.device != self.device for t in ts): raise ValueError(f"cat of tensors on devices {[t.device for t in ts]}: move them to one device")
    d = self._axis(dim)
    for t in ts:
      if t.ndim != self.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, self.shape)) if i != d):
        raise ValueError(f"cat along axis {dim} needs equal sizes on the other axes, got {[t.shape for t in ts]}")
    dt = least_upper_dtype(*(t.dtype for t in ts))
    total, offsets = 0, []
    for t in ts: offsets.append(total); total += t.shape[d]
    def placed(t: Tensor, off: int) -> Tensor:
      return t.pad(tuple((off, total - off - t.shape[d]) if i == d else None for i in range(t.ndim)))
    # select with where (not add) so -0.0 and nan come through untouched
    out = placed(ts[-1].cast(dt), offsets[-1])
    for t, off in zip(reversed(ts[:-1]), reversed(offsets[:-1])):
      mask = placed(t._const(True, dtypes.bool, t.shape, t.device), off)
      out = mask.where(placed(t.cast(dt), off), out)
    return out
  @staticmethod
  def stack(*tensors: Tensor, dim: int = 0) -> Tensor:
    """Tensors of one shape joined along a new axis `dim`."""
    if not tensors: raise ValueError("stack needs at least one tensor")
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)): tensors = tuple(tensors[0])
    if any(t.shape != tensors[0].shape for t in tensors): raise ValueError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    d = tensors[0]._axis(dim, extra=1)
    return tensors[0].unsqueeze(d).cat(*[t.unsqueeze(d) for t in tensors[1:]], dim=d)
  def split(self: Tensor, sizes: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces along `dim`: of `sizes` each (an int, the last may be smaller) or of the listed sizes."""
    d = self._axis(dim)
    n = self.shape[d]
    if isinstance(sizes, int):
      if sizes <= 0: raise ValueError(f"split size must be positive, got {sizes}")
      sizes = [min(sizes, n - i) for i in range(0, max(n, 1), sizes)] if n else [0]
    if sum(sizes) != n: raise ValueError(f"split sizes {list(sizes)} add up to {sum(sizes)}, but axis {dim} has size {n}")
    out, start = [], 0
    for s in sizes:
      out.append(self.shrink(tuple((start, start + s) if i == d else None for i in range(self.ndim))))
      start += s
    return tuple(out)
  def chunk(self: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """At most `chunks` equal pieces along `dim` (the last may be smaller)."""
    if chunks <= 0: raise ValueError(f"chunk needs chunks > 0, got {chunks}")
    n = self.shape[self._axis(dim)]
    return self.split(max(ceildiv(n, chunks), 1), dim)
  def repeat(self: Tensor, repeats: Any, *args: int) -> Tensor:
    """The data tiled `repeats[i]` times along each axis (copies, unlike expand)."""
    reps = _args(repeats, args)
    if len(reps) < self.ndim: raise ValueError(f"repeat needs at least one count per axis of {self.shape}, got {reps}")
    x = self.reshape((1,) * (len(reps) - self.ndim) + self.shape)
    inter = tuple(v for s in x.shape for v in (1, s))
    tiled = tuple(v for r, s in zip(reps, x.shape) for v in (r, s))
    return x.reshape(inter).expand(tiled).reshape(tuple(r * s for r, s in zip(reps, x.shape)))

  # ---- indexing ----
  def __getitem__(self: Tensor, indices: Any) -> Tensor:
    """Basic indexing (ints, slices with any step, None, Ellipsis) as views, and integer-tensor indices (gathers)."""
    box, flips, strides, out_shape, tensor_idx = self._index_plan(indices)
    x = self.shrink(box).flip(tuple(k for k, f in enumerate(flips) if f)) if self.ndim else self
    if any(s != 1 for s in strides): x = x._strided(strides)
    x = x.reshape(tuple(out_shape))
    return x._take(tensor_idx) if tensor_idx else x
  def _index_plan(self: Tensor, indices: Any) -> tuple[list, list, list, list, list]:
    """An index as (box, flips, strides) per axis, the result's shape, and the integer-tensor indices (position, tensor, size)."""
    from tg_tensor.tensor import Tensor
    idx = list(indices) if isinstance(indices, tuple) else [indices]
    for i in idx:
      if not (i is None or i is Ellipsis or isinstance(i, (int, slice, Tensor, list))) or isinstance(i, bool):
        raise TypeError(f"can't index a Tensor with {type(i).__name__}: use ints, slices, None, Ellipsis or integer tensors")
    idx = [Tensor(i, device=self.device) if isinstance(i, list) else i for i in idx]
    if sum(i is Ellipsis for i in idx) > 1: raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if consumed > self.ndim: raise IndexError(f"too many indices for a tensor of dimension {self.ndim}: got {consumed}")
    if any(i is Ellipsis for i in idx):
      e = next(k for k, i in enumerate(idx) if i is Ellipsis)
      idx = idx[:e] + [slice(None)] * (self.ndim - consumed) + idx[e + 1:]
    else: idx += [slice(None)] * (self.ndim - consumed)
    box, flips, strides, out_shape, tensor_idx = [], [], [], [], []
    dim = 0
    for i in idx:
      if i is None:
        out_shape.append(1)
        continue
      size = self.shape[dim]
      if isinstance(i, int):
        if not -size <= i < size: raise IndexError(f"index {i} is out of bounds for axis {dim} with size {size}")
        i = i + size if i < 0 else i
        box.append((i, i + 1)); flips.append(False); strides.append(1)
      elif isinstance(i, slice):
        r = range(*i.indices(size))
        if len(r) == 0: box.append((0, 0)); flips.append(False); strides.append(1)
        else:
          lo, hi = (r[0], r[-1]) if r.step > 0 else (r[-1], r[0])
          box.append((lo, hi + 1)); flips.append(r.step < 0); strides.append(abs(r.step))
        out_shape.append(len(r))
      else:
        if dtypes.is_float(i.dtype) or i.dtype == dtypes.bool:
          raise IndexError(f"tensors used as indices must be integer tensors, got {i.dtype}: cast with .cast(dtypes.int32)")
        box.append((0, size)); flips.append(False); strides.append(1)
        tensor_idx.append((len(out_shape), i, size))
        out_shape.append(size)
      dim += 1
    return box, flips, strides, out_shape, tensor_idx
  def _strided(self: Tensor, strides: list[int]) -> Tensor:
    """Every strides[i]-th element along each axis, starting at the first: pad to a multiple, split the axis, keep lane 0."""
    counts = [ceildiv(s, st) for s, st in zip(self.shape, strides)]
    x = self.pad(tuple((0, c * st - s) for s, c, st in zip(self.shape, counts, strides)))
    x = x.reshape(tuple(v for c, st in zip(counts, strides) for v in (c, st)))
    x = x.shrink(tuple(v for c in counts for v in ((0, c), (0, 1))))
    return x.reshape(tuple(counts))
  def _take(self: Tensor, tensor_idx: list[tuple[int, Tensor, int]]) -> Tensor:
    """Advanced indexing: for axes p_j indexed by integer tensors t_j (broadcast together to B), the result has B in place of
    those axes (in front of the rest if they are not adjacent), as NumPy. Built as a one-hot mask and a sum; out-of-range
    indices give 0 (a lazy graph can't raise)."""
    from tg_tensor.ops_math import broadcast_shape
    positions = [p for p, _, _ in tensor_idx]
    bshape = broadcast_shape(*(t.shape for _, t, _ in tensor_idx))
    rest = [k for k in range(self.ndim) if k not in positions]
    x = self.permute(rest + positions)
    rest_shape, sizes = tuple(self.shape[k] for k in rest), tuple(self.shape[p] for p in positions)
    x = x.reshape(rest_shape + (1,) * len(bshape) + sizes)
    mask = None
    for j, (_, t, n) in enumerate(tensor_idx):
      t = (t < 0).where(t + n, t)
      onehot = t._broadcast_to(bshape).reshape(bshape + (1,)) == self._index(n, t.dtype, self.device)
      onehot = onehot.reshape(bshape + tuple(n if k == j else 1 for k in range(len(sizes))))
      mask = onehot if mask is None else mask & onehot
    nr, nb = len(rest_shape), len(bshape)
    picked = mask.where(x, x._const(0, x.dtype, (), x.device))
    out = picked.sum(axis=tuple(range(nr + nb, nr + nb + len(sizes))), dtype=picked.dtype if picked.dtype != dtypes.bool else None)
    out = out.cast(self.dtype)
    if positions == list(range(positions[0], positions[0] + len(positions))) and positions[0] <= nr:
      p = positions[0]  # adjacent tensor indices: their result axes go where they were
      order = list(range(p)) + list(range(nr, nr + nb)) + list(range(p, nr))
      out = out.permute(order)
    else: out = out.permute(list(range(nr, nr + nb)) + list(range(nr)))
    return out
  def gather(self: Tensor, dim: int, index: Tensor) -> Tensor:
    """out[..., i, ...] = self[..., index[..., i, ...], ...] along `dim` (PyTorch's gather)."""
    d = self._axis(dim)
    if index.ndim != self.ndim: raise ValueError(f"gather needs an index with {self.ndim} dims like the input, got shape {index.shape}")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, self.shape)) if k != d):
      raise ValueError(f"gather index shape {index.shape} is larger than the input {self.shape} outside axis {dim}")
    n = self.shape[d]
    x = self.shrink(tuple((0, i) if k != d else None for k, i in enumerate(index.shape)))
    x = x.unsqueeze(-1).transpose(d, -1)  # the gathered axis moves last, a size-1 axis takes its place
    idx = (index < 0).where(index + n, index)
    mask = idx.unsqueeze(-1) == self._index(n, idx.dtype, self.device)
    picked = mask.where(x, x._const(0, x.dtype, (), x.device))
    return picked.sum(-1, dtype=picked.dtype if picked.dtype != dtypes.bool else None).cast(self.dtype)

  # ---- writes: a functional rebuild (where) assigned into this tensor's buffer ----
  def __setitem__(self: Tensor, indices: Any, v: Any) -> None:
    """self[indices] = v in place: ints, slices with steps, None, Ellipsis, integer-tensor indices (the last write wins for
    repeated positions) and bool masks. The value broadcasts to the indexed shape and casts to this tensor's dtype."""
    from tg_tensor.tensor import Tensor
    if isinstance(v, Tensor):
      if v.device != self.device: raise ValueError(f"setitem across devices ({v.device} into {self.device}): move the value with .to() first")
      vt = v.cast(self.dtype)
    elif isinstance(v, (bool, int, float)): vt = Tensor._const(v, self.dtype, (), self.device)
    else: vt = Tensor(v, device=self.device, dtype=self.dtype)
    self.realize()
    self.assign(self._with_items(indices, vt).cast(self.dtype)).realize()
  def _with_items(self: Tensor, indices: Any, vt: Tensor) -> Tensor:
    """A new tensor equal to self except at `indices`, which hold `vt` (broadcast)."""
    from tg_tensor.tensor import Tensor
    if isinstance(indices, Tensor) and indices.dtype == dtypes.bool: return self._with_masked(indices, vt)
    box, flips, strides, out_shape, tensor_idx = self._index_plan(indices)
    out_shape = tuple(out_shape)
    if tensor_idx:  # positions of the indexed elements, then a one-hot scatter of the values (the last writer wins)
      n = self.numel()
      pos = Tensor._index(n, dtypes.int32, self.device).reshape(self.shape)[indices]
      m = pos.numel()
      if m == 0: return self
      vt = _fit_value(vt, pos.shape).reshape(m)
      hits = pos.reshape(1, m) == Tensor._index(n, dtypes.int32, self.device).reshape(n, 1)
      last = hits.where(Tensor._index(m, dtypes.int32, self.device).reshape(1, m), -1).max(1)
      return (last >= 0).reshape(self.shape).where(vt[last.maximum(0)].reshape(self.shape), self)
    if prod(out_shape) == 0: return self
    counts = tuple(ceildiv(e - b, st) for (b, e), st in zip(box, strides))
    x = _fit_value(vt, out_shape).reshape(counts)
    def unview(t: Tensor) -> Tensor:
      if any(st != 1 for st in strides):
        t = t.reshape(tuple(v for c in counts for v in (c, 1))).pad(tuple(v for st in strides for v in (None, (0, st - 1))))
        t = t.reshape(tuple(c * st for c, st in zip(counts, strides))).shrink(tuple((0, e - b) for b, e in box))
      t = t.flip(tuple(k for k, f in enumerate(flips) if f))
      return t.pad(tuple((b, s - e) for (b, e), s in zip(box, self.shape)))
    if not self.ndim: return x.reshape(())
    mask = unview(Tensor._const(True, dtypes.bool, counts, self.device))
    return mask.where(unview(x), self)
  def _with_masked(self: Tensor, mask: Tensor, vt: Tensor) -> Tensor:
    m = mask.ndim
    if mask.shape != self.shape[:m]: raise IndexError(f"a bool mask of shape {mask.shape} doesn't match the tensor's leading axes {self.shape}")
    full = mask.reshape(mask.shape + (1,) * (self.ndim - m))
    from tg_tensor.ops_math import broadcast_shape
    try:
      if broadcast_shape(vt.shape, self.shape) == self.shape: return full.where(vt, self)
    except ValueError: pass
    # one value per selected position (in order): the k-th true element of the mask takes vt[k]
    flat = mask.reshape(-1)
    k = (flat.cast(dtypes.int32).cumsum() - 1).maximum(0)
    picked = vt[k]  # (mask elements, *rest)
    return full.where(picked.reshape(self.shape), self)
  def masked_select(self: Tensor, mask: Tensor) -> Tensor:
    """The elements where `mask` is true, as a 1-d tensor (its size depends on the data, so this realizes the mask count)."""
    from tg_tensor.ops_math import broadcast_shape
    shape = broadcast_shape(self.shape, mask.shape)
    x, mk = self._broadcast_to(shape).reshape(-1), mask.cast(dtypes.bool)._broadcast_to(shape).reshape(-1)
    cnt = int(mk.sum().item())
    pos = mk.cast(dtypes.int32).cumsum() - 1  # the output slot of each true element
    slots = self._index(cnt, dtypes.int32, self.device).reshape(cnt, 1)
    sel = (pos.reshape(1, -1) == slots) & mk.reshape(1, -1)
    return sel.where(x.reshape(1, -1), x._const(0, x.dtype, (), x.device)).sum(1, dtype=x.dtype if x.dtype != dtypes.bool else None).cast(x.dtype)
  def scatter(self: Tensor, dim: int, index: Tensor, src: Any, reduce: str | None = None) -> Tensor:
    """A copy of self with self[..., index[i], ...] = src[i] along `dim` (PyTorch's scatter); reduce 'add' or 'multiply'
    combines instead. For a position written twice, the last write wins."""
    if reduce is None: return self._scatter(dim, index, src, "replace")
    if reduce not in ("add", "multiply"): raise ValueError(f"scatter reduce must be None, 'add' or 'multiply', got {reduce!r}")
    return self._scatter(dim, index, src, {"add": "sum", "multiply": "prod"}[reduce])
  def scatter_reduce(self: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, include_self: bool = True) -> Tensor:
    """PyTorch's scatter_reduce: reduce 'sum', 'prod', 'mean', 'amax' or 'amin' of the values scattered to each position
    (and the original value when include_self)."""
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
      raise ValueError(f"scatter_reduce reduce must be sum, prod, mean, amax or amin, got"
        f" {reduce!r}")
    return self._scatter(dim, index, src, reduce, include_self)
  def _scatter(self: Tensor, dim: int, index: Tensor, src: Any, mode: str, include_self: bool = True) -> Tensor:
    from tg_tensor.tensor import Tensor
    d = self._axis(dim)
    if index.ndim != self.ndim: raise ValueError(f"scatter needs an index with {self.ndim} dims like the input, got shape {index.shape}")
    if dtypes.is_float(index.dtype) or index.dtype == dtypes.bool: raise TypeError(f"scatter needs an integer index, got {index.dtype}")
    if any(i > s for k, (i, s) in enumerate(zip(index.shape, self.shape)) if k != d):
      raise ValueError(f"scatter index shape {index.shape} is larger than the input {self.shape} outside axis {dim}")
    if isinstance(src, Tensor):
      if any(i > s for i, s in zip(index.shape, src.shape)): raise ValueError(f"scatter src {src.shape} is smaller than the index {index.shape}")
      s = src.shrink(tuple((0, i) for i in index.shape)).cast(self.dtype)
    else: s = Tensor._const(src, self.dtype, index.shape, self.device)
    n, m = self.shape[d], index.shape[d]
    if prod(index.shape) == 0: return self
    idx = (index < 0).where(index + n, index)
    # hits[..., j at d, ..., i] : index[..., i at d, ...] == j
    hits = (idx.unsqueeze(-1) == self._index(n, idx.dtype, self.device)).transpose(d, -1)
    sv = s.unsqueeze(-1).transpose(d, -1)  # (..., 1 at d, ..., m)
    hit = hits.any(-1)
    if mode == "replace":
      last = hits.where(self._index(m, dtypes.int32, self.device), -1).max(-1, keepdim=True)
      picked = (self._index(m, dtypes.int32, self.device) == last).where(sv, sv._const(0, sv.dtype, (), sv.device))
      val = picked.sum(-1, dtype=sv.dtype if sv.dtype != dtypes.bool else None).cast(self.dtype)
    elif mode in ("sum", "mean"): val = hits.where(sv, 0).sum(-1, dtype=self.dtype)
    elif mode == "prod": val = hits.where(sv, 1).prod(-1, dtype=self.dtype)
    else:
      lo = -math.inf if dtypes.is_float(self.dtype) else dtypes.min(self.dtype)
      val = hits.where(sv, lo).max(-1) if mode == "amax" else -(hits.where(-sv, lo).max(-1))
    grow = tuple((0, s_ - i) if k != d else None for k, (i, s_) in enumerate(zip(index.shape, self.shape)))
    val, hit = val.pad(grow), hit.pad(grow)
    if mode == "replace": return hit.where(val, self)
    if mode == "sum": return (self + val if include_self else hit.where(val, self)).cast(self.dtype)
    if mode == "prod": return hit.where(self * val if include_self else val, self).cast(self.dtype)
    if mode == "mean":
      cnt = hits.sum(-1).pad(grow).cast(self.dtype)
      tot, c = (self + val, cnt + 1) if include_self else (val, cnt.maximum(1))
      q = tot / c if dtypes.is_float(self.dtype) else tot // c
      return hit.where(q, self).cast(self.dtype)
    if mode == "amax": return hit.where(self.maximum(val) if include_self else val, self)
    return hit.where(self.minimum(val) if include_self else val, self)

  # ---- more views ----
  def unfold(self: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Windows of `size` every `step` along `dimension`: that axis becomes the window count and a new last axis of `size` holds
    each window (PyTorch's Tensor.unfold)."""
    d = self._axis(dimension)
    if size < 0 or size > self.shape[d] or step <= 0:
      raise ValueError(f"unfold needs 0 <= size <= {self.shape[d]} and step > 0, got size={size},"
        f" step={step}")
    others = [k for k in range(self.ndim) if k != d]
    x = self.permute(others + [d])._pool((size,), step)
    nd = self.ndim
    return x.permute(list(range(d)) + [nd - 1] + list(range(d, nd - 1)) + [nd])
  def repeat_interleave(self: Tensor, repeats: int, dim: int | None = None) -> Tensor:
    """Each element repeated `repeats` times along `dim` (over the flattened tensor when None)."""
    x, d = (self.flatten(), 0) if dim is None else (self, self._axis(dim))
    return x.unsqueeze(d + 1).expand(x.shape[:d + 1] + (repeats,) + x.shape[d + 1:]).flatten(d, d + 1)
  def _tri(self: Tensor, diagonal: int, lower: bool) -> Tensor:
    if self.ndim < 2: raise ValueError(f"tril/triu need at least 2 dims, got shape {self.shape}")
    r, c = self.shape[-2:]
    rows = self._index(r, dtypes.int32, self.device).reshape(r, 1) + diagonal
    cols = self._index(c, dtypes.int32, self.device).reshape(1, c)
    mask = (cols <= rows) if lower else (cols >= rows)
    return mask.where(self, self._const(0, self.dtype, (), self.device))
  def tril(self: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle (j <= i + diagonal) of the last two axes, zeros elsewhere."""
    return self._tri(diagonal, True)
  def triu(self: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle (j >= i + diagonal) of the last two axes, zeros elsewhere."""
    return self._tri(diagonal, False)
  def movedim(self: Tensor, source: int, destination: int) -> Tensor:
    s, dst = self._axis(source), self._axis(destination)
    order = [k for k in range(self.ndim) if k != s]
    order.insert(dst, s)
    return self.permute(order)

def _fit_value(vt: Tensor, shape: tuple[int, ...]) -> Tensor:
  """A setitem value broadcast to the indexed shape (leading size-1 axes beyond it are dropped, as PyTorch)."""
  while vt.ndim > len(shape) and vt.shape[0] == 1: vt = vt.reshape(vt.shape[1:])
  from tg_tensor.ops_math import broadcast_shape
  try: ok = broadcast_shape(vt.shape, shape) == tuple(shape)
  except ValueError: ok = False
  if not ok: raise ValueError(f"can't assign a value of shape {vt.shape} to an indexed region of shape {tuple(shape)}: it must broadcast to it")
  return vt._broadcast_to(tuple(shape))
