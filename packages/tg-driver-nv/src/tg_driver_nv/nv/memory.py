"""GPU virtual addresses and memory for the NV device. Host and GPU share one address space (UVM): a buffer has the same
address on both sides, carved from a range this process reserves below 1 TiB, because GPFIFO entries, host semaphores and
QMD pointers carry only 40 address bits."""
from __future__ import annotations
import ctypes
from dataclasses import dataclass
from tg_uop.helpers import round_up
from tg_driver_nv.nv import ioctl as I
from tg_driver_nv.nv.rm import RMClient

VA_BASE, VA_SIZE = 0x10_0000_0000, 0x80_0000_0000  # 64 GiB .. 576 GiB: clear of the heap/libraries, below the 40-bit limit
MAP_FIXED_NOREPLACE = 0x100000
PAGE_4K, PAGE_2M = 0x1000, 0x200000

class VASpace:
  """A first-fit allocator over one reserved range of the process's address space (PROT_NONE until memory is mapped there)."""
  def __init__(self, kernel: I.Kernel, base: int = VA_BASE, size: int = VA_SIZE):
    flags = I.MAP_PRIVATE | I.MAP_ANONYMOUS | I.MAP_NORESERVE | MAP_FIXED_NOREPLACE
    try: got = kernel.mmap(base, size, I.PROT_NONE, flags)
    except OSError as e:
      raise RuntimeError(f"can't reserve the NV device's address range {base:#x}..{base + size:#x}: {e}; something else is mapped there") from e
    if got != base: raise RuntimeError(f"the kernel placed the NV address reservation at {got:#x}, not {base:#x} (no MAP_FIXED_NOREPLACE?)")
    self.kernel, self.base, self.size = kernel, base, size
    self.free_list: list[tuple[int, int]] = [(base, size)]  # sorted (start, size) holes

  def alloc(self, size: int, align: int) -> int:
    """`size` bytes of address space aligned to `align`; MemoryError when the range is exhausted."""
    for i, (start, hole) in enumerate(self.free_list):
      addr = round_up(start, align)
      if addr + size <= start + hole:
        rest = [(start, addr - start)] if addr > start else []
        if addr + size < start + hole: rest.append((addr + size, start + hole - addr - size))
        self.free_list[i:i + 1] = rest
        return addr
    raise MemoryError(f"the NV device's {self.size >> 30} GiB address range has no free {size:#x}-byte hole aligned to {align:#x}")

  def free(self, addr: int, size: int) -> None:
    """Return [addr, addr+size) to the free list, merging neighbours, and put the PROT_NONE reservation back."""
    self.kernel.mmap(addr, size, I.PROT_NONE, I.MAP_PRIVATE | I.MAP_ANONYMOUS | I.MAP_NORESERVE | I.MAP_FIXED)
    self.free_list.append((addr, size))
    self.free_list.sort()
    merged: list[tuple[int, int]] = []
    for s, n in self.free_list:
      if merged and merged[-1][0] + merged[-1][1] == s: merged[-1] = (merged[-1][0], merged[-1][1] + n)
      else: merged.append((s, n))
    self.free_list = merged

@dataclass
class NVMemory:
  """One allocation: RM handle `hmem`, at `va` (same address for host and GPU), `size` bytes; `fd` is the CPU mapping's file."""
  va: int
  size: int
  hmem: int
  host: bool
  cpu: bool
  fd: int | None = None

