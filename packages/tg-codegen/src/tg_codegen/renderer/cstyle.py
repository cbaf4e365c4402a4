"""C-style renderers: `CStyleRenderer`, the base C for the CPU and CUDA C share, and `CRenderer` (alias `ClangRenderer`), C for the CPU.

Input is a linearized program (contract "Linearized program v1"); the semantics are those of `tg_uop.alu.exec_alu`.
Small float formats are held in a storage type and computed through float (or double where one rounding from float would
not be exact): `float_conv` names the conversions. In C, bfloat16 and fp8 are always emulated as bits, float16 is
`_Float16` where the compiler defines `__FLT16_MAX__` and emulated bits otherwise.
"""
from __future__ import annotations
import math, re
from typing import Any, Callable
from tg_uop.runtime.renderer import load_alt
from tg_uop.dtype import DType, PtrDType, dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_uop.runtime.renderer import Renderer

class RenderError(ValueError):
  """The program uses something this renderer can't express (the message names the op and the renderer)."""

# ---- scalar lane expressions: each takes the operand strings and the dtype the op computes in ----
def _fsuffix(dt: DType) -> str: return "" if dt.scalar() == dtypes.float64 else "f"
def _one(dt: DType) -> str: return "1.0" if dt.scalar() == dtypes.float64 else "1.0f"
def _ubits(dt: DType) -> int: return max(32, 8 * dt.itemsize) if dt.scalar() != dtypes.index else 32
def _utype(dt: DType) -> str: return "unsigned long long" if _ubits(dt) == 64 else "unsigned int"

def _max(a: str, b: str, dtype: DType) -> str:
  if dtypes.is_float(dtype): return f"((({a})!=({a})||({b})!=({b}))?(({a})+({b})):(({b})>({a})?({b}):({a})))"  # nan propagates
  return f"(({b})>({a})?({b}):({a}))"
def _shl(a: str, b: str, dtype: DType) -> str:
  # shift in unsigned so that negative values shift like bits (exec_alu wraps the result)
  return f"(({_utype(dtype)})({a})<<({b}))"
def _idiv(a: str, b: str, dtype: DType) -> str:
  return f"__builtin_trunc{_fsuffix(dtype)}(({a})/({b}))" if dtypes.is_float(dtype) else f"(({a})/({b}))"
def _mod(a: str, b: str, dtype: DType) -> str:
  return f"__builtin_fmod{_fsuffix(dtype)}({a},{b})" if dtypes.is_float(dtype) else f"(({a})%({b}))"
def _mulacc(a: str, b: str, c: str, dtype: DType) -> str:
  # exec_alu computes x*y+z in double and rounds once: float32 matches that exactly through double
  if dtype.scalar() == dtypes.float32: return f"((float)((double)({a})*(double)({b})+(double)({c})))"
  return f"(({a})*({b})+({c}))"
def _neg(a: str, dtype: DType) -> str:
  return f"(-({a}))" if dtypes.is_float(dtype) else f"(({_utype(dtype)})0-({_utype(dtype)})({a}))" if dtypes.is_int(dtype) else f"(!({a}))"
def _trunc(a: str, dtype: DType) -> str: return f"__builtin_trunc{_fsuffix(dtype)}({a})" if dtypes.is_float(dtype) else f"({a})"
def _math(fn: str) -> Callable[..., str]: return lambda a, dtype: f"__builtin_{fn}{_fsuffix(dtype)}({a})"

C_CODE_FOR_OP: dict[Ops, Callable[..., str]] = {
  Ops.ADD: lambda a, b, dtype: f"({a}+{b})", Ops.SUB: lambda a, b, dtype: f"({a}-{b})", Ops.MUL: lambda a, b, dtype: f"({a}*{b})",
  Ops.FDIV: lambda a, b, dtype: f"({a}/{b})", Ops.IDIV: _idiv, Ops.MOD: _mod, Ops.MAX: _max, Ops.NEG: _neg,
  Ops.RECIP: lambda a, dtype: f"({_one(dtype)}/{a})", Ops.TRUNC: _trunc,
  Ops.SQRT: _math("sqrt"), Ops.EXP2: _math("exp2"), Ops.LOG2: _math("log2"), Ops.SIN: _math("sin"),
  Ops.SHL: _shl, Ops.SHR: lambda a, b, dtype: f"(({a})>>({b}))",
  Ops.AND: lambda a, b, dtype: f"({a}&{b})", Ops.OR: lambda a, b, dtype: f"({a}|{b})", Ops.XOR: lambda a, b, dtype: f"({a}^{b})",
  Ops.CMPLT: lambda a, b, dtype: f"({a}<{b})", Ops.CMPNE: lambda a, b, dtype: f"({a}!={b})", Ops.CMPEQ: lambda a, b, dtype: f"({a}=={b})",
  Ops.WHERE: lambda c, a, b, dtype: f"({c}?{a}:{b})", Ops.MULACC: _mulacc,
  Ops.THREEFRY: lambda a, b, dtype: f"tg_threefry({a},{b})",
}

