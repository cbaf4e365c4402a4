"""A fake NVIDIA kernel driver and GPU for tests without hardware. `MockKernel` stands in for `ioctl.Kernel`: it keeps the RM
object tree and the UVM mappings, and on each doorbell runs the channel's GPFIFO, checking what the driver sent:

- ioctl request numbers carry the size of the structure each escape takes, and alloc/control parameter sizes match the class
  or command; every object's parent has an allowed class; handles exist;
- every GPFIFO entry points into GPU-mapped memory; method headers parse, their counts fit, methods are known for the class
  bound to the subchannel;
- QMDs have the version the compute class uses and fields within limits, their code and constant banks in mapped memory;
- semaphore releases never go backwards at one address, and an acquire that could never be satisfied is an error.

Kernels are not executed (there is no SASS interpreter): launches are recorded in `launches` for tests to inspect. Copies,
semaphores and QMD release semaphores are carried out on the process's memory, which backs every GPU address here.
"""
from __future__ import annotations
import ctypes, itertools, time
from dataclasses import dataclass, field
from typing import Any
from tg_driver_nv.nv import ioctl as I
from tg_driver_nv.nv import queue as Q
from tg_driver_nv.nv.qmd import QMD_SIZES, qmd_get, qmd_version_of

class MockError(AssertionError):
  """The driver sent something the real kernel driver or GPU would reject or hang on."""

# allowed parent classes per class (None: the client itself)
PARENTS: dict[int, tuple[Any, ...]] = {I.NV01_DEVICE_0: (I.NV01_ROOT_CLIENT,), I.NV20_SUBDEVICE_0: (I.NV01_DEVICE_0,),
  I.NV01_MEMORY_LOCAL_USER: (I.NV01_DEVICE_0,), I.NV01_MEMORY_SYSTEM_OS_DESCRIPTOR: (I.NV01_DEVICE_0,), I.FERMI_VASPACE_A: (I.NV01_DEVICE_0,),
  I.KEPLER_CHANNEL_GROUP_A: (I.NV01_DEVICE_0,), I.FERMI_CONTEXT_SHARE_A: (I.KEPLER_CHANNEL_GROUP_A,),
  **{c: (I.NV20_SUBDEVICE_0,) for c in I.USERMODE_CLASSES}, **{c: (I.KEPLER_CHANNEL_GROUP_A,) for c in I.GPFIFO_CLASSES},
  **{c: I.GPFIFO_CLASSES for c in (*I.COMPUTE_ARCH, *I.COPY_CLASSES)}}
# which class each control command runs on (the command's top 16 bits name the interface's class)
CONTROL_CLASS = {0x0000: (I.NV01_ROOT_CLIENT,), 0x0080: (I.NV01_DEVICE_0,), 0x2080: (I.NV20_SUBDEVICE_0,),
                 0xA06C: (I.KEPLER_CHANNEL_GROUP_A,), 0xC36F: I.GPFIFO_CLASSES}
CTL_ONLY = {I.NV_ESC_CARD_INFO, I.NV_ESC_CHECK_VERSION_STR, I.NV_ESC_RM_FREE, I.NV_ESC_RM_CONTROL, I.NV_ESC_RM_ALLOC, I.NV_ESC_RM_MAP_MEMORY}
DEV_ONLY = {I.NV_ESC_REGISTER_FD, I.NV_ESC_RM_ALLOC_MEMORY}
STATUS_BAD_PARENT, STATUS_BAD_HANDLE, STATUS_BAD_PARAM, STATUS_BAD_CLASS = 0x36, 0x33, 0x39, 0x22
COMPUTE_METHODS = {Q.NVC6C0_SET_OBJECT, Q.NVC6C0_SET_SHADER_SHARED_MEMORY_WINDOW_A, Q.NVC6C0_SET_SHADER_SHARED_MEMORY_WINDOW_A + 4,
                   Q.NVC6C0_SEND_PCAS_A, Q.NVC6C0_SEND_SIGNALING_PCAS2_B, Q.NVC6C0_INVALIDATE_SHADER_CACHES_NO_WFI,
                   *(Q.NVC6C0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A + 4 * i for i in range(3)),
                   *(Q.NVC6C0_SET_SHADER_LOCAL_MEMORY_A + 4 * i for i in range(2)),
                   *(Q.NVC6C0_SET_SHADER_LOCAL_MEMORY_WINDOW_A + 4 * i for i in range(2))}
