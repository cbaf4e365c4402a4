"""The CPU device: 64-byte aligned host memory, a C compiler (clang/gcc) or llvmlite, and programs that run across all cores.

A kernel for the CPU is `void name(T* data0, ..., int var0, ..., int core_start, int core_end)`: it runs the blocks
gidx0 in [core_start, core_end). `CPUProgram` splits global_size[0] into one range per thread; ctypes releases the GIL
during each call, so the threads run in parallel.
"""
from __future__ import annotations
import abc, ctypes, ctypes.util, functools, hashlib, mmap, os, platform, shlex, shutil, subprocess, tempfile, threading, time
from typing import Any, Callable
from tg_uop.helpers import getenv
from tg_uop.runtime.allocator import LRUAllocator, BufferSpec
from tg_uop.runtime.compiled import Compiled
from tg_uop.runtime.compiler import Compiler, CompileError
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.renderer import Renderer

NO_COMPILER = "no C compiler found: install gcc or clang, or `pip install tg-codegen[llvm]` for llvmlite"

class CompilerNotFoundError(RuntimeError):
  """Neither $CC nor clang, gcc or cc is available."""

# ---- finding and identifying the C compiler ----
def find_c_compiler() -> list[str]:
  """The C compiler command: $CC (may carry arguments), else the first of clang, gcc, cc on PATH; raises when none exists."""
  if cc := os.environ.get("CC", "").strip():
    argv = shlex.split(cc)
    if (path := shutil.which(argv[0])) is None:
      raise CompilerNotFoundError(f"CC={cc!r} names a compiler that is not on PATH: fix CC, or unset it to use clang or gcc")
    return [path, *argv[1:]]
  for name in ("clang", "gcc", "cc"):
    if (path := shutil.which(name)) is not None: return [path]
  raise CompilerNotFoundError(NO_COMPILER)

@functools.cache
def _compiler_identity(cc: tuple[str, ...]) -> str:
  """The first line of `cc --version` (part of the cache key: another compiler makes other binaries)."""
  try: out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=60)
  except OSError as e: raise CompilerNotFoundError(f"can't run the C compiler {cc[0]}: {e}") from e
  return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"

@functools.cache
def _host_identity() -> str:
  """The machine and its CPU features: binaries built with -march=native only run on CPUs like this one."""
  flags = ""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
  except OSError: pass
  return f"{platform.system()}-{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:12]}"

def c_compiler_probe() -> str | None:
  """None when a C compiler is available, else what is missing (for the device probe)."""
  try: find_c_compiler()
  except CompilerNotFoundError as e: return str(e)
  return None

