"""`LLVMRenderer`: a linearized UOp program as textual LLVM IR for the host CPU (compiled in-process with llvmlite).

The IR is self-contained (it declares the intrinsics it calls) and names no target, so the compiler picks the host triple.
Semantics follow `tg_uop.alu.exec_alu` exactly: integer division by zero gives 0, shifts past the width are defined, MAX
propagates nan, float->bool is `!= 0`. bfloat16 is emulated: it lives as a `float` in registers (rounded to bf16 precision
after every op, round-to-nearest-even) and as `i16` bits in memory, so no target needs bf16 libcalls."""
from __future__ import annotations
import math, re, struct
from typing import Any
from tg_uop.runtime.renderer import load_alt
from tg_uop.dtype import DType, PtrDType, dtypes, truncate_float
from tg_uop.ops import Ops, GroupOp
from tg_uop.runtime.renderer import Renderer
from tg_uop.uop import UOp

def ident(name: str) -> str:
  """`name` as an LLVM identifier body: bare when LLVM allows it, else quoted with escapes."""
  if re.fullmatch(r"[A-Za-z$._][-A-Za-z$._0-9]*", name): return name
  return '"' + "".join(c if c.isprintable() and c not in '"\\' else "".join(f"\\{b:02X}" for b in c.encode()) for c in name) + '"'

def _bits(dt: DType) -> int: return 32 if dt.scalar() == dtypes.index else 1 if dt.scalar() == dtypes.bool else 8 * dt.scalar().itemsize

def _scalar_index(u: UOp) -> bool: return u.dtype == dtypes.index

def widen_index(uops: list[UOp]) -> list[UOp]:
  """The program with its scalar index arithmetic in int64 (CASTs at the edges: variables stay 32-bit parameters and index
  vectors keep 32-bit lanes, half the registers).

  With 32-bit indices every address is a sign extension of an i32 sum, which LLVM can't decompose: its alias analysis then
  answers "may alias" slowly for each pair of stores, and induction-variable widening rewrites every address. A kernel with a
  few hundred scattered stores spent 3/4 of its compile time there; with 64-bit indices it compiles 3x faster."""
  # values kept in 32 bits: a parameter, a load, a lane of an index vector, an index vector, a store of an index
  narrow = {u for u in uops if (_scalar_index(u) and u.op in (Ops.DEFINE_VAR, Ops.LOAD, Ops.GEP)) or
            (u.dtype.scalar() == dtypes.index and not isinstance(u.dtype, PtrDType) and u.dtype.count > 1) or
            (u.op is Ops.STORE and _scalar_index(u.src[1]))}
  needs32 = {s for u in narrow for s in u.src if _scalar_index(s)}
  m: dict[UOp, UOp] = {}   # each UOp -> its value as the program now computes it (int64 for scalar indices)
  m32: dict[UOp, UOp] = {}  # scalar indices 32-bit users read, narrowed right where they are computed (so they dominate every use)
  out: list[UOp] = []
  for u in uops:
    if u in narrow:
      src = tuple(m32.get(s, m[s]) for s in u.src)
      nu = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, src, u.arg)
      if _scalar_index(u):
        out.append(nu)
        m32[u], nu = nu, UOp(Ops.CAST, dtypes.int64, (nu,))
    elif _scalar_index(u):
      nu = UOp(Ops.CONST, dtypes.int64, (), u.arg) if u.op is Ops.CONST else UOp(u.op, dtypes.int64, tuple(m[s] for s in u.src), u.arg)
    else:
      src = tuple(m[s] for s in u.src)
      nu = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, src, u.arg)
    m[u] = nu
    out.append(nu)
    if u in needs32 and u not in m32: out.append(m32.setdefault(u, UOp(Ops.CAST, dtypes.index, (nu,))))
  return out

def scalar_type(dt: DType, mem: bool = False) -> str:
  """The LLVM type of one lane of `dt`, in registers or (`mem`) in memory."""
  d = dt.scalar() if not isinstance(dt, PtrDType) else dt.base.scalar()
  if d == dtypes.void: return "void"
  if d == dtypes.bool: return "i8" if mem else "i1"
  if d == dtypes.bfloat16: return "i16" if mem else "float"
  if dtypes.is_fp8(d): raise ValueError(f"the LLVM renderers don't support {d}: cast fp8 data to float16 or float32 before the kernel")
  if dtypes.is_float(d): return {2: "half", 4: "float", 8: "double"}[d.itemsize]
  return f"i{_bits(d)}"

