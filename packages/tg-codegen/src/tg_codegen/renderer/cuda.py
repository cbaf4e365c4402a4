"""`CUDARenderer`: a linearized program as CUDA C (compiled by NVRTC or nvcc), for the CUDA, NV and NULL devices.

Kernel shape: `extern "C" __global__ void __launch_bounds__(N) name(float* data0, ..., int var0)` with N the product of the
`lidx*` bounds. SPECIAL gidxN is blockIdx.{x,y,z}, lidxN is threadIdx.{x,y,z}; DEFINE_LOCAL is a `__shared__` array, DEFINE_REG a
private array, BARRIER `__syncthreads()`. float16 is `half` (cuda_fp16.h), bfloat16 `__nv_bfloat16` (cuda_bf16.h); their
arithmetic runs in float32 and rounds to nearest even once per op, which is exactly `tg_uop.alu.exec_alu`. Vector values use
CUDA's float2/float4/int2/int4/uint2/uint4 (built with make_float4, ...) and small generated structs for other vectors
(`tg_half8` with fields v0..v7, built with `make_tg_half8`). A vector LOAD/STORE is one wide access only where the index is
provably a multiple of the vector width (so the access is aligned); otherwise it is split into scalar accesses.

WMMA (tensor cores): the arg format and the per-lane fragment layout are documented in `tg_codegen.tensor_cores`.
"""
from __future__ import annotations
import math, re, struct
from typing import Any
from tg_uop.dtype import DType, PtrDType, dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_uop.runtime.renderer import Renderer, load_alt

from tg_codegen.tensor_cores import TensorCore, MMA_TENSOR_CORES, parse_wmma_arg, wg_kstep  # noqa: F401  (re-exported for ptx.py)

def arch_number(arch: str, renderer: str) -> int:
  """The compute capability in `sm_90` / `sm_90a` as an int (90), with a clear error for other spellings."""
  if not isinstance(arch, str) or not (m := re.fullmatch(r"sm_(\d+)a?", arch)):
    raise ValueError(f"{renderer} arch must look like 'sm_90' (or 'sm_90a'), got {arch!r}")
  return int(m.group(1))

def check_kernel_name(name: str) -> str:
  """`name` if it is a valid C/PTX identifier, else a clear error."""
  if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
    raise ValueError(f"kernel name {name!r} is not a valid identifier: use letters, digits and '_', not starting with a digit")
  return name

def sanitize(name: str) -> str:
  """A valid identifier made from a variable's name (invalid characters become '_')."""
  s = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
  return s if s and not s[0].isdigit() else "_" + s

def aligned_vector(idx: UOp, count: int, itemsize: int = 4) -> bool:
  """Whether a vector access of `count` elements at `idx` is provably aligned to its own size (then it may be one wide access):
  2 or 4 elements, or 8 of a 2-byte dtype (16 bytes, the widest access)."""
  if count not in (2, 4) and not (count == 8 and itemsize == 2): return False
  return idx.const_factor() % count == 0

def launch_bound(uops: list[UOp]) -> int | None:
  """Threads per block: the product of the constant lidx bounds (None if a bound is symbolic)."""
  n = 1
  for u in uops:
    if u.op is Ops.SPECIAL and str(u.arg).startswith("lidx"):
      if u.src[0].op is not Ops.CONST: return None
      n *= u.src[0].arg
  return n

# ---------------- CUDA C ----------------

_SCALAR = {dtypes.bool: "bool", dtypes.int8: "signed char", dtypes.uint8: "unsigned char", dtypes.int16: "short",
           dtypes.uint16: "unsigned short", dtypes.int32: "int", dtypes.uint32: "unsigned int", dtypes.int64: "long long",
           dtypes.uint64: "unsigned long long", dtypes.float16: "half", dtypes.bfloat16: "__nv_bfloat16", dtypes.float32: "float",
           dtypes.float64: "double", dtypes.index: "int"}
_SHORT = {dtypes.bool: "bool", dtypes.int8: "char", dtypes.uint8: "uchar", dtypes.int16: "short", dtypes.uint16: "ushort",
          dtypes.int32: "int", dtypes.uint32: "uint", dtypes.int64: "long", dtypes.uint64: "ulong", dtypes.float16: "half",
          dtypes.bfloat16: "bf16x", dtypes.float32: "float", dtypes.float64: "double", dtypes.index: "int"}
_BUILTIN_VEC = {(dtypes.float32, 2): "float2", (dtypes.float32, 4): "float4", (dtypes.int32, 2): "int2", (dtypes.int32, 4): "int4",
                (dtypes.index, 2): "int2", (dtypes.index, 4): "int4", (dtypes.uint32, 2): "uint2", (dtypes.uint32, 4): "uint4"}
