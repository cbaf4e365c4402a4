"""RM and UVM ioctl structures, written by hand from the open kernel module's headers (verified against driver 580), the
ioctl numbers, and `Kernel`: the one seam through which the driver touches the OS (open, ioctl, mmap, MMIO writes).

Every structure's size is asserted at import: a wrong field shifts the size and fails here, not inside the kernel.
"""
from __future__ import annotations
import ctypes, ctypes.util, os
from typing import Any

# driver major versions whose structures were checked against the headers of that release and the live driver
VERIFIED_DRIVER_MAJORS = (580,)

u8, u16, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32

class Struct(ctypes.Structure):
  """A C structure; `Struct.make(**fields)`; repr shows its fields."""
  def __repr__(self) -> str: return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n, *_ in self._fields_)})"

def _check(cls: type, size: int) -> type:
  if ctypes.sizeof(cls) != size: raise ImportError(f"{cls.__name__} is {ctypes.sizeof(cls)} bytes, expected {size}: the layout is wrong")
  return cls

# ---------------- /dev/nvidiactl and /dev/nvidiaN escapes (nv-ioctl-numbers.h, nv_escape.h) ----------------
NV_IOCTL_MAGIC, NV_IOCTL_BASE = ord("F"), 200
NV_ESC_CARD_INFO, NV_ESC_REGISTER_FD, NV_ESC_CHECK_VERSION_STR = NV_IOCTL_BASE + 0, NV_IOCTL_BASE + 1, NV_IOCTL_BASE + 10
NV_ESC_RM_ALLOC_MEMORY, NV_ESC_RM_FREE, NV_ESC_RM_CONTROL, NV_ESC_RM_ALLOC, NV_ESC_RM_MAP_MEMORY = 0x27, 0x29, 0x2A, 0x2B, 0x4E

def nv_ioc(nr: int, size: int) -> int:
  """_IOWR('F', nr, size): the request number of an NVIDIA escape carrying `size` bytes."""
  if not 0 <= size < (1 << 14): raise ValueError(f"ioctl argument of {size} bytes doesn't fit the 14-bit size field")
  return (3 << 30) | (size << 16) | (NV_IOCTL_MAGIC << 8) | nr

def ioc_size(request: int) -> int:
  """The argument size encoded in an ioctl request number."""
  return (request >> 16) & 0x3FFF

class nv_pci_info_t(Struct):
  _fields_ = [("domain", u32), ("bus", u8), ("slot", u8), ("function", u8), ("vendor_id", u16), ("device_id", u16)]
class nv_ioctl_card_info_t(Struct):
  _fields_ = [("valid", u8), ("pci_info", nv_pci_info_t), ("gpu_id", u32), ("interrupt_line", u16), ("reg_address", u64),
              ("reg_size", u64), ("fb_address", u64), ("fb_size", u64), ("minor_number", u32), ("dev_name", u8 * 10)]
NV_MAX_CARDS = 32  # the kernel fills up to NV_MAX_DEVICES entries
class nv_ioctl_rm_api_version_t(Struct):
  _fields_ = [("cmd", u32), ("reply", u32), ("versionString", ctypes.c_char * 64)]
NV_RM_API_VERSION_CMD_QUERY = ord("2")
class nv_ioctl_register_fd_t(Struct):
  _fields_ = [("ctl_fd", ctypes.c_int)]

class NVOS00_PARAMETERS(Struct):  # RM free
  _fields_ = [("hRoot", u32), ("hObjectParent", u32), ("hObjectOld", u32), ("status", u32)]
class NVOS02_PARAMETERS(Struct):  # RM alloc memory (OS descriptors)
  _fields_ = [("hRoot", u32), ("hObjectParent", u32), ("hObjectNew", u32), ("hClass", u32), ("flags", u32), ("pMemory", u64),
              ("limit", u64), ("status", u32)]
class nv_ioctl_nvos02_parameters_with_fd(Struct):
  _fields_ = [("params", NVOS02_PARAMETERS), ("fd", ctypes.c_int)]
class NVOS21_PARAMETERS(Struct):  # RM alloc
  _fields_ = [("hRoot", u32), ("hObjectParent", u32), ("hObjectNew", u32), ("hClass", u32), ("pAllocParms", u64),
              ("paramsSize", u32), ("status", u32)]