# where the second operand is not a constant known to be safe, C's undefined cases get the value exec_alu gives
def _g_idiv(a: str, b: str, dtype: DType) -> str:
  if dtypes.is_float(dtype): return _idiv(a, b, dtype)
  if dtypes.is_unsigned(dtype): return f"(({b})==0?0:({a})/({b}))"
  return f"(({b})==0?0:({b})==-1?({_utype(dtype)})0-({_utype(dtype)})({a}):({a})/({b}))"  # INT_MIN/-1 traps on x86
def _g_mod(a: str, b: str, dtype: DType) -> str:
  if dtypes.is_float(dtype): return _mod(a, b, dtype)
  return f"(({b})==0?0:({a})%({b}))" if dtypes.is_unsigned(dtype) else f"(({b})==0||({b})==-1?0:({a})%({b}))"
def _g_shl(a: str, b: str, dtype: DType) -> str:
  return f"(((unsigned long long)({b}))<{_ubits(dtype)}ull?{_shl(a, b, dtype)}:0)"
def _g_shr(a: str, b: str, dtype: DType) -> str:
  big = "0" if dtypes.is_unsigned(dtype) else f"(({a})<0?-1:0)"
  return f"(({b})<0?0:((unsigned long long)({b}))<{_ubits(dtype)}ull?(({a})>>({b})):{big})"
C_GUARDED_CODE_FOR_OP: dict[Ops, Callable[..., str]] = {Ops.IDIV: _g_idiv, Ops.MOD: _g_mod, Ops.SHL: _g_shl, Ops.SHR: _g_shr}

def _safe_second(op: Ops, u: UOp, dt: DType) -> bool:
  """Whether `u`, the second operand of IDIV/MOD/SHL/SHR, is a constant for which plain C gives exec_alu's result."""
  if u.op is not Ops.CONST or not isinstance(u.arg, int) or isinstance(u.arg, bool): return dtypes.is_float(dt)
  if op in (Ops.IDIV, Ops.MOD): return u.arg != 0 and (u.arg != -1 or dtypes.is_unsigned(dt))
  return 0 <= u.arg < (8 * dt.itemsize if dt.scalar() != dtypes.index else 32)

