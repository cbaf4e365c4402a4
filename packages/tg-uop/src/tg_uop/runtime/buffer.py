"""`Buffer`: a typed, lazily allocated region of device memory, and views into it."""
from __future__ import annotations
from typing import Any
from tg_uop.dtype import DType, to_np_name
from tg_uop import device as _device_mod
from tg_uop.runtime.allocator import Allocator, BufferSpec

# importing the registry module is cheap (plugins load when a device is first opened); importing it once here rather than per call
# spares `allocator` (every allocate and free) an import statement's microsecond. `Device` is read off the module at each call so
# that a test's replacement registry is honoured.
def _get_device(name: str) -> Any:
  """The `Compiled` device registered as `name`."""
  return _device_mod.Device[name]

def _as_bytes(mv: Any) -> memoryview:
  """`mv` as a flat memoryview of bytes, with a clear error for layouts that are not one contiguous block."""
  m = mv if isinstance(mv, memoryview) else memoryview(mv)
  if not m.c_contiguous:
    raise ValueError("copyin/copyout need a contiguous block of memory: make a contiguous copy first (e.g. numpy.ascontiguousarray)")
  return m.cast("B") if m.format != "B" or m.ndim != 1 else m

class Buffer:
  """`size` elements of `dtype` on `device`. Memory is allocated on first `allocate()` or `copyin()`.

  With `base`, this is a view of `offset` bytes into `base`'s memory (a view of a view resolves to the base, offsets summed).
  With `opaque`, it wraps memory that is already allocated (and is not freed by this Buffer).
  """
  def __init__(self, device: str, size: int, dtype: DType, opaque: Any = None, options: BufferSpec | None = None,
               base: Buffer | None = None, offset: int = 0):
    if not isinstance(size, int) or size < 0: raise ValueError(f"Buffer size must be an int >= 0 elements, got {size!r}")
    if not isinstance(offset, int) or offset < 0: raise ValueError(f"Buffer offset must be an int >= 0 bytes, got {offset!r}")
    self.device, self.size, self.dtype, self.options = device, size, dtype, options
    self._base: Buffer | None = None
    self.offset = 0
    if base is not None:
      if opaque is not None: raise ValueError("a Buffer view takes its memory from base: pass base or opaque, not both")
      if base.device != device: raise ValueError(f"a view of a buffer on {base.device} must be on {base.device}, not {device}")
      if base._base is not None: base, offset = base._base, base.offset + offset
      if offset + self.nbytes > base.nbytes:
        raise ValueError(f"view of {self.nbytes} bytes at offset {offset} is out of range of its base buffer of {base.nbytes} bytes")
      self._base, self.offset, self.options = base, offset, base.options
    self._owns = False  # whether this Buffer allocated its memory and must free it
    if opaque is not None: self._buf = opaque

  # ---- properties
  @property
  def nbytes(self) -> int: return self.size * self.dtype.itemsize
  @property
  def base(self) -> Buffer:
    """The buffer that owns the memory (itself unless this is a view)."""
    return self._base if self._base is not None else self
  @property
  def allocator(self) -> Allocator: return _get_device(self.device).allocator
  def is_allocated(self) -> bool:
    """Whether this buffer has device memory yet."""
    return hasattr(self, "_buf")

  # ---- memory
  def allocate(self, opaque: Any = None) -> Buffer:
    """Give this buffer device memory (`opaque` to wrap existing memory); a no-op when it already has some."""
    if hasattr(self, "_buf"):  # is_allocated(), inline: this runs for every kernel's every buffer
      if opaque is not None: raise RuntimeError(f"{self!r} is already allocated: it can't also wrap {opaque!r}")
      return self
    if opaque is not None: self._buf = opaque
    elif self._base is not None:
      allocator = self.allocator
      if not allocator.supports_offset:
        raise RuntimeError(f"device {self.device} does not support buffer views: its allocator {type(allocator).__name__} has no _offset")
      self._base.allocate()
      self._buf = allocator._offset(self._base._buf, self.nbytes, self.offset)  # type: ignore[attr-defined]
    else:
      # the memory goes back to the allocator it came from: kept here, which also spares deallocate a registry lookup
      self._allocator = self.allocator
      self._buf = self._allocator.alloc(self.size * self.dtype.itemsize, self.options)
      self._owns = True
    return self

  def deallocate(self) -> None:
    """Return this buffer's memory to its allocator (views just drop their reference)."""
    if not hasattr(self, "_buf"): return
    if self._owns: self._allocator.free(self._buf, self.size * self.dtype.itemsize, self.options)
    del self._buf
    self._owns = False

  def __del__(self):
    # at interpreter exit the device registry may already be gone: the OS reclaims memory then anyway
    try: self.deallocate()
    except Exception: pass

  def view(self, size: int, dtype: DType, offset: int) -> Buffer:
    """A buffer of `size` elements of `dtype`, `offset` bytes into this one, sharing its memory."""
    if not isinstance(offset, int) or offset < 0: raise ValueError(f"view offset must be an int >= 0 bytes, got {offset!r}")
    if offset + size * dtype.itemsize > self.nbytes:
      raise ValueError(f"view of {size * dtype.itemsize} bytes at offset {offset} is out of range of a buffer of {self.nbytes} bytes")
    return Buffer(self.device, size, dtype, base=self, offset=offset)

  # ---- data movement
  def copyin(self, mv: Any) -> Buffer:
    """Copy host bytes (`bytes`, `bytearray`, `memoryview`, contiguous numpy array) into this buffer, allocating it if needed."""
    src = _as_bytes(mv)
    if src.nbytes != self.nbytes:
      raise ValueError(f"copyin size mismatch: got {src.nbytes} bytes, but the buffer holds {self.nbytes} bytes ({self.size} x {self.dtype})")
    self.allocate()
    self.allocator._copyin(self._buf, src)
    return self

  def copyout(self, mv: Any) -> memoryview:
    """Copy this buffer into the writable host memory `mv`; returns it as a memoryview of bytes."""
    dest = _as_bytes(mv)
    if dest.readonly: raise ValueError("copyout needs writable memory (e.g. a bytearray), got a read-only buffer")
    if dest.nbytes != self.nbytes:
      raise ValueError(f"copyout size mismatch: got {dest.nbytes} bytes, but the buffer holds {self.nbytes} bytes ({self.size} x {self.dtype})")
    # a view of allocated memory gets its sub-buffer on first use
    if not self.is_allocated() and self._base is not None and self._base.is_allocated(): self.allocate()
    if not self.is_allocated(): raise RuntimeError(f"can't copy out of {self!r}: it was never allocated or written (call copyin first)")
    self.allocator._copyout(dest, self._buf)
    return dest

  def as_buffer(self) -> memoryview:
    """A host copy of this buffer's bytes."""
    return self.copyout(memoryview(bytearray(self.nbytes)))

  def numpy(self) -> Any:
    """A numpy array copy of this buffer (needs numpy installed)."""
    name = to_np_name(self.dtype)
    if name is None: raise TypeError(f"numpy has no {self.dtype}: view or cast the buffer to another dtype before calling numpy()")
    try: import numpy as np
    except ImportError: raise ImportError("Buffer.numpy() needs numpy: pip install numpy") from None
    return np.frombuffer(self.as_buffer(), dtype=name)

  def copy_from(self, src: Buffer) -> Buffer:
    """Copy `src` (same size in bytes, any device) into this buffer: directly when both share an allocator that can, else via the host."""
    if src.nbytes != self.nbytes: raise ValueError(f"copy size mismatch: source has {src.nbytes} bytes, destination {self.nbytes}")
    dst_alloc, src_alloc = self.allocator, src.allocator
    if dst_alloc is src_alloc and dst_alloc.supports_transfer and src.is_allocated():
      self.allocate()
      dst_alloc._transfer(self._buf, src._buf, self.nbytes)  # type: ignore[attr-defined]
      return self
    return self.copyin(src.as_buffer())

  def __repr__(self) -> str:
    view = f" view of {self._base.nbytes}B at {self.offset}" if self._base is not None else ""
    return f"<Buffer {self.device} {self.size} x {self.dtype}{view}{'' if self.is_allocated() else ' (not allocated)'}>"
