"""Allocators: device memory behind `Buffer`, with an LRU cache of freed buffers."""
from __future__ import annotations
import abc
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from tg_uop.helpers import getenv

@dataclass(frozen=True)
class BufferSpec:
  """How a buffer is allocated. Hashable: it is part of the LRU cache key."""
  image: Any = None          # image dtype for texture-backed buffers
  uncached: bool = False     # bypass the GPU's caches (e.g. for signals polled by the host)
  cpu_access: bool = False   # must be mapped into the host's address space
  host: bool = False         # lives in host memory (pinned), reachable by the device
  nolru: bool = False        # never served from or returned to the LRU cache
  external_ptr: int | None = None  # wrap memory the caller already owns at this address

class Allocator(abc.ABC):
  """Base of every allocator: `alloc`/`free` opaque buffers, `_copyin`/`_copyout` host bytes.

  Subclasses implement `_alloc(size, options)`, `_copyin`, `_copyout`, and optionally `_free` (default: nothing to do, for
  memory the garbage collector owns), `_offset(buf, size, offset)` for sub-buffers and `_transfer` for device-to-device copies.
  """
  def __init__(self, device: str | None = None):
    self.device = device  # the device name used in error messages; `Compiled` fills it in when left None

  def alloc(self, size: int, options: BufferSpec | None = None) -> Any:
    """An opaque buffer of `size` bytes."""
    if not isinstance(size, int) or size < 0: raise ValueError(f"can't allocate {size!r} bytes on {self.device}: size must be an int >= 0")
    return self._alloc(size, options)

  def free(self, opaque: Any, size: int, options: BufferSpec | None = None) -> None:
    """Release `opaque`, an `alloc` result of `size` bytes."""
    self._free(opaque, size, options)

  @abc.abstractmethod
  def _alloc(self, size: int, options: BufferSpec | None) -> Any:
    """Allocate `size` bytes; raise MemoryError when the device is out of memory."""
  def _free(self, opaque: Any, size: int, options: BufferSpec | None) -> None:
    """Release device memory (the default has none to release)."""
  @abc.abstractmethod
  def _copyin(self, dest: Any, src: memoryview) -> None:
    """Copy host bytes `src` into the opaque buffer `dest` (same size)."""
  @abc.abstractmethod
  def _copyout(self, dest: memoryview, src: Any) -> None:
    """Copy the opaque buffer `src` into host bytes `dest` (same size)."""

  @property
  def supports_offset(self) -> bool:
    """Whether this allocator can make sub-buffers (`_offset`), which `Buffer.view` needs."""
    return callable(getattr(self, "_offset", None))
  @property
  def supports_transfer(self) -> bool:
    """Whether this allocator copies between two of its buffers without going through the host (`_transfer`)."""
    return callable(getattr(self, "_transfer", None))

class LRUAllocator(Allocator):
  """An allocator that keeps freed buffers, keyed by (size, options), and hands them out again. `LRU=0` turns the cache off."""
  def __init__(self, device: str | None = None):
    super().__init__(device)
    self.cache: defaultdict[tuple[int, BufferSpec | None], list[Any]] = defaultdict(list)

  def _cacheable(self, options: BufferSpec | None) -> bool: return bool(getenv("LRU", 1)) and not (options is not None and options.nolru)

  def alloc(self, size: int, options: BufferSpec | None = None) -> Any:
    """A cached buffer of this (size, options) if one was freed, else a fresh one; on MemoryError frees the cache and retries once."""
    if self._cacheable(options) and (cached := self.cache.get((size, options))): return cached.pop()
    try: return super().alloc(size, options)
    except MemoryError as e:
      nbufs, nbytes = self.free_cache()
      try: return super().alloc(size, options)
      except MemoryError as e2:
        raise MemoryError(f"out of memory on {self.device}: allocating {size} bytes failed, even after freeing the allocator's cache "
                          f"({nbufs} cached buffers, {nbytes} bytes). Free some buffers or use smaller tensors. Device said: {e2 or e}") from e2

  def free(self, opaque: Any, size: int, options: BufferSpec | None = None) -> None:
    """Keep `opaque` for reuse (unless options.nolru or LRU=0, which release it now)."""
    if self._cacheable(options): self.cache[(size, options)].append(opaque)
    else: super().free(opaque, size, options)

  def free_cache(self) -> tuple[int, int]:
    """Release every cached buffer to the device; returns (buffers freed, bytes freed)."""
    nbufs = nbytes = 0
    for (size, options), opaques in self.cache.items():
      for opaque in opaques: super().free(opaque, size, options)
      nbufs, nbytes = nbufs + len(opaques), nbytes + size * len(opaques)
    self.cache.clear()
    return nbufs, nbytes
