"""`NVDevice`: an NVIDIA GPU driven directly through the open kernel module (RM + UVM ioctls) with two GPFIFO channels,
one for compute (QMD launches) and one for the copy engine, ordered by a timeline semaphore in host memory."""
from __future__ import annotations
import ctypes, struct
from typing import Any, Callable
from tg_uop.device import parse_dev
from tg_uop.helpers import round_up
from tg_uop.runtime.allocator import BufferSpec
from tg_uop.runtime.compiler import Compiler
from tg_uop.runtime.hcq import HCQAllocator, HCQBuffer, HCQCompiled, HCQProgram
from tg_uop.runtime.program import check_launch_dims
from tg_uop.runtime.renderer import Renderer
from tg_driver_nv.nv import ioctl as I
from tg_driver_nv.nv.memory import MemoryManager, NVMemory, VASpace, view
from tg_driver_nv.nv.qmd import QMD_SIZES, encode_qmd, parse_cubin, relaunch_qmd, set_cbuf0_address
from tg_driver_nv.nv.queue import (GPFifo, NVComputeQueue, NVCopyQueue, NVQueue, NVSignal, DOORBELL_OFFSET, SUBC_COMPUTE, SUBC_COPY,
  NVC6C0_SET_OBJECT, NVC6C0_SET_SHADER_SHARED_MEMORY_WINDOW_A, NVC6C0_SET_SHADER_LOCAL_MEMORY_WINDOW_A, NVC6C0_SET_SHADER_LOCAL_MEMORY_A,
  NVC6C0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A, hi_lo)
from tg_driver_nv.nv.rm import RMClient

GPFIFO_ENTRIES, RING_SIZE, SIGNAL_POOL, STAGING, CODE_SLACK = 0x4000, 0x200000, 0x10000, 0x1000000, 0x1000
# where shared and local memory appear in generic addresses (Hopper rejects a window below 4 GiB); kernels also read these from
# constant bank 0, with the initial stack pointer
SHARED_WINDOW, LOCAL_WINDOW, STACK_TOP = 0x729300000000, 0x729400000000, 0xFFFDC0
STACK_RESERVE = 0x1000000 - STACK_TOP
MAX_TPCS, THREADS_PER_TPC = 80, 4096  # upper bounds (GH100 has 72 TPCs of 2 SMs x 2048 threads) for sizing local memory
_va_spaces: dict[int, VASpace] = {}
# (kernel, GPU index) -> the hardware state of the first NVDevice opened on that GPU: "NV" and "NV:CUDA" share one RM client,
# channels and timeline (the driver lets a process register a GPU with UVM only once)
_opened: dict[tuple[int, int], dict[str, Any]] = {}

_kernel: I.Kernel | None = None
def _real_kernel() -> I.Kernel:
  global _kernel
  if _kernel is None: _kernel = I.Kernel()
  return _kernel

def _pick(classes: set[int], known: tuple[int, ...], what: str) -> int:
  for c in known:
    if c in classes: return c
  raise RuntimeError(f"this GPU offers none of the {what} classes the NV device knows ({', '.join(f'{c:#x}' for c in known)}): "
                     "it supports Ampere, Ada and Hopper GPUs; use the CUDA device (DEV=CUDA) for others")

class Ring:
  """A bump allocator over CPU-visible GPU memory that wraps; before reusing memory it waits for all earlier work (`drain`)."""
  def __init__(self, mem: NVMemory, drain: Any):
    self.mem, self.drain, self.off = mem, drain, 0
  def take(self, size: int, align: int = 256) -> int:
    """`size` bytes of the ring; its GPU/CPU address."""
    if size > self.mem.size: raise ValueError(f"{size} bytes don't fit a {self.mem.size}-byte ring")
    off = round_up(self.off, align)
    if off + size > self.mem.size:
      self.drain()
      off = 0
    self.off = off + size
    return self.mem.va + off