class CCompiler(Compiler):
  """C source -> shared library bytes, with the system C compiler (found on first compile, so a CPU device without a compiler
  still allocates and copies memory). The compiler's path and version and the host CPU are part of the cache key."""
  # -ffp-contract=off: no fused multiply-add, so a*b+c rounds twice as exec_alu does; no -ffast-math: nan and inf must hold.
  # -fwrapv: signed integers wrap, as exec_alu's fixed-width ints do.
  base_flags: tuple[str, ...] = ("-O2", "-march=native", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=off", "-fwrapv", "-std=gnu11")

  def __init__(self, cc: list[str] | None = None, flags: tuple[str, ...] | None = None):
    super().__init__(cachekey="cpu_c", flags=tuple(flags) if flags is not None else self.base_flags)
    self._cc: list[str] | None = list(cc) if cc is not None else None
    self._resolved = False

  @property
  def cc(self) -> list[str]:
    """The compiler command (resolved on first use)."""
    self._resolve()
    return self._cc  # type: ignore[return-value]

  def _resolve(self) -> None:
    if self._resolved: return
    if self._cc is None: self._cc = find_c_compiler()
    ident = f"{' '.join(self._cc)}|{_compiler_identity(tuple(self._cc))}|{_host_identity()}"
    self.cachekey = f"cpu_c_{os.path.basename(self._cc[0])}_{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
    self._resolved = True

  def cache_path(self, src: str):
    self._resolve()
    return super().cache_path(src)

  def compile(self, src: str) -> bytes:
    """The shared library for `src`; raises `CompileError` with the compiler's messages."""
    cc = self.cc
    with tempfile.TemporaryDirectory(prefix="tg_cpu_") as d:
      cfile, sofile = os.path.join(d, "kernel.c"), os.path.join(d, "kernel.so")
      with open(cfile, "w") as f: f.write(src)
      try: proc = subprocess.run([*cc, *self.flags, "-o", sofile, cfile, "-lm"], capture_output=True, text=True)
      except OSError as e: raise CompilerNotFoundError(f"can't run the C compiler {cc[0]}: {e}") from e
      if proc.returncode != 0:
        numbered = "\n".join(f"{i+1:4d} {line}" for i, line in enumerate(src.splitlines()))
        raise CompileError(f"{os.path.basename(cc[0])} failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n--- source ---\n{numbered}")
      with open(sofile, "rb") as f: return f.read()

# ---- llvmlite ----
@functools.cache
def _llvm() -> Any:
  """llvmlite.binding, initialized for the host (with libm loaded so that kernels can call exp2f, sinf, ...)."""
  try: import llvmlite.binding as llvm
  except ImportError:
    raise CompilerNotFoundError("the LLVM renderer on CPU needs llvmlite: `pip install tg-codegen[llvm]`, "
                                "or use the C renderer (DEV=CPU:C)") from None
  if hasattr(llvm, "initialize"):
    try: llvm.initialize()  # llvmlite < 0.45 needs it; newer versions initialize themselves and raise here
    except Exception: pass
  llvm.initialize_native_target()
  llvm.initialize_native_asmprinter()
  for lib in (ctypes.util.find_library("m"), "libgcc_s.so.1"):
    # libgcc holds the half-precision conversion routines LLVM calls on CPUs without F16C
    if lib is None: continue
    try: llvm.load_library_permanently(lib)
    except Exception: pass
  return llvm

def _host_target_machine(opt: int) -> Any:
  """A new target machine for the host CPU with all its features (an MCJIT engine takes ownership of the one it gets)."""
  llvm = _llvm()
  target = llvm.Target.from_triple(llvm.get_process_triple())
  return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=opt,
                                      reloc="pic", codemodel="default")

class LLVMCompiler(Compiler):
  """LLVM IR -> an object file for the host CPU (native features), optimized at O2/O3 with llvmlite; loaded by `LLVMProgram`.

  LLVM's loop unroller is off unless `unroll`: the kernels come unrolled and upcast as the opts ask, and unrolling them again
  (mostly the gidx0 loops of elementwise kernels, 8x) costs a fifth of the compile time for no measurable speed (MLP step kernels
  within noise). The loop vectorizer stays on: scalar elementwise loops (the Adam update) lose 20% without it."""
  def __init__(self, opt: int = 3, unroll: bool = False):
    llvm = _llvm()
    self.opt, self.unroll = opt, unroll
    self.target_machine = _host_target_machine(opt)
    import llvmlite
    ident = f"{llvm.get_process_triple()}|{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}|{llvmlite.__version__}"
    super().__init__(cachekey=f"cpu_llvm_{hashlib.sha256(ident.encode()).hexdigest()[:16]}",
                     flags=(f"-O{opt}",) + (() if unroll else ("-fno-unroll-loops",)))

  def _optimize(self, mod: Any) -> None:
    llvm = _llvm()
    if hasattr(llvm, "create_pass_builder"):  # the new pass manager (llvmlite >= 0.44)
      pto = llvm.create_pipeline_tuning_options(speed_level=self.opt)
      pto.loop_unrolling = self.unroll
      pb = llvm.create_pass_builder(self.target_machine, pto)
      pb.getModulePassManager().run(mod, pb)
      return
    pmb = llvm.create_pass_manager_builder()
    pmb.opt_level, pmb.size_level = self.opt, 0
    pmb.disable_unroll_loops = not self.unroll
    pm = llvm.create_module_pass_manager()
    self.target_machine.add_analysis_passes(pm)
    pmb.populate(pm)
    pm.run(mod)

  def compile(self, src: str) -> bytes:
    """The object file for the LLVM IR `src`; raises `CompileError` with LLVM's message when the IR is invalid."""
    llvm = _llvm()
    try:
      mod = llvm.parse_assembly(src)
      mod.verify()
    except RuntimeError as e:
      numbered = "\n".join(f"{i+1:4d} {line}" for i, line in enumerate(src.splitlines()))
      raise CompileError(f"LLVM rejected the IR: {e}\n--- source ---\n{numbered}") from e
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(self.target_machine.target_data)
    self._optimize(mod)
    return bytes(self.target_machine.emit_object(mod))

  def disassemble(self, lib: bytes) -> str:
    return f"<{len(lib)} bytes of host object code>"

