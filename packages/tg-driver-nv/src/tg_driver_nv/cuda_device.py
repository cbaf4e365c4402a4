"""The CUDA device: memory, kernels and timing through the CUDA driver API (libcuda), CUDA C compiled by NVRTC, PTX by the driver.

Buffers are `CUdeviceptr` values (ctypes.c_uint64) in the device's primary context; every call runs on the legacy default
stream, so copies and launches are ordered as they are issued. Every failing driver or NVRTC call raises a RuntimeError naming
the function and the error (MemoryError for out-of-memory, CompileError for rejected source).
"""
from __future__ import annotations
import ctypes, os, re, shutil, subprocess, tempfile, threading
from typing import Any, Callable
from tg_uop.device import parse_dev
from tg_uop.runtime.allocator import BufferSpec, LRUAllocator
from tg_uop.runtime.compiled import Compiled
from tg_uop.runtime.compiler import CompileError, Compiler
from tg_uop.runtime.graph import GraphRunner, Launch
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.renderer import Renderer
from tg_driver_nv.autogen import cuda, nvrtc
from tg_driver_nv.libs import cuda_home, _nvidia_wheel_dirs

# ---------------- errors ----------------

def cu_error(status: int) -> str:
  """"CUDA_ERROR_X (n): description" for a CUresult."""
  name, desc = ctypes.c_char_p(), ctypes.c_char_p()
  if cuda.cuGetErrorName(status, ctypes.byref(name)) != 0: return f"unknown CUresult {status}"
  cuda.cuGetErrorString(status, ctypes.byref(desc))
  return f"{name.value.decode()} ({status}): {(desc.value or b'').decode()}"

def cu_check(status: int, what: str) -> None:
  """Raise a RuntimeError naming `what` (the driver call) and the error when `status` is not CUDA_SUCCESS."""
  if status != 0: raise RuntimeError(f"{what} failed: {cu_error(status)}")

def nvrtc_check(status: int, what: str, log: str = "") -> None:
  """Raise a RuntimeError naming `what` (the NVRTC call) and the error when `status` is not NVRTC_SUCCESS."""
  if status != 0:
    msg = ctypes.string_at(p).decode() if (p := nvrtc.nvrtcGetErrorString(status)) else f"nvrtcResult {status}"
    raise RuntimeError(f"{what} failed: {msg} ({status})" + (f"\n{log}" if log else ""))

# ---------------- compilers ----------------

def _nvrtc_include_dirs() -> list[str]:
  # cuda_fp16.h / cuda_bf16.h come from the toolkit or from NVIDIA's wheels; they include <nv/target> (under cccl/ since CUDA 13)
  roots = [cuda_home() / "include"] + _nvidia_wheel_dirs("include")
  dirs = [r for r in roots if (r / "cuda_fp16.h").is_file()]
  return [str(d) for r in dirs for d in (r, r / "cccl") if d.is_dir()]

def _ptxas() -> str | None:
  return shutil.which("ptxas") or (p if os.path.exists(p := str(cuda_home() / "bin" / "ptxas")) else None)

def nvrtc_version() -> tuple[int, int]:
  """NVRTC's (major, minor)."""
  major, minor = ctypes.c_int(), ctypes.c_int()
  nvrtc_check(nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
  return major.value, minor.value

class NVRTCCompiler(Compiler):
  """CUDA C → a cubin for `arch` (e.g. "sm_90") through NVRTC; with `ptx=True`, → PTX for compute_XX (the driver JIT-compiles it)."""
  def __init__(self, arch: str, ptx: bool = False, extra_flags: tuple[str, ...] = ()):
    if not re.fullmatch(r"sm_\d+a?", arch): raise ValueError(f"NVRTCCompiler arch must look like 'sm_90', got {arch!r}")
    self.arch, self.ptx = arch, ptx
    target = arch.replace("sm_", "compute_") if ptx else arch
    flags = (f"--gpu-architecture={target}", "-std=c++17", *(f"-I{d}" for d in _nvrtc_include_dirs()), *extra_flags)
    super().__init__(cachekey=f"cuda_nvrtc_{'.'.join(map(str, nvrtc_version()))}_{target}", flags=flags)

  def compile(self, src: str) -> bytes:
    prog = nvrtc.nvrtcProgram()
    nvrtc_check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"kernel.cu", 0, None, None), "nvrtcCreateProgram")
    try:
      opts = (ctypes.c_char_p * len(self.flags))(*(f.encode() for f in self.flags))
      status = nvrtc.nvrtcCompileProgram(prog, len(self.flags), opts)
      if status != 0: raise CompileError(f"NVRTC ({self.arch}) rejected the CUDA source:\n{self._log(prog)}\n--- source ---\n{src}")
      get_size, get = (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if self.ptx else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
      size = ctypes.c_size_t()
      nvrtc_check(get_size(prog, ctypes.byref(size)), get_size.__name__)
      out = ctypes.create_string_buffer(size.value)
      nvrtc_check(get(prog, out), get.__name__)
      return out.raw
    finally: nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))

  def _log(self, prog: Any) -> str:
    size = ctypes.c_size_t()
    if nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size)) != 0: return "(no log)"
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    return log.value.decode(errors="replace")

  def disassemble(self, lib: bytes) -> str:
    if self.ptx: return lib.rstrip(b"\0").decode(errors="replace")
    return _cuobjdump(lib) or super().disassemble(lib)