class PtxasMissing(Compiler):
  """Stands in for the PTX compiler where ptxas isn't installed: memory and copies still work, compiling says what is missing."""
  def __init__(self, arch: str):
    super().__init__(cachekey=None)
    self.arch = arch
  def compile(self, src: str) -> bytes:
    from tg_uop.runtime.compiler import CompileError
    raise CompileError(f"the NV device runs cubins and needs ptxas to assemble PTX for {self.arch}: install the CUDA toolkit "
                       "(or put ptxas on PATH), or render CUDA C instead (DEV=NV:CUDA, compiled by NVRTC)")

class NVAllocator(HCQAllocator):
  """Video memory (2 MB pages from 2 MB up) mapped for the GPU through UVM; copies go through a pinned host staging buffer
  and the copy engine. `BufferSpec(host=True)` gives pinned host memory, `cpu_access=True` video memory the CPU can map."""
  def __init__(self, dev: NVDevice):
    super().__init__(dev.device)
    self.dev = dev

  def _alloc(self, size: int, options: BufferSpec | None) -> HCQBuffer:
    if options is not None and options.external_ptr is not None: return HCQBuffer(options.external_ptr, size)
    host, cpu = (options.host, options.cpu_access) if options is not None else (False, False)
    mem = self.dev.mm.alloc(size, host=host, cpu=cpu)
    return HCQBuffer(mem.va, size, meta=mem)

  def _free(self, opaque: HCQBuffer, size: int, options: BufferSpec | None) -> None:
    if opaque.meta is None: return
    self.dev.synchronize()
    self.dev.mm.free(opaque.meta)

  def _copyin(self, dest: HCQBuffer, src: memoryview) -> None:
    src = src.cast("B") if src.ndim == 1 and src.format == "B" else memoryview(bytes(src)).cast("B")
    for off in range(0, src.nbytes, STAGING):
      n = min(STAGING, src.nbytes - off)
      self.dev.synchronize()  # the staging buffer may still feed an earlier copy
      ctypes.memmove(self.dev.staging.va, (ctypes.c_char * n).from_buffer_copy(src[off:off + n]), n)
      self.dev.copy(dest.va_addr + off, self.dev.staging.va, n)
    self.dev.synchronize()

  def _copyout(self, dest: memoryview, src: HCQBuffer) -> None:
    if dest.readonly: raise ValueError(f"can't copy out of {self.device} into a read-only buffer: pass a bytearray or writable array")
    dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
    for off in range(0, dest.nbytes, STAGING):
      n = min(STAGING, dest.nbytes - off)
      self.dev.copy(self.dev.staging.va, src.va_addr + off, n)
      self.dev.synchronize()
      dest[off:off + n] = view(self.dev.staging)[:n]

  def _transfer(self, dest: HCQBuffer, src: HCQBuffer, nbytes: int) -> None:
    self.dev.copy(dest.va_addr, src.va_addr, nbytes)

