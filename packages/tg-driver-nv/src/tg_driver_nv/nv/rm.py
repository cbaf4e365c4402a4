"""The RM object tree and UVM calls: every RM/UVM ioctl the NV device makes goes through `RMClient`, which checks the status
each returns and names the call, the class or command, and the status in its error."""
from __future__ import annotations
import ctypes
from typing import Any
from tg_driver_nv.nv import ioctl as I

class RMError(RuntimeError):
  """An RM or UVM call that the kernel driver refused."""

def _addr(params: ctypes.Structure | None) -> int: return 0 if params is None else ctypes.addressof(params)

class RMClient:
  """One RM root client on /dev/nvidiactl plus the process's UVM file: allocates objects, runs controls, maps memory."""
  def __init__(self, kernel: I.Kernel):
    self.kernel = kernel
    self.fd_ctl = kernel.open("/dev/nvidiactl")
    self.version = self.driver_version()
    if (why := I.version_refusal(self.version)) is not None: raise RMError(why)
    self.root = self.alloc(0, 0, I.NV01_ROOT_CLIENT, None)
    self.fd_uvm = kernel.open("/dev/nvidia-uvm")
    self.uvm(I.UVM_INITIALIZE, I.UVM_INITIALIZE_PARAMS(flags=0))
    # a second UVM file holds the process's mm for UVM; without it registering a GPU VA space fails (NV_ERR_PAGE_TABLE_NOT_AVAIL)
    self.fd_uvm_mm = kernel.open("/dev/nvidia-uvm")
    mm = I.UVM_MM_INITIALIZE_PARAMS(uvmFd=self.fd_uvm)
    kernel.ioctl(self.fd_uvm_mm, I.UVM_MM_INITIALIZE, mm)
    if mm.rmStatus not in (0, I.NV_WARN_NOTHING_TO_DO): raise RMError(f"UVM_MM_INITIALIZE failed: {I.status_name(mm.rmStatus)}")

  def escape(self, fd: int, esc: int, arg: ctypes.Structure | ctypes.Array) -> None:
    """Issue NVIDIA escape `esc` on `fd` with `arg` (its size goes into the request number)."""
    self.kernel.ioctl(fd, I.nv_ioc(esc, ctypes.sizeof(arg)), arg)

  def driver_version(self) -> str:
    """The RM's version string ("580.159.04"), asked of the kernel module itself."""
    v = I.nv_ioctl_rm_api_version_t(cmd=I.NV_RM_API_VERSION_CMD_QUERY)
    self.escape(self.fd_ctl, I.NV_ESC_CHECK_VERSION_STR, v)
    return v.versionString.decode(errors="replace")

  def card_info(self) -> list[I.nv_ioctl_card_info_t]:
    """The GPUs the kernel module drives (valid entries only)."""
    cards = (I.nv_ioctl_card_info_t * I.NV_MAX_CARDS)()
    self.escape(self.fd_ctl, I.NV_ESC_CARD_INFO, cards)
    return [c for c in cards if c.valid]

  def open_gpu_fd(self, minor: int) -> int:
    """A new /dev/nvidia<minor> file registered with the control file (each CPU mapping of GPU memory needs its own)."""
    fd = self.kernel.open(f"/dev/nvidia{minor}")
    self.escape(fd, I.NV_ESC_REGISTER_FD, I.nv_ioctl_register_fd_t(ctl_fd=self.fd_ctl))
    return fd

  def alloc(self, parent: int, handle: int, cls: int, params: ctypes.Structure | None) -> int:
    """Allocate an RM object of class `cls` under `parent` (handle 0: the RM picks one); returns its handle."""
    p = I.NVOS21_PARAMETERS(hRoot=getattr(self, "root", 0), hObjectParent=parent, hObjectNew=handle, hClass=cls, pAllocParms=_addr(params),
                            paramsSize=0 if params is None else ctypes.sizeof(params))
    self.escape(self.fd_ctl, I.NV_ESC_RM_ALLOC, p)
    if p.status != 0: raise RMError(f"RM alloc of class {cls:#x} under handle {parent:#x} failed: {I.status_name(p.status)}")
    return p.hObjectNew

  def free(self, parent: int, handle: int) -> None:
    """Free RM object `handle` (and everything under it)."""
    p = I.NVOS00_PARAMETERS(hRoot=self.root, hObjectParent=parent, hObjectOld=handle)
    self.escape(self.fd_ctl, I.NV_ESC_RM_FREE, p)
    if p.status != 0: raise RMError(f"RM free of handle {handle:#x} failed: {I.status_name(p.status)}")

  def control(self, obj: int, cmd: int, params: ctypes.Structure) -> Any:
    """Run RM control `cmd` on object `obj` with `params` (filled in place and returned)."""
    p = I.NVOS54_PARAMETERS(hClient=self.root, hObject=obj, cmd=cmd, params=ctypes.addressof(params), paramsSize=ctypes.sizeof(params))
    self.escape(self.fd_ctl, I.NV_ESC_RM_CONTROL, p)
    if p.status != 0: raise RMError(f"RM control {cmd:#x} on handle {obj:#x} failed: {I.status_name(p.status)}")
    return params

  def alloc_os_memory(self, gpu_fd: int, device: int, handle: int, va: int, size: int) -> int:
    """Describe `size` bytes of this process's memory at `va` to the RM (NV01_MEMORY_SYSTEM_OS_DESCRIPTOR); returns its handle."""
    flags = I.NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS | I.NVOS02_FLAGS_COHERENCY_CACHED | I.NVOS02_FLAGS_MAPPING_NO_MAP
    p = I.nv_ioctl_nvos02_parameters_with_fd(params=I.NVOS02_PARAMETERS(hRoot=self.root, hObjectParent=device, hObjectNew=handle,
                                             hClass=I.NV01_MEMORY_SYSTEM_OS_DESCRIPTOR, flags=flags, pMemory=va, limit=size - 1), fd=-1)
    self.escape(gpu_fd, I.NV_ESC_RM_ALLOC_MEMORY, p)
    if p.params.status != 0: raise RMError(f"RM alloc of host memory ({size:#x} bytes at {va:#x}) failed: {I.status_name(p.params.status)}")
    return p.params.hObjectNew

  def map_to_cpu(self, gpu_fd: int, device: int, memory: int, size: int) -> None:
    """Prepare `gpu_fd` so that mmap() of it maps RM memory `memory` (BAR1 for video memory)."""
    p = I.nv_ioctl_nvos33_parameters_with_fd(params=I.NVOS33_PARAMETERS(hClient=self.root, hDevice=device, hMemory=memory, length=size), fd=gpu_fd)
    self.escape(self.fd_ctl, I.NV_ESC_RM_MAP_MEMORY, p)
    if p.params.status != 0: raise RMError(f"RM map of memory {memory:#x} ({size:#x} bytes) to the CPU failed: {I.status_name(p.params.status)}")

  def uvm(self, cmd: int, params: ctypes.Structure) -> Any:
    """Run UVM ioctl `cmd` with `params`; RMError naming the command when its status is not NV_OK."""
    self.kernel.ioctl(self.fd_uvm, cmd, params)
    if params.rmStatus != 0: raise RMError(f"UVM {type(params).__name__.removesuffix('_PARAMS')} failed: {I.status_name(params.rmStatus)}")
    return params