class PTXCompiler(Compiler):
  """PTX passes through (the driver JIT-compiles it at load); with `use_ptxas` (default: env TG_PTXAS=1 and ptxas installed),
  ptxas assembles it to a cubin for `arch` ahead of time."""
  def __init__(self, arch: str, use_ptxas: bool | None = None):
    self.arch = arch
    self.ptxas = _ptxas() if (use_ptxas if use_ptxas is not None else os.environ.get("TG_PTXAS", "0") == "1") else None
    super().__init__(cachekey=f"cuda_ptx_{arch}", flags=("ptxas", f"-arch={arch}") if self.ptxas else ())

  def compile(self, src: str) -> bytes:
    if self.ptxas is None: return src.encode() + b"\0"  # cuModuleLoadData wants NUL-terminated PTX text
    with tempfile.TemporaryDirectory() as d:
      ptx, cubin = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
      with open(ptx, "w") as f: f.write(src)
      res = subprocess.run([self.ptxas, f"-arch={self.arch}", ptx, "-o", cubin], capture_output=True, text=True)
      if res.returncode != 0: raise CompileError(f"ptxas ({self.arch}) rejected the PTX:\n{res.stderr}\n--- source ---\n{src}")
      with open(cubin, "rb") as f: return f.read()

  def disassemble(self, lib: bytes) -> str:
    if lib.endswith(b"\0"): return lib.rstrip(b"\0").decode(errors="replace")
    return _cuobjdump(lib) or super().disassemble(lib)

def _cuobjdump(lib: bytes) -> str | None:
  if (tool := shutil.which("cuobjdump") or (p if os.path.exists(p := str(cuda_home() / "bin" / "cuobjdump")) else None)) is None: return None
  with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
    f.write(lib)
    f.flush()
    res = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True)
  return res.stdout if res.returncode == 0 else None

# ---------------- memory ----------------

def _host_ptr(mv: memoryview) -> tuple[int, Any]:
  # (address, object keeping it alive): writable memory is used in place, read-only bytes are copied once into a ctypes buffer
  mv = mv if (mv.ndim == 1 and mv.format == "B") else mv.cast("B")
  buf = (ctypes.c_char * mv.nbytes).from_buffer_copy(mv) if mv.readonly else (ctypes.c_char * mv.nbytes).from_buffer(mv)
  return ctypes.addressof(buf), buf