class NVProgram(HCQProgram):
  """A cubin kernel: its code (and constant banks) uploaded once; each call writes a QMD and constant bank 0 (launch sizes, the
  shared/local windows, the stack top, then the parameters: 8-byte buffer addresses followed by 32-bit ints)."""
  def __init__(self, device: NVDevice, name: str, lib: bytes):
    super().__init__(device, name, lib)
    self.kernel = parse_cubin(lib, name)
    self.code_addr = device.upload(self.kernel.code)
    self.cbuf_addrs = {bank: device.upload(data) for bank, data in self.kernel.cbufs.items()}
    self.qmd_templates: dict[int, bytearray] = {}  # local memory per thread -> this program's QMD without grid and bank 0
    self.qmd_cache: dict[tuple, bytearray] = {}  # (local, grid, block, bank 0 size) -> the QMD, bank 0's address left to fill
    # the stack starts STACK_RESERVE below the top of the local window (kernels read STACK_TOP from constant bank 0)
    if self.kernel.local_per_thread: device.ensure_local_memory(self.kernel.local_per_thread + STACK_RESERVE)

  def fill_kernargs(self, bufs: tuple[Any, ...], vals: tuple[int, ...]) -> bytes:
    args = b"".join(struct.pack("<Q", getattr(b, "va_addr", b)) for b in bufs) + b"".join(struct.pack("<i", v) for v in vals)
    if self.kernel.param_size and len(args) != self.kernel.param_size:
      raise ValueError(f"kernel {self.name!r} takes {self.kernel.param_size} bytes of parameters, got {len(bufs)} buffers and "
                       f"{len(vals)} ints ({len(args)} bytes)")
    return args

  def launcher(self, global_size: tuple[int, ...], local_size: tuple[int, ...]) -> Callable[..., None]:
    # HCQProgram.__call__ (wait for the timeline, exec, signal its next value) with the queue's encoders called straight, as a
    # launch here records nothing to replay or inspect; the parameter block is kept while the buffers' addresses stay the same
    gs, ls = check_launch_dims(global_size, local_size)
    dev = self.device
    last: tuple = (None, b"")  # (the buffers' addresses, their parameter block)
    def launch(*bufs: Any) -> None:
      nonlocal last
      if (cached := last)[0] != (key := tuple(getattr(b, "va_addr", b) for b in bufs)): cached = last = (key, self.fill_kernargs(bufs, ()))
      sig, wait_value = dev.timeline_signal, dev.timeline_value - 1
      value = dev.next_timeline()
      q = dev.compute_queue_t()
      q.words, q._dev = [], dev
      q._wait(sig, wait_value)
      q._exec(self, cached[1], gs, ls)
      q._signal(sig, value)
      dev.submit_words(q.channel, q.words, value)
      dev.last_queue = q.name
    return launch

def _shared_attr(name: str) -> property:
  return property(lambda self: self.shared[name], lambda self, v: self.shared.__setitem__(name, v))