# ---- memory ----
def _addr(buf: Any) -> int: return buf if isinstance(buf, int) else ctypes.addressof(buf)

class CPUAllocator(LRUAllocator):
  """Host memory as ctypes byte arrays, 64-byte aligned (large buffers are anonymous mmaps, page aligned and lazily zeroed)."""
  mmap_threshold = 1 << 20

  def _alloc(self, size: int, options: BufferSpec | None) -> Any:
    if options is not None and options.external_ptr is not None: return (ctypes.c_uint8 * size).from_address(options.external_ptr)
    try:
      if size >= self.mmap_threshold:
        # private (not shared: shmem pages get no huge pages) anonymous memory, with huge pages where the kernel allows
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"): m.madvise(mmap.MADV_HUGEPAGE)
        return (ctypes.c_uint8 * size).from_buffer(m)
      raw = (ctypes.c_uint8 * (size + 63))()
      return (ctypes.c_uint8 * size).from_buffer(raw, (-ctypes.addressof(raw)) % 64)  # the view keeps `raw` alive
    except (OSError, ValueError) as e: raise MemoryError(f"host allocation of {size} bytes failed: {e}") from e
  def _copyin(self, dest: Any, src: memoryview) -> None:
    src = src if src.format == "B" and src.ndim == 1 else src.cast("B")
    memoryview(dest).cast("B")[:] = src
  def _copyout(self, dest: memoryview, src: Any) -> None:
    dest = dest if dest.format == "B" and dest.ndim == 1 else dest.cast("B")
    dest[:] = memoryview(src).cast("B")
  def _offset(self, buf: Any, size: int, offset: int) -> Any: return (ctypes.c_uint8 * size).from_buffer(buf, offset)
  def _transfer(self, dest: Any, src: Any, nbytes: int) -> None: ctypes.memmove(_addr(dest), _addr(src), nbytes)

# ---- programs ----
def split_range(n: int, parts: int) -> list[tuple[int, int]]:
  """[0, n) cut into `parts` contiguous ranges whose sizes differ by at most one."""
  parts = max(1, min(parts, n))
  q, r = divmod(n, parts)
  out, start = [], 0
  for i in range(parts):
    end = start + q + (1 if i < r else 0)
    out.append((start, end))
    start = end
  return out

