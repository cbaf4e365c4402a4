"""From kernel to program: choose opts, lower, linearize, render; then compile (cached) and run on a device.

`get_program(ast, renderer)` gives a `ProgramSpec` (source, launch dims, parameters, cost estimate); `CompiledRunner` compiles it
for a device and runs it on `Buffer`s. `DEBUG=2` prints one line per kernel run, `DEBUG=3` the applied opts, `DEBUG=4` the source."""
from __future__ import annotations
import time
from dataclasses import dataclass, field
from tg_uop.dtype import PtrDType, dtypes
from tg_uop.helpers import DEBUG, NOOPT, BEAM
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp, sym_infer
from tg_codegen.kernel import KernelInfo, KernelOptError, Opt, OptOps, apply_opts
from tg_codegen.lower.lowerer import lower
from tg_codegen.linearize import linearize

@dataclass
class ProgramSpec:
  """A rendered kernel: name, source, linearized UOps, launch dims, parameters and a cost estimate."""
  name: str
  src: str
  uops: list[UOp]
  global_size: tuple[int, int, int]
  local_size: tuple[int, int, int]
  info: KernelInfo
  globals: list[int] = field(default_factory=list)  # DEFINE_GLOBAL indices, in parameter order
  vars: list[UOp] = field(default_factory=list)     # DEFINE_VARs, in parameter order
  flops: int = 0
  mem_bytes: int = 0

def estimate_ast(ast: UOp) -> tuple[int, int]:
  """(FLOPs, bytes) of a kernel before lowering, so the figures don't depend on the opts: each float ALU op (and each step of a
  float reduction) counts once per iteration of the ranges it depends on; bytes are the sizes of the buffers the kernel touches."""
  rngs: dict[UOp, frozenset] = {}
  flops, mem = 0, 0
  for u in ast.toposort():
    rngs[u] = frozenset().union(*(rngs[s] for s in u.src)) | ({u} if u.op is Ops.RANGE else frozenset())
    if (u.op in GroupOp.ALU or u.op is Ops.REDUCE) and dtypes.is_float(u.dtype):
      live = rngs[u.src[0]] if u.op is Ops.REDUCE else rngs[u]
      flops += u.dtype.count * _prod_sizes(live)
    if u.op is Ops.DEFINE_GLOBAL: mem += max(u.dtype.size, 0) * u.dtype.base.itemsize
  return flops, mem

def _prod_sizes(rngs) -> int:
  out = 1
  for r in rngs: out *= r.src[0].arg if r.src[0].op is Ops.CONST else 1
  return out

def estimate(uops: list[UOp]) -> tuple[int, int]:
  """(FLOPs, bytes moved) of a linearized program, counting each op once per loop iteration."""
  mult, stack, flops, mem = 1, [], 0, 0
  for u in uops:
    if u.op is Ops.RANGE:
      n = u.src[0].arg if u.src[0].op is Ops.CONST else 1
      stack.append(n); mult *= n  # noqa: E702
    elif u.op is Ops.END and stack: mult //= stack.pop()
    elif u.op is Ops.SPECIAL: mult *= u.src[0].arg if u.src[0].op is Ops.CONST else 1
    elif u.op in GroupOp.ALU and u.dtype.scalar() != dtypes.bool and not dtypes.is_int(u.dtype): flops += mult * u.dtype.count
    elif u.op in (Ops.LOAD, Ops.STORE):
      idx = u.src[0]
      if idx.op is Ops.INDEX and isinstance(idx.src[0].dtype, PtrDType) and idx.src[0].op is Ops.DEFINE_GLOBAL:
        dt = u.dtype if u.op is Ops.LOAD else u.src[1].dtype
        mem += mult * dt.itemsize
  return flops, mem

def choose_opts(ast: UOp, ren, device: str | None = None) -> list[Opt]:
  """The opts for `ast`: the ones attached to it, none with NOOPT, BEAM search with BEAM=N, else the heuristic."""
  if isinstance(ast.arg, KernelInfo) and ast.arg.opts: return list(ast.arg.opts)
  if NOOPT: return []
  if BEAM >= 1:
    from tg_codegen.opt.search import beam_search
    return beam_search(ast, ren, int(BEAM.value), device)
  from tg_codegen.opt.heuristic import hand_coded_optimizations
  return hand_coded_optimizations(ast, ren)

INT32_MAX = 2**31 - 1