class NVOS33_PARAMETERS(Struct):  # RM map memory to the CPU
  _fields_ = [("hClient", u32), ("hDevice", u32), ("hMemory", u32), ("offset", u64), ("length", u64), ("pLinearAddress", u64),
              ("status", u32), ("flags", u32)]
class nv_ioctl_nvos33_parameters_with_fd(Struct):
  _fields_ = [("params", NVOS33_PARAMETERS), ("fd", ctypes.c_int)]
class NVOS54_PARAMETERS(Struct):  # RM control
  _fields_ = [("hClient", u32), ("hObject", u32), ("cmd", u32), ("flags", u32), ("params", u64), ("paramsSize", u32), ("status", u32)]

for _cls, _size in ((nv_pci_info_t, 12), (nv_ioctl_card_info_t, 72), (nv_ioctl_rm_api_version_t, 72), (nv_ioctl_register_fd_t, 4),
                    (NVOS00_PARAMETERS, 16), (NVOS02_PARAMETERS, 48), (nv_ioctl_nvos02_parameters_with_fd, 56), (NVOS21_PARAMETERS, 32),
                    (NVOS33_PARAMETERS, 48), (nv_ioctl_nvos33_parameters_with_fd, 56), (NVOS54_PARAMETERS, 32)):
  _check(_cls, _size)

# the struct each escape carries: the size in the request number must match it, the kernel rejects anything else
ESCAPE_STRUCTS: dict[int, type] = {NV_ESC_CARD_INFO: nv_ioctl_card_info_t * NV_MAX_CARDS, NV_ESC_REGISTER_FD: nv_ioctl_register_fd_t,
  NV_ESC_CHECK_VERSION_STR: nv_ioctl_rm_api_version_t, NV_ESC_RM_ALLOC_MEMORY: nv_ioctl_nvos02_parameters_with_fd,
  NV_ESC_RM_FREE: NVOS00_PARAMETERS, NV_ESC_RM_CONTROL: NVOS54_PARAMETERS, NV_ESC_RM_ALLOC: NVOS21_PARAMETERS,
  NV_ESC_RM_MAP_MEMORY: nv_ioctl_nvos33_parameters_with_fd}

# ---------------- RM classes ----------------
NV01_ROOT_CLIENT, NV01_DEVICE_0, NV20_SUBDEVICE_0 = 0x41, 0x80, 0x2080
NV01_MEMORY_LOCAL_USER, NV01_MEMORY_SYSTEM_OS_DESCRIPTOR = 0x40, 0x71
FERMI_VASPACE_A, FERMI_CONTEXT_SHARE_A, KEPLER_CHANNEL_GROUP_A = 0x90F1, 0x9067, 0xA06C
AMPERE_USERMODE_A, HOPPER_USERMODE_A = 0xC561, 0xC661
AMPERE_CHANNEL_GPFIFO_A, HOPPER_CHANNEL_GPFIFO_A = 0xC56F, 0xC86F
AMPERE_COMPUTE_A, AMPERE_COMPUTE_B, ADA_COMPUTE_A, HOPPER_COMPUTE_A = 0xC6C0, 0xC7C0, 0xC9C0, 0xCBC0
AMPERE_DMA_COPY_A, AMPERE_DMA_COPY_B, HOPPER_DMA_COPY_A = 0xC6B5, 0xC7B5, 0xC8B5
# compute class -> the SM architecture its kernels are compiled for
COMPUTE_ARCH = {AMPERE_COMPUTE_A: "sm_80", AMPERE_COMPUTE_B: "sm_86", ADA_COMPUTE_A: "sm_89", HOPPER_COMPUTE_A: "sm_90"}
GPFIFO_CLASSES, COPY_CLASSES, USERMODE_CLASSES = (HOPPER_CHANNEL_GPFIFO_A, AMPERE_CHANNEL_GPFIFO_A), \
  (HOPPER_DMA_COPY_A, AMPERE_DMA_COPY_B, AMPERE_DMA_COPY_A), (HOPPER_USERMODE_A, AMPERE_USERMODE_A)