def llvm_type(dt: DType, mem: bool = False) -> str:
  """The LLVM type of `dt` (a vector type `<n x T>` for vector dtypes), in registers or (`mem`) in memory."""
  s = scalar_type(dt, mem)
  return s if dt.count == 1 else f"<{dt.count} x {s}>"

def _float_bits_hex(v: float) -> str: return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]

def scalar_const(v: Any, dt: DType) -> str:
  """An LLVM literal for the scalar value `v` of `dt` (register form)."""
  d = dt.scalar()
  if d == dtypes.bool: return "true" if v else "false"
  if dtypes.is_int(d):
    bits = _bits(d)
    iv = int(v) & ((1 << bits) - 1)
    return str(iv - (1 << bits) if iv >= 1 << (bits - 1) else iv)
  fv = float(v)
  if d == dtypes.float16: return "0xH%04X" % struct.unpack("<H", struct.pack("<e", truncate_float(fv, d)))[0]
  if d == dtypes.bfloat16: fv = truncate_float(fv, dtypes.bfloat16)
  elif d == dtypes.float32: fv = truncate_float(fv, d)
  # LLVM takes float and double literals as the bits of a double; a float value is exact in a double
  return _float_bits_hex(math.nan if math.isnan(fv) else fv)

def const_text(v: Any, dt: DType) -> str:
  """A literal for `v` (a scalar, or a tuple of lanes for vectors; a scalar splats over a vector dtype)."""
  if dt.count == 1: return scalar_const(v, dt)
  st = scalar_type(dt)
  if not isinstance(v, tuple): return "<" + ", ".join([f"{st} {scalar_const(v, dt)}"] * dt.count) + ">"  # a splat: one literal
  return "<" + ", ".join(f"{st} {scalar_const(x, dt)}" for x in v) + ">"

def _const_lanes(u: UOp) -> list | None:
  # the constant value of each lane of `u`, or None when it isn't known at render time
  if u.op is Ops.CONST: return [u.arg] * u.dtype.count
  if u.op is Ops.VCONST: return list(u.arg)
  if u.op is Ops.VECTORIZE and all(s.op is Ops.CONST for s in u.src): return [s.arg for s in u.src]
  return None

_INTRINSIC = {Ops.EXP2: "exp2", Ops.LOG2: "log2", Ops.SIN: "sin", Ops.SQRT: "sqrt", Ops.TRUNC: "trunc", Ops.POW: "pow"}