# ---- C helpers, emitted only when a program needs them ----
C_SMALLFLOAT = r"""/* small float formats as bits: (ebits, mbits); e4m3: no inf, nan 0x7f; out of range and inf saturate to +-448 (torch) */
static inline float tg_small2f(unsigned int bits, int ebits, int mbits, int e4m3) {
  unsigned int emax = (1u << ebits) - 1u, e = (bits >> mbits) & emax, m = bits & ((1u << mbits) - 1u), s = (bits >> (ebits + mbits)) & 1u, out;
  int bias = (1 << (ebits - 1)) - 1;
  float f;
  if (e4m3 ? (e == emax && m == (1u << mbits) - 1u) : e == emax) out = (m != 0u || e4m3) ? 0x7fc00000u : 0x7f800000u;
  else if (e == 0u) {
    unsigned int sb = (unsigned int)(127 + 1 - bias - mbits) << 23;
    __builtin_memcpy(&f, &sb, 4);
    f = (float)m * f;
    return s ? -f : f;
  } else out = ((e + 127u - (unsigned int)bias) << 23) | (m << (23 - mbits));
  out |= s << 31;
  __builtin_memcpy(&f, &out, 4);
  return f;
}
static inline unsigned int tg_d2small(double v, int ebits, int mbits, int e4m3) {
  unsigned long long b, full, r, mag, rem, half;
  __builtin_memcpy(&b, &v, 8);
  unsigned int sign = (unsigned int)(b >> 63) << (ebits + mbits), emax = (1u << ebits) - 1u;
  int e = (int)((b >> 52) & 0x7ffu), bias = (1 << (ebits - 1)) - 1, te, shift;
  unsigned long long m = b & 0xfffffffffffffull;
  if (e == 0x7ff) return sign | (e4m3 ? (m != 0ull ? 0x7fu : 0x7eu) : m != 0ull ? ((emax << mbits) | (1u << (mbits - 1))) : (emax << mbits));
  te = e - 1023 + bias;
  shift = 52 - mbits + (te < 1 ? 1 - te : 0);
  full = m | (1ull << 52);
  if (e == 0 || shift >= 64) r = 0ull;
  else {  /* round to nearest, ties to even */
    half = 1ull << (shift - 1); rem = full & ((1ull << shift) - 1ull); r = full >> shift;
    if (rem > half || (rem == half && (r & 1ull))) r++;
  }
  mag = te < 1 ? r : ((unsigned long long)(te - 1) << mbits) + r;
  if (mag > (e4m3 ? 0x7eull : (unsigned long long)((emax << mbits) - 1u))) return sign | (e4m3 ? 0x7eu : (emax << mbits));
  return sign | (unsigned int)mag;
}
"""
C_HALF = r"""#ifdef __FLT16_MAX__
typedef _Float16 half;
#define tg_h2f(x) ((float)(x))
#define tg_f2h(x) ((half)(x))
#define tg_d2h(x) ((half)(x))
#else
typedef unsigned short half;  /* no _Float16 in this compiler: IEEE binary16 bits */
#define tg_h2f(x) tg_small2f((x), 5, 10, 0)
#define tg_f2h(x) ((half)tg_d2small((double)(x), 5, 10, 0))
#define tg_d2h(x) ((half)tg_d2small((x), 5, 10, 0))
#endif
"""
C_BF16 = r"""typedef unsigned short bfloat16;  /* always bits: __bf16 support differs between compilers and versions */
static inline float tg_bf2f(unsigned short b) { unsigned int u = (unsigned int)b << 16; float f; __builtin_memcpy(&f, &u, 4); return f; }
static inline unsigned short tg_f2bf(float f) {
  unsigned int u; __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  /* nan stays nan */
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
#define tg_d2bf(x) ((bfloat16)tg_d2small((x), 8, 7, 0))
"""
C_FP8 = r"""typedef unsigned char fp8e4m3;
typedef unsigned char fp8e5m2;
#define tg_e4m3_2f(x) tg_small2f((x), 4, 3, 1)
#define tg_d2e4m3(x) ((fp8e4m3)tg_d2small((x), 4, 3, 1))
#define tg_e5m2_2f(x) tg_small2f((x), 5, 2, 0)
#define tg_d2e5m2(x) ((fp8e5m2)tg_d2small((x), 5, 2, 0))
"""
C_THREEFRY = r"""static inline unsigned long long tg_threefry(unsigned long long x, unsigned long long key) {
  static const int rot[8] = {13, 15, 26, 6, 17, 29, 16, 24};
  unsigned int ks[3] = {(unsigned int)key, (unsigned int)(key >> 32), 0u}, x0, x1;
  ks[2] = ks[0] ^ ks[1] ^ 0x1BD11BDAu;
  x0 = (unsigned int)x + ks[0]; x1 = (unsigned int)(x >> 32) + ks[1];
  for (int i = 0; i < 5; i++) {
    for (int j = 0; j < 4; j++) { int r = rot[(i % 2) * 4 + j]; x0 += x1; x1 = (x1 << r) | (x1 >> (32 - r)); x1 ^= x0; }
    x0 += ks[(i + 1) % 3]; x1 += ks[(i + 2) % 3] + (unsigned int)i + 1u;
  }
  return ((unsigned long long)x1 << 32) | x0;
}
"""

_NARROW = (dtypes.bool, dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16)
_INT_SUFFIX = {dtypes.uint32: "u", dtypes.int64: "ll", dtypes.uint64: "ull"}

class RenderState:
  """Per-render bookkeeping: names of values, how often each is used, the lines written so far, what the prelude needs."""
  def __init__(self, uops: list[UOp]):
    self.r: dict[UOp, str] = {}
    self.index: dict[UOp, tuple[str, str, str | None]] = {}  # INDEX -> (buffer, index expression, gate)
    self.uses: dict[UOp, int] = {}
    for u in uops:
      srcs = u.src[-1:] if u.op is Ops.END else () if u.op in (Ops.SINK, Ops.ENDIF, Ops.BARRIER) else u.src
      for s in srcs: self.uses[s] = self.uses.get(s, 0) + 1
    self.lines: list[str] = []
    self.depth = 1
    self.counts: dict[str, int] = {}
    self.names: set[str] = set()
    self.dtypes: set[DType] = set()
    self.bufs: list[UOp] = []
    self.vars: list[UOp] = []
    self.specials: list[UOp] = []
    self.threefry = False

  def emit(self, line: str) -> None: self.lines.append("  " * self.depth + line)
  def fresh(self, prefix: str) -> str:
    while True:
      n = self.counts.get(prefix, 0)
      self.counts[prefix] = n + 1
      if (name := f"{prefix}{n}") not in self.names: self.names.add(name); return name
  def unique(self, name: str) -> str:
    if name not in self.names: self.names.add(name); return name
    return self.fresh(name + "_")

def _ident(arg: Any) -> str: return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(map(str, arg)) if isinstance(arg, tuple) else str(arg))

