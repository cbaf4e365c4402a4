"""Tensor-level BUFFER UOps and the device memory behind them.

A BUFFER UOp is `UOp(Ops.BUFFER, dtype, (UOp(Ops.DEVICE, arg=device),), arg=(size, uid))`; its memory is a
`tg_uop.runtime.buffer.Buffer`, kept exactly as long as the UOp lives, so dropping the last Tensor frees it. The Buffer sits in the
UOp's own `__dict__` (where its cached properties live too) under `_BUF`: the UOp's death drops it with no weak-table callback, and
a lookup is a dict read (a `WeakKeyDictionary` lookup builds a weak reference and compares through `UOp.__eq__`, in Python; the
engine and every TinyJit replay look buffers up)."""
from __future__ import annotations
import itertools
from tg_uop import device as _device_mod
from tg_uop.dtype import DType, dtypes, from_np_name
from tg_uop.ops import Ops
from tg_uop.runtime.buffer import Buffer
from tg_uop.uop import UOp

_uid = itertools.count()
assign_ids = itertools.count()  # every ASSIGN is distinct: the same update twice (x += 1 each step) must run twice
_BUF = "_buffer"  # the key of a BUFFER UOp's Buffer in its __dict__

def canonical_device(device: str | None) -> str:
  """The registry's canonical name for `device` (the default device when None)."""
  return _device_mod.Device.canonicalize(device) if device is not None else _device_mod.Device.DEFAULT

def new_buffer(device: str, size: int, dtype: DType) -> UOp:
  """A fresh BUFFER UOp of `size` elements on `device` (memory is allocated on first use)."""
  if size < 0: raise ValueError(f"a buffer can't have a negative size ({size})")
  return fresh_buffer(UOp(Ops.DEVICE, arg=canonical_device(device)), size, dtype)[0]

def fresh_buffer(device: UOp, size: int, dtype: DType, allocate: bool = False) -> tuple[UOp, Buffer]:
  """`new_buffer` on the DEVICE UOp of a canonical device, `size` already checked, and its Buffer (allocated now with `allocate`):
  what TinyJit's replay makes for each output on every call, so it skips the name parsing and checks."""
  u = UOp(Ops.BUFFER, dtype, (device,), (size, next(_uid)))
  b = u.__dict__[_BUF] = Buffer(device.arg, max(size, 1), dtype)
  return u, (b.allocate() if allocate else b)

def get_buffer(u: UOp):
  """The Buffer behind a BUFFER UOp (or a view of one: RESHAPE of a BUFFER)."""
  while u.op is Ops.RESHAPE: u = u.src[0]
  if u.op is not Ops.BUFFER: raise ValueError(f"{u.op.name} is not a realized buffer: realize it first")
  if (b := u.__dict__.get(_BUF)) is None: raise KeyError(f"{u.op.name} {u.arg} has no Buffer: it was not made by new_buffer")
  return b

def buffer_device(u: UOp) -> str: return u.src[0].arg

def from_numpy(arr, device: str | None = None) -> UOp:
  """A BUFFER holding a copy of numpy array `arr`, reshaped to its shape."""
  import numpy as np
  shape = np.shape(arr)  # ascontiguousarray makes a 0-d array 1-d: keep the real shape
  arr = np.ascontiguousarray(arr)
  dt = dtypes.bool if arr.dtype == np.bool_ else from_np_name(arr.dtype.name)
  buf = new_buffer(device, arr.size, dt)
  if arr.size: get_buffer(buf).allocate().copyin(memoryview(arr.reshape(-1).view(np.uint8)))
  return buf.reshape(shape)

def from_bytes(data: bytes, dtype: DType, device: str | None = None) -> UOp:
  """A 1-D BUFFER over raw bytes interpreted as `dtype`."""
  if len(data) % dtype.itemsize: raise ValueError(f"{len(data)} bytes is not a whole number of {dtype} elements ({dtype.itemsize} bytes each)")
  buf = new_buffer(device, len(data) // dtype.itemsize, dtype)
  if data: get_buffer(buf).allocate().copyin(memoryview(bytearray(data)))
  return buf
