"""`infer_shape`: the shape of a tensor-level UOp, with clear errors for graphs that don't fit together.

Kernel-level UOps (RANGE, INDEX, LOAD, ...) have no shape: a kernel is its ranges and index expressions (DESIGN.md point 2)."""
from __future__ import annotations
from typing import TYPE_CHECKING
from tg_uop.helpers import prod, all_int
from tg_uop.ops import Ops, GroupOp
if TYPE_CHECKING: from tg_uop.uop import UOp

_passthrough = {Ops.CONTIGUOUS, Ops.DETACH, Ops.COPY, Ops.CAST, Ops.BITCAST, Ops.ASSIGN, Ops.AFTER}

def _err(u: UOp, msg: str) -> ValueError: return ValueError(f"{u.op.name}: {msg}")

def infer_shape(u: UOp) -> tuple | None:
  """The shape of `u`, or None for a kernel-level UOp."""
  if u.op is Ops.BUFFER: return (u.arg,) if isinstance(u.arg, int) else (u.arg[0],) if isinstance(u.arg, tuple) else None
  if u.op is Ops.CONST: return () if not u.src else u.src[0].shape
  if u.op in _passthrough: return u.src[0].shape if u.src else None
  if u.op in GroupOp.Movement:
    s = u.src[0].shape
    if s is None: raise _err(u, "the source has no shape: movement ops apply to tensor-level UOps")
    a = u.arg
    if u.op is Ops.RESHAPE:
      if any(isinstance(d, int) and d < 0 for d in a): raise _err(u, f"negative dimension in {a}")
      if all_int(s) and all_int(a) and prod(s) != prod(a): raise _err(u, f"can't reshape {s} ({prod(s)} elements) to {a} ({prod(a)} elements)")
      return tuple(a)
    if u.op is Ops.PERMUTE:
      if sorted(a) != list(range(len(s))): raise _err(u, f"{a} is not a permutation of the {len(s)} axes of {s}")
      return tuple(s[i] for i in a)
    if u.op is Ops.EXPAND:
      if len(a) != len(s) or any(x != y and x != 1 for x, y in zip(s, a)):
        raise _err(u, f"can't expand {s} to {a}: only size-1 axes expand, and the number of axes must match")
      return tuple(a)
    if u.op is Ops.PAD:
      if len(a) != len(s) or any(b < 0 or e < 0 for b, e in a):
        raise _err(u, f"padding {a} doesn't fit {s}: one non-negative (before, after) per axis")
      return tuple(d + b + e for d, (b, e) in zip(s, a))
    if u.op is Ops.SHRINK:
      if len(a) != len(s) or any(not (0 <= b <= e <= d) for d, (b, e) in zip(s, a)):
        raise _err(u, f"shrink {a} doesn't fit {s}: one (start, end) per axis with 0 <= start <= end <= size")
      return tuple(e - b for b, e in a)
    if u.op is Ops.FLIP:
      if len(a) != len(s): raise _err(u, f"flip needs one bool per axis of {s}, got {a}")
      return s
  if u.op is Ops.REDUCE_AXIS:
    s = u.src[0].shape
    if s is None: raise _err(u, "the source has no shape")
    axes = u.arg[1]
    if any(not 0 <= ax < len(s) for ax in axes): raise _err(u, f"axes {axes} out of range for shape {s}")
    return tuple(d for i, d in enumerate(s) if i not in axes)  # no keep-dims: reduced axes disappear
  if u.op in GroupOp.ALU:
    shapes = [s.shape for s in u.src]
    if any(x is None for x in shapes): return None  # kernel-level arithmetic
    if any(x != shapes[0] for x in shapes[1:]) and any(x != () for x in shapes):
      nonscalar = [x for x in shapes if x != ()]
      if any(x != nonscalar[0] for x in nonscalar): raise _err(u, f"operand shapes {shapes} differ: expand them to one shape first")
      return nonscalar[0]
    return shapes[0]
  return None