class CStyleRenderer(Renderer):
  """Base for renderers of C-like languages. Subclasses change the hooks and tables below, not the walk in `render`."""
  kernel_prefix: str = "void "                       # before the kernel's name
  buffer_prefix: str = ""                            # before a buffer parameter's type (e.g. "__global ")
  buffer_suffix: str = " restrict"                   # after the `*` of a buffer parameter
  smem_prefix: str = ""                              # before a DEFINE_LOCAL declaration (e.g. "__shared__ ")
  barrier: str = ""                                  # statement for BARRIER ("" renders a comment: nothing to wait for)
  nan_literal: dict[DType, str] = {dtypes.float32: '__builtin_nanf("")', dtypes.float64: '__builtin_nan("")'}
  inf_literal: dict[DType, str] = {dtypes.float32: "__builtin_inff()", dtypes.float64: "__builtin_inf()"}
  type_map: dict[DType, str] = {
    dtypes.bool: "_Bool", dtypes.int8: "signed char", dtypes.uint8: "unsigned char", dtypes.int16: "short", dtypes.uint16: "unsigned short",
    dtypes.int32: "int", dtypes.uint32: "unsigned int", dtypes.int64: "long long", dtypes.uint64: "unsigned long long",
    dtypes.float16: "half", dtypes.bfloat16: "bfloat16", dtypes.fp8e4m3: "fp8e4m3", dtypes.fp8e5m2: "fp8e5m2",
    dtypes.float32: "float", dtypes.float64: "double", dtypes.index: "int", dtypes.void: "void"}
  # short names for vector types: float4, half8, uchar16, ...
  vec_base_name: dict[DType, str] = {
    dtypes.bool: "bool", dtypes.int8: "char", dtypes.uint8: "uchar", dtypes.int16: "short", dtypes.uint16: "ushort", dtypes.int32: "int",
    dtypes.uint32: "uint", dtypes.int64: "long", dtypes.uint64: "ulong", dtypes.float16: "half", dtypes.bfloat16: "bfloat16_",
    dtypes.fp8e4m3: "fp8e4m3_", dtypes.fp8e5m2: "fp8e5m2_", dtypes.float32: "float", dtypes.float64: "double", dtypes.index: "int"}
  # dtypes held in a storage type and computed through float: (to float, from float, from double)
  float_conv: dict[DType, tuple[str, str, str]] = {
    dtypes.float16: ("tg_h2f", "tg_f2h", "tg_d2h"), dtypes.bfloat16: ("tg_bf2f", "tg_f2bf", "tg_d2bf"),
    dtypes.fp8e4m3: ("tg_e4m3_2f", "tg_d2e4m3", "tg_d2e4m3"), dtypes.fp8e5m2: ("tg_e5m2_2f", "tg_d2e5m2", "tg_d2e5m2")}
  code_for_op: dict[Ops, Callable[..., str]] = C_CODE_FOR_OP
  # ops rendered on whole vectors with an infix operator, for element types whose vectors compute natively and exactly
  vector_infix: dict[Ops, str] = {Ops.ADD: "+", Ops.MUL: "*", Ops.SUB: "-", Ops.NEG: "-"}
  vector_native: tuple[DType, ...] = (dtypes.float32, dtypes.float64)
  guarded_code_for_op: dict[Ops, Callable[..., str]] = C_GUARDED_CODE_FOR_OP

  @property
  def supported_ops(self) -> frozenset[Ops]:
    """ALU ops this renderer emits natively; the lowering rewrites the others before rendering."""
    return frozenset(self.code_for_op)

  # ---- hooks for subclasses ----
  def render_dtype(self, dt: DType) -> str:
    """The C type name of a scalar or vector dtype (pointers render their base)."""
    if isinstance(dt, PtrDType): return self.render_dtype(dt.base)
    if dt.count > 1:
      base = self.vec_base_name.get(dt.scalar())
      if base is None: raise RenderError(f"{type(self).__name__} has no vector type for {dt.scalar()}")
      return f"{base}{dt.count}"
    if (name := self.type_map.get(dt)) is None: raise RenderError(f"{type(self).__name__} has no C type for {dt}")
    return name
  def render_vector_typedef(self, dt: DType) -> str:
    """The declaration of vector type `dt`: GCC vector extension, padded up to a power of two lanes (bools as bytes)."""
    scalar = "unsigned char" if dt.scalar() == dtypes.bool else self.render_dtype(dt.scalar())
    lanes = 1 << (dt.count - 1).bit_length()
    size = 4 if dt.scalar() == dtypes.index else dt.scalar().itemsize  # index renders as int
    return f"typedef {scalar} {self.render_dtype(dt)} __attribute__((vector_size({lanes * size})));"
  def render_vector(self, dt: DType, lanes: list[str]) -> str:
    """An expression building a vector of dtype `dt` from scalar lane expressions."""
    return f"(({self.render_dtype(dt)}){{{','.join(lanes)}}})"
  def render_lane(self, vec: str, i: int) -> str: return f"{vec}[{i}]"
  def render_vector_load(self, dst: str, ptr: str, dt: DType) -> str:
    """Statement loading `dt.count` contiguous elements at `ptr` into the declared vector `dst` (no alignment assumed)."""
    return f"__builtin_memcpy(&{dst}, {ptr}, {dt.count * dt.scalar().itemsize});"
  def render_vector_store(self, ptr: str, val: str, dt: DType) -> str:
    return f"__builtin_memcpy({ptr}, &{val}, {dt.count * dt.scalar().itemsize});"
  def render_buffer_param(self, u: UOp, name: str) -> str:
    return f"{self.buffer_prefix}{self.render_dtype(u.dtype.base)}*{self.buffer_suffix} {name}"
  def render_var_param(self, u: UOp, name: str) -> str: return f"int {name}"
  def extra_params(self) -> list[str]:
    """Parameters after the buffers and variables (the CPU's core range)."""
    return []
  def render_special(self, u: UOp, bound: str, st: RenderState) -> None:
    """Declare SPECIAL `u` (its name is `u.arg`); GPU subclasses map it to their block/thread index registers."""
    raise RenderError(f"{type(self).__name__} can't render SPECIAL {u.arg!r}: override render_special")
  def render_local(self, name: str, dt: DType, size: int) -> str:
    return f"{self.smem_prefix}{self.render_dtype(dt)} {name}[{size}];"
  def render_wmma(self, u: UOp, st: RenderState) -> str:
    raise RenderError(f"{type(self).__name__} has no tensor cores: WMMA can't be rendered (use a device with tensor cores, or no TC opt)")
  def render_const(self, v: Any, dt: DType) -> str:
    """A literal of scalar dtype `dt`."""
    if dt == dtypes.bool: return "1" if v else "0"
    if dtypes.is_int(dt):
      v, suffix = int(v), _INT_SUFFIX.get(dt, "")
      if dt in (dtypes.int32, dtypes.index) and not -2**31 <= v < 2**31: suffix = "ll"
      if v == -2**63 or (v == -2**31 and suffix == ""): return f"({v + 1}{suffix}-1{suffix})"  # the literal 2**31 is not an int
      return f"({v}{suffix})" if v < 0 else f"{v}{suffix}"
    if dt in self.float_conv: return f"{self.float_conv[dt][1]}({self.render_const(v, dtypes.float32)})"
    fdt = dtypes.float64 if dt == dtypes.float64 else dtypes.float32
    if math.isnan(v): return self.nan_literal[fdt]
    if math.isinf(v): return self.inf_literal[fdt] if v > 0 else f"(-{self.inf_literal[fdt]})"
    s = repr(float(v)) + ("" if fdt == dtypes.float64 else "f")
    return f"({s})" if s.startswith("-") else s
  def render_prelude(self, st: RenderState) -> list[str]:
    """Type definitions and helpers the kernel needs, before its signature."""
    used = {d.scalar() for d in st.dtypes}
    out: list[str] = []
    if used & {dtypes.float16, dtypes.bfloat16, dtypes.fp8e4m3, dtypes.fp8e5m2}: out.append(C_SMALLFLOAT)
    if dtypes.float16 in used: out.append(C_HALF)
    if dtypes.bfloat16 in used: out.append(C_BF16)
    if used & {dtypes.fp8e4m3, dtypes.fp8e5m2}: out.append(C_FP8)
    if st.threefry: out.append(C_THREEFRY)
    out += list(dict.fromkeys(self.render_vector_typedef(d) for d in sorted(st.dtypes, key=lambda d: (d.scalar().name, d.count)) if d.count > 1))
    return out
  def wrap_body(self, st: RenderState) -> list[str]:
    """The kernel body's lines, with whatever the launch model needs around them."""
    return st.lines
  def render_kernel(self, name: str, params: list[str], body: list[str], prelude: list[str]) -> str:
    return "\n".join(prelude + [f"{self.kernel_prefix}{name}({', '.join(params)}) {{"] + body + ["}", ""])

  # ---- value conversions for emulated small floats ----
  def to_float(self, dt: DType, x: str) -> str: return f"{self.float_conv[dt][0]}({x})" if dt in self.float_conv else x
  def from_float(self, dt: DType, x: str) -> str: return f"{self.float_conv[dt][1]}({x})"
  def from_double(self, dt: DType, x: str) -> str: return f"{self.float_conv[dt][2]}({x})"

  def cast_lane(self, x: str, src: DType, dt: DType) -> str:
    """C conversion of scalar `x` from `src` to `dt`: floats truncate to ints, anything to bool is `!= 0`."""
    if src == dt: return x
    if src in self.float_conv: x, src = self.to_float(src, x), dtypes.float32  # exact: every small format fits in float
    if src == dt: return x
    if dt == dtypes.bool: return f"(({x})!=0)"
    if dt in self.float_conv:
      return self.from_float(dt, x) if src == dtypes.float32 else self.from_double(dt, f"(double)({x})")
    if dt == dtypes.float32 and src.itemsize == 8 and not dtypes.is_float(src): return f"((float)(double)({x}))"  # as Python: via double
    return f"(({self.render_dtype(dt)})({x}))"

  def alu_lane(self, u: UOp, args: list[str], dt: DType, odt: DType) -> str:
    """Scalar expression of ALU `u` on lane expressions `args`; `dt` is the result's scalar dtype, `odt` the operands'."""
    op = u.op
    if odt in self.float_conv and op is not Ops.WHERE:
      # +-*/, sqrt, max on float are exact for formats this small; the rest compute in double, as exec_alu does
      wide = op in (Ops.MULACC, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW, Ops.MOD)
      cdt = dtypes.float64 if wide else dtypes.float32
      fargs = [self.to_float(odt, a) for a in args]
      if wide: fargs = [f"(double)({a})" for a in fargs]
      expr = self.code_for_op[op](*fargs, dtype=cdt)
      return expr if op in GroupOp.Comparison else self.from_double(dt, expr) if wide else self.from_float(dt, expr)
    fn = self.code_for_op[op]
    if op in self.guarded_code_for_op and not _safe_second(op, u.src[1], odt): fn = self.guarded_code_for_op[op]
    expr = fn(*args, dtype=odt)
    if dt in _NARROW and op not in GroupOp.Comparison and op is not Ops.WHERE: expr = f"(({self.render_dtype(dt)})({expr}))"
    elif op in (Ops.SHL, Ops.NEG) and dtypes.is_int(dt): expr = f"(({self.render_dtype(dt)})({expr}))"  # back from unsigned
    elif op is Ops.IDIV and dtypes.is_int(dt) and not dtypes.is_unsigned(dt): expr = f"(({self.render_dtype(dt)})({expr}))"
    return expr

  # ---- the walk ----
  def _lane(self, st: RenderState, s: UOp, i: int) -> str:
    return self.render_lane(st.r[s], i) if s.dtype.count > 1 else st.r[s]

  def _value(self, st: RenderState, u: UOp, expr: str, prefix: str) -> None:
    """Bind `u` to `expr`: inline when it is a scalar used once, else declare a variable."""
    if st.uses.get(u, 0) == 0: return
    if u.dtype.count == 1 and st.uses[u] == 1: st.r[u] = expr; return
    st.r[u] = name = st.fresh(prefix)
    st.emit(f"{self.render_dtype(u.dtype)} {name} = {expr};")

  def _bound(self, st: RenderState, u: UOp) -> str:
    """A pure expression for a loop or SPECIAL bound (constants, variables and ALU over them)."""
    # recomputed from its sources, not read from a body variable: the CPU's launch loops sit outside the body
    if u.op is Ops.CONST: return self.render_const(u.arg, u.dtype)
    if u.op is Ops.DEFINE_VAR: return st.r.get(u, u.arg[0])
    if u.op in GroupOp.ALU:
      odt = u.src[-1].dtype if u.op is Ops.WHERE else u.dtype if u.op in (Ops.SHL, Ops.SHR) else u.src[0].dtype
      return self.alu_lane(u, [self._bound(st, s) for s in u.src], u.dtype, odt)
    if u.op is Ops.CAST: return self.cast_lane(self._bound(st, u.src[0]), u.src[0].dtype, u.dtype)
    if u.op is Ops.NOOP and u.src: return self._bound(st, u.src[0])
    raise RenderError(f"a launch bound must be built from constants and variables, got {u.op.name}")

  def render(self, name: str, uops: list[UOp]) -> str:
    """C source of the kernel `name` for the linearized program `uops`."""
    if not uops or uops[-1].op is not Ops.SINK: raise RenderError("a linearized program must end with a SINK: linearize the kernel first")
    st = RenderState(uops)
    for u in uops:
      dt = u.dtype.base if isinstance(u.dtype, PtrDType) else u.dtype
      if dt.count > 1 or dt.scalar() in self.float_conv: st.dtypes.add(dt)
      if u.op is Ops.THREEFRY: st.threefry = True
    for u in uops:
      handler = getattr(self, f"_r_{u.op.name.lower()}", None)
      if handler is not None: handler(u, st)
      elif u.op in GroupOp.ALU: self._r_alu(u, st)
      else: raise RenderError(f"{type(self).__name__} can't render {u.op.name} (in kernel {name!r})")
    bufs = sorted(st.bufs, key=lambda b: b.arg)
    params = [self.render_buffer_param(b, st.r[b]) for b in bufs] + [self.render_var_param(v, st.r[v]) for v in st.vars] + self.extra_params()
    return self.render_kernel(name, params, self.wrap_body(st), self.render_prelude(st))

  # one method per op: _r_<op name>
  def _r_define_global(self, u: UOp, st: RenderState) -> None:
    if not isinstance(u.dtype, PtrDType): raise RenderError(f"DEFINE_GLOBAL {u.arg} needs a pointer dtype, got {u.dtype}")
    st.r[u] = st.unique(f"data{u.arg}")
    st.bufs.append(u)
  def _r_define_var(self, u: UOp, st: RenderState) -> None:
    st.r[u] = st.unique(_ident(u.arg[0]))
    st.vars.append(u)
  def _r_define_reg(self, u: UOp, st: RenderState) -> None:
    st.r[u] = name = st.unique(f"reg{_ident(u.arg)}")
    st.emit(f"{self.render_dtype(u.dtype.base)} {name}[{max(u.dtype.size, 1)}];")
  def _r_define_local(self, u: UOp, st: RenderState) -> None:
    st.r[u] = name = st.unique(f"temp{_ident(u.arg)}")
    st.emit(self.render_local(name, u.dtype.base, max(u.dtype.size, 1)))
  def _r_special(self, u: UOp, st: RenderState) -> None:
    st.r[u] = st.unique(_ident(u.arg))
    st.specials.append(u)
    self.render_special(u, self._bound(st, u.src[0]), st)
  def _r_const(self, u: UOp, st: RenderState) -> None:
    if u.dtype.count > 1: self._value(st, u, self.render_vector(u.dtype, [self.render_const(u.arg, u.dtype.scalar())] * u.dtype.count), "cvec")
    else: st.r[u] = self.render_const(u.arg, u.dtype)
  def _r_vconst(self, u: UOp, st: RenderState) -> None:
    self._value(st, u, self.render_vector(u.dtype, [self.render_const(v, u.dtype.scalar()) for v in u.arg]), "cvec")
  def _r_range(self, u: UOp, st: RenderState) -> None:
    st.r[u] = name = st.unique(f"ridx{_ident(u.arg)}")
    st.emit(f"for ({self.render_dtype(u.dtype)} {name} = 0; {name} < {st.r.get(u.src[0]) or self._bound(st, u.src[0])}; {name}++) {{")
    st.depth += 1
  def _r_end(self, u: UOp, st: RenderState) -> None:
    st.depth -= 1
    st.emit("}")
  def _r_if(self, u: UOp, st: RenderState) -> None:
    st.emit(f"if ({st.r[u.src[0]]}) {{")
    st.depth += 1
  _r_endif = _r_end
  def _r_barrier(self, u: UOp, st: RenderState) -> None: st.emit(self.barrier or "/* barrier: one thread per block here */")
  def _r_sink(self, u: UOp, st: RenderState) -> None: pass
  def _r_noop(self, u: UOp, st: RenderState) -> None:
    if u.src: st.r[u] = st.r[u.src[0]]
  def _r_custom(self, u: UOp, st: RenderState) -> None:
    expr = str(u.arg).format(*(st.r[s] for s in u.src))
    if u.dtype == dtypes.void: st.emit(expr + ";")
    else: self._value(st, u, expr, "custom")
  def _r_wmma(self, u: UOp, st: RenderState) -> None: self._value(st, u, self.render_wmma(u, st), "wmma")
  def _r_index(self, u: UOp, st: RenderState) -> None:
    if len(u.src) < 2: raise RenderError("INDEX needs (buffer, index[, gate]) sources")
    st.index[u] = (st.r[u.src[0]], st.r[u.src[1]], st.r[u.src[2]] if len(u.src) > 2 else None)
  def _r_load(self, u: UOp, st: RenderState) -> None:
    buf, idx, gate = st.index[u.src[0]]
    base = u.src[0].dtype.base if isinstance(u.src[0].dtype, PtrDType) else u.src[0].dtype
    alt = st.r[a] if (a := load_alt(u)) is not None else None
    st.r[u] = name = st.fresh("val")
    t = self.render_dtype(u.dtype)
    if u.dtype == base:
      elem = f"{buf}[{idx}]"
      st.emit(f"{t} {name} = {elem};" if gate is None else f"{t} {name} = ({gate})?{elem}:{alt if alt is not None else '0'};")
      return
    if u.dtype.scalar() != base.scalar(): raise RenderError(f"LOAD of {u.dtype} from a buffer of {base}: dtypes must match")
    st.emit(f"{t} {name}" + (f" = {alt};" if gate is not None and alt is not None else " = {0};"))
    load = self.render_vector_load(name, f"{buf}+{idx}", u.dtype)
    st.emit(load if gate is None else f"if ({gate}) {load}")
  def _r_store(self, u: UOp, st: RenderState) -> None:
    buf, idx, gate = st.index[u.src[0]]
    val = u.src[1]
    base = u.src[0].dtype.base if isinstance(u.src[0].dtype, PtrDType) else u.src[0].dtype
    stmt = f"{buf}[{idx}] = {st.r[val]};" if val.dtype == base else self.render_vector_store(f"{buf}+{idx}", st.r[val], val.dtype)
    st.emit(stmt if gate is None else f"if ({gate}) {stmt}")
  def _r_alu(self, u: UOp, st: RenderState) -> None:
    odt = (u.src[-1].dtype if u.op is Ops.WHERE else u.dtype if u.op in (Ops.SHL, Ops.SHR) else u.src[0].dtype).scalar()
    if u.op not in self.code_for_op:
      raise RenderError(f"{type(self).__name__} has no native {u.op.name}: the lowering must rewrite it before rendering")
    if u.dtype.count > 1 and u.op in self.vector_infix and odt in self.vector_native and all(x.dtype == u.dtype for x in u.src):
      # whole-vector arithmetic (GCC vector extensions): one SIMD instruction instead of one expression per lane
      a = [st.r[x] for x in u.src]
      self._value(st, u, f"(-{a[0]})" if u.op is Ops.NEG else f"({a[0]}{self.vector_infix[u.op]}{a[1]})", "alu")
      return
    lanes = [self.alu_lane(u, [self._lane(st, s, i) for s in u.src], u.dtype.scalar(), odt) for i in range(u.dtype.count)]
    self._value(st, u, lanes[0] if u.dtype.count == 1 else self.render_vector(u.dtype, lanes), "alu")
  def _r_cast(self, u: UOp, st: RenderState) -> None:
    s = u.src[0]
    lanes = [self.cast_lane(self._lane(st, s, i), s.dtype.scalar(), u.dtype.scalar()) for i in range(u.dtype.count)]
    self._value(st, u, lanes[0] if u.dtype.count == 1 else self.render_vector(u.dtype, lanes), "cast")
  def _r_bitcast(self, u: UOp, st: RenderState) -> None:
    s = u.src[0]
    if s.dtype.itemsize != u.dtype.itemsize: raise RenderError(f"BITCAST from {s.dtype} to {u.dtype}: sizes differ")
    st.r[u] = name = st.fresh("bits")
    tmp = st.fresh("bsrc")
    st.emit(f"{self.render_dtype(u.dtype)} {name}; {{ {self.render_dtype(s.dtype)} {tmp} = {st.r[s]}; "
            f"__builtin_memcpy(&{name}, &{tmp}, {u.dtype.itemsize}); }}")
  def _r_vectorize(self, u: UOp, st: RenderState) -> None:
    self._value(st, u, self.render_vector(u.dtype, [st.r[s] for s in u.src]), "vec")
  def _r_gep(self, u: UOp, st: RenderState) -> None:
    lanes = [self._lane(st, u.src[0], i) for i in u.arg]
    if len(lanes) == 1: st.r[u] = lanes[0]
    else: self._value(st, u, self.render_vector(u.dtype, lanes), "gep")