def check_index_range(uops: list[UOp], ren, name: str) -> None:
  """Refuse a kernel whose addresses leave the int32 range where the renderer computes them in 32 bits (every GPU renderer; the
  LLVM renderer only for index vectors), rather than let them wrap around silently."""
  wide = getattr(ren, "index_bits", 32) >= 64
  for u in uops:
    if u.op is not Ops.INDEX or len(u.src) < 2 or u.src[1].dtype.scalar() != dtypes.index or (wide and u.src[1].dtype.count == 1): continue
    lo, hi = u.src[1].vmin, u.src[1].vmax
    if isinstance(hi, int) and isinstance(lo, int) and (hi > INT32_MAX or lo < -INT32_MAX - 1):
      raise ValueError(f"kernel {name} addresses element {hi if hi > INT32_MAX else lo} of a buffer, beyond the int32 range that "
                       f"{type(ren).__name__} computes addresses in: split the tensor into pieces of fewer than 2**31 elements "
                       "(e.g. with .chunk or .split along an outer axis)")

def get_program(ast: UOp, ren, opts: list[Opt] | None = None, device: str | None = None) -> ProgramSpec:
  """Lower, linearize and render the kernel `ast` for renderer `ren` (with `opts`, or the ones `choose_opts` picks)."""
  if ast.op is not Ops.SINK: raise TypeError(f"a kernel is a SINK of STOREs, got {ast.op.name}")
  info = apply_opts(ast, choose_opts(ast, ren, device) if opts is None else opts, ren)
  try: low = lower(ast, info, ren)
  except KernelOptError:
    if opts is not None or not any(o.op in (OptOps.GROUP, OptOps.GROUPTOP) for o in info.opts): raise
    # the chosen opts need more local memory than the device has: fall back to the same opts without GROUP
    info = apply_opts(ast, [o for o in info.opts if o.op not in (OptOps.GROUP, OptOps.GROUPTOP)], ren)
    low = lower(ast, info, ren)
  uops = linearize(low.sink, low.range_order)
  name = info.name
  check_index_range(uops, ren, name)
  src = ren.render(name, uops)
  gl = sorted((u for u in uops if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg)
  vs = [u for u in uops if u.op is Ops.DEFINE_VAR]
  flops, mem = estimate_ast(ast)
  if DEBUG >= 3: print(f"{name}: opts {list(info.opts)}")
  if DEBUG >= 4: print(src)
  return ProgramSpec(name, src, uops, low.global_size, low.local_size, info, [u.arg for u in gl], vs, flops, mem)

class CompiledRunner:
  """A `ProgramSpec` compiled for one device (through its compiler's disk cache), callable on Buffers."""
  def __init__(self, device: str, spec: ProgramSpec):
    from tg_uop.device import Device
    self.device, self.spec = device, spec
    self.dev = Device[device]
    self.lib = self.dev.compiler.compile_cached(spec.src)
    self.prg = self.dev.runtime(self.dev, spec.name, self.lib)
  def __call__(self, bufs: list, var_vals: dict[str, int] | None = None, wait: bool = False) -> float | None:
    """Run on `bufs` (one Buffer per DEFINE_GLOBAL, in index order) with values for the kernel's variables."""
    var_vals = var_vals or {}
    if len(bufs) != len(self.spec.globals):
      raise ValueError(f"kernel {self.spec.name} takes {len(self.spec.globals)} buffers, got {len(bufs)}")
    missing = [v.arg[0] for v in self.spec.vars if v.arg[0] not in var_vals]
    if missing: raise ValueError(f"kernel {self.spec.name} needs values for variables {missing}")
    for b in bufs: b.ensure_allocated() if hasattr(b, "ensure_allocated") else (b.allocate() if not b.is_allocated() else None)
    for v in self.spec.vars:
      if not v.arg[1] <= var_vals[v.arg[0]] <= v.arg[2]:
        raise ValueError(f"variable {v.arg[0]}={var_vals[v.arg[0]]} is outside its bounds [{v.arg[1]}, {v.arg[2]}]")
    vals = tuple(var_vals[v.arg[0]] for v in self.spec.vars)
    gs = tuple(sym_infer(g, var_vals) for g in self.spec.global_size)  # symbolic launch sizes resolve here
    st = time.perf_counter()
    et = self.prg(*[b._buf for b in bufs], global_size=gs, local_size=self.spec.local_size, vals=vals, wait=wait or DEBUG >= 2)
    if DEBUG >= 2:
      t = et if isinstance(et, float) and et > 0 else time.perf_counter() - st
      print(f"{self.device:8s} {self.spec.name:30s} global {gs} local {self.spec.local_size} "
            f"{t*1e6:9.2f} us {self.spec.flops/t*1e-9:8.2f} GFLOPS {self.spec.mem_bytes/t*1e-9:8.2f} GB/s")
    return et

def run_kernel(ast: UOp, device: str, bufs: list, opts: list[Opt] | None = None, var_vals: dict[str, int] | None = None) -> ProgramSpec:
  """Compile and run the kernel `ast` on `device` over `bufs`; returns the program it ran."""
  from tg_uop.device import Device
  spec = get_program(ast, Device[device].renderer, opts, device)
  CompiledRunner(device, spec)(bufs, var_vals, wait=True)
  return spec