class NV0080_ALLOC_PARAMETERS(Struct):
  _fields_ = [("deviceId", u32), ("hClientShare", u32), ("hTargetClient", u32), ("hTargetDevice", u32), ("flags", u32),
              ("vaSpaceSize", u64), ("vaStartInternal", u64), ("vaLimitInternal", u64), ("vaMode", u32)]
NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES = 2
class NV2080_ALLOC_PARAMETERS(Struct):
  _fields_ = [("subDeviceId", u32)]
class NV_VASPACE_ALLOCATION_PARAMETERS(Struct):
  _fields_ = [("index", u32), ("flags", u32), ("vaSize", u64), ("vaStartInternal", u64), ("vaLimitInternal", u64), ("bigPageSize", u32),
              ("vaBase", u64), ("pasid", u32)]
NV_VASPACE_ALLOCATION_FLAGS_IS_EXTERNALLY_OWNED, NV_VASPACE_ALLOCATION_FLAGS_ENABLE_PAGE_FAULTING = 1 << 3, 1 << 6
class NV_MEMORY_ALLOCATION_PARAMS(Struct):
  _fields_ = [("owner", u32), ("type", u32), ("flags", u32), ("width", u32), ("height", u32), ("pitch", s32), ("attr", u32), ("attr2", u32),
              ("format", u32), ("comprCovg", u32), ("zcullCovg", u32), ("rangeLo", u64), ("rangeHi", u64), ("size", u64), ("alignment", u64),
              ("offset", u64), ("limit", u64), ("address", u64), ("ctagOffset", u32), ("hVASpace", u32), ("internalflags", u32),
              ("tag", u32), ("numaNode", s32)]
NVOS32_TYPE_IMAGE = 0
NVOS32_ALLOC_FLAGS_IGNORE_BANK_PLACEMENT, NVOS32_ALLOC_FLAGS_ALIGNMENT_FORCE = 0x1, 0x100
NVOS32_ALLOC_FLAGS_MEMORY_HANDLE_PROVIDED, NVOS32_ALLOC_FLAGS_MAP_NOT_REQUIRED = 0x4000, 0x8000
NVOS32_ATTR_PAGE_SIZE_SHIFT, NVOS32_ATTR_PAGE_SIZE_4KB, NVOS32_ATTR_PAGE_SIZE_HUGE = 23, 1, 3
NVOS32_ATTR_PHYSICALITY_SHIFT, NVOS32_ATTR_PHYSICALITY_CONTIGUOUS, NVOS32_ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS = 27, 2, 3
NVOS32_ATTR2_GPU_CACHEABLE_YES, NVOS32_ATTR2_PAGE_SIZE_HUGE_2MB = 1 << 2, 1 << 20
NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS, NVOS02_FLAGS_COHERENCY_CACHED, NVOS02_FLAGS_MAPPING_NO_MAP = 1 << 4, 1 << 12, 1 << 30
class NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS(Struct):
  _fields_ = [("hObjectError", u32), ("hObjectEccError", u32), ("hVASpace", u32), ("engineType", u32), ("bIsCallingContextVgpuPlugin", u8)]
NV2080_ENGINE_TYPE_GRAPHICS = 1
class NV_CTXSHARE_ALLOCATION_PARAMETERS(Struct):
  _fields_ = [("hVASpace", u32), ("flags", u32), ("subctxId", u32)]
NV_CTXSHARE_ALLOCATION_FLAGS_SUBCONTEXT_ASYNC = 1
class NV_MEMORY_DESC_PARAMS(Struct):
  _fields_ = [("base", u64), ("size", u64), ("addressSpace", u32), ("cacheAttrib", u32)]
NV_MAX_SUBDEVICES = 8
class NV_CHANNEL_ALLOC_PARAMS(Struct):
  _fields_ = [("hObjectError", u32), ("hObjectBuffer", u32), ("gpFifoOffset", u64), ("gpFifoEntries", u32), ("flags", u32),
              ("hContextShare", u32), ("hVASpace", u32), ("hUserdMemory", u32 * NV_MAX_SUBDEVICES), ("userdOffset", u64 * NV_MAX_SUBDEVICES),
              ("engineType", u32), ("cid", u32), ("subDeviceId", u32), ("hObjectEccError", u32), ("instanceMem", NV_MEMORY_DESC_PARAMS),
              ("userdMem", NV_MEMORY_DESC_PARAMS), ("ramfcMem", NV_MEMORY_DESC_PARAMS), ("mthdbufMem", NV_MEMORY_DESC_PARAMS),
              ("hPhysChannelGroup", u32), ("internalFlags", u32), ("errorNotifierMem", NV_MEMORY_DESC_PARAMS),
              ("eccErrorNotifierMem", NV_MEMORY_DESC_PARAMS), ("ProcessID", u32), ("SubProcessID", u32), ("encryptIv", u32 * 3),
              ("decryptIv", u32 * 3), ("hmacNonce", u32 * 8), ("tpcConfigID", u32)]