class CUDAAllocator(LRUAllocator):
  """Device memory (cuMemAlloc) as `CUdeviceptr` values; views add an offset; copies are synchronous cuMemcpy calls.
  BufferSpec hints other than `nolru` and `external_ptr` are served with ordinary device memory."""
  def __init__(self, dev: CUDADevice):
    super().__init__(dev.device)
    self.dev = dev

  def _alloc(self, size: int, options: BufferSpec | None) -> ctypes.c_uint64:
    if options is not None and options.external_ptr is not None: return ctypes.c_uint64(options.external_ptr)
    self.dev.activate()
    ptr = ctypes.c_uint64()
    status = cuda.cuMemAlloc(ctypes.byref(ptr), max(size, 1))  # a 0-byte request still gets a distinct, freeable pointer
    if status == cuda.CUDA_ERROR_OUT_OF_MEMORY: raise MemoryError(f"cuMemAlloc of {size} bytes on {self.device}: {cu_error(status)}")
    cu_check(status, f"cuMemAlloc({size}) on {self.device}")
    return ptr

  def _free(self, opaque: ctypes.c_uint64, size: int, options: BufferSpec | None) -> None:
    if options is not None and options.external_ptr is not None: return
    self.dev.activate()
    cu_check(cuda.cuMemFree(opaque), f"cuMemFree on {self.device}")

  def _copyin(self, dest: ctypes.c_uint64, src: memoryview) -> None:
    if src.nbytes == 0: return
    self.dev.activate()
    addr, _keep = _host_ptr(src)
    cu_check(cuda.cuMemcpyHtoD(dest, addr, src.nbytes), f"cuMemcpyHtoD({src.nbytes} bytes) on {self.device}")

  def _copyout(self, dest: memoryview, src: ctypes.c_uint64) -> None:
    if dest.nbytes == 0: return
    if dest.readonly: raise ValueError(f"can't copy out of {self.device} into a read-only buffer: pass a bytearray or writable array")
    self.dev.activate()
    addr, _keep = _host_ptr(dest)
    cu_check(cuda.cuMemcpyDtoH(addr, src, dest.nbytes), f"cuMemcpyDtoH({dest.nbytes} bytes) on {self.device}")

  def _offset(self, buf: ctypes.c_uint64, size: int, offset: int) -> ctypes.c_uint64: return ctypes.c_uint64(buf.value + offset)

  def _transfer(self, dest: ctypes.c_uint64, src: ctypes.c_uint64, nbytes: int) -> None:
    if nbytes == 0: return
    self.dev.activate()
    cu_check(cuda.cuMemcpyDtoD(dest, src, nbytes), f"cuMemcpyDtoD({nbytes} bytes) on {self.device}")

# ---------------- programs ----------------

_LOG_SIZE = 16384

def _kernel_params(bufs: tuple, vals: tuple[int, ...], tmaps: TensorMaps | None = None) -> tuple[Any, list]:
  # cuLaunchKernel's kernelParams: one pointer per parameter (the buffers' CUdeviceptr values, the int32 values, then the tensor
  # maps); the driver copies what they point to at the call, so the list that keeps the ints alive only has to outlive it
  ints = [ctypes.c_int32(v) for v in vals]
  maps = tmaps.addresses(bufs) if tmaps is not None else ()
  return (ctypes.c_void_p * (len(bufs) + len(ints) + len(maps)))(*(ctypes.addressof(b) for b in bufs),
                                                                  *(ctypes.addressof(i) for i in ints), *maps), ints