class NVDevice(HCQCompiled):
  """An NVIDIA GPU through /dev/nvidiactl, /dev/nvidia-uvm and /dev/nvidiaN. `device` is "NV" or "NV:<index>"."""
  def __init__(self, device: str = "NV", renderer: Renderer | None = None, interface: Any = None, kernel: I.Kernel | None = None):
    if interface is not None: raise ValueError(f"the NV device takes no interface (got {interface!r}): use DEV=NV")
    ds = parse_dev(device)
    self.device, self.index = device, ds.index or 0
    kernel = kernel if kernel is not None else _real_kernel()
    if (shared := _opened.get((id(kernel), self.index))) is not None:
      self.__dict__.update(shared["hw"])
      saved = dict(self.shared)  # HCQCompiled's constructor resets the timeline: put the shared one back after it
      super().__init__(device, NVAllocator(self), self._pick_renderer(renderer), self._compiler_for(renderer), NVProgram,
                       NVSignal, NVComputeQueue, NVCopyQueue)
      self.timeline_signal = shared["hw"]["timeline_signal"]
      self.shared.update(saved)
      return
    self.shared: dict[str, Any] = {"timeline_value": 1, "submitted_value": 0, "local_mem": None, "local_per_thread": 0, "last_queue": None}
    self.kernel = kernel
    self.rm = rm = RMClient(self.kernel)
    cards = rm.card_info()
    if self.index >= len(cards): raise RuntimeError(f"NV device index {self.index} does not exist: the driver sees {len(cards)} GPU(s)")
    self.minor = cards[self.index].minor_number
    self.gpu_fd = rm.open_gpu_fd(self.minor)
    info = rm.control(rm.root, I.NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2, I.NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS(gpuId=cards[self.index].gpu_id))
    self.hdevice = rm.alloc(rm.root, 0, I.NV01_DEVICE_0, I.NV0080_ALLOC_PARAMETERS(deviceId=info.deviceInstance, hClientShare=rm.root,
                                                                                     vaMode=I.NV_DEVICE_ALLOCATION_VAMODE_MULTIPLE_VASPACES))
    self.hsubdevice = rm.alloc(self.hdevice, 0, I.NV20_SUBDEVICE_0, I.NV2080_ALLOC_PARAMETERS(subDeviceId=0))
    cl = rm.control(self.hdevice, I.NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2, I.NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS())
    classes = set(cl.classList[:cl.numClasses])
    self.compute_class = _pick(classes, tuple(sorted(I.COMPUTE_ARCH, reverse=True)), "compute")
    self.gpfifo_class, self.copy_class = _pick(classes, I.GPFIFO_CLASSES, "GPFIFO"), _pick(classes, I.COPY_CLASSES, "copy")
    self.usermode_class = _pick(classes, I.USERMODE_CLASSES, "usermode")
    self.arch = I.COMPUTE_ARCH[self.compute_class]
    self.qmd_version = 4 if self.compute_class == I.HOPPER_COMPUTE_A else 3
    name = rm.control(self.hsubdevice, I.NV2080_CTRL_CMD_GPU_GET_NAME_STRING, I.NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS())
    self.name = bytes(name.ascii).split(b"\0")[0].decode(errors="replace")
    gid = rm.control(self.hsubdevice, I.NV2080_CTRL_CMD_GPU_GET_GID_INFO,
                     I.NV2080_CTRL_GPU_GET_GID_INFO_PARAMS(flags=I.NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY, length=16))
    self.uuid = I.NvProcessorUuid(uuid=(ctypes.c_uint8 * 16)(*gid.data[:16]))
    # the doorbell page
    self.husermode = rm.alloc(self.hsubdevice, 0, self.usermode_class, None)
    self.mmio_fd = rm.open_gpu_fd(self.minor)
    rm.map_to_cpu(self.mmio_fd, self.hdevice, self.husermode, 0x10000)
    self.mmio = self.kernel.mmap(None, 0x10000, I.PROT_READ | I.PROT_WRITE, I.MAP_SHARED, self.mmio_fd, 0)
    # the GPU address space, owned by UVM so that host and GPU share addresses
    self.hvaspace = rm.alloc(self.hdevice, 0, I.FERMI_VASPACE_A, I.NV_VASPACE_ALLOCATION_PARAMETERS(vaBase=0x1000, vaSize=0x1FFFFFB000000,
      flags=I.NV_VASPACE_ALLOCATION_FLAGS_ENABLE_PAGE_FAULTING | I.NV_VASPACE_ALLOCATION_FLAGS_IS_EXTERNALLY_OWNED))
    rm.uvm(I.UVM_REGISTER_GPU, I.UVM_REGISTER_GPU_PARAMS(gpu_uuid=self.uuid, rmCtrlFd=-1))
    rm.uvm(I.UVM_REGISTER_GPU_VASPACE, I.UVM_REGISTER_GPU_VASPACE_PARAMS(gpuUuid=self.uuid, rmCtrlFd=rm.fd_ctl, hClient=rm.root,
                                                                         hVaSpace=self.hvaspace))
    if id(self.kernel) not in _va_spaces: _va_spaces[id(self.kernel)] = VASpace(self.kernel, *getattr(self.kernel, "va_range", ()))
    self.va = _va_spaces[id(self.kernel)]
    self.mm = MemoryManager(rm, self.va, self.hdevice, self.minor, self.gpu_fd, self.uuid)
    self._setup_channels()
    self.signal_mem = self.mm.alloc(SIGNAL_POOL, host=True)
    self.free_signals = list(range(self.signal_mem.va, self.signal_mem.va + SIGNAL_POOL, 16))
    self.staging = self.mm.alloc(STAGING, host=True)
    self.code_arena: NVMemory | None = None
    self.code_off = 0
    self.cmd_ring = Ring(self.mm.alloc(RING_SIZE, cpu=True), self._drain)
    self.launch_ring = Ring(self.mm.alloc(RING_SIZE, cpu=True), self._drain)
    super().__init__(device, NVAllocator(self), self._pick_renderer(renderer), self._compiler_for(renderer), NVProgram,
                     NVSignal, NVComputeQueue, NVCopyQueue)
    self._initial_setup()
    keep = {k: v for k, v in self.__dict__.items() if k not in ("device", "allocator", "renderer", "compiler", "runtime")}
    _opened[(id(self.kernel), self.index)] = {"hw": keep}

  # state every NVDevice on one GPU shares: the timeline (the next value to hand out, and the value of the last submission that
  # reached a channel), the local-memory buffer, the queue that submitted last
  timeline_value, submitted_value, local_mem = _shared_attr("timeline_value"), _shared_attr("submitted_value"), _shared_attr("local_mem")
  local_per_thread, last_queue = _shared_attr("local_per_thread"), _shared_attr("last_queue")

  # ---------------- bring-up ----------------
  def _setup_channels(self) -> None:
    rm = self.rm
    self.hchannel_group = rm.alloc(self.hdevice, 0, I.KEPLER_CHANNEL_GROUP_A,
                                   I.NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS(engineType=I.NV2080_ENGINE_TYPE_GRAPHICS))
    self.gpfifo_mem = self.mm.alloc(0x200000, cpu=True, contiguous=True)
    self.error_notifier = self.mm.alloc(0x1000, cpu=True)
    self.hctxshare = rm.alloc(self.hchannel_group, 0, I.FERMI_CONTEXT_SHARE_A,
                              I.NV_CTXSHARE_ALLOCATION_PARAMETERS(hVASpace=self.hvaspace, flags=I.NV_CTXSHARE_ALLOCATION_FLAGS_SUBCONTEXT_ASYNC))
    self.channels: dict[str, GPFifo] = {}
    for i, (name, engine_class) in enumerate((("compute", self.compute_class), ("copy", self.copy_class))):
      off = i * 0x100000
      p = I.NV_CHANNEL_ALLOC_PARAMS(hObjectError=self.error_notifier.hmem, hObjectBuffer=self.gpfifo_mem.hmem,
                                    gpFifoOffset=self.gpfifo_mem.va + off, gpFifoEntries=GPFIFO_ENTRIES, hContextShare=self.hctxshare)
      p.hUserdMemory[0], p.userdOffset[0] = self.gpfifo_mem.hmem, off + GPFIFO_ENTRIES * 8
      hchan = rm.alloc(self.hchannel_group, 0, self.gpfifo_class, p)
      rm.alloc(hchan, 0, engine_class, None)
      token = rm.control(hchan, I.NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN, I.NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS(0xFFFFFFFF))
      chan_base = self.va.alloc(0x4000000, 0x200000)  # UVM maps the channel's context buffers here
      rm.uvm(I.UVM_REGISTER_CHANNEL, I.UVM_REGISTER_CHANNEL_PARAMS(gpuUuid=self.uuid, rmCtrlFd=rm.fd_ctl, hClient=rm.root, hChannel=hchan,
                                                                    base=chan_base, length=0x4000000))
      self.channels[name] = GPFifo(f"{self.device} {name}", self.kernel, self.gpfifo_mem.va + off, GPFIFO_ENTRIES,
                                   self.gpfifo_mem.va + off + GPFIFO_ENTRIES * 8, token.workSubmitToken, self.mmio + DOORBELL_OFFSET, hchan)
    rm.control(self.hchannel_group, I.NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, I.NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS(bEnable=1))

  def _initial_setup(self) -> None:
    q = NVComputeQueue("setup")
    q.method(SUBC_COMPUTE, NVC6C0_SET_OBJECT, self.compute_class)
    q.method(SUBC_COMPUTE, NVC6C0_SET_SHADER_SHARED_MEMORY_WINDOW_A, *hi_lo(SHARED_WINDOW))
    q.method(SUBC_COMPUTE, NVC6C0_SET_SHADER_LOCAL_MEMORY_WINDOW_A, *hi_lo(LOCAL_WINDOW))
    self._submit_raw(q.signal(self.timeline_signal, self.next_timeline()))
    c = NVCopyQueue("setup copy")
    c.method(SUBC_COPY, NVC6C0_SET_OBJECT, self.copy_class)
    self._submit_raw(c.wait(self.timeline_signal, self.timeline_value - 1).signal(self.timeline_signal, self.next_timeline()))
    self.synchronize()

  def _submit_raw(self, q: NVQueue) -> None:
    # a queue whose words were partly written by hand before the recorded commands
    pre = q.words
    q.words, q._dev = [], self
    q.dispatch()
    self.submit_words(q.channel, pre + q.words, q.timeline_value(self))
    self.last_queue = q.name

  def _pick_renderer(self, renderer: Renderer | None) -> Renderer:
    if renderer is not None and renderer.arch is not None and renderer.arch.rstrip("a") != self.arch:
      try: return type(renderer)(self.arch)
      except ValueError as e: raise RuntimeError(f"{type(renderer).__name__} can't target this GPU ({self.arch}): {e}") from e
    if renderer is not None: return renderer
    from tg_uop.plugins.manager import get_plugin_manager
    rends = get_plugin_manager().renderers()
    for name in ("PTX", "CUDA"):
      if name in rends: return rends[name].loader()(self.arch)
    raise ValueError("the NV device needs the PTX or CUDA renderer, and none is registered: pip install tg-codegen")

  def _compiler_for(self, renderer: Renderer | None) -> Compiler:
    from tg_driver_nv.cuda_device import NVRTCCompiler, PTXCompiler
    suffix = getattr(renderer, "suffix", "PTX") if renderer is not None else "PTX"
    if suffix == "CUDA": return NVRTCCompiler(self.arch)
    comp = PTXCompiler(self.arch, use_ptxas=True)
    return comp if comp.ptxas is not None else PtxasMissing(self.arch)

  # ---------------- submission ----------------
  def submit_words(self, channel: str, words: list[int], timeline: int | None = None) -> None:
    """Copy `words` into the command ring and hand them to `channel`'s GPFIFO; `timeline` is the timeline value they signal."""
    if not words: return
    addr = self.cmd_ring.take(4 * len(words), 16)
    (ctypes.c_uint32 * len(words)).from_address(addr)[:] = words
    self.channels[channel].push(addr, len(words), self.device)
    if timeline is not None: self.submitted_value = max(self.submitted_value, timeline)

  def _drain(self) -> None:
    # a ring wraps while a submission is being encoded, after its timeline value was handed out: `synchronize()` would wait for
    # that value, which nothing can signal until the submission it is encoding goes out (a hang after ~2 MB of launches). Every
    # earlier submission has reached a channel, so wait for the last of those.
    self.timeline_signal.wait(self.submitted_value, queue=self.last_queue)

  def new_signal(self, value: int = 0, name: str = "signal") -> NVSignal:
    """A signal slot from the host-memory pool."""
    if not self.free_signals: raise RuntimeError(f"{self.device}: all {SIGNAL_POOL // 16} signal slots are in use")
    return NVSignal(self.device, value, name, addr=self.free_signals.pop(), owner=self)

  def free_signal(self, addr: int) -> None:
    """Return a signal slot to the pool."""
    self.free_signals.append(addr)

  def copy(self, dest: int, src: int, nbytes: int) -> None:
    """Queue a copy-engine transfer of `nbytes` from GPU address `src` to `dest`, ordered on the timeline."""
    q = NVCopyQueue("copy").wait(self.timeline_signal, self.timeline_value - 1).copy(dest, src, nbytes)
    q.signal(self.timeline_signal, self.next_timeline()).submit(self)

  def upload(self, data: bytes) -> int:
    """`data` (kernel code, constant banks) in the code arena, CPU-visible video memory; its address. The arena keeps mapped
    memory past every upload because the instruction and constant caches fetch ahead of what a kernel uses."""
    size = round_up(len(data) + CODE_SLACK, 256)
    if self.code_arena is None or self.code_off + size > self.code_arena.size:
      self.code_arena, self.code_off = self.mm.alloc(max(RING_SIZE, round_up(size, RING_SIZE)), cpu=True), 0
    addr = self.code_arena.va + self.code_off
    ctypes.memmove(addr, data, len(data))
    self.code_off += size
    return addr

  def ensure_local_memory(self, per_thread: int) -> None:
    """Give kernels at least `per_thread` bytes of local memory (stack, spills): grow the buffer and tell the compute class."""
    per_thread = round_up(per_thread, 16)
    if per_thread <= self.local_per_thread: return
    self.synchronize()
    per_tpc = round_up(per_thread * THREADS_PER_TPC, 0x8000)
    mem = self.mm.alloc(per_tpc * MAX_TPCS)
    q = NVComputeQueue("local memory")
    q.method(SUBC_COMPUTE, NVC6C0_SET_SHADER_LOCAL_MEMORY_A, *hi_lo(mem.va))
    q.method(SUBC_COMPUTE, NVC6C0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A, *hi_lo(per_tpc), 0xFF)
    self._submit_raw(q.wait(self.timeline_signal, self.timeline_value - 1).signal(self.timeline_signal, self.next_timeline()))
    self.synchronize()
    if self.local_mem is not None: self.mm.free(self.local_mem)
    self.local_mem, self.local_per_thread = mem, per_thread

  def build_launch(self, prg: NVProgram, args: bytes, gs: tuple[int, int, int], ls: tuple[int, int, int]) -> int:
    """Write constant bank 0 and a QMD for one launch into the launch ring; the QMD's address."""
    k = prg.kernel
    cb_size = round_up(k.param_base + max(len(args), k.param_size), 256)
    qsize = QMD_SIZES[self.qmd_version]
    qmd_addr = self.launch_ring.take(round_up(qsize, 256) + cb_size, 256)
    cb_addr = qmd_addr + round_up(qsize, 256)
    cb = bytearray(cb_size)
    struct.pack_into("<6I3Q", cb, 0, *ls, *gs, SHARED_WINDOW, LOCAL_WINDOW, STACK_TOP)
    cb[k.param_base:k.param_base + len(args)] = args
    local = self.local_per_thread if k.local_per_thread else 0
    # the QMD of a launch shape is built once (encoding fields one by one costs more than the rest of a launch); each launch only
    # points it at its own constant bank 0
    if (base := prg.qmd_cache.get(key := (local, gs, ls, cb_size))) is None:
      if (tmpl := prg.qmd_templates.get(local)) is None:
        cbufs = {0: (0, 0), **{b: (a, len(k.cbufs[b])) for b, a in prg.cbuf_addrs.items()}}
        tmpl = prg.qmd_templates[local] = encode_qmd(program=prg.code_addr, registers=k.registers, shared=k.shared, local_per_thread=local,
                                                     grid=(1, 1, 1), block=(1, 1, 1), cbufs=cbufs, arch=self.arch, version=self.qmd_version)
      if len(prg.qmd_cache) >= 256: prg.qmd_cache.clear()  # symbolic launch sizes: keep the cache bounded
      base = prg.qmd_cache[key] = relaunch_qmd(tmpl, self.qmd_version, gs, ls, (0, cb_size))
    qmd = set_cbuf0_address(base, self.qmd_version, cb_addr)
    ctypes.memmove(cb_addr, bytes(cb), cb_size)
    ctypes.memmove(qmd_addr, bytes(qmd), qsize)
    return qmd_addr

  def finalize(self) -> None:
    """Wait for outstanding work and free cached buffers."""
    self.synchronize()
    self.allocator.free_cache()