class CRenderer(CStyleRenderer):
  """C99 for the CPU (gcc or clang): kernel `void name(T* restrict data0, ..., int var0, ..., int core_start, int core_end)`.

  gidx0 loops over [core_start, core_end) so the runtime can split it across threads; gidx1/gidx2 loop over their full bounds.
  """
  device, suffix = "CPU", "C"
  has_local, has_shared, supports_float4 = False, False, True
  global_max = (0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF)
  local_max = None
  shared_max = 0
  tensor_cores: list[Any] = []

  def extra_params(self) -> list[str]: return ["int core_start", "int core_end"]
  def render_special(self, u: UOp, bound: str, st: RenderState) -> None:
    if not str(u.arg).startswith("gidx") or str(u.arg)[4:] not in ("0", "1", "2"):
      raise RenderError(f"the CPU has no local dims: SPECIAL {u.arg!r} can't be rendered (lower with has_local=False)")
  def wrap_body(self, st: RenderState) -> list[str]:
    # every SPECIAL is a loop around the whole body: gidx0 over this thread's share, the others over their bounds
    by_name = {str(u.arg): u for u in st.specials}
    g0 = st.r[by_name["gidx0"]] if "gidx0" in by_name else st.unique("core")
    heads = [f"for (int {g0} = core_start; {g0} < core_end; {g0}++) {{"]
    for dim in ("gidx1", "gidx2"):
      if (u := by_name.get(dim)) is not None:
        heads.append(f"for (int {st.r[u]} = 0; {st.r[u]} < {self._bound(st, u.src[0])}; {st.r[u]}++) {{")
    pad = "  " * len(heads)
    return ["  " * (i + 1) + h for i, h in enumerate(heads)] + [pad + line for line in st.lines] + \
           ["  " * (i + 1) + "}" for i in reversed(range(len(heads)))]

ClangRenderer = CRenderer