_H2F = {dtypes.float16: "__half2float", dtypes.bfloat16: "__bfloat162float"}
# int -> half/bf16 conversions that round once (C's (float)x then to half would round twice for wide ints)
_TO16 = {dtypes.float16: {dtypes.float32: "__float2half_rn", dtypes.float64: "__double2half", dtypes.int32: "__int2half_rn",
                          dtypes.index: "__int2half_rn", dtypes.uint32: "__uint2half_rn", dtypes.int64: "__ll2half_rn",
                          dtypes.uint64: "__ull2half_rn", dtypes.int16: "__short2half_rn", dtypes.uint16: "__ushort2half_rn"},
         dtypes.bfloat16: {dtypes.float32: "__float2bfloat16_rn", dtypes.float64: "__double2bfloat16", dtypes.int32: "__int2bfloat16_rn",
                           dtypes.index: "__int2bfloat16_rn", dtypes.uint32: "__uint2bfloat16_rn", dtypes.int64: "__ll2bfloat16_rn",
                           dtypes.uint64: "__ull2bfloat16_rn", dtypes.int16: "__short2bfloat16_rn",
                           dtypes.uint16: "__ushort2bfloat16_rn"}}
_BINOP = {Ops.ADD: "+", Ops.SUB: "-", Ops.MUL: "*", Ops.FDIV: "/", Ops.IDIV: "/", Ops.MOD: "%", Ops.SHL: "<<", Ops.SHR: ">>",
          Ops.AND: "&", Ops.OR: "|", Ops.XOR: "^", Ops.CMPLT: "<", Ops.CMPNE: "!=", Ops.CMPEQ: "=="}