# alloc parameter struct per class (None: the class takes no parameters)
ALLOC_PARAMS: dict[int, type | None] = {NV01_ROOT_CLIENT: None, NV01_DEVICE_0: NV0080_ALLOC_PARAMETERS, NV20_SUBDEVICE_0: NV2080_ALLOC_PARAMETERS,
  NV01_MEMORY_LOCAL_USER: NV_MEMORY_ALLOCATION_PARAMS, FERMI_VASPACE_A: NV_VASPACE_ALLOCATION_PARAMETERS,
  KEPLER_CHANNEL_GROUP_A: NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS, FERMI_CONTEXT_SHARE_A: NV_CTXSHARE_ALLOCATION_PARAMETERS,
  **{c: NV_CHANNEL_ALLOC_PARAMS for c in GPFIFO_CLASSES}, **{c: None for c in (*COMPUTE_ARCH, *COPY_CLASSES, *USERMODE_CLASSES)}}

# ---------------- RM controls ----------------
NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2, NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2 = 0x205, 0x800292
NV2080_CTRL_CMD_GPU_GET_NAME_STRING, NV2080_CTRL_CMD_GPU_GET_GID_INFO = 0x20800110, 0x2080014A
NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN = 0xA06C0101, 0xC36F0108
class NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS(Struct):
  _fields_ = [("gpuId", u32), ("gpuFlags", u32), ("deviceInstance", u32), ("subDeviceInstance", u32), ("sliStatus", u32), ("boardId", u32),
              ("gpuInstance", u32), ("numaId", s32)]
class NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS(Struct):
  _fields_ = [("numClasses", u32), ("classList", u32 * 200)]
class NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS(Struct):
  _fields_ = [("gpuNameStringFlags", u32), ("ascii", u8 * 128)]  # a union of 64 u8 / 64 u16: 128 bytes
class NV2080_CTRL_GPU_GET_GID_INFO_PARAMS(Struct):
  _fields_ = [("index", u32), ("flags", u32), ("length", u32), ("data", u8 * 256)]
NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY = 2
class NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS(Struct):
  _fields_ = [("bEnable", u8), ("bSkipSubmit", u8), ("bSkipEnable", u8)]
class NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS(Struct):
  _fields_ = [("workSubmitToken", u32)]
CONTROL_PARAMS: dict[int, type] = {NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2: NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS,
  NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2: NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS,
  NV2080_CTRL_CMD_GPU_GET_NAME_STRING: NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS,
  NV2080_CTRL_CMD_GPU_GET_GID_INFO: NV2080_CTRL_GPU_GET_GID_INFO_PARAMS, NVA06C_CTRL_CMD_GPFIFO_SCHEDULE: NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS,
  NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN: NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS}

for _cls, _size in ((NV0080_ALLOC_PARAMETERS, 56), (NV_VASPACE_ALLOCATION_PARAMETERS, 56), (NV_MEMORY_ALLOCATION_PARAMS, 128),
                    (NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS, 20), (NV_CTXSHARE_ALLOCATION_PARAMETERS, 12), (NV_MEMORY_DESC_PARAMS, 24),
                    (NV_CHANNEL_ALLOC_PARAMS, 368), (NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, 32), (NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS, 804),
                    (NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS, 132), (NV2080_CTRL_GPU_GET_GID_INFO_PARAMS, 268),
                    (NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS, 3)):
  _check(_cls, _size)