class CPUWorkers:
  """`n` threads parked on a lock each, woken to run one call per launch: a launch costs a lock release and acquire per thread,
  where a thread pool's queue, condition variables and futures cost several times that (it shows on kernels of a few
  microseconds, which a training step is full of). The launching thread runs the first share itself."""
  def __init__(self, n: int, name: str):
    self.n, self._calls, self.pid = n, [None] * n, os.getpid()
    self._errors: list[BaseException | None] = [None] * n
    self._go, self._done = [threading.Lock() for _ in range(n)], [threading.Lock() for _ in range(n)]
    for lk in self._go + self._done: lk.acquire()
    self._busy = threading.Lock()  # one launch at a time (two Python threads launching kernels take turns)
    self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(n)]
    for t in self._threads: t.start()

  def _loop(self, i: int) -> None:
    while True:
      self._go[i].acquire()
      call = self._calls[i]
      if call is None:  # shutdown
        self._done[i].release()
        return
      try: call[0](*call[1])
      except BaseException as e: self._errors[i] = e
      self._done[i].release()

  def run(self, calls: list[tuple[Callable[..., Any], tuple]]) -> None:
    """Run calls[0] on this thread and the others on the workers (at most n); return when all have finished, raising the first error."""
    if len(calls) - 1 > self.n: raise ValueError(f"{len(calls)} calls for {self.n} workers and the launching thread")
    with self._busy:
      for i, c in enumerate(calls[1:]):
        self._calls[i] = c
        self._go[i].release()
      try: calls[0][0](*calls[0][1])
      finally:  # the workers finish (and their errors are collected) even when this thread's share raised
        for i in range(len(calls) - 1): self._done[i].acquire()
        errs, self._errors = [e for e in self._errors if e is not None], [None] * self.n
    if errs: raise errs[0]

  def close(self) -> None:
    """Stop the threads (each finishes its call first)."""
    with self._busy:
      for i in range(self.n):
        self._calls[i] = None
        self._go[i].release()
      for t in self._threads: t.join()
      self._threads = []

class _ThreadedProgram(Program):
  """Calls a C-ABI kernel once per thread, each with its share of gidx0 as (core_start, core_end)."""
  min_parallel_bytes = 1 << 18  # below this much memory touched (a few microseconds of work), waking threads costs more than it saves

  @abc.abstractmethod
  def _fxn(self, nbufs: int, nvals: int) -> Callable[..., Any]:
    """The callable kernel for `nbufs` buffer pointers and `nvals` ints (then core_start, core_end)."""

  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    gs, _ = check_launch_dims(global_size, local_size)
    args = tuple(ctypes.c_void_p(_addr(b)) for b in bufs) + tuple(ctypes.c_int(int(v)) for v in vals)
    fxn = self._fxn(len(bufs), len(vals))
    dev = self.device
    threads = getattr(dev, "threads", 1)
    if threads > 1 and gs[0] > 1 and sum(ctypes.sizeof(b) for b in bufs if not isinstance(b, int)) < self.min_parallel_bytes: threads = 1
    st = time.perf_counter()
    ranges = split_range(gs[0], threads)
    if len(ranges) == 1: fxn(*args, ctypes.c_int(0), ctypes.c_int(gs[0]))
    else: dev.pool.run([(fxn, (*args, ctypes.c_int(s), ctypes.c_int(e))) for s, e in ranges])
    return time.perf_counter() - st if wait else None

  def launcher(self, global_size: tuple[int, ...], local_size: tuple[int, ...]) -> Callable[..., None]:
    # the work of __call__ with the dims fixed: ctypes arrays go to the kernel as pointers themselves (a bare int address would be
    # passed as a C int, so those are wrapped); the thread split is decided per call, as the buffers' sizes and `threads` may change
    gs, _ = check_launch_dims(global_size, local_size)
    n, dev, fxn_for = gs[0], self.device, self._fxn
    whole = (ctypes.c_int(0), ctypes.c_int(n))
    def launch(*bufs: Any) -> None:
      args = [ctypes.c_void_p(b) if type(b) is int else b for b in bufs]
      fxn = fxn_for(len(args), 0)
      threads = getattr(dev, "threads", 1)
      if threads > 1 and n > 1 and sum(map(ctypes.sizeof, args)) >= self.min_parallel_bytes:  # (a bare address counts 8 bytes)
        dev.pool.run([(fxn, (*args, ctypes.c_int(s), ctypes.c_int(e))) for s, e in split_range(n, threads)])
      else: fxn(*args, *whole)
    return launch

def _load_shared_library(lib: bytes, name: str) -> ctypes.CDLL:
  """dlopen `lib` from a uniquely named temporary file, removed once loaded (dlopen reuses a handle for a path it has seen, so
  names must never repeat). Falls back to the tg cache directory where the temp directory is mounted noexec."""
  from tg_uop.helpers import cache_dir
  err: OSError | None = None
  for d in (None, str(cache_dir() / "tmp")):
    if d is not None: os.makedirs(d, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=f"tg_{name}_", suffix=".so", dir=d)
    try:
      with os.fdopen(fd, "wb") as f: f.write(lib)
      return ctypes.CDLL(path)
    except OSError as e: err = e
    finally: os.unlink(path)
  raise RuntimeError(f"can't load the compiled kernel {name!r}: {err}") from err