class _Builder:
  """Per-render state: the body lines, the current basic block, names and values of UOps."""
  def __init__(self, ren: LLVMRenderer, name: str, uops: list[UOp]):
    self.ren, self.name, self.uops = ren, name, uops
    self.lines: list[str] = []            # function body after the entry label
    self.prologue: list[str] = []         # allocas, hoisted to the entry block so SROA/mem2reg promote them
    self.globals: list[str] = []          # module-level definitions (local memory on GPUs)
    self.decls: dict[str, str] = {}       # intrinsic name -> declaration
    self.r: dict[UOp, str] = {}           # value text of each UOp
    self.used: set[str] = set()
    self.ntmp = 0
    self.block = "entry"
    self.open_specials: list[tuple[str, str, str, str, str]] = []  # CPU launch-dim loops, closed at the SINK
    self.loops: dict[UOp, tuple[str, str, str, str, str]] = {}   # RANGE -> (var, type, header, latch, exit)
    self.ifs: dict[UOp, str] = {}

  # ---- text helpers ----
  def tmp(self, hint: str = "t") -> str:
    self.ntmp += 1
    return f"%.{hint}{self.ntmp}"
  def label(self, hint: str) -> str:
    self.ntmp += 1
    return f".L{hint}{self.ntmp}"
  def unique(self, name: str) -> str:
    # a source-level name (ridx3, gidx0, a DEFINE_VAR) made unique within the function
    base, i = name, 1
    while name in self.used: name, i = f"{base}_{i}", i + 1
    self.used.add(name)
    return "%" + ident(name)
  def emit(self, line: str) -> None: self.lines.append("  " + line)
  def op(self, text: str, hint: str = "t") -> str:
    out = self.tmp(hint)
    self.emit(f"{out} = {text}")
    return out
  def start(self, label: str) -> None:
    self.lines.append(f"{label}:")
    self.block = label
  def br(self, label: str) -> None: self.emit(f"br label %{label}")
  def declare(self, name: str, ret: str, args: list[str]) -> str:
    self.decls[name] = f"declare {ret} @{name}({', '.join(args)})"
    return f"@{name}"
  def call_intrinsic(self, base: str, dt: DType, args: list[str], extra_types: list[str] | None = None) -> str:
    t = llvm_type(dt)
    mangle = {"half": "f16", "float": "f32", "double": "f64"}[scalar_type(dt)]
    name = f"llvm.{base}." + (f"v{dt.count}{mangle}" if dt.count > 1 else mangle)
    types = extra_types or [t] * len(args)
    fn = self.declare(name, t, types)
    return self.op(f"call {t} {fn}({', '.join(f'{ty} {a}' for ty, a in zip(types, args))})")

  # ---- bfloat16 emulation (float registers, i16 memory) ----
  def round_bf16(self, x: str, dt: DType) -> str:
    n = dt.count
    f, i = llvm_type(dtypes.float32.vec(n)), llvm_type(dtypes.int32.vec(n))
    c = lambda v: const_text(v, dtypes.int32.vec(n))
    b = self.op(f"bitcast {f} {x} to {i}")
    lsb = self.op(f"and {i} {self.op(f'lshr {i} {b}, {c(16)}')}, {c(1)}")
    rounded = self.op(f"add {i} {self.op(f'add {i} {b}, {c(0x7FFF)}')}, {lsb}")
    quiet = self.op(f"or {i} {b}, {c(0x400000)}")  # a nan stays a (quiet) nan instead of rounding into inf
    isnan = self.op(f"fcmp uno {f} {x}, {x}")
    sel = self.op(f"select {llvm_type(dtypes.bool.vec(n))} {isnan}, {i} {quiet}, {i} {rounded}")
    return self.op(f"bitcast {i} {self.op(f'and {i} {sel}, {c(-65536)}')} to {f}")
  def bf16_to_bits(self, x: str, dt: DType) -> str:
    n = dt.count
    i32 = llvm_type(dtypes.int32.vec(n))
    b = self.op(f"bitcast {llvm_type(dtypes.float32.vec(n))} {x} to {i32}")
    return self.op(f"trunc {i32} {self.op(f'lshr {i32} {b}, {const_text(16, dtypes.int32.vec(n))}')} to {llvm_type(dtypes.int16.vec(n))}")
  def bits_to_bf16(self, x: str, dt: DType) -> str:
    n = dt.count
    i32 = llvm_type(dtypes.int32.vec(n))
    w = self.op(f"zext {llvm_type(dtypes.int16.vec(n))} {x} to {i32}")
    return self.op(f"bitcast {i32} {self.op(f'shl {i32} {w}, {const_text(16, dtypes.int32.vec(n))}')} to {llvm_type(dtypes.float32.vec(n))}")

  # ---- memory form <-> register form ----
  def from_mem(self, x: str, dt: DType) -> str:
    if dt.scalar() == dtypes.bool: return self.op(f"icmp ne {llvm_type(dt, True)} {x}, {const_text(0, dtypes.uint8.vec(dt.count))}")
    if dt.scalar() == dtypes.bfloat16: return self.bits_to_bf16(x, dt)
    return x
  def to_mem(self, x: str, dt: DType) -> str:
    if dt.scalar() == dtypes.bool: return self.op(f"zext {llvm_type(dt)} {x} to {llvm_type(dt, True)}")
    if dt.scalar() == dtypes.bfloat16: return self.bf16_to_bits(x, dt)
    return x

  # ---- conversions ----
  def cast(self, x: str, f: DType, t: DType) -> str:
    """`x` of dtype `f` converted as C converts to `t` (lane-wise for vectors)."""
    if f.scalar() == t.scalar(): return x
    n = t.count
    if t.scalar() == dtypes.bool:
      if dtypes.is_float(f): return self.op(f"fcmp une {llvm_type(f)} {x}, {const_text(0.0, f)}")
      return self.op(f"icmp ne {llvm_type(f)} {x}, {const_text(0, f)}")
    if t.scalar() == dtypes.bfloat16:
      return self.round_bf16(self.cast(x, f, dtypes.float32.vec(n)), t)
    if f.scalar() == dtypes.bfloat16: f = dtypes.float32.vec(n)  # a bf16 register already holds the float value
    if t.scalar() == dtypes.float16 and f.scalar() != dtypes.float32:
      # go through float32 (no target needs a __truncdfhf2 libcall then); from double, round to odd so the two steps round once
      f32 = dtypes.float32.vec(n)
      x = self.f64_to_f32_odd(x, n) if f.scalar() == dtypes.float64 else self.cast(x, f, f32)
      f = f32
    ft, tt = llvm_type(f), llvm_type(t)
    if ft == tt: return x
    fi, ti = not dtypes.is_float(f), not dtypes.is_float(t)
    if fi and ti:
      fb, tb = _bits(f), _bits(t)
      if fb == tb: return x
      if fb > tb: return self.op(f"trunc {ft} {x} to {tt}")
      return self.op(f"{'zext' if dtypes.is_unsigned(f) or f.scalar() == dtypes.bool else 'sext'} {ft} {x} to {tt}")
    if fi: return self.op(f"{'uitofp' if dtypes.is_unsigned(f) or f.scalar() == dtypes.bool else 'sitofp'} {ft} {x} to {tt}")
    if ti: return self.op(f"{'fptoui' if dtypes.is_unsigned(t) else 'fptosi'} {ft} {x} to {tt}")
    return self.op(f"{'fpext' if t.scalar().itemsize > f.scalar().itemsize else 'fptrunc'} {ft} {x} to {tt}")
  def f64_to_f32_odd(self, x: str, n: int) -> str:
    """double -> float rounding to odd: exact, or else the odd float next to `x` on its side of the nearest float."""
    f64, f32, i32, bt = (llvm_type(d.vec(n)) for d in (dtypes.float64, dtypes.float32, dtypes.int32, dtypes.bool))
    ci = lambda v: const_text(v, dtypes.int32.vec(n))
    t = self.op(f"fptrunc {f64} {x} to {f32}")
    back = self.op(f"fpext {f32} {t} to {f64}")
    b = self.op(f"bitcast {f32} {t} to {i32}")
    even = self.op(f"icmp eq {i32} {self.op(f'and {i32} {b}, {ci(1)}')}, {ci(0)}")
    even_inexact = self.op(f"and {bt} {self.op(f'fcmp une {f64} {back}, {x}')}, {even}")
    ax, aback = self.call_intrinsic("fabs", dtypes.float64.vec(n), [x]), self.call_intrinsic("fabs", dtypes.float64.vec(n), [back])
    step = self.op(f"select {bt} {self.op(f'fcmp olt {f64} {ax}, {aback}')}, {i32} {ci(-1)}, {i32} {ci(1)}")
    odd = self.op(f"add {i32} {b}, {self.op(f'select {bt} {even_inexact}, {i32} {step}, {i32} {ci(0)}')}")
    return self.op(f"bitcast {i32} {odd} to {f32}")
  def bitcast(self, x: str, f: DType, t: DType) -> str:
    if f.itemsize != t.itemsize: raise ValueError(f"BITCAST from {f} to {t} changes the size: bitcast only between dtypes of one size")
    if f.scalar() == dtypes.bfloat16: x, f = self.bf16_to_bits(x, f), dtypes.int16.vec(f.count)
    if t.scalar() == dtypes.bfloat16:
      bits = self.bitcast(x, f, dtypes.int16.vec(t.count)) if f.scalar() != dtypes.int16 else x
      return self.bits_to_bf16(bits, t)
    ft, tt = llvm_type(f), llvm_type(t)
    return x if ft == tt else self.op(f"bitcast {ft} {x} to {tt}")

  # ---- ALU ----
  def alu(self, u: UOp) -> str:
    op, dt = u.op, u.dtype
    a = [self.r[s] for s in u.src]
    sdt = u.src[-1].dtype if op is Ops.WHERE else u.src[0].dtype
    t = llvm_type(sdt)
    isf, isb, uns = dtypes.is_float(sdt), sdt.scalar() == dtypes.bool, dtypes.is_unsigned(sdt) or sdt.scalar() == dtypes.bool
    c = lambda v: const_text(v, sdt)
    if op is Ops.WHERE: return self.op(f"select {llvm_type(u.src[0].dtype)} {a[0]}, {t} {a[1]}, {t} {a[2]}")
    if op in GroupOp.Comparison:
      if isf: pred = {Ops.CMPLT: "olt", Ops.CMPNE: "une", Ops.CMPEQ: "oeq"}[op]  # python: nan compares unequal, never less
      else: pred = {Ops.CMPLT: "ult" if uns else "slt", Ops.CMPNE: "ne", Ops.CMPEQ: "eq"}[op]
      return self.op(f"{'fcmp' if isf else 'icmp'} {pred} {t} {a[0]}, {a[1]}")
    if isf: ret = self.float_alu(u, a, t, c)
    elif isb and op in (Ops.ADD, Ops.MUL, Ops.MAX): ret = self.op(f"{'and' if op is Ops.MUL else 'or'} {t} {a[0]}, {a[1]}")
    else: ret = self.int_alu(u, a, t, c, uns)
    return self.round_bf16(ret, dt) if dt.scalar() == dtypes.bfloat16 and op not in (Ops.NEG, Ops.MAX) else ret

  def float_alu(self, u: UOp, a: list[str], t: str, c) -> str:
    op, dt = u.op, u.src[0].dtype
    simple = {Ops.ADD: "fadd", Ops.SUB: "fsub", Ops.MUL: "fmul", Ops.FDIV: "fdiv"}
    if op in simple: return self.op(f"{simple[op]} {t} {a[0]}, {a[1]}")
    if op is Ops.NEG: return self.op(f"fneg {t} {a[0]}")
    if op is Ops.RECIP: return self.op(f"fdiv {t} {c(1.0)}, {a[0]}")
    if op in _INTRINSIC: return self.call_intrinsic(_INTRINSIC[op], dt, a)
    if op is Ops.MULACC: return self.call_intrinsic("fmuladd", dt, a)
    if op is Ops.MAX:
      # python's max(x, y): y only when y > x (so -0.0 vs 0.0 keeps x), and nan wins from either side
      m = self.op(f"select {llvm_type(dtypes.bool.vec(dt.count))} {self.op(f'fcmp ogt {t} {a[1]}, {a[0]}')}, {t} {a[1]}, {t} {a[0]}")
      return self.op(f"select {llvm_type(dtypes.bool.vec(dt.count))} {self.op(f'fcmp uno {t} {a[1]}, {a[1]}')}, {t} {a[1]}, {t} {m}")
    raise ValueError(f"the LLVM renderer can't render {op.name} on {dt}: it is not a float operation")

  def int_alu(self, u: UOp, a: list[str], t: str, c, uns: bool) -> str:
    op, dt = u.op, u.src[0].dtype
    bt = llvm_type(dtypes.bool.vec(dt.count))
    simple = {Ops.ADD: "add", Ops.SUB: "sub", Ops.MUL: "mul", Ops.AND: "and", Ops.OR: "or", Ops.XOR: "xor"}
    if op in simple: return self.op(f"{simple[op]} {t} {a[0]}, {a[1]}")
    if op is Ops.NEG: return self.op(f"sub {t} {c(0)}, {a[0]}")
    if op is Ops.TRUNC: return a[0]
    if op is Ops.MULACC: return self.op(f"add {t} {self.op(f'mul {t} {a[0]}, {a[1]}')}, {a[2]}")
    if op is Ops.MAX:
      gt = self.op(f"icmp {'ugt' if uns else 'sgt'} {t} {a[1]}, {a[0]}")
      return self.op(f"select {bt} {gt}, {t} {a[1]}, {t} {a[0]}")
    if op in (Ops.IDIV, Ops.MOD): return self.int_div(u, a, t, c, uns, bt)
    if op in (Ops.SHL, Ops.SHR): return self.shift(u, a, t, c, uns, bt)
    if op is Ops.POW:
      f64 = dtypes.float64.vec(dt.count)
      p = self.call_intrinsic("pow", f64, [self.cast(a[0], dt, f64), self.cast(a[1], u.src[1].dtype, f64)])
      return self.cast(p, f64, dt)
    raise ValueError(f"the LLVM renderer can't render {op.name} on {dt}: lower it before rendering")

  def int_div(self, u: UOp, a: list[str], t: str, c, uns: bool, bt: str) -> str:
    # exec_alu: x/0 == x%0 == 0; INT_MIN/-1 wraps to INT_MIN (and INT_MIN%-1 == 0) where LLVM would be undefined or trap
    is_div = u.op is Ops.IDIV
    inst = ("udiv" if is_div else "urem") if uns else ("sdiv" if is_div else "srem")
    lanes = _const_lanes(u.src[1])
    if lanes is not None and all(v != 0 and (uns or v != -1) for v in lanes): return self.op(f"{inst} {t} {a[0]}, {a[1]}")
    zero = self.op(f"icmp eq {t} {a[1]}, {c(0)}")
    bad = zero if uns else self.op(f"or {bt} {zero}, {self.op(f'icmp eq {t} {a[1]}, {c(-1)}')}")
    q = self.op(f"{inst} {t} {a[0]}, {self.op(f'select {bt} {bad}, {t} {c(1)}, {t} {a[1]}')}")
    if uns or not is_div: return self.op(f"select {bt} {bad}, {t} {c(0)}, {t} {q}")
    neg = self.op(f"sub {t} {c(0)}, {a[0]}")
    return self.op(f"select {bt} {zero}, {t} {c(0)}, {t} {self.op(f'select {bt} {bad}, {t} {neg}, {t} {q}')}")

  def shift(self, u: UOp, a: list[str], t: str, c, uns: bool, bt: str) -> str:
    dt, ydt = u.src[0].dtype, u.src[1].dtype
    bits = _bits(dt)
    y = self.cast(a[1], ydt, dt) if _bits(ydt) != bits or dtypes.is_float(ydt) else a[1]
    arith = u.op is Ops.SHR and not uns
    inst = "shl" if u.op is Ops.SHL else "ashr" if arith else "lshr"
    lanes = _const_lanes(u.src[1])
    if lanes is not None and all(0 <= v < bits for v in lanes): return self.op(f"{inst} {t} {a[0]}, {y}")
    # exec_alu: a negative amount gives 0; an amount past the width shifts everything out (sign bits for signed SHR)
    yt = llvm_type(ydt)
    wide = self.op(f"icmp uge {yt} {a[1]}, {const_text(bits, ydt)}")
    res = self.op(f"{inst} {t} {a[0]}, {y}")
    if not arith: return self.op(f"select {bt} {wide}, {t} {c(0)}, {t} {res}")
    allsign = self.op(f"ashr {t} {a[0]}, {c(bits - 1)}")
    fallback = self.op(f"select {bt} {self.op(f'icmp slt {yt} {a[1]}, {const_text(0, ydt)}')}, {t} {c(0)}, {t} {allsign}") \
      if not dtypes.is_unsigned(ydt) else allsign
    return self.op(f"select {bt} {wide}, {t} {fallback}, {t} {res}")

  # ---- control flow ----
  def open_loop(self, var: str, vt: str, start: str, end: str) -> tuple[str, str, str, str, str]:
    hdr, body, latch, exit_ = self.label("loop"), self.label("body"), self.label("latch"), self.label("exit")
    pre = self.block
    self.br(hdr)
    self.start(hdr)
    self.emit(f"{var} = phi {vt} [ {start}, %{pre} ], [ {var}.next, %{latch} ]")
    self.emit(f"br i1 {self.op(f'icmp slt {vt} {var}, {end}')}, label %{body}, label %{exit_}")
    self.start(body)
    return var, vt, hdr, latch, exit_
  def close_loop(self, loop: tuple[str, str, str, str, str]) -> None:
    var, vt, hdr, latch, exit_ = loop
    self.br(latch)
    self.start(latch)
    self.emit(f"{var}.next = add nsw {vt} {var}, 1")
    self.br(hdr)
    self.start(exit_)

  # ---- memory ----
  def load(self, u: UOp) -> str:
    idx = u.src[0]
    ptr, align = self.r[idx], idx.dtype.base.scalar().itemsize
    mt = llvm_type(u.dtype, True)
    gate = idx.src[2] if len(idx.src) > 2 else None
    if gate is None: return self.from_mem(self.op(f"load {mt}, {self.ren.ptr_type(idx.dtype)} {ptr}, align {align}"), u.dtype)
    alt = self.r[a] if (a := load_alt(u)) is not None else const_text(0, u.dtype)
    pre, then, done = self.block, self.label("ld"), self.label("ldend")
    self.emit(f"br i1 {self.r[gate]}, label %{then}, label %{done}")
    self.start(then)
    v = self.from_mem(self.op(f"load {mt}, {self.ren.ptr_type(idx.dtype)} {ptr}, align {align}"), u.dtype)
    then_end = self.block
    self.br(done)
    self.start(done)
    return self.op(f"phi {llvm_type(u.dtype)} [ {v}, %{then_end} ], [ {alt}, %{pre} ]")
  def store(self, u: UOp) -> None:
    idx, val = u.src[0], u.src[1]
    gate = idx.src[2] if len(idx.src) > 2 else None
    done = None
    if gate is not None:
      then, done = self.label("st"), self.label("stend")
      self.emit(f"br i1 {self.r[gate]}, label %{then}, label %{done}")
      self.start(then)
    v = self.to_mem(self.r[val], val.dtype)
    self.emit(f"store {llvm_type(val.dtype, True)} {v}, {self.ren.ptr_type(idx.dtype)} {self.r[idx]}, align {idx.dtype.base.scalar().itemsize}")
    if done is not None:
      self.br(done)
      self.start(done)

  # ---- the program ----
  def render_uop(self, u: UOp) -> None:
    op, ren = u.op, self.ren
    if op is Ops.DEFINE_GLOBAL: self.r[u] = "%" + ident(f"data{u.arg}")
    elif op is Ops.DEFINE_VAR: self.r[u] = "%" + ident(str(u.arg[0]))
    elif op in (Ops.CONST, Ops.VCONST): self.r[u] = const_text(u.arg, u.dtype)
    elif op is Ops.DEFINE_REG: self.r[u] = ren.define_reg(self, u)
    elif op is Ops.DEFINE_LOCAL: self.r[u] = ren.define_local(self, u)
    elif op is Ops.SPECIAL: self.r[u] = ren.special(self, u)
    elif op is Ops.RANGE:
      var = self.unique("ridx" + ("_".join(map(str, u.arg)) if isinstance(u.arg, tuple) else str(u.arg)))
      self.loops[u] = self.open_loop(var, llvm_type(u.dtype), const_text(0, u.dtype), self.r[u.src[0]])
      self.r[u] = var
    elif op is Ops.END:
      rng = u.src[-1]
      if rng not in self.loops: raise ValueError(f"END closes {rng.op.name}, which opened no loop: its last source must be a RANGE")
      self.close_loop(self.loops.pop(rng))
    elif op is Ops.IF:
      then, end = self.label("then"), self.label("endif")
      self.emit(f"br i1 {self.r[u.src[0]]}, label %{then}, label %{end}")
      self.start(then)
      self.ifs[u] = end
    elif op is Ops.ENDIF:
      end = self.ifs.pop(u.src[0])
      self.br(end)
      self.start(end)
    elif op is Ops.BARRIER: ren.barrier(self, u)
    elif op is Ops.INDEX:
      buf, idx = u.src[0], u.src[1]
      self.r[u] = self.op(f"getelementptr {llvm_type(buf.dtype.base, True)}, {ren.ptr_type(buf.dtype)} {self.r[buf]}, "
                          f"{llvm_type(idx.dtype)} {self.r[idx]}", "p")
    elif op is Ops.LOAD: self.r[u] = self.load(u)
    elif op is Ops.STORE: self.store(u)
    elif op is Ops.CAST: self.r[u] = self.cast(self.r[u.src[0]], u.src[0].dtype, u.dtype)
    elif op is Ops.BITCAST: self.r[u] = self.bitcast(self.r[u.src[0]], u.src[0].dtype, u.dtype)
    elif op is Ops.VECTORIZE:
      if (lanes := _const_lanes(u)) is not None: self.r[u] = const_text(tuple(lanes), u.dtype)
      else:
        vt, st, cur = llvm_type(u.dtype), llvm_type(u.src[0].dtype), "poison"
        if all(s is u.src[0] for s in u.src):  # a broadcast: one insert and a splat shuffle, not one insert per lane
          cur = self.op(f"insertelement {vt} poison, {st} {self.r[u.src[0]]}, i32 0")
          self.r[u] = self.op(f"shufflevector {vt} {cur}, {vt} poison, <{len(u.src)} x i32> zeroinitializer")
        else:
          for i, s in enumerate(u.src): cur = self.op(f"insertelement {vt} {cur}, {st} {self.r[s]}, i32 {i}")
          self.r[u] = cur
    elif op is Ops.GEP:
      src, vt = self.r[u.src[0]], llvm_type(u.src[0].dtype)
      if len(u.arg) == 1: self.r[u] = self.op(f"extractelement {vt} {src}, i32 {u.arg[0]}")
      else: self.r[u] = self.op(f"shufflevector {vt} {src}, {vt} poison, <{len(u.arg)} x i32> <{', '.join(f'i32 {i}' for i in u.arg)}>")
    elif op in GroupOp.ALU:
      if op not in ren.supported_ops: raise ValueError(f"{type(ren).__name__} has no native {op.name}: the lowering must rewrite it first")
      self.r[u] = self.alu(u)
    elif op is Ops.SINK:
      for loop in reversed(self.open_specials): self.close_loop(loop)
      self.open_specials.clear()
      self.emit("ret void")
    elif op is Ops.NOOP: self.r[u] = self.r[u.src[0]] if u.src else "poison"
    else: raise ValueError(f"{type(ren).__name__} can't render {op.name}" + (": WMMA (tensor cores) isn't supported by the LLVM renderers, "
                           "render without the TC opt" if op is Ops.WMMA else ""))

  def build(self) -> str:
    uops = self.uops
    if not uops or uops[-1].op is not Ops.SINK: raise ValueError("a linearized program must end with a SINK: pass the linearizer's output")
    bufs = sorted((u for u in uops if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg)
    variables = [u for u in uops if u.op is Ops.DEFINE_VAR]
    self.used.update([f"data{b.arg}" for b in bufs] + [str(v.arg[0]) for v in variables])
    for u in uops: self.render_uop(u)
    if self.loops or self.ifs: raise ValueError(f"{len(self.loops)} RANGE(s) and {len(self.ifs)} IF(s) are never closed before the SINK")
    params = [f"{self.ren.ptr_type(b.dtype)} noalias %{ident(f'data{b.arg}')}" for b in bufs] + \
             [f"{llvm_type(v.dtype)} %{ident(str(v.arg[0]))}" for v in variables] + self.ren.extra_params()
    head = self.ren.module_header() + self.globals + sorted(self.decls.values())
    fn = [f"define {self.ren.calling_convention()}void @{ident(self.name)}({', '.join(params)}) #0 {{", "entry:"] + \
         ["  " + p for p in self.prologue] + self.lines + ["}", f"attributes #0 = {{ {self.ren.function_attributes(self)} }}"]
    return "\n".join(head + [""] + fn) + "\n"

class LLVMRenderer(Renderer):
  """Linearized UOps -> LLVM IR text for the host CPU: `void @name(ptr %data0.., i32 %vars.., i32 %core_start, i32 %core_end)`."""
  device = "CPU"
  suffix = "LL"
  has_local = False
  has_shared = False
  global_max = None
  local_max = None
  supports_float4 = True
  supported_ops: frozenset[Ops] = frozenset(GroupOp.ALU - {Ops.THREEFRY})

  index_bits = 64  # index arithmetic renders as i64 (see `widen_index`); a renderer with 32 renders it as i32

  def render(self, name: str, uops: list[UOp]) -> str:
    """LLVM IR text defining the kernel `name` from the linearized program `uops`."""
    return _Builder(self, name, widen_index(uops) if self.index_bits == 64 else uops).build()

  # ---- target hooks (the AMDGPU renderer overrides these) ----
  def module_header(self) -> list[str]: return [f"; tg kernel, {type(self).__name__}"]
  def calling_convention(self) -> str: return ""
  def extra_params(self) -> list[str]: return ["i32 %core_start", "i32 %core_end"]
  def function_attributes(self, b: _Builder) -> str: return "nounwind"
  def ptr_type(self, dt: DType) -> str: return "ptr"
  def define_reg(self, b: _Builder, u: UOp) -> str:
    name = b.tmp("reg")
    b.prologue.append(f"{name} = alloca [{max(u.dtype.size, 1)} x {llvm_type(u.dtype.base, True)}], align 16")
    return name
  def define_local(self, b: _Builder, u: UOp) -> str: return self.define_reg(b, u)  # one thread per workgroup on the CPU
  def barrier(self, b: _Builder, u: UOp) -> None: pass  # one thread per workgroup: nothing to wait for
  def special(self, b: _Builder, u: UOp) -> str:
    # the CPU runtime splits gidx0 over threads as [core_start, core_end); gidx1/gidx2 loop over their whole bound
    name = str(u.arg)
    if not name.startswith("gidx"): raise ValueError(f"the CPU has no local dims, but the program uses {name}: lower it for a renderer "
                                                     "with has_local=False")
    if b.loops or b.ifs: raise ValueError(f"SPECIAL {name} appears inside a loop or IF: launch dims must come before any RANGE")
    var = b.unique(name)
    vt = llvm_type(u.dtype)
    start, end = ("%core_start", "%core_end") if name == "gidx0" else (const_text(0, u.dtype), b.r[u.src[0]])
    if vt != "i32":
      start, end = (b.cast(x, dtypes.int32, u.dtype) if x.startswith("%core") else x for x in (start, end))
    b.open_specials.append(b.open_loop(var, vt, start, end))
    return var