COPY_METHODS = {0, Q.NVC8B5_LAUNCH_DMA, Q.NVC8B5_LINE_LENGTH_IN, *(Q.NVC8B5_OFFSET_IN_UPPER + 4 * i for i in range(4))}
HOST_METHODS = {Q.NVC56F_SEM_ADDR_LO + 4 * i for i in range(5)}

@dataclass
class RMObject:
  handle: int
  cls: int
  parent: int
  params: Any = None
  children: list[int] = field(default_factory=list)

@dataclass
class Launch:
  """One QMD the mock GPU received: its fields, and the raw bytes of constant bank 0."""
  qmd: bytes
  grid: tuple[int, int, int]
  block: tuple[int, int, int]
  registers: int
  program: int
  cbuf0: bytes

class MockKernel:
  """A stand-in for `ioctl.Kernel` backed by a fake RM, fake UVM and a GPU model; see the module docstring."""
  _instances = itertools.count()

  def __init__(self, version: str = "580.159.04", gpu_name: str = "NVIDIA H100 80GB HBM3 (mock)", stall: bool = False):
    self.real = I.Kernel()
    n = next(MockKernel._instances)
    if n >= 20: raise RuntimeError("too many MockKernels in one process: each reserves its own 16 GiB of address space")
    self.va_range = (0x98_0000_0000 + n * 0x4_0000_0000, 0x4_0000_0000)  # below 1 TiB, apart from the real device's range
    self.version, self.gpu_name, self.stall = version, gpu_name, stall
    self.fds: dict[int, str] = {}
    self.ctl_fds: set[int] = set()
    self.registered: set[int] = set()
    self.uvm_init: set[int] = set()
    self.next_fd, self.next_handle = 1000, 0xCAF00000
    self.objects: dict[int, RMObject] = {}
    self.pending_map: dict[int, int] = {}  # device fd -> memory handle the next mmap maps
    self.mem_backing: dict[int, tuple[int, int]] = {}  # memory handle -> (CPU/GPU address, size) once mapped
    self.ranges: list[tuple[int, int]] = []  # UVM external ranges
    self.gpu_mapped: dict[int, tuple[int, int]] = {}  # va -> (size, memory handle)
    self.uuid = bytes(range(16))
    self.uvm_gpu_registered, self.uvm_vaspace = False, None
    self.doorbell: int | None = None
    self.tokens: dict[int, int] = {}  # work-submit token -> channel handle
    self.channel_state: dict[int, dict] = {}
    self.released: dict[int, int] = {}  # semaphore address -> last value released
    self.launches: list[Launch] = []
    self.copies: list[tuple[int, int, int]] = []
    self.log: list[str] = []

  # ---------------- files and memory ----------------
  def open(self, path: str) -> int:
    if path not in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0"): raise FileNotFoundError(2, f"mock has no {path}")
    fd, self.next_fd = self.next_fd, self.next_fd + 1
    self.fds[fd] = path
    if path == "/dev/nvidiactl": self.ctl_fds.add(fd)
    return fd
  def close(self, fd: int) -> None:
    if self.fds.pop(fd, None) is None: raise MockError(f"close of fd {fd}, which isn't open")
  def memory_fence(self) -> None: pass

  def mmap(self, addr: int | None, size: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    if fd == -1: return self.real.mmap(addr, size, prot, flags, -1, offset)
    if self.fds.get(fd) != "/dev/nvidia0": raise MockError(f"mmap of fd {fd} ({self.fds.get(fd)}): only /dev/nvidiaN files map GPU memory")
    if (hmem := self.pending_map.pop(fd, None)) is None: raise MockError(f"mmap of fd {fd} without NV_ESC_RM_MAP_MEMORY first")
    anon = I.MAP_SHARED | I.MAP_ANONYMOUS | (I.MAP_FIXED if flags & I.MAP_FIXED else 0)
    got = self.real.mmap(addr, size, prot, anon, -1, 0)
    if self.objects[hmem].cls in I.USERMODE_CLASSES: self.doorbell = got + Q.DOORBELL_OFFSET
    else: self.mem_backing[hmem] = (got, size)
    return got
  def munmap(self, addr: int, size: int) -> None: self.real.munmap(addr, size)

  def mmio_write32(self, addr: int, value: int) -> None:
    ctypes.c_uint32.from_address(addr).value = value
    if addr == self.doorbell and not self.stall:
      if value not in self.tokens: raise MockError(f"doorbell rung with token {value}, which no channel has")
      self.run_channel(self.tokens[value])

  def mapped(self, addr: int, size: int) -> bool:
    """Whether [addr, addr+size) lies inside one GPU-mapped allocation."""
    return any(va <= addr and addr + size <= va + n for va, (n, _) in self.gpu_mapped.items())

  # ---------------- ioctls ----------------
  def ioctl(self, fd: int, request: int, arg: Any) -> None:
    path = self.fds.get(fd)
    if path is None: raise OSError(9, f"ioctl on fd {fd}, which isn't open")
    if path == "/dev/nvidia-uvm": return self._uvm(fd, request, arg)
    nr, size = request & 0xFF, I.ioc_size(request)
    if (request >> 8) & 0xFF != I.NV_IOCTL_MAGIC: raise MockError(f"ioctl {request:#x} lacks the 'F' magic")
    if nr not in I.ESCAPE_STRUCTS: raise MockError(f"unknown NVIDIA escape {nr:#x}")
    want = ctypes.sizeof(I.ESCAPE_STRUCTS[nr])
    if size != want or ctypes.sizeof(arg) != want:
      raise MockError(f"escape {nr:#x} takes {want} bytes; the request number says {size}, the argument has {ctypes.sizeof(arg)}")
    if nr in CTL_ONLY and fd not in self.ctl_fds: raise MockError(f"escape {nr:#x} must go to /dev/nvidiactl, not {path}")
    if nr in DEV_ONLY and fd in self.ctl_fds: raise MockError(f"escape {nr:#x} must go to /dev/nvidiaN, not /dev/nvidiactl")
    if nr not in (I.NV_ESC_REGISTER_FD, I.NV_ESC_CHECK_VERSION_STR, I.NV_ESC_CARD_INFO) and fd not in self.ctl_fds and fd not in self.registered:
      raise MockError(f"escape {nr:#x} on {path} fd {fd} before NV_ESC_REGISTER_FD")
    getattr(self, f"_esc_{nr:x}")(fd, arg)

  def _esc_c8(self, fd: int, cards: Any) -> None:  # NV_ESC_CARD_INFO
    cards[0].valid, cards[0].gpu_id, cards[0].minor_number = 1, 0x100, 0
  def _esc_c9(self, fd: int, arg: Any) -> None:  # NV_ESC_REGISTER_FD
    if arg.ctl_fd not in self.ctl_fds: raise MockError(f"NV_ESC_REGISTER_FD names fd {arg.ctl_fd}, not a /dev/nvidiactl file")
    self.registered.add(fd)
  def _esc_d2(self, fd: int, arg: Any) -> None:  # NV_ESC_CHECK_VERSION_STR
    if arg.cmd != I.NV_RM_API_VERSION_CMD_QUERY: raise MockError("the driver must query the version, not assert one")
    arg.versionString, arg.reply = self.version.encode(), 1

  def _new_handle(self, want: int) -> int:
    if want:
      if want in self.objects: raise MockError(f"handle {want:#x} is already in use")
      return want
    self.next_handle += 1
    return self.next_handle

  def _check_parent(self, cls: int, parent: int) -> int:
    if cls == I.NV01_ROOT_CLIENT: return 0
    if (p := self.objects.get(parent)) is None: return STATUS_BAD_HANDLE
    if p.cls not in PARENTS.get(cls, ()): return STATUS_BAD_PARENT
    return 0

  def _esc_2b(self, fd: int, p: I.NVOS21_PARAMETERS) -> None:  # NV_ESC_RM_ALLOC
    if p.hClass not in I.ALLOC_PARAMS: p.status = STATUS_BAD_CLASS; return
    if p.hClass != I.NV01_ROOT_CLIENT and p.hRoot not in self.objects: p.status = STATUS_BAD_HANDLE; return
    if (st := self._check_parent(p.hClass, p.hObjectParent)): p.status = st; return
    ptype = I.ALLOC_PARAMS[p.hClass]
    if (ptype is None and (p.paramsSize or p.pAllocParms)) or (ptype is not None and p.paramsSize != ctypes.sizeof(ptype)):
      p.status = STATUS_BAD_PARAM; return
    params = None if ptype is None else ptype.from_buffer_copy((ctypes.c_char * p.paramsSize).from_address(p.pAllocParms))
    h = self._new_handle(p.hObjectNew)
    self._validate_alloc(p.hClass, params)
    self.objects[h] = RMObject(h, p.hClass, p.hObjectParent, params)
    if p.hObjectParent in self.objects: self.objects[p.hObjectParent].children.append(h)
    p.hObjectNew, p.status = h, 0
    if p.hClass in I.GPFIFO_CLASSES: self.channel_state[h] = {"get": 0, "subc": {}, "sem": [0] * 5, "ce": [0] * 4, "len": 0, "qmd": 0}

  def _validate_alloc(self, cls: int, params: Any) -> None:
    if cls == I.NV01_MEMORY_LOCAL_USER and (params.size == 0 or params.limit != params.size - 1 or params.size % params.alignment):
      raise MockError(f"video memory alloc with size {params.size:#x}, limit {params.limit:#x}, alignment {params.alignment:#x}")
    if cls in I.GPFIFO_CLASSES:
      for h in (params.hObjectError, params.hUserdMemory[0], params.hContextShare):
        if h not in self.objects: raise MockError(f"channel alloc names handle {h:#x}, which doesn't exist")
      if self.objects[params.hContextShare].cls != I.FERMI_CONTEXT_SHARE_A: raise MockError("hContextShare isn't a context share")
      if not self.mapped(params.gpFifoOffset, params.gpFifoEntries * 8): raise MockError("the GPFIFO ring isn't in GPU-mapped memory")

  def _esc_29(self, fd: int, p: I.NVOS00_PARAMETERS) -> None:  # NV_ESC_RM_FREE
    if p.hObjectOld not in self.objects: p.status = STATUS_BAD_HANDLE; return
    def drop(h: int) -> None:
      for c in self.objects[h].children: drop(c)
      del self.objects[h]
    drop(p.hObjectOld)
    p.status = 0

  def _esc_2a(self, fd: int, p: I.NVOS54_PARAMETERS) -> None:  # NV_ESC_RM_CONTROL
    if p.cmd not in I.CONTROL_PARAMS or p.paramsSize != ctypes.sizeof(I.CONTROL_PARAMS[p.cmd]): p.status = STATUS_BAD_PARAM; return
    obj = self.objects.get(p.hObject)
    if obj is None: p.status = STATUS_BAD_HANDLE; return
    if obj.cls not in CONTROL_CLASS[p.cmd >> 16]: raise MockError(f"control {p.cmd:#x} sent to a class {obj.cls:#x} object")
    prm = I.CONTROL_PARAMS[p.cmd].from_address(p.params)
    if p.cmd == I.NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2:
      if prm.gpuId != 0x100: p.status = STATUS_BAD_PARAM; return
      prm.deviceInstance = 0
    elif p.cmd == I.NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2:
      cl = (I.HOPPER_COMPUTE_A, I.HOPPER_CHANNEL_GPFIFO_A, I.HOPPER_DMA_COPY_A, I.HOPPER_USERMODE_A, I.AMPERE_DMA_COPY_B, I.NV20_SUBDEVICE_0)
      prm.numClasses = len(cl)
      prm.classList[:len(cl)] = cl
    elif p.cmd == I.NV2080_CTRL_CMD_GPU_GET_NAME_STRING:
      name = self.gpu_name.encode()[:127]
      ctypes.memmove(ctypes.addressof(prm.ascii), name, len(name))
    elif p.cmd == I.NV2080_CTRL_CMD_GPU_GET_GID_INFO:
      if prm.flags != I.NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY: p.status = STATUS_BAD_PARAM; return
      prm.length = 16
      ctypes.memmove(ctypes.addressof(prm.data), self.uuid, 16)
    elif p.cmd == I.NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN:
      prm.workSubmitToken = len(self.tokens) + 1
      self.tokens[prm.workSubmitToken] = p.hObject
    p.status = 0

  def _esc_4e(self, fd: int, p: I.nv_ioctl_nvos33_parameters_with_fd) -> None:  # NV_ESC_RM_MAP_MEMORY
    obj = self.objects.get(p.params.hMemory)
    if obj is None or (obj.cls != I.NV01_MEMORY_LOCAL_USER and obj.cls not in I.USERMODE_CLASSES):
      p.params.status = STATUS_BAD_HANDLE; return
    if p.fd not in self.registered: raise MockError(f"NV_ESC_RM_MAP_MEMORY names fd {p.fd}, which isn't a registered /dev/nvidiaN file")
    if p.fd in self.pending_map: raise MockError(f"fd {p.fd} already carries a mapping: each CPU mapping needs its own file")
    self.pending_map[p.fd] = p.params.hMemory
    p.params.status = 0

  def _esc_27(self, fd: int, p: I.nv_ioctl_nvos02_parameters_with_fd) -> None:  # NV_ESC_RM_ALLOC_MEMORY
    prm = p.params
    if prm.hClass != I.NV01_MEMORY_SYSTEM_OS_DESCRIPTOR or self._check_parent(prm.hClass, prm.hObjectParent):
      prm.status = STATUS_BAD_PARENT
      return
    if prm.hObjectNew == 0: raise MockError("OS-descriptor memory needs a client-chosen handle")
    h = self._new_handle(prm.hObjectNew)
    self.objects[h] = RMObject(h, prm.hClass, prm.hObjectParent)
    self.objects[prm.hObjectParent].children.append(h)
    self.mem_backing[h] = (prm.pMemory, prm.limit + 1)
    prm.status = 0

  def _uvm(self, fd: int, cmd: int, p: Any) -> None:
    if cmd not in I.UVM_STRUCTS or type(p) is not I.UVM_STRUCTS[cmd]: raise MockError(f"UVM ioctl {cmd} with a {type(p).__name__}")
    if cmd != I.UVM_INITIALIZE and cmd != I.UVM_MM_INITIALIZE and fd not in self.uvm_init: raise MockError("UVM ioctl before UVM_INITIALIZE")
    p.rmStatus = 0
    if cmd == I.UVM_INITIALIZE: self.uvm_init.add(fd)
    elif cmd == I.UVM_MM_INITIALIZE:
      if p.uvmFd not in self.uvm_init or p.uvmFd == fd: raise MockError("UVM_MM_INITIALIZE must name another, initialized UVM file")
    elif cmd == I.UVM_REGISTER_GPU:
      if bytes(p.gpu_uuid.uuid) != self.uuid: raise MockError("UVM_REGISTER_GPU with a UUID the GPU doesn't have")
      self.uvm_gpu_registered = True
    elif cmd == I.UVM_REGISTER_GPU_VASPACE:
      if not self.uvm_gpu_registered or self.objects[p.hVaSpace].cls != I.FERMI_VASPACE_A: raise MockError("bad UVM_REGISTER_GPU_VASPACE")
      self.uvm_vaspace = p.hVaSpace
    elif cmd == I.UVM_REGISTER_CHANNEL:
      if self.objects[p.hChannel].cls not in I.GPFIFO_CLASSES or p.base % 0x1000 or not p.length: raise MockError("bad UVM_REGISTER_CHANNEL")
    elif cmd == I.UVM_CREATE_EXTERNAL_RANGE:
      if p.base % 0x1000 or p.length % 0x1000 or any(b < p.base + p.length and p.base < b + n for b, n in self.ranges):
        raise MockError(f"external range {p.base:#x}+{p.length:#x} is unaligned or overlaps another")
      self.ranges.append((p.base, p.length))
    elif cmd == I.UVM_MAP_EXTERNAL_ALLOCATION:
      if self.uvm_vaspace is None or (p.base, p.length) not in self.ranges: raise MockError("map of an allocation outside a created range")
      if p.gpuAttributesCount != 1 or bytes(p.perGpuAttributes[0].gpuUuid.uuid) != self.uuid: raise MockError("map for an unknown GPU")
      if (obj := self.objects.get(p.hMemory)) is None or obj.cls not in (I.NV01_MEMORY_LOCAL_USER, I.NV01_MEMORY_SYSTEM_OS_DESCRIPTOR):
        raise MockError(f"map of handle {p.hMemory:#x}, which isn't memory")
      if p.hMemory not in self.mem_backing:  # video memory the CPU never mapped: back the GPU's view with process memory
        self.real.mmap(p.base, p.length, I.PROT_READ | I.PROT_WRITE, I.MAP_PRIVATE | I.MAP_ANONYMOUS | I.MAP_FIXED)
        self.mem_backing[p.hMemory] = (p.base, p.length)
      elif self.mem_backing[p.hMemory][0] != p.base: raise MockError("GPU and CPU addresses of an allocation differ")
      self.gpu_mapped[p.base] = (p.length, p.hMemory)
    elif cmd == I.UVM_FREE:
      if (p.base, p.length) not in self.ranges: raise MockError(f"UVM_FREE of {p.base:#x}, which isn't a range")
      self.ranges.remove((p.base, p.length))
      if (m := self.gpu_mapped.pop(p.base, None)) is not None: self.mem_backing.pop(m[1], None)

  # ---------------- the GPU ----------------
  def run_channel(self, hchan: int) -> None:
    """Process `hchan`'s GPFIFO entries from GP_GET up to GP_PUT, then advance GP_GET."""
    prm, st = self.objects[hchan].params, self.channel_state[hchan]
    userd = self.mem_backing[prm.hUserdMemory[0]][0] + prm.userdOffset[0]
    put = ctypes.c_uint32.from_address(userd + Q.USERD_GP_PUT).value
    if put >= prm.gpFifoEntries: raise MockError(f"GP_PUT {put} is past the ring's {prm.gpFifoEntries} entries")
    while st["get"] != put:
      addr, n = Q.parse_gpfifo_entry(ctypes.c_uint64.from_address(prm.gpFifoOffset + 8 * st["get"]).value)
      if not self.mapped(addr, 4 * n): raise MockError(f"GPFIFO entry {st['get']} points at {n} words at {addr:#x}, outside mapped memory")
      self._run_words(hchan, st, list((ctypes.c_uint32 * n).from_address(addr)))
      st["get"] = (st["get"] + 1) % prm.gpFifoEntries
    ctypes.c_uint32.from_address(userd + Q.USERD_GP_GET).value = st["get"]

  def _run_words(self, hchan: int, st: dict, words: list[int]) -> None:
    i = 0
    while i < len(words):
      op, subc, method, count = Q.parse_header(words[i])
      if op != Q.SEC_OP_INC_METHOD or count == 0 or i + 1 + count > len(words):
        raise MockError(f"bad method header {words[i]:#010x} at word {i} of {len(words)}")
      for k, data in enumerate(words[i + 1:i + 1 + count]): self._method(hchan, st, subc, method + 4 * k, data)
      i += 1 + count

  def _method(self, hchan: int, st: dict, subc: int, method: int, data: int) -> None:
    if method in HOST_METHODS:
      st["sem"][(method - Q.NVC56F_SEM_ADDR_LO) // 4] = data
      if method == Q.NVC56F_SEM_EXECUTE: self._semaphore(st["sem"])
      return
    if method == 0:
      kids = [self.objects[c].cls for c in self.objects[hchan].children]
      if data not in kids: raise MockError(f"SET_OBJECT of class {data:#x}, which isn't allocated on this channel ({kids})")
      st["subc"][subc] = data
      return
    cls = st["subc"].get(subc)
    if cls is None: raise MockError(f"method {method:#x} on subchannel {subc}, which has no class bound (SET_OBJECT first)")
    if cls in I.COMPUTE_ARCH:
      if method not in COMPUTE_METHODS: raise MockError(f"unknown compute method {method:#x}")
      if method == Q.NVC6C0_SEND_PCAS_A: st["qmd"] = data << 8
      elif method == Q.NVC6C0_SEND_SIGNALING_PCAS2_B:
        if data != Q.PCAS_ACTION_PREFETCH_SCHEDULE: raise MockError(f"PCAS action {data} isn't PREFETCH_SCHEDULE")
        self._launch(cls, st["qmd"])
    else:
      if method not in COPY_METHODS: raise MockError(f"unknown copy method {method:#x}")
      if Q.NVC8B5_OFFSET_IN_UPPER <= method < Q.NVC8B5_OFFSET_IN_UPPER + 16: st["ce"][(method - Q.NVC8B5_OFFSET_IN_UPPER) // 4] = data
      elif method == Q.NVC8B5_LINE_LENGTH_IN: st["len"] = data
      elif method == Q.NVC8B5_LAUNCH_DMA:
        src, dst, n = (st["ce"][0] << 32) | st["ce"][1], (st["ce"][2] << 32) | st["ce"][3], st["len"]
        if not (self.mapped(src, n) and self.mapped(dst, n)): raise MockError(f"copy of {n} bytes {src:#x} -> {dst:#x} touches unmapped memory")
        ctypes.memmove(dst, src, n)
        self.copies.append((dst, src, n))

  def _semaphore(self, sem: list[int]) -> None:
    addr, value, op = sem[0] | ((sem[1] & 0xFF) << 32), sem[2] | (sem[3] << 32), sem[4]
    if not self.mapped(addr, 16 if op & Q.SEM_RELEASE_TIMESTAMP else 8): raise MockError(f"semaphore at {addr:#x} isn't in mapped memory")
    if not op & Q.SEM_PAYLOAD_64BIT: raise MockError("the driver's semaphores are 64-bit")
    slot = (ctypes.c_uint64 * 2).from_address(addr)
    if op & 7 == Q.SEM_OP_RELEASE:
      # compared with what the slot holds now: the host may reset a slot it recycles, but a release never lowers a value
      if value < slot[0]: raise MockError(f"semaphore at {addr:#x} released {value} while it holds {slot[0]}: went backwards")
      self.released[addr] = value
      slot[0] = value
      if op & Q.SEM_RELEASE_TIMESTAMP: slot[1] = time.monotonic_ns()
    elif op & 7 == Q.SEM_OP_ACQ_CIRC_GEQ:
      if slot[0] < value: raise MockError(f"acquire of {value} on the semaphore at {addr:#x}, which holds {slot[0]} and has no release pending")
    else: raise MockError(f"semaphore operation {op & 7} isn't used by the driver")

  def _launch(self, cls: int, qmd_addr: int) -> None:
    want = 4 if cls == I.HOPPER_COMPUTE_A else 3
    if not self.mapped(qmd_addr, QMD_SIZES[want]): raise MockError(f"QMD at {qmd_addr:#x} isn't in mapped memory")
    q = bytes((ctypes.c_uint8 * QMD_SIZES[want]).from_address(qmd_addr))
    if qmd_version_of(q) != want: raise MockError(f"class {cls:#x} takes QMD version {want}, got {qmd_version_of(q)}")
    grid = tuple(qmd_get(q, f) for f in ("cta_raster_width", "cta_raster_height", "cta_raster_depth"))
    block = tuple(qmd_get(q, f"cta_thread_dimension{i}") for i in range(3))
    if min(grid) < 1 or min(block) < 1 or block[0] * block[1] * block[2] > 1024: raise MockError(f"bad launch grid {grid} block {block}")
    regs = qmd_get(q, "register_count_v")
    if not 0 < regs <= 255 or regs * block[0] * block[1] * block[2] > 65536: raise MockError(f"{regs} registers for {block} threads")
    program = qmd_get(q, "program_address_lower") | (qmd_get(q, "program_address_upper") << 32)
    if not self.mapped(program, 16): raise MockError(f"program at {program:#x} isn't in mapped memory")
    if qmd_get(q, "shared_memory_size") > (227 << 10): raise MockError("more shared memory than an SM has")
    if not qmd_get(q, "constant_buffer_valid0"): raise MockError("constant bank 0 (launch sizes, parameters) isn't bound")
    shift = 6 if want == 4 else 0
    cb = ((qmd_get(q, "constant_buffer_addr_upper0") << 32) | qmd_get(q, "constant_buffer_addr_lower0")) << shift
    cb_size = qmd_get(q, "constant_buffer_size_shifted4_0") * 16
    if not self.mapped(cb, cb_size) or cb_size > 0x10000: raise MockError(f"constant bank 0 at {cb:#x} ({cb_size} bytes) isn't in mapped memory")
    self.launches.append(Launch(q, grid, block, regs, program, bytes((ctypes.c_uint8 * cb_size).from_address(cb))))
    if want == 4 and qmd_get(q, "release0_enable"):
      addr = qmd_get(q, "release0_address_lower") | (qmd_get(q, "release0_address_upper") << 32)
      ctypes.c_uint32.from_address(addr).value = qmd_get(q, "release0_payload_lower")