class TensorMaps:
  """The TMA tensor maps a kernel takes as its last parameters (`const __grid_constant__` CUtensorMaps): the CUDA renderer lists
  them in the module symbol `tg_tensor_maps` = {count, then per map: buffer, CUtensorMapDataType, columns, rows, row stride in
  bytes, box columns, box rows, swizzle}; a map also holds its buffer's address, so one is encoded (cuTensorMapEncodeTiled) per
  address the buffer has had (kept: a replay's buffers come back from the allocator's cache at the same addresses)."""
  def __init__(self, prg: CUDAProgram, specs: list[int]):
    self.name, self.device = prg.name, prg.device.device
    self.specs = [tuple(specs[1 + 8 * i:9 + 8 * i]) for i in range(specs[0])]
    self.bufs = tuple(dict.fromkeys(s[0] for s in self.specs))
    self.cache: dict[tuple, tuple[list[int], Any]] = {}

  @staticmethod
  def read(prg: CUDAProgram) -> TensorMaps | None:
    """The tensor maps `prg`'s module declares, or None."""
    ptr, size = cuda.CUdeviceptr(), ctypes.c_size_t()
    if cuda.cuModuleGetGlobal(ctypes.byref(ptr), ctypes.byref(size), prg.module, b"tg_tensor_maps") != 0: return None
    vals = (ctypes.c_uint64 * (size.value // 8))()
    cu_check(cuda.cuMemcpyDtoH(vals, ptr, size.value), f"reading {prg.name!r}'s tensor maps on {prg.device.device}")
    return TensorMaps(prg, list(vals))

  def addresses(self, bufs: tuple) -> list[int]:
    """Host addresses of the maps for these buffers (kernelParams entries), encoded on first sight of their addresses."""
    key = tuple(bufs[b].value for b in self.bufs)
    if (hit := self.cache.get(key)) is not None: return hit[0]
    store = ctypes.create_string_buffer(128 * len(self.specs) + 64)  # the driver wants each map 64-byte aligned
    base = -ctypes.addressof(store) % 64 + ctypes.addressof(store)
    out = []
    for i, (buf, dt, cols, rows, stride, bcols, brows, swizzle) in enumerate(self.specs):
      m = cuda.CUtensorMap.from_address(base + 128 * i)
      dims, strides = (ctypes.c_uint64 * 2)(cols, rows), (ctypes.c_uint64 * 1)(stride)
      box, ones = (ctypes.c_uint32 * 2)(bcols, brows), (ctypes.c_uint32 * 2)(1, 1)
      cu_check(cuda.cuTensorMapEncodeTiled(ctypes.byref(m), dt, 2, ctypes.c_void_p(bufs[buf].value), dims, strides, box, ones,
                                           cuda.CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, cuda.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                           cuda.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
               f"cuTensorMapEncodeTiled for kernel {self.name!r}'s map {i} ({rows} x {cols}, box {brows} x {bcols}) on {self.device}")
      out.append(base + 128 * i)
    if len(self.cache) >= 64: self.cache.clear()  # buffers that keep moving: don't grow without bound
    self.cache[key] = (out, store)
    return out

def _dynamic_shared(prg, device) -> int:
  """The dynamic shared memory a kernel launches with: the CUDA renderer declares it (over 48 KB) in the module symbol
  `tg_dynamic_shared_bytes`; the function is then allowed that much (cuFuncSetAttribute). 0 without the symbol."""
  ptr, size = cuda.CUdeviceptr(), ctypes.c_size_t()
  if cuda.cuModuleGetGlobal(ctypes.byref(ptr), ctypes.byref(size), prg.module, b"tg_dynamic_shared_bytes") != 0: return 0
  n = ctypes.c_uint32()
  cu_check(cuda.cuMemcpyDtoH(ctypes.byref(n), ptr, 4), f"reading {prg.name!r}'s shared memory size on {device.device}")
  cu_check(cuda.cuFuncSetAttribute(prg.fn, cuda.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, n.value),
           f"allowing {prg.name!r} {n.value} bytes of shared memory on {device.device}")
  return n.value

# what a launch returns while the current context isn't the function's (none, or another library's)
_WRONG_CONTEXT = frozenset((cuda.CUDA_ERROR_INVALID_CONTEXT, cuda.CUDA_ERROR_INVALID_HANDLE, cuda.CUDA_ERROR_CONTEXT_IS_DESTROYED))

class CUDAProgram(Program):
  """A kernel loaded with cuModuleLoadDataEx (cubin, or PTX that the driver JIT-compiles) and launched with cuLaunchKernel:
  grid = global_size (blocks), block = local_size (threads), params = the buffers' device pointers then int32 `vals`."""
  def __init__(self, device: CUDADevice, name: str, lib: bytes):
    super().__init__(device, name, lib)
    device.activate()
    self.module = cuda.CUmodule()
    log = ctypes.create_string_buffer(_LOG_SIZE)
    opts = (cuda.CUjit_option * 2)(cuda.CU_JIT_ERROR_LOG_BUFFER, cuda.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
    vals = (ctypes.c_void_p * 2)(ctypes.addressof(log), _LOG_SIZE)
    status = cuda.cuModuleLoadDataEx(ctypes.byref(self.module), lib, 2, opts, vals)
    if status != 0:
      self.module = None
      raise RuntimeError(f"cuModuleLoadDataEx for kernel {name!r} on {device.device} failed: {cu_error(status)}"
                         + (f"\n{log.value.decode(errors='replace')}" if log.value else ""))
    self.fn = cuda.CUfunction()
    cu_check(cuda.cuModuleGetFunction(ctypes.byref(self.fn), self.module, name.encode()),
             f"cuModuleGetFunction({name!r}) on {device.device}")
    self.events = device.timing_events
    self.smem = _dynamic_shared(self, device)
    self.tmaps = TensorMaps.read(self)

  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    (g0, g1, g2), (l0, l1, l2) = check_launch_dims(global_size, local_size)
    self.device.activate()
    params, _keep = _kernel_params(bufs, vals, self.tmaps)
    if wait: cu_check(cuda.cuEventRecord(self.events[0], None), "cuEventRecord")
    status = cuda.cuLaunchKernel(self.fn, g0, g1, g2, l0, l1, l2, self.smem, None, params, None)
    if status != 0:
      raise RuntimeError(f"cuLaunchKernel({self.name!r}, grid={(g0, g1, g2)}, block={(l0, l1, l2)}) on {self.device.device} "
                         f"failed: {cu_error(status)}")
    if not wait: return None
    cu_check(cuda.cuEventRecord(self.events[1], None), "cuEventRecord")
    cu_check(cuda.cuEventSynchronize(self.events[1]), f"cuEventSynchronize after kernel {self.name!r}")
    ms = ctypes.c_float()
    cu_check(cuda.cuEventElapsedTime(ctypes.byref(ms), self.events[0], self.events[1]), "cuEventElapsedTime")
    return ms.value * 1e-3

  def launcher(self, global_size: tuple[int, ...], local_size: tuple[int, ...]) -> Callable[..., None]:
    # __call__ with the dims checked once and the kernelParams array kept: a replay's buffers are the same ctypes objects call
    # after call (inputs, and outputs back from the allocator's cache), so the addresses it holds rarely change; when they do it
    # is rebuilt. The context isn't checked before each launch (asking the driver is a ctypes call, ~1 us of a ~13 us round trip on
    # the H100 host): a launch while no context or another library's is current fails (our function belongs to our context) and
    # is retried once after making ours current.
    (g0, g1, g2), (l0, l1, l2) = check_launch_dims(global_size, local_size)
    dev, fn, launch_kernel, addressof, smem, tmaps = self.device, self.fn, cuda.cuLaunchKernel, ctypes.addressof, self.smem, self.tmaps
    last: tuple = (None, None)  # (the parameter addresses, the kernelParams array holding them)
    def launch(*bufs: Any) -> None:
      nonlocal last
      if tmaps is not None:  # the maps hold the buffers' addresses: looked up on every launch
        key = (*map(addressof, bufs), *tmaps.addresses(bufs))
        if last[0] != key: last = (key, (ctypes.c_void_p * len(key))(*key))
        cached = last
      elif (cached := last)[0] != (key := tuple(map(addressof, bufs))): cached = last = (key, (ctypes.c_void_p * len(key))(*key))
      if (status := launch_kernel(fn, g0, g1, g2, l0, l1, l2, smem, None, cached[1], None)) in _WRONG_CONTEXT:
        dev.activate()
        status = launch_kernel(fn, g0, g1, g2, l0, l1, l2, smem, None, cached[1], None)
      if status != 0:
        raise RuntimeError(f"cuLaunchKernel({self.name!r}, grid={(g0, g1, g2)}, block={(l0, l1, l2)}) on {dev.device} failed: {cu_error(status)}")
    return launch

  def __del__(self):
    # modules die with the context at exit; unloading then could fail, and the error would be meaningless
    if getattr(self, "module", None) is not None:
      try: cuda.cuModuleUnload(self.module)
      except Exception: pass

# ---------------- graphs ----------------

def _launch_key(l: Launch) -> tuple:
  return tuple(b.value for b in l.bufs), l.vals

class CUDAGraph(GraphRunner):
  """Kernel launches as one CUDA graph: a chain of kernel nodes (cuGraphAddKernelNode) instantiated once (cuGraphInstantiate) and
  launched with cuGraphLaunch on the legacy stream, so it stays ordered with the device's copies and single launches. A replay
  whose buffers or values differ from the last one updates just those nodes in place (cuGraphExecKernelNodeSetParams)."""
  def __init__(self, device: CUDADevice, launches: list[Launch]):
    super().__init__(device, launches)
    device.activate()
    self.graph, self.exec, self.nodes = cuda.CUgraph(), None, []
    cu_check(cuda.cuGraphCreate(ctypes.byref(self.graph), 0), f"cuGraphCreate on {device.device}")
    for l in launches:
      node, dep = cuda.CUgraphNode(), (cuda.CUgraphNode * 1)(*self.nodes[-1:])
      params, _keep = self._params(l)
      cu_check(cuda.cuGraphAddKernelNode(ctypes.byref(node), self.graph, dep, len(self.nodes[-1:]), ctypes.byref(params)),
               f"cuGraphAddKernelNode({l.prg.name!r}) on {device.device}")
      self.nodes.append(node)
    exe = cuda.CUgraphExec()
    cu_check(cuda.cuGraphInstantiate(ctypes.byref(exe), self.graph, 0), f"cuGraphInstantiate of {len(launches)} kernels on {device.device}")
    self.exec, self.keys = exe, [_launch_key(l) for l in launches]

  @staticmethod
  def _params(l: Launch) -> tuple[Any, Any]:
    args, keep = _kernel_params(l.bufs, l.vals, getattr(l.prg, "tmaps", None))
    (g0, g1, g2), (b0, b1, b2) = l.global_size, l.local_size
    return cuda.CUDA_KERNEL_NODE_PARAMS(l.prg.fn, g0, g1, g2, b0, b1, b2, getattr(l.prg, "smem", 0), args, None), (args, keep)

  def __call__(self, launches: list[Launch]) -> None:
    if len(launches) != len(self.nodes):
      raise ValueError(f"the CUDA graph on {self.device.device} holds {len(self.nodes)} kernels, replayed with {len(launches)}")
    self.device.activate()
    for i, l in enumerate(launches):
      if (key := _launch_key(l)) != self.keys[i]:
        params, _keep = self._params(l)
        cu_check(cuda.cuGraphExecKernelNodeSetParams(self.exec, self.nodes[i], ctypes.byref(params)),
                 f"cuGraphExecKernelNodeSetParams({l.prg.name!r}) on {self.device.device}")
        self.keys[i] = key
    cu_check(cuda.cuGraphLaunch(self.exec, None), f"cuGraphLaunch of {len(self.nodes)} kernels on {self.device.device}")

  def __del__(self):
    # like modules, graphs die with the context at exit; a failure to destroy one then means nothing
    try:
      if getattr(self, "exec", None) is not None: cuda.cuGraphExecDestroy(self.exec)
      if getattr(self, "graph", None) is not None: cuda.cuGraphDestroy(self.graph)
    except Exception: pass

# ---------------- device ----------------

_current = threading.local()  # the CUDADevice whose context is current on this thread (contexts are per-thread in the driver)

def _arch_num(arch: str) -> int:
  if not (m := re.fullmatch(r"sm_(\d+)a?", arch or "")): raise ValueError(f"a CUDA arch looks like 'sm_90', got {arch!r}")
  return int(m.group(1))

def _default_renderer(arch: str) -> Renderer:
  # opened directly (not through Device[...]): pair with a registered CUDA renderer by name, as the registry would
  from tg_uop.plugins.manager import get_plugin_manager
  rends = get_plugin_manager().renderers()
  for name in ("CUDA", "PTX"):
    if name in rends: return rends[name].loader()(arch)
  raise ValueError("the CUDA device needs the CUDA or PTX renderer, and none is registered: pip install tg-codegen")

class CUDADevice(Compiled):
  """An NVIDIA GPU through the CUDA driver API. `device` is "CUDA" or "CUDA:<index>" (optionally ":CUDA|PTX[:sm_XX]")."""
  graph = CUDAGraph
  def __init__(self, device: str = "CUDA", renderer: Renderer | None = None, interface: Any = None):
    if interface is not None: raise ValueError(f"the CUDA device takes no interface (got {interface!r}): use DEV=CUDA")
    ds = parse_dev(device)
    self.index = ds.index or 0
    cu_check(cuda.cuInit(0), "cuInit")
    count = ctypes.c_int()
    cu_check(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if self.index >= count.value:
      raise RuntimeError(f"CUDA device index {self.index} does not exist: this machine has {count.value} CUDA device(s) (CUDA:0..)")
    self.cu_device = cuda.CUdevice()
    cu_check(cuda.cuDeviceGet(ctypes.byref(self.cu_device), self.index), f"cuDeviceGet({self.index})")
    self.context = cuda.CUcontext()
    cu_check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(self.context), self.cu_device), f"cuDevicePrimaryCtxRetain({self.index})")
    self.device = device
    self._cur, self._ctx_value = cuda.CUcontext(), self.context.value
    self._cur_ref = ctypes.byref(self._cur)
    self.activate(force=True)
    self.arch = f"sm_{self.attribute(cuda.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)}" \
                f"{self.attribute(cuda.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)}"
    renderer = self._pick_renderer(renderer, ds.arch)
    if ds.arch is None and renderer.arch == self.arch == "sm_90" and getattr(renderer, "suffix", "") == "CUDA":
      renderer = type(renderer)("sm_90a")  # Hopper's arch-specific instructions (wgmma) need sm_90a; the code runs on this GPU only
    # code the renderer wrote for an older arch runs on this GPU once compiled for it; an arch-specific target ("sm_90a") stays as is
    target = renderer.arch if renderer.arch and renderer.arch.endswith("a") else self.arch
    suffix = getattr(renderer, "suffix", "")
    if suffix == "PTX": compiler: Compiler = PTXCompiler(target)
    elif suffix == "CUDA": compiler = NVRTCCompiler(target)
    else: raise ValueError(f"the CUDA device runs the CUDA and PTX renderers, not {type(renderer).__name__} (suffix {suffix!r})")
    self.timing_events = (cuda.CUevent(), cuda.CUevent())
    for e in self.timing_events: cu_check(cuda.cuEventCreate(ctypes.byref(e), 0), "cuEventCreate")
    super().__init__(device, CUDAAllocator(self), renderer, compiler, CUDAProgram)

  def _pick_renderer(self, renderer: Renderer | None, asked_arch: str | None) -> Renderer:
    if renderer is None: return _default_renderer(self.arch)
    if renderer.arch is None: return renderer
    if _arch_num(renderer.arch) > _arch_num(self.arch):
      if asked_arch is not None:
        raise RuntimeError(f"{self.device} is {self.arch}, older than the requested arch {renderer.arch}: drop the arch or ask for {self.arch}")
      try: return type(renderer)(self.arch)  # the renderer's default arch is newer than this GPU: render for the GPU instead
      except ValueError as e: raise RuntimeError(f"{type(renderer).__name__} can't target this GPU ({self.arch}): {e}") from e
    return renderer

  def activate(self, force: bool = False) -> None:
    """Make this device's context current on the calling thread (a no-op when it already is). The driver is asked which context is
    current, not a cache of ours: another library in the process (PyTorch, tinygrad) may have made its own current meanwhile, and
    our events, streams and memory are invalid handles in its context."""
    # (every launch and synchronize asks: the query's ctypes out-parameter is made once)
    if (st := cuda.cuCtxGetCurrent(self._cur_ref)) != 0: cu_check(st, "cuCtxGetCurrent")
    if force or self._cur.value != self._ctx_value:
      cu_check(cuda.cuCtxSetCurrent(self.context), f"cuCtxSetCurrent({self.device})")
      _current.dev = self

  def attribute(self, attr: int) -> int:
    """cuDeviceGetAttribute(attr) for this GPU."""
    v = ctypes.c_int()
    cu_check(cuda.cuDeviceGetAttribute(ctypes.byref(v), attr, self.cu_device), f"cuDeviceGetAttribute({attr})")
    return v.value

  @property
  def name(self) -> str:
    """The GPU's marketing name, e.g. "NVIDIA H100 80GB HBM3"."""
    buf = ctypes.create_string_buffer(256)
    cu_check(cuda.cuDeviceGetName(buf, 256, self.cu_device), "cuDeviceGetName")
    return buf.value.decode()

  def synchronize(self) -> None:
    """Wait for every copy and kernel issued to this GPU."""
    self.activate()
    if (st := cuda.cuCtxSynchronize()) != 0: cu_check(st, f"cuCtxSynchronize({self.device})")

  def finalize(self) -> None:
    """Free cached buffers and release the primary context."""
    self.synchronize()
    self.allocator.free_cache()
    for e in self.timing_events: cuda.cuEventDestroy(e)
    cu_check(cuda.cuDevicePrimaryCtxRelease(self.cu_device), "cuDevicePrimaryCtxRelease")
    if getattr(_current, "dev", None) is self: _current.dev = None