class MemoryManager:
  """Allocates video or host memory through the RM, maps it for the CPU (when asked) and for the GPU through UVM."""
  _next_os_handle = 0xD0000000  # handles for OS-descriptor memory, which the RM wants the client to choose

  def __init__(self, rm: RMClient, va: VASpace, device: int, minor: int, gpu_fd: int, uuid: I.NvProcessorUuid):
    self.rm, self.va, self.device, self.minor, self.gpu_fd, self.uuid = rm, va, device, minor, gpu_fd, uuid

  def alloc(self, size: int, host: bool = False, cpu: bool = False, contiguous: bool = False) -> NVMemory:
    """`size` bytes of video memory (host=False; visible to the CPU through BAR1 when `cpu`) or pinned host memory (host=True)."""
    page = PAGE_2M if not host and size >= PAGE_2M else PAGE_4K  # big buffers get 2 MB pages: fewer TLB misses
    size = round_up(max(size, 1), page)
    va = self.va.alloc(size, page)
    try:
      if host: mem = self._alloc_host(va, size)
      else: mem = self._alloc_video(va, size, page, cpu, contiguous)
      self._map_gpu(mem)
      return mem
    except BaseException:
      self.va.free(va, size)
      raise

  def _alloc_host(self, va: int, size: int) -> NVMemory:
    self.rm.kernel.mmap(va, size, I.PROT_READ | I.PROT_WRITE, I.MAP_SHARED | I.MAP_ANONYMOUS | I.MAP_FIXED)
    MemoryManager._next_os_handle += 1
    hmem = self.rm.alloc_os_memory(self.gpu_fd, self.device, MemoryManager._next_os_handle, va, size)
    return NVMemory(va, size, hmem, host=True, cpu=True)

  def _alloc_video(self, va: int, size: int, page: int, cpu: bool, contiguous: bool) -> NVMemory:
    phys = I.NVOS32_ATTR_PHYSICALITY_CONTIGUOUS if contiguous else I.NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS
    huge = page == PAGE_2M
    page_attr = I.NVOS32_ATTR_PAGE_SIZE_HUGE if huge else I.NVOS32_ATTR_PAGE_SIZE_4KB
    attr = (phys << I.NVOS32_ATTR_PHYSICALITY_SHIFT) | (page_attr << I.NVOS32_ATTR_PAGE_SIZE_SHIFT)
    attr2 = I.NVOS32_ATTR2_GPU_CACHEABLE_YES | (I.NVOS32_ATTR2_PAGE_SIZE_HUGE_2MB if huge else 0)
    flags = I.NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED | I.NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE | I.NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT
    params = I.NV_MEMORY_ALLOCATION_PARAMS(owner=self.rm.root, type=I.NVOS32_TYPE_IMAGE, flags=flags, attr=attr, attr2=attr2, format=6,
                                           size=size, alignment=page, offset=0, limit=size - 1)
    try: hmem = self.rm.alloc(self.device, 0, I.NV01_MEMORY_LOCAL_USER, params)
    except RuntimeError as e:
      if "NV_ERR_NO_MEMORY" in str(e): raise MemoryError(f"NV: out of video memory allocating {size} bytes: {e}") from e
      raise
    mem = NVMemory(va, size, hmem, host=False, cpu=cpu)
    if cpu:
      mem.fd = self.rm.open_gpu_fd(self.minor)
      self.rm.map_to_cpu(mem.fd, self.device, hmem, size)
      self.rm.kernel.mmap(va, size, I.PROT_READ | I.PROT_WRITE, I.MAP_SHARED | I.MAP_FIXED, mem.fd, 0)
    return mem

  def _map_gpu(self, mem: NVMemory) -> None:
    self.rm.uvm(I.UVM_CREATE_EXTERNAL_RANGE, I.UVM_CREATE_EXTERNAL_RANGE_PARAMS(base=mem.va, length=mem.size))
    p = I.UVM_MAP_EXTERNAL_ALLOCATION_PARAMS(base=mem.va, length=mem.size, offset=0, gpuAttributesCount=1, rmCtrlFd=self.rm.fd_ctl,
                                             hClient=self.rm.root, hMemory=mem.hmem)
    p.perGpuAttributes[0] = I.UvmGpuMappingAttributes(gpuUuid=self.uuid, gpuMappingType=I.UVM_GPU_MAPPING_TYPE_READ_WRITE)
    self.rm.uvm(I.UVM_MAP_EXTERNAL_ALLOCATION, p)

  def free(self, mem: NVMemory) -> None:
    """Unmap `mem` from the GPU and the CPU and free it."""
    self.rm.uvm(I.UVM_FREE, I.UVM_FREE_PARAMS(base=mem.va, length=mem.size))
    self.rm.free(self.device, mem.hmem)
    if mem.fd is not None: self.rm.kernel.close(mem.fd)
    self.va.free(mem.va, mem.size)

def view(mem: NVMemory, fmt: str = "B") -> memoryview:
  """The CPU's view of host-visible memory."""
  if not mem.cpu: raise ValueError(f"NV memory at {mem.va:#x} is not mapped for the CPU")
  return memoryview((ctypes.c_uint8 * mem.size).from_address(mem.va)).cast("B").cast(fmt)