class CPUProgram(_ThreadedProgram):
  """A shared library from `CCompiler`, dlopened; its function `name` is the kernel."""
  def __init__(self, device: Any, name: str, lib: bytes):
    super().__init__(device, name, lib)
    self._dll = _load_shared_library(lib, name)
    try: self._cfxn = getattr(self._dll, name)
    except AttributeError: raise RuntimeError(f"the compiled library has no kernel {name!r}: was it rendered under another name?") from None
    self._cfxn.restype = None
  def _fxn(self, nbufs: int, nvals: int) -> Callable[..., Any]: return self._cfxn

class LLVMProgram(_ThreadedProgram):
  """An object file from `LLVMCompiler`, linked in-process by LLVM's MCJIT; its function `name` is the kernel."""
  def __init__(self, device: Any, name: str, lib: bytes):
    super().__init__(device, name, lib)
    llvm = _llvm()
    # the engine owns (and frees) its target machine, so it gets its own rather than the compiler's
    self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _host_target_machine(3))
    self._engine.add_object_file(llvm.ObjectFileRef.from_data(lib))
    self._engine.finalize_object()
    self._addr = self._engine.get_function_address(name)
    if not self._addr: raise RuntimeError(f"the compiled object has no kernel {name!r}: was it rendered under another name?")
    self._protos: dict[tuple[int, int], Callable[..., Any]] = {}
  def _fxn(self, nbufs: int, nvals: int) -> Callable[..., Any]:
    if (f := self._protos.get((nbufs, nvals))) is None:
      proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nbufs + [ctypes.c_int] * (nvals + 2)))
      f = self._protos[(nbufs, nvals)] = proto(self._addr)
    return f

# ---- the device ----
def is_llvm_renderer(renderer: Renderer) -> bool:
  """Whether `renderer` emits LLVM IR (the LLVM renderer, or one that says so with suffix "LL")."""
  return any(c.__name__ == "LLVMRenderer" for c in type(renderer).__mro__) or getattr(renderer, "suffix", "") == "LL"

class CPUDevice(Compiled):
  """The host CPU: C via clang/gcc by default (`CPU`), or LLVM IR via llvmlite (`CPU:LLVM`). Runs kernels on `CPU_COUNT` threads."""
  def __init__(self, device: str = "CPU", renderer: Renderer | None = None, interface: Any = None):
    if renderer is None:
      from tg_codegen.renderer.cstyle import CRenderer
      renderer = CRenderer()
    compiler: Compiler
    if is_llvm_renderer(renderer): compiler, runtime = LLVMCompiler(), LLVMProgram
    elif getattr(renderer, "device", "CPU") in ("CPU", "") or getattr(renderer, "suffix", "") == "C": compiler, runtime = CCompiler(), CPUProgram
    else:
      raise ValueError(f"the CPU device runs C or LLVM IR, not {type(renderer).__name__} (for {renderer.device}): use DEV=CPU or DEV=CPU:LLVM")
    super().__init__(device, CPUAllocator(device), renderer, compiler, runtime)
    self.interface = interface
    self.threads: int = max(1, int(getenv("CPU_COUNT", os.cpu_count() or 1)))
    self._pool: CPUWorkers | None = None

  @property
  def pool(self) -> CPUWorkers:
    """The worker threads kernels are split across besides the launching one (started on first parallel launch, and again
    when `threads` changed)."""
    if self._pool is not None and self._pool.pid != os.getpid(): self._pool = None  # a forked child has none of the threads
    if self._pool is None or self._pool.n != self.threads - 1:
      if self._pool is not None: self._pool.close()
      self._pool = CPUWorkers(self.threads - 1, f"tg-{self.device}")
    return self._pool

  def finalize(self) -> None:
    if self._pool is not None: self._pool.close()
    self._pool = None