# ---------------- /dev/nvidia-uvm (uvm_ioctl.h, uvm_linux_ioctl.h): the request number is the command itself ----------------
UVM_INITIALIZE, UVM_REGISTER_GPU_VASPACE, UVM_REGISTER_CHANNEL, UVM_MAP_EXTERNAL_ALLOCATION = 0x30000001, 25, 27, 33
UVM_FREE, UVM_REGISTER_GPU, UVM_CREATE_EXTERNAL_RANGE, UVM_MM_INITIALIZE = 34, 37, 73, 75
NV_WARN_NOTHING_TO_DO = 0x10006
UVM_MAX_GPUS = 256
class NvProcessorUuid(Struct):
  _fields_ = [("uuid", u8 * 16)]
class UVM_INITIALIZE_PARAMS(Struct):
  _fields_ = [("flags", u64), ("rmStatus", u32)]
class UVM_REGISTER_GPU_PARAMS(Struct):
  _fields_ = [("gpu_uuid", NvProcessorUuid), ("numaEnabled", u8), ("numaNodeId", s32), ("rmCtrlFd", s32), ("hClient", u32),
              ("hSmcPartRef", u32), ("rmStatus", u32)]
class UVM_REGISTER_GPU_VASPACE_PARAMS(Struct):
  _fields_ = [("gpuUuid", NvProcessorUuid), ("rmCtrlFd", s32), ("hClient", u32), ("hVaSpace", u32), ("rmStatus", u32)]
class UVM_REGISTER_CHANNEL_PARAMS(Struct):
  _fields_ = [("gpuUuid", NvProcessorUuid), ("rmCtrlFd", s32), ("hClient", u32), ("hChannel", u32), ("base", u64), ("length", u64),
              ("rmStatus", u32)]
class UvmGpuMappingAttributes(Struct):
  _fields_ = [("gpuUuid", NvProcessorUuid), ("gpuMappingType", u32), ("gpuCachingType", u32), ("gpuFormatType", u32),
              ("gpuElementBits", u32), ("gpuCompressionType", u32)]
UVM_GPU_MAPPING_TYPE_READ_WRITE = 1
class UVM_MAP_EXTERNAL_ALLOCATION_PARAMS(Struct):
  _fields_ = [("base", u64), ("length", u64), ("offset", u64), ("perGpuAttributes", UvmGpuMappingAttributes * UVM_MAX_GPUS),
              ("gpuAttributesCount", u64), ("rmCtrlFd", s32), ("hClient", u32), ("hMemory", u32), ("rmStatus", u32)]
class UVM_MM_INITIALIZE_PARAMS(Struct):
  _fields_ = [("uvmFd", s32), ("rmStatus", u32)]
class UVM_FREE_PARAMS(Struct):
  _fields_ = [("base", u64), ("length", u64), ("rmStatus", u32)]
class UVM_CREATE_EXTERNAL_RANGE_PARAMS(Struct):
  _fields_ = [("base", u64), ("length", u64), ("rmStatus", u32)]
UVM_STRUCTS: dict[int, type] = {UVM_INITIALIZE: UVM_INITIALIZE_PARAMS, UVM_REGISTER_GPU_VASPACE: UVM_REGISTER_GPU_VASPACE_PARAMS,
  UVM_REGISTER_CHANNEL: UVM_REGISTER_CHANNEL_PARAMS, UVM_MAP_EXTERNAL_ALLOCATION: UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, UVM_FREE: UVM_FREE_PARAMS,
  UVM_REGISTER_GPU: UVM_REGISTER_GPU_PARAMS, UVM_CREATE_EXTERNAL_RANGE: UVM_CREATE_EXTERNAL_RANGE_PARAMS, UVM_MM_INITIALIZE: UVM_MM_INITIALIZE_PARAMS}

for _cls, _size in ((UVM_INITIALIZE_PARAMS, 16), (UVM_REGISTER_GPU_PARAMS, 40), (UVM_REGISTER_GPU_VASPACE_PARAMS, 32),
                    (UVM_REGISTER_CHANNEL_PARAMS, 56), (UvmGpuMappingAttributes, 36), (UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, 9264),
                    (UVM_FREE_PARAMS, 24), (UVM_MM_INITIALIZE_PARAMS, 8), (UVM_CREATE_EXTERNAL_RANGE_PARAMS, 24)):
  _check(_cls, _size)