_TMAP_DTYPE = {dtypes.float16: 6, dtypes.bfloat16: 9}  # CUtensorMapDataType: FLOAT16, BFLOAT16
_FLOAT_FN = {Ops.SQRT: "sqrt", Ops.TRUNC: "trunc", Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin"}

def _float_const(v: float, dt: DType) -> str:
  if dt == dtypes.float64:
    if math.isfinite(v): return repr(v)
    return f"__longlong_as_double({struct.unpack('<q', struct.pack('<d', v))[0]}ll)"
  if math.isfinite(v): return repr(v) + "f"
  return f"__uint_as_float({struct.unpack('<I', struct.pack('<f', v))[0]:#x}u)"

def _const(v: Any, dt: DType) -> str:
  """A C literal of scalar dtype `dt` holding exactly `v`."""
  if dt == dtypes.bool: return "true" if v else "false"
  if dt in (dtypes.float16, dtypes.bfloat16):
    bits = struct.unpack("<H", struct.pack("<e", v))[0] if dt == dtypes.float16 else struct.unpack("<I", struct.pack("<f", v))[0] >> 16
    return f"{'__ushort_as_half' if dt == dtypes.float16 else '__ushort_as_bfloat16'}((unsigned short){bits:#x}u)"
  if dtypes.is_float(dt):
    if dt not in (dtypes.float32, dtypes.float64): raise ValueError(f"CUDA renderer doesn't support {dt} constants: cast to float32")
    return _float_const(float(v), dt)
  v = int(v)
  if dt in (dtypes.int32, dtypes.index): return str(v) if v != -2**31 else "(-2147483647-1)"
  if dt == dtypes.uint32: return f"{v}u"
  if dt == dtypes.int64: return f"{v}ll" if v != -2**63 else "(-9223372036854775807ll-1)"
  if dt == dtypes.uint64: return f"{v}ull"
  return f"(({_SCALAR[dt]}){v})"

class CUDARenderer(Renderer):
  """CUDA C for NVRTC/nvcc. `supported_ops` lists the ALU ops rendered natively; the lowering decomposes the rest."""
  device, suffix, default_arch = "CUDA", "CUDA", "sm_90"
  has_local, has_shared, supports_float4 = True, True, True
  global_max = (2**31 - 1, 65535, 65535)
  local_max = (1024, 1024, 64)
  shared_max = 49152  # per block: the static __shared__ limit (what opts may use; `shared_max_dynamic` is for wgmma's stages)
  supported_ops = frozenset(GroupOp.ALU - {Ops.POW, Ops.THREEFRY})  # exp2f/log2f/sinf are CUDA's accurate library functions

  def __init__(self, arch: str | None = None):
    super().__init__(arch)
    self.arch_num = arch_number(self.arch, "CUDARenderer")
    self.tensor_cores = list(MMA_TENSOR_CORES) if self.arch_num >= 80 else []
    self.async_copy = self.arch_num >= 80  # cp.async: the lowering may stage tensor-core tiles double-buffered
    self.ldmatrix = self.arch_num >= 75    # tensor-core fragments from shared memory in one instruction
    self.wgmma = self.arch == "sm_90a"     # Hopper's warpgroup MMA needs the arch-specific target (tg_codegen.lower.wgmma)
    self.tma = self.wgmma                  # ... and its tiles come by bulk tensor copies (TMA): see `_render_tma`
    # beyond 48 KB a block's shared memory is dynamic: the kernel declares one extern array and the size in a module symbol
    # (`tg_dynamic_shared_bytes`) that the CUDA device reads to launch with it. Only the wgmma pipeline's stages use it: opts in
    # general stay within `shared_max` (their other limits, such as blockDim.z <= 64 for a big GROUP, aren't all checked yet)
    self.shared_max_dynamic = 232448 if self.arch_num >= 90 else 166912 if self.arch_num >= 80 else 49152

  # ---- types ----
  def _scalar(self, dt: DType) -> str:
    if dt.scalar() not in _SCALAR: raise ValueError(f"CUDA renderer doesn't support dtype {dt}: cast to float16/bfloat16/float32 first")
    return _SCALAR[dt.scalar()]
  def _type(self, dt: DType) -> str:
    if isinstance(dt, PtrDType): return self._type(dt.base) + "*"
    if dt.count == 1: return self._scalar(dt)
    if (dt.scalar(), dt.count) in _BUILTIN_VEC: return _BUILTIN_VEC[(dt.scalar(), dt.count)]
    self._scalar(dt)
    name = f"tg_{_SHORT[dt.scalar()]}{dt.count}"
    self.structs[name] = dt
    return name
  def _lane(self, dt: DType, i: int) -> str: return "xyzw"[i] if (dt.scalar(), dt.count) in _BUILTIN_VEC else f"v{i}"
  def _make(self, dt: DType, lanes: list[str]) -> str:
    t = self._type(dt)
    return f"make_{t}({', '.join(lanes)})"
  def _struct_defs(self) -> list[str]:
    out = []
    for name, dt in self.structs.items():
      st, n = self._scalar(dt), dt.count
      size = dt.scalar().itemsize * n
      align = min(16, size & -size)
      out.append(f"struct __align__({align}) {name} {{ {st} {', '.join(f'v{i}' for i in range(n))}; }};")
      args = ", ".join(f"{st} a{i}" for i in range(n))
      out.append(f"__device__ __forceinline__ {name} make_{name}({args}) {{ {name} r = {{{', '.join(f'a{i}' for i in range(n))}}}; return r; }}")
    return out

  # ---- values ----
  def _lanes(self, u: UOp) -> list[str]:
    """Expressions for each lane of vector value `u`."""
    if u.dtype.count == 1: return [self.r[u]]
    if u.op is Ops.VECTORIZE: return [self.r[s] for s in u.src]
    if u.op is Ops.VCONST: return [_const(v, u.dtype.scalar()) for v in u.arg]
    return [f"{self.r[u]}.{self._lane(u.dtype, i)}" for i in range(u.dtype.count)]

  def _to_f(self, x: str, dt: DType) -> str: return f"{_H2F[dt]}({x})" if dt in _H2F else x
  def _from_f(self, x: str, dt: DType) -> str: return f"{_TO16[dt][dtypes.float32]}({x})" if dt in _H2F else x

  def _alu(self, op: Ops, out: DType, srcs: list[str], sdt: DType) -> str:
    """A scalar expression for ALU `op` on operand expressions `srcs` of dtype `sdt` (the last operand's for WHERE)."""
    half = sdt in _H2F
    if half:  # float16/bfloat16 compute in float32 and round once, as exec_alu does
      fs = [srcs[0]] + [self._to_f(s, sdt) for s in srcs[1:]] if op is Ops.WHERE else [self._to_f(s, sdt) for s in srcs]
      e = self._alu(op, dtypes.bool if op in GroupOp.Comparison else dtypes.float32, fs, dtypes.float32)
      return e if op in GroupOp.Comparison else self._from_f(e, sdt)
    a = srcs[0]
    if op is Ops.WHERE: return f"({a}?{srcs[1]}:{srcs[2]})"
    if sdt == dtypes.bool and op in (Ops.ADD, Ops.MAX, Ops.OR): return f"({a}|{srcs[1]})"
    if sdt == dtypes.bool and op in (Ops.MUL, Ops.AND): return f"({a}&{srcs[1]})"
    if op is Ops.NEG: return f"(!{a})" if sdt == dtypes.bool else f"(-{a})"
    if op is Ops.MAX:
      if dtypes.is_float(sdt): return f"((({a}>{srcs[1]})||({a}!={a}))?{a}:{srcs[1]})"  # nan propagates from either side
      return f"max({a},{srcs[1]})"
    if op is Ops.MULACC:
      if sdt == dtypes.float32: return f"fmaf({a},{srcs[1]},{srcs[2]})"
      if sdt == dtypes.float64: return f"fma({a},{srcs[1]},{srcs[2]})"
      return f"(({a}*{srcs[1]})+{srcs[2]})"
    if op is Ops.RECIP: return f"(1.0f/{a})" if sdt == dtypes.float32 else f"(1.0/{a})"
    if op in _FLOAT_FN:
      if not dtypes.is_float(sdt): return a  # TRUNC of an int is itself
      return f"{_FLOAT_FN[op]}{'f' if sdt == dtypes.float32 else ''}({a})"
    if op in _BINOP: return f"({a}{_BINOP[op]}{srcs[1]})"
    raise ValueError(f"CUDA renderer can't render ALU op {op.name}: it is not in supported_ops, so the lowering must decompose it")

  def _cast(self, x: str, src: DType, dst: DType) -> str:
    """C conversion of scalar expression `x` from `src` to `dst` (float->int truncates, to bool is != 0, halves round once)."""
    if src == dst: return x
    if src in _H2F:
      x, src = self._to_f(x, src), dtypes.float32
      if dst == src: return x
    if dst in _H2F:
      if src == dtypes.bool or src in (dtypes.int8, dtypes.uint8): x, src = f"((short)({x}))", dtypes.int16
      return f"{_TO16[dst][src]}({x})"
    if dst == dtypes.bool: return f"({x}!=0)"
    return f"(({self._scalar(dst)})({x}))"

  def _bitcast(self, x: str, src: DType, dst: DType) -> str:
    if src.itemsize != dst.itemsize: raise ValueError(f"can't bitcast {src} to {dst}: sizes differ ({src.itemsize} vs {dst.itemsize} bytes)")
    self.need_bitcast = True
    return f"tg_bitcast<{self._type(dst)}>({x})"

  # ---- rendering ----
  def render(self, name: str, uops: list[UOp]) -> str:
    """CUDA C source of kernel `name` from linearized `uops`."""
    check_kernel_name(name)
    self.r: dict[UOp, str] = {}
    self.structs: dict[str, DType] = {}
    self.need_bitcast = self.need_wgdesc = self.wgmma_pending = self.need_mbar = False
    self.tmaps: dict[tuple, int] = {}  # (buffer, dtype, row stride, rows, box rows) -> the tensor map parameter's number
    # shared memory over the static 48 KB: every buffer a 1024-byte aligned slice of the dynamic array
    dyn, total = {}, 0
    if sum(u.dtype.size * u.dtype.base.itemsize for u in uops if u.op is Ops.DEFINE_LOCAL) > 49152:
      for u in uops:
        if u.op is Ops.DEFINE_LOCAL: dyn[u], total = total, total + -(-u.dtype.size * u.dtype.base.itemsize // 1024) * 1024
    self.dynamic_shared = total
    # pipelined WGMMAs accumulate in place in their register array: the accumulator's load before them and store after are elided
    self.inplace = {u.src[2]: u for u in uops if u.op is Ops.WMMA and str(u.arg[0]).startswith("WGMMA") and u.arg[6][4] and
                    u.src[2].op is Ops.LOAD and u.src[2].src[0].src[0].op is Ops.DEFINE_REG and u.src[2].src[0].src[1].op is Ops.CONST}
    params: list[tuple[int, str]] = []
    vars_: list[str] = []
    body: list[str] = []
    depth, hoist = 1, False
    counts: dict[str, int] = {}
    gates: dict[UOp, str] = {}
    wmmas: dict[str, TensorCore] = {}
    def fresh(prefix: str) -> str:
      counts[prefix] = counts.get(prefix, 0) + 1
      return f"{prefix}{counts[prefix]-1}"
    pre: list[str] = []
    def emit(line: str):
      # definitions go before any control flow, so a use after the IF/loop they appear in still sees them
      if hoist: pre.append("  " + line)
      else: body.append("  " * depth + line)
    def define(u: UOp, prefix: str, expr: str):
      self.r[u] = fresh(prefix)
      emit(f"{self._type(u.dtype)} {self.r[u]} = {expr};")

    for u in uops:
      op = u.op
      if op is Ops.SINK: break
      if op in (Ops.NOOP, Ops.AFTER) and u.src: self.r[u] = self.r[u.src[0]]; continue
      hoist = op in (Ops.SPECIAL, Ops.DEFINE_LOCAL, Ops.DEFINE_REG, Ops.VCONST)
      if op is Ops.DEFINE_GLOBAL:
        self.r[u] = f"data{u.arg}"
        params.append((u.arg, f"{self._type(u.dtype.base)}* data{u.arg}"))
      elif op is Ops.DEFINE_VAR:
        self.r[u] = sanitize(u.arg[0])
        vars_.append(f"{self._scalar(u.dtype)} {self.r[u]}")
      elif op is Ops.SPECIAL:
        kind, dim = str(u.arg)[:4], int(str(u.arg)[4:] or 0)
        if kind not in ("gidx", "lidx") or dim > 2: raise ValueError(f"SPECIAL {u.arg!r}: expected gidx0..2 or lidx0..2")
        self.r[u] = sanitize(u.arg)
        emit(f"int {self.r[u]} = {'blockIdx' if kind == 'gidx' else 'threadIdx'}.{'xyz'[dim]}; /* {self.r[u.src[0]]} */")
      elif op is Ops.DEFINE_LOCAL and dyn:
        self.r[u] = fresh("smem")
        emit(f"{self._type(u.dtype.base)}* {self.r[u]} = ({self._type(u.dtype.base)}*)(tg_dsmem + {dyn[u]});")
      elif op is Ops.DEFINE_LOCAL:
        self.r[u] = fresh("smem")
        # 1024-byte aligned where that big: wgmma's 128-byte swizzle works on the address bits of 1024-byte atoms
        align = 1024 if u.dtype.size * u.dtype.base.itemsize >= 1024 else 16
        emit(f"__shared__ __align__({align}) {self._type(u.dtype.base)} {self.r[u]}[{u.dtype.size}];")
      elif op is Ops.DEFINE_REG:
        self.r[u] = fresh("acc")
        emit(f"{self._type(u.dtype.base)} {self.r[u]}[{u.dtype.size}];")
      elif op is Ops.CONST: self.r[u] = _const(u.arg, u.dtype)
      elif op is Ops.VCONST: define(u, "cvec", self._make(u.dtype, [_const(v, u.dtype.scalar()) for v in u.arg]))
      elif op is Ops.RANGE:
        self.r[u] = f"ridx{u.arg}" if isinstance(u.arg, int) else sanitize(f"ridx{u.arg}")
        t = self._scalar(u.dtype)
        emit(f"for ({t} {self.r[u]} = 0; {self.r[u]} < {self.r[u.src[0]]}; {self.r[u]}++) {{")
        depth += 1
      elif op in (Ops.END, Ops.ENDIF):
        if op is Ops.END and self.wgmma_pending:  # the iteration's WGMMAs were only committed: they run on (beside the stage
          # refill) until the iteration's end. Waiting after the loop instead let ptxas read accumulators in the epilogue before
          # that wait (H100, a 128x256 kernel at 255 registers: wrong results, even with the registers as the wait's operands);
          # waiting here is as fast (float16 4096^3: 0.214 ms either way)
          emit('asm volatile("wgmma.wait_group.sync.aligned 0;\\n" ::: "memory");')
          self.wgmma_pending = False
        depth -= 1
        emit("}")
      elif op is Ops.IF:
        emit(f"if ({self.r[u.src[0]]}) {{")
        depth += 1
      elif op is Ops.BARRIER and type(u.arg) is tuple: self._render_mbarrier(u, emit)
      elif op is Ops.BARRIER:  # arg: None, "commit" (a cp.async group), "waitN" (commit, wait for all but the N newest groups),
        # "*_proxy" (then a proxy fence: wgmma reads the tiles), "wgmma_waitN" (all but the N newest WGMMA groups done)
        arg = u.arg or ""
        if arg == "commit" or arg.startswith("wait"): emit('asm volatile("cp.async.commit_group;\\n" ::: "memory");')
        if arg.startswith("wait"): emit(f'asm volatile("cp.async.wait_group {int(arg[4:].split("_")[0])};\\n" ::: "memory");')
        if arg.endswith("_proxy") or arg == "async_proxy": emit('asm volatile("fence.proxy.async.shared::cta;\\n" ::: "memory");')
        if arg.startswith("wgmma_wait"): emit(f'asm volatile("wgmma.wait_group.sync.aligned {int(arg[10:])};\\n" ::: "memory");')
        if u.arg != "commit": emit("__syncthreads();")
      elif op is Ops.INDEX:
        self.r[u] = f"({self.r[u.src[0]]}+{self.r[u.src[1]]})"
        if len(u.src) > 2: gates[u] = self.r[u.src[2]]
      elif op is Ops.LOAD and u in self.inplace: self.r[u] = "<in place>"
      elif op is Ops.LOAD and u.arg in ("async", "tma"): self.r[u] = f"<{u.arg}>"  # its STORE copies memory to memory
      elif op is Ops.LOAD and type(u.arg) is tuple:  # ("ldmatrix", matrices, trans): see tg_codegen.tensor_cores
        _, nmat, trans = u.arg
        self.r[u] = fresh("frag")
        outs = ", ".join(f'"=r"(((unsigned*)&{self.r[u]})[{i}])' for i in range(nmat))
        emit(f"{self._type(u.dtype)} {self.r[u]};")
        emit(f'asm volatile("ldmatrix.sync.aligned.m8n8.x{nmat}{".trans" if trans else ""}.shared.b16 {{{",".join(f"%{i}" for i in range(nmat))}}}, '
             f'[%{nmat}];\\n" : {outs} : "r"((unsigned)__cvta_generic_to_shared({self.r[u.src[0]]})));')
      elif op is Ops.STORE and u.arg == "async": self._render_async_copy(u, gates, emit)
      elif op is Ops.STORE and type(u.arg) is tuple: self._render_tma(u, gates, emit)
      elif op is Ops.LOAD: self._render_load(u, gates, define)
      elif op is Ops.STORE and u.src[1] in self.inplace.values() and u.src[0] is u.src[1].src[2].src[0]: pass  # updated in place
      elif op is Ops.STORE: self._render_store(u, gates, emit)
      elif op is Ops.VECTORIZE: define(u, "vec", self._make(u.dtype, [self.r[s] for s in u.src]))
      elif op is Ops.GEP:
        lanes = self._lanes(u.src[0])
        if u.dtype.count == 1: self.r[u] = lanes[u.arg[0]]
        else: define(u, "vec", self._make(u.dtype, [lanes[i] for i in u.arg]))
      elif op in GroupOp.ALU:
        sdt = (u.src[-1] if op is Ops.WHERE else u.src[0]).dtype
        if u.dtype.count == 1: define(u, "alu", self._alu(op, u.dtype, [self.r[s] for s in u.src], sdt.scalar()))
        else:
          cols = list(zip(*[self._lanes(s) for s in u.src]))
          define(u, "alu", self._make(u.dtype, [self._alu(op, u.dtype.scalar(), list(c), sdt.scalar()) for c in cols]))
      elif op in (Ops.CAST, Ops.BITCAST):
        f = self._cast if op is Ops.CAST else self._bitcast
        sdt, ddt = u.src[0].dtype.scalar(), u.dtype.scalar()
        if u.dtype.count == 1: define(u, "cast", f(self.r[u.src[0]], sdt, ddt))
        else: define(u, "cast", self._make(u.dtype, [f(x, sdt, ddt) for x in self._lanes(u.src[0])]))
      elif op is Ops.WMMA and str(u.arg[0]).startswith("WGMMA"): self._render_wgmma(u, fresh, emit)
      elif op is Ops.WMMA:
        tc = parse_wmma_arg(u.arg)
        fn = f"tg_wmma_{tc.dtype_in.name.replace('__', '')}_{tc.dims[0]}{tc.dims[1]}{tc.dims[2]}"
        wmmas[fn] = tc
        for s, want in zip(u.src, (tc.dtype_in.vec(8), tc.dtype_in.vec(4), tc.dtype_out.vec(4))):
          if s.dtype != want: raise ValueError(f"WMMA {tc.name} needs sources of dtype {want}, got {s.dtype} (see the module docstring)")
        self._type(tc.dtype_in.vec(8)), self._type(tc.dtype_in.vec(4))
        define(u, "wmma", f"{fn}({', '.join(self.r[s] for s in u.src)})")
      else: raise ValueError(f"CUDA renderer can't render {op.name} in a linearized program (see CONTRACT 'Linearized program v1')")

    params.sort()
    lb = launch_bound(uops)
    tmaps = [f"const __grid_constant__ tg_tmap tmap{i}" for i in range(len(self.tmaps))]
    sig = ", ".join([p for _, p in params] + vars_ + tmaps)
    head = [f"extern \"C\" __global__ void {f'__launch_bounds__({lb}) ' if lb else ''}{name}({sig}) {{"]
    if self.tmaps:  # what the CUDA device passes to cuTensorMapEncodeTiled for each map (all but the buffer's address)
      specs = [x for (buf, dt, rs, rows, box) in self.tmaps for x in (buf, _TMAP_DTYPE[dt], rs, rows, rs * dt.itemsize, 64, box, 3)]
      head.insert(0, f'extern "C" __device__ const unsigned long long tg_tensor_maps[] = {{{len(self.tmaps)}, {", ".join(map(str, specs))}}};')
    if total: head = [f'extern "C" __device__ const unsigned int tg_dynamic_shared_bytes = {total};', *head,
                      "  extern __shared__ __align__(1024) unsigned char tg_dsmem[];"]
    return "\n".join(self._prelude(uops, wmmas) + head + pre + body + ["}"]) + "\n"

  def _render_load(self, u: UOp, gates: dict[UOp, str], define):
    idx = u.src[0]
    if idx.op is not Ops.INDEX:
      raise ValueError(f"LOAD needs an INDEX source, got {idx.op.name}: a linearized program addresses memory through INDEX")
    cnt = u.dtype.count
    if cnt == 1: expr = f"*{self.r[idx]}"
    elif aligned_vector(idx.src[1], cnt, u.dtype.scalar().itemsize): expr = f"*(({self._type(u.dtype)}*){self.r[idx]})"
    else: expr = self._make(u.dtype, [f"*({self.r[idx]}+{i})" for i in range(cnt)])
    if idx in gates:
      if load_alt(u) is None: raise ValueError("a gated LOAD needs an alt value: LOAD(INDEX(buf, idx, gate), alt)")
      expr = f"({gates[idx]}?{expr}:{self.r[load_alt(u)]})"
    define(u, "val", expr)

  def _render_wgmma(self, u: UOp, fresh, emit):
    """WMMA with a WGMMA arg (tg_codegen.lower.wgmma): descriptors from the two shared-memory pointers and the layouts in the arg,
    then fence, wgmma.mma_async (D += A @ B; B N-major (transposed) or K-major), commit and wait for it, on the accumulator's
    registers."""
    if self.arch != "sm_90a": raise ValueError(f"wgmma needs the sm_90a target, this CUDARenderer is {self.arch!r}")
    _, (_, n, _), din, _, _, _, (_, (alo, aso, asw), (blo, bso, bsw), ksteps, pipelined, b_kmajor) = u.arg
    it, nc, isz = ("f16" if din == dtypes.float16 else "bf16"), n // 2, din.itemsize
    self.need_wgdesc = True
    if u.src[2] in self.inplace:  # the accumulator's own registers, left untouched while the WGMMA runs
      acc, off = self.r[u.src[2].src[0].src[0]], u.src[2].src[0].src[1].arg
      self.r[u], lanes = "<in place>", [f"{acc}[{off + i}]" for i in range(nc)]
    else:
      d = self.r[u] = fresh("wg")
      emit(f"{self._type(u.dtype)} {d} = {self.r[u.src[2]]};")
      lanes = [f"{d}.v{i}" for i in range(nc)]
    da, db = fresh("desc"), fresh("desc")
    emit(f"unsigned long long {da} = tg_wgdesc({self.r[u.src[0]]}, {alo * isz}, {aso * isz}, {int(asw)}), "
         f"{db} = tg_wgdesc({self.r[u.src[1]]}, {blo * isz}, {bso * isz}, {int(bsw)});")
    regs = ",".join(f"%{i}" for i in range(nc))
    outs = ", ".join(f'"+f"({x})' for x in lanes)
    # step s of 16 along K starts `wg_kstep` further in both tiles: added to the descriptors' address fields
    ka, kb = wg_kstep(True, asw, alo, aso) * isz, wg_kstep(b_kmajor, bsw, blo, bso) * isz
    descs = ", ".join(f'"l"({da} + {(s * ka) >> 4}ull), "l"({db} + {(s * kb) >> 4}ull)' for s in range(ksteps))
    tb = int(not b_kmajor)  # B transposed: N-major
    mmas = "".join(f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{it}.{it} {{{regs}}}, %{nc + 2 * s}, %{nc + 2 * s + 1}, p, 1, 1, 0, {tb};\\n"
                   for s in range(ksteps))
    wait = "" if pipelined else "wgmma.wait_group.sync.aligned 0;"
    emit(f'asm volatile("{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{nc + 2 * ksteps}, 0;\\nwgmma.fence.sync.aligned;\\n{mmas}'
         f'wgmma.commit_group.sync.aligned;\\n{wait}\\n}}\\n" : {outs} : {descs}, "r"(1) : "memory");')
    self.wgmma_pending |= bool(pipelined)

  def _render_mbarrier(self, u: UOp, emit):
    """BARRIER("mbar_init", S)(barriers, gate): the gated thread initializes S mbarriers (one arrival each), then the block syncs;
    BARRIER("mbar_wait",)(barrier, parity): every thread waits for the barrier's phase of that parity to complete."""
    self.need_mbar = True
    bar, val = (self.r[x] for x in u.src[:2])
    if u.arg[0] == "mbar_init":
      emit(f"if ({val}) {{ for (int i = 0; i < {u.arg[1]}; i++) asm volatile(\"mbarrier.init.shared::cta.b64 [%0], 1;\" :: "
           f"\"r\"(tg_smem({bar} + i)) : \"memory\"); asm volatile(\"fence.mbarrier_init.release.cluster;\" ::: \"memory\"); }}")
      emit("__syncthreads();")
    elif u.arg[0] == "mbar_wait": emit(f"tg_mbar_wait({bar}, {val});")
    else: raise ValueError(f"unknown mbarrier BARRIER {u.arg!r}: expected ('mbar_init', n) or ('mbar_wait',)")

  def _render_tma(self, u: UOp, gates: dict[UOp, str], emit):
    """STORE(shared INDEX, LOAD(global INDEX, arg="tma"), mbarrier INDEX, arg=("tma", row stride, rows, box rows, boxes, box
    stride, expect)) (tg_codegen.lower.wgmma): bulk tensor copies of `boxes` boxes of 64 columns x `box rows` rows from the buffer
    seen as `rows` rows of `row stride` elements, starting at the global index, into shared memory `box stride` elements apart,
    128-byte swizzled, completing on the mbarrier; first the copying thread arrives on it expecting `expect` bytes (if not 0).
    Each distinct (buffer, view, box) is one tensor map: a `const __grid_constant__ tg_tmap` parameter after the others."""
    if not self.tma: raise ValueError(f"bulk tensor copies (TMA) need the sm_90a target, this CUDARenderer is {self.arch!r}")
    dst, ld, bar = u.src[:3]
    gidx = ld.src[0]
    _, rs, rows, box, nbox, bstride, expect = u.arg
    t = self.tmaps.setdefault((gidx.src[0].arg, ld.dtype, rs, rows, box), len(self.tmaps))
    self.need_mbar = True
    off, b = self.r[gidx.src[1]], f"tg_smem({self.r[bar]})"
    body = [f"int tc0 = ({off}) % {rs}, tc1 = ({off}) / {rs};"]
    if expect: body.append(f'asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"({b}), "r"({expect}) : "memory");')
    body += [f'asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {{%2, %3}}], [%4];" '
             f':: "r"(tg_smem({self.r[dst]} + {i * bstride})), "l"(&tmap{t}), "r"(tc0 + {64 * i}), "r"(tc1), "r"({b}) : "memory");'
             for i in range(nbox)]
    gate = gates.get(dst, gates.get(gidx))
    emit(f"if ({gate}) {{ {' '.join(body)} }}" if gate else f"{{ {' '.join(body)} }}")

  def _render_async_copy(self, u: UOp, gates: dict[UOp, str], emit):
    """STORE(shared INDEX, LOAD(global INDEX), arg="async"): a 16-byte cp.async (skipped where the global index is gated off)."""
    dst, src = u.src[0], u.src[1].src[0]
    if u.src[1].dtype.itemsize != 16: raise ValueError(f"an async copy moves 16 bytes, got {u.src[1].dtype}")
    cp = (f'asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\\n" :: "r"((unsigned)__cvta_generic_to_shared({self.r[dst]})), '
          f'"l"({self.r[src]}));')
    emit(f"if ({gates[src]}) {{ {cp} }}" if src in gates else cp)

  def _render_store(self, u: UOp, gates: dict[UOp, str], emit):
    idx, val = u.src[0], u.src[1]
    if idx.op is not Ops.INDEX:
      raise ValueError(f"STORE needs an INDEX source, got {idx.op.name}: a linearized program addresses memory through INDEX")
    cnt = val.dtype.count
    if cnt == 1: stmts = [f"*{self.r[idx]} = {self.r[val]};"]
    elif aligned_vector(idx.src[1], cnt, val.dtype.scalar().itemsize): stmts = [f"*(({self._type(val.dtype)}*){self.r[idx]}) = {self.r[val]};"]
    else: stmts = [f"*({self.r[idx]}+{i}) = {x};" for i, x in enumerate(self._lanes(val))]
    if idx in gates: stmts = [f"if ({gates[idx]}) {{ {' '.join(stmts)} }}"]
    for s in stmts: emit(s)

  def _prelude(self, uops: list[UOp], wmmas: dict[str, TensorCore]) -> list[str]:
    dts = {u.dtype.scalar() if not isinstance(u.dtype, PtrDType) else u.dtype.base.scalar() for u in uops}
    out = []
    if dtypes.float16 in dts or any(tc.dtype_in == dtypes.float16 for tc in wmmas.values()): out.append("#include <cuda_fp16.h>")
    if dtypes.bfloat16 in dts or any(tc.dtype_in == dtypes.bfloat16 for tc in wmmas.values()): out.append("#include <cuda_bf16.h>")
    out += self._struct_defs()
    if getattr(self, "need_wgdesc", False):  # a wgmma shared-memory descriptor: address, leading and stride byte offsets, no swizzle
      out.append("__device__ __forceinline__ unsigned long long tg_wgdesc(const void* p, unsigned lbo, unsigned sbo, unsigned swizzle) { "
                 "return (unsigned long long)(((unsigned)__cvta_generic_to_shared(p) & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16) | "
                 "((unsigned long long)(sbo >> 4) << 32) | ((unsigned long long)swizzle << 62); }")
    if getattr(self, "need_mbar", False):
      out += ["__device__ __forceinline__ unsigned tg_smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }",
              "__device__ __forceinline__ void tg_mbar_wait(unsigned long long* bar, int parity) { asm volatile(\"{\\n.reg .pred p;\\n"
              "tg_wait:\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\\n@!p bra tg_wait;\\n}\\n\" :: \"r\"(tg_smem(bar)), "
              "\"r\"(parity) : \"memory\"); }"]
    if getattr(self, "tmaps", None): out.append("struct __align__(64) tg_tmap { unsigned long long v[16]; };  // a CUtensorMap")
    if self.need_bitcast:
      out.append("template <class T, class F> __device__ __forceinline__ T tg_bitcast(F f) { T t; memcpy(&t, &f, sizeof(T)); return t; }")
    for fn, tc in wmmas.items():
      ta, tb = self._type(tc.dtype_in.vec(8)), self._type(tc.dtype_in.vec(4))
      it = "f16" if tc.dtype_in == dtypes.float16 else "bf16"
      out += [f"__device__ __forceinline__ float4 {fn}({ta} a, {tb} b, float4 c) {{",
              "  const unsigned *A = (const unsigned*)&a, *B = (const unsigned*)&b;",
              f"  asm(\"mma.sync.aligned.m16n8k16.row.col.f32.{it}.{it}.f32 {{%0,%1,%2,%3}}, {{%4,%5,%6,%7}}, {{%8,%9}}, {{%0,%1,%2,%3}};\"",
              "      : \"+f\"(c.x), \"+f\"(c.y), \"+f\"(c.z), \"+f\"(c.w)",
              "      : \"r\"(A[0]), \"r\"(A[1]), \"r\"(A[2]), \"r\"(A[3]), \"r\"(B[0]), \"r\"(B[1]));",
              "  return c;", "}"]
    return out