# ---------------- RM status codes worth naming in errors (nvstatuscodes.h) ----------------
RM_STATUS = {0x0: "NV_OK", 0x3: "NV_ERR_BUSY_RETRY", 0x11: "NV_ERR_IN_USE", 0x1F: "NV_ERR_INVALID_ARGUMENT", 0x22: "NV_ERR_INVALID_CLASS",
             0x24: "NV_ERR_INVALID_CLIENT", 0x26: "NV_ERR_INVALID_DEVICE", 0x33: "NV_ERR_INVALID_OBJECT_HANDLE",
             0x36: "NV_ERR_INVALID_OBJECT_PARENT", 0x39: "NV_ERR_INVALID_PARAM_STRUCT", 0x3D: "NV_ERR_INVALID_STATE",
             0x40: "NV_ERR_INSUFFICIENT_PERMISSIONS", 0x45: "NV_ERR_NO_MEMORY", 0x51: "NV_ERR_NOT_SUPPORTED", 0x56: "NV_ERR_OBJECT_NOT_FOUND",
             0x5A: "NV_ERR_OPERATING_SYSTEM", 0x62: "NV_ERR_STATE_IN_USE"}

def status_name(status: int) -> str:
  """"NV_ERR_X (0xNN)" for an RM/UVM status code."""
  return f"{RM_STATUS.get(status, 'status')} ({status:#x})"

# ---------------- the OS seam ----------------
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x1, 0x2, 0x10, 0x20, 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value

class Kernel:
  """The real OS: open/close/ioctl/mmap/munmap through libc, MMIO writes as volatile stores. The mock replaces this object."""
  def __init__(self):
    self.libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    self.libc.ioctl.argtypes, self.libc.ioctl.restype = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p], ctypes.c_int
    self.libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    self.libc.mmap.restype = ctypes.c_void_p
    self.libc.munmap.argtypes, self.libc.munmap.restype = [ctypes.c_void_p, ctypes.c_size_t], ctypes.c_int

  def open(self, path: str) -> int:
    """Open a device node read/write (close-on-exec)."""
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)
  def close(self, fd: int) -> None: os.close(fd)
  def ioctl(self, fd: int, request: int, arg: Any) -> None:
    """ioctl(fd, request, &arg); OSError on failure."""
    if self.libc.ioctl(fd, request, ctypes.addressof(arg)) < 0:
      e = ctypes.get_errno()
      raise OSError(e, f"ioctl {request:#x} on fd {fd} failed: {os.strerror(e)}")
  def mmap(self, addr: int | None, size: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap; returns the address, OSError on failure."""
    res = self.libc.mmap(addr, size, prot, flags, fd, offset)
    if res is None or res == MAP_FAILED:
      e = ctypes.get_errno()
      raise OSError(e, f"mmap of {size:#x} bytes at {addr or 0:#x} (fd {fd}) failed: {os.strerror(e)}")
    return res
  def munmap(self, addr: int, size: int) -> None:
    if self.libc.munmap(addr, size) != 0: raise OSError(ctypes.get_errno(), f"munmap({addr:#x}, {size:#x}) failed")
  def mmio_write32(self, addr: int, value: int) -> None:
    """A 32-bit store to device registers (the doorbell)."""
    ctypes.c_uint32.from_address(addr).value = value
  def memory_fence(self) -> None:
    """Order earlier stores to shared memory before the next MMIO store (x86 stores are ordered; ctypes calls are barriers)."""

def driver_version_file() -> str | None:
  """The version from /proc/driver/nvidia/version ("580.159.04"), or None when it is unreadable."""
  try:
    with open("/proc/driver/nvidia/version") as f: text = f.read()
  except OSError: return None
  for word in text.split():
    if word.count(".") >= 1 and word.split(".")[0].isdigit() and len(word.split(".")[0]) == 3: return word
  return None

def version_refusal(version: str) -> str | None:
  """None when the NV device knows the structures of driver `version`, else a sentence naming it."""
  try: major = int(version.split(".")[0])
  except ValueError: return f"the NVIDIA driver reports an unreadable version {version!r}; the NV device can't check its structures"
  if major in VERIFIED_DRIVER_MAJORS: return None
  return (f"NVIDIA driver {version} is not supported by the NV device: its RM/UVM structures were verified for driver "
          f"{', '.join(map(str, VERIFIED_DRIVER_MAJORS))}.x only; use the CUDA device (DEV=CUDA) with this driver")
