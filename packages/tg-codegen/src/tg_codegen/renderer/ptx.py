"""`PTXRenderer`: a linearized program written directly as PTX text (assembled by ptxas or the driver's JIT), sm_80 to sm_90.

Registers: one per SSA value and vector lane, typed by dtype: %p .pred (bool), %rs .b16 (int8/uint8/int16/uint16; 8-bit values
live sign/zero-extended in 16 bits and are re-normalized after ops that can overflow), %h .b16 (float16 and bfloat16 bits),
%r .b32 (int32, uint32, index), %rd .b64 (int64, uint64, addresses), %f .f32, %fd .f64. float16/bfloat16 arithmetic converts to
f32, computes, and rounds to nearest even once (what `tg_uop.alu.exec_alu` does); arithmetic is written with explicit `.rn` so
ptxas never contracts a*b+c into an fma (MULACC is the explicit fma). A DEFINE_REG indexed only by constants is a set of
registers; otherwise it is a `.local` array. DEFINE_LOCAL is a `.shared` array, BARRIER is `bar.sync 0`, SPECIAL gidxN/lidxN read
%ctaid/%tid. RANGE/END are a counted loop (label + predicated `bra`), guarded at the top when the bound may be <= 0.

Transcendentals (`native_dtypes`): PTX has them only as f32 approximations (f16/bf16 compute through f32 and round once).
- EXP2 is `ex2.approx.f32` for float32, float16 and bfloat16: it is what CUDA C's exp2f compiles to (nvcc -ptx, no fast-math),
  documented at 2 ulp over the full range; 2**-inf = +0, 2**(+-0) = 1, 2**inf = inf, nan stays nan. float64 has no ex2: the
  lowering decomposes it.
- LOG2 is `lg2.approx.f32` for float16 and bfloat16 only. Its documented error is 2**-22 absolute on [0.5, 2] (2 ulp elsewhere):
  at most half an ulp of a float16/bfloat16 result before it is rounded, but unbounded in ulps of a float32 result near x = 1
  (log2(1 + 2**-23) ~ 1.7e-7), where CUDA C's log2f is a 1-ulp software routine, not lg2. So float32 and float64 keep the
  lowering's decomposition.
- SIN is never native: `sin.approx.f32`'s error is documented as absolute (2**-21.19 on [-pi, pi]), which allows sin(1e-5) to be
  off by 4% (float16 alike), and beyond [-pi, pi] no bound is given (CUDA C's sinf is a software routine with Payne-Hanek
  reduction, not sin.approx). POW is never native either.
- EXP2 and LOG2 run without `.ftz`: subnormal inputs and results are kept (bfloat16 has float32's exponent range).

WMMA follows the arg format and per-lane fragment layout documented in `cuda.py` (m16n8k16, f16/bf16 in, f32 out), emitted as
`mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32`.
"""
from __future__ import annotations
import struct
from typing import Any
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_uop.runtime.renderer import Renderer, load_alt, alu_dtype
from tg_codegen.renderer.cuda import MMA_TENSOR_CORES, parse_wmma_arg, arch_number, check_kernel_name, sanitize, aligned_vector, launch_bound

# dtype -> (register class, arithmetic type, memory type)
_T: dict[DType, tuple[str, str, str]] = {
  dtypes.bool: ("p", "pred", "u8"), dtypes.int8: ("rs", "s16", "s8"), dtypes.uint8: ("rs", "u16", "u8"),
  dtypes.int16: ("rs", "s16", "s16"), dtypes.uint16: ("rs", "u16", "u16"), dtypes.int32: ("r", "s32", "s32"),
  dtypes.uint32: ("r", "u32", "u32"), dtypes.index: ("r", "s32", "s32"), dtypes.int64: ("rd", "s64", "s64"),
  dtypes.uint64: ("rd", "u64", "u64"), dtypes.float16: ("h", "f16", "b16"), dtypes.bfloat16: ("h", "bf16", "b16"),
  dtypes.float32: ("f", "f32", "f32"), dtypes.float64: ("fd", "f64", "f64")}
_REG_DECL = {"p": "pred", "rs": "b16", "h": "b16", "r": "b32", "rd": "b64", "f": "f32", "fd": "f64"}
_HALF = (dtypes.float16, dtypes.bfloat16)
_BYTE = (dtypes.int8, dtypes.uint8)
_INT_ASM = {Ops.ADD: "add", Ops.SUB: "sub", Ops.MUL: "mul.lo", Ops.IDIV: "div", Ops.MOD: "rem", Ops.MAX: "max", Ops.MULACC: "mad.lo"}
_FLOAT_ASM = {Ops.ADD: "add.rn", Ops.SUB: "sub.rn", Ops.MUL: "mul.rn", Ops.FDIV: "div.rn", Ops.MULACC: "fma.rn", Ops.NEG: "neg",
              Ops.SQRT: "sqrt.rn", Ops.RECIP: "rcp.rn", Ops.TRUNC: "cvt.rzi", Ops.EXP2: "ex2.approx", Ops.LOG2: "lg2.approx"}
_BIT_ASM = {Ops.AND: "and", Ops.OR: "or", Ops.XOR: "xor"}
_CMP = {Ops.CMPLT: "lt", Ops.CMPNE: "ne", Ops.CMPEQ: "eq"}
_HOISTED = (Ops.DEFINE_GLOBAL, Ops.DEFINE_VAR, Ops.SPECIAL, Ops.DEFINE_LOCAL, Ops.DEFINE_REG, Ops.CONST, Ops.VCONST)

def _info(dt: DType) -> tuple[str, str, str]:
  if dt.scalar() not in _T: raise ValueError(f"PTX renderer doesn't support dtype {dt}: cast to float16/bfloat16/float32 first")
  return _T[dt.scalar()]
def _size(dt: DType) -> int: return 4 if dt.scalar() == dtypes.index else dt.scalar().itemsize  # index is 32-bit on the GPU
def _bits(dt: DType) -> str: return f"b{8*max(2, _size(dt))}"
def _movt(dt: DType) -> str:
  """The type suffix of a `mov` into a register of scalar dtype `dt`."""
  return {dtypes.bool: "pred", dtypes.float32: "f32", dtypes.float64: "f64"}.get(dt.scalar(), _bits(dt))
def _imm(v: Any, dt: DType) -> str:
  """A PTX immediate holding exactly `v` as scalar dtype `dt` (floats as their bit pattern)."""
  if dt == dtypes.bool: return "1" if v else "0"
  if dt == dtypes.float32: return f"0f{struct.unpack('<I', struct.pack('<f', v))[0]:08X}"
  if dt == dtypes.float64: return f"0d{struct.unpack('<Q', struct.pack('<d', v))[0]:016X}"
  if dt == dtypes.float16: return f"0x{struct.unpack('<H', struct.pack('<e', v))[0]:04X}"
  if dt == dtypes.bfloat16: return f"0x{struct.unpack('<I', struct.pack('<f', v))[0] >> 16:04X}"
  if dtypes.is_float(dt): raise ValueError(f"PTX renderer doesn't support {dt} constants")
  v = int(v)
  return str(v) if -2**31 <= v < 2**31 else f"0x{v & ((1 << 8*_size(dt)) - 1):X}"  # wide values as their bit pattern

class PTXRenderer(Renderer):
  """PTX for sm_80, sm_86, sm_89 and sm_90(a). `supports(op, dtype)` says which ALU ops render natively (see the module docstring
  for the transcendentals); the lowering decomposes the rest."""
  device, suffix, default_arch = "NV", "PTX", "sm_90"
  has_local, has_shared, supports_float4 = True, True, True
  global_max = (2**31 - 1, 65535, 65535)
  local_max = (1024, 1024, 64)
  shared_max = 49152
  supported_ops = frozenset(GroupOp.ALU - {Ops.SIN, Ops.POW, Ops.THREEFRY})
  native_dtypes = {Ops.EXP2: frozenset({dtypes.float16, dtypes.bfloat16, dtypes.float32}),  # see the module docstring
                   Ops.LOG2: frozenset({dtypes.float16, dtypes.bfloat16})}
  ptx_version = "8.0"

  def __init__(self, arch: str | None = None):
    super().__init__(arch)
    self.arch_num = arch_number(self.arch, "PTXRenderer")
    if self.arch_num < 80: raise ValueError(f"PTXRenderer needs sm_80 or newer (it uses max.NaN and bf16 conversions), got {self.arch!r}")
    self.tensor_cores = list(MMA_TENSOR_CORES)
    self.async_copy = True  # cp.async (sm_80+): the lowering may stage tensor-core tiles double-buffered
    self.ldmatrix = True    # tensor-core fragments from shared memory in one instruction

  # ---- registers and emission ----
  def _new(self, dt: DType) -> str:
    cls = _info(dt)[0]
    self.nregs[cls] = self.nregs.get(cls, 0) + 1
    return f"%{cls}{self.nregs[cls]}"
  def _emit(self, line: str): self.lines.append("  " + line)
  def _tmp_f32(self, reg: str, dt: DType) -> str:
    """`reg` (a float16/bfloat16 scalar) as a new f32 register."""
    f = self._new(dtypes.float32)
    if dt == dtypes.float16: self._emit(f"cvt.f32.f16 {f}, {reg};")
    else:  # bf16 -> f32 is exact: the bf16 bits are the high half of the f32
      z = self._new(dtypes.bfloat16)
      self._emit(f"mov.b16 {z}, 0;")
      self._emit(f"mov.b32 {f}, {{{z}, {reg}}};")
    return f
  def _from_f32(self, f: str, dt: DType) -> str:
    """f32 register `f` rounded to nearest even into a new float16/bfloat16 register."""
    h = self._new(dt)
    self._emit(f"cvt.rn.{_info(dt)[1]}.f32 {h}, {f};")
    return h
  def _norm8(self, reg: str, dt: DType):
    """Re-normalize an 8-bit int held in 16 bits after an op that can leave the 8-bit range (C wrap-around)."""
    if dt in _BYTE: self._emit(f"cvt.{_info(dt)[1]}.{_info(dt)[2]} {reg}, {reg};")

  # ---- ALU ----
  def _alu(self, op: Ops, out: DType, srcs: list[str], sdt: DType) -> str:
    """Emit scalar ALU `op` on registers `srcs` (operand dtype `sdt`) and return the result register."""
    if op is Ops.WHERE and sdt in _HALF or op is not Ops.WHERE and sdt in _HALF:
      if op is Ops.WHERE:
        d = self._new(sdt)
        self._emit(f"selp.b16 {d}, {srcs[1]}, {srcs[2]}, {srcs[0]};")
        return d
      res = self._alu(op, dtypes.bool if op in GroupOp.Comparison else dtypes.float32, [self._tmp_f32(s, sdt) for s in srcs], dtypes.float32)
      return res if op in GroupOp.Comparison else self._from_f32(res, sdt)
    if sdt == dtypes.bool: return self._alu_bool(op, srcs)
    _, t, _ = _info(sdt)
    if op in GroupOp.Comparison:
      d = self._new(dtypes.bool)
      cmp = "neu" if op is Ops.CMPNE and dtypes.is_float(sdt) else _CMP[op]  # nan != x is true, as in C
      self._emit(f"setp.{cmp}.{t} {d}, {srcs[0]}, {srcs[1]};")
      return d
    d = self._new(out)
    if op is Ops.WHERE: self._emit(f"selp.{_bits(out)} {d}, {srcs[1]}, {srcs[2]}, {srcs[0]};")
    elif dtypes.is_float(sdt): self._alu_float(op, d, srcs, t)
    elif op in _INT_ASM or op is Ops.NEG:
      ins = f"{_INT_ASM[op]}.{t}" if op is not Ops.NEG else f"neg.s{t[1:]}"
      self._emit(f"{ins} {d}, {', '.join(srcs)};")
      if op in (Ops.ADD, Ops.SUB, Ops.MUL, Ops.MULACC, Ops.NEG, Ops.IDIV): self._norm8(d, sdt)
    elif op in _BIT_ASM: self._emit(f"{_BIT_ASM[op]}.{_bits(sdt)} {d}, {srcs[0]}, {srcs[1]};")
    elif op in (Ops.SHL, Ops.SHR):
      # ptx clamps shift amounts >= the width (shl gives 0, shr.s sign-fills), which is what exec_alu computes
      ins = f"shl.{_bits(sdt)}" if op is Ops.SHL else f"shr.{t}"
      self._emit(f"{ins} {d}, {srcs[0]}, {srcs[1]};")
      if op is Ops.SHL: self._norm8(d, sdt)
    elif op is Ops.TRUNC: self._emit(f"mov.{_bits(sdt)} {d}, {srcs[0]};")
    else: raise ValueError(f"PTX renderer can't render {op.name} on {sdt}: it is not native (supports()), so the lowering must decompose it")
    return d

  def _alu_float(self, op: Ops, d: str, srcs: list[str], t: str):
    if op is Ops.MAX:
      if t == "f32": self._emit(f"max.NaN.f32 {d}, {srcs[0]}, {srcs[1]};"); return
      p, m, s = self._new(dtypes.bool), self._new(dtypes.float64), self._new(dtypes.float64)
      self._emit(f"setp.nan.f64 {p}, {srcs[0]}, {srcs[1]};")  # either is nan: a+b is nan
      self._emit(f"max.f64 {m}, {srcs[0]}, {srcs[1]};")
      self._emit(f"add.f64 {s}, {srcs[0]}, {srcs[1]};")
      self._emit(f"selp.f64 {d}, {s}, {m}, {p};")
      return
    if op is Ops.RECIP and t == "f64": self._emit(f"rcp.rn.f64 {d}, {srcs[0]};"); return
    if op not in _FLOAT_ASM or op in (Ops.EXP2, Ops.LOG2) and t != "f32":  # ex2/lg2 exist for f32 only (halves come here as f32)
      raise ValueError(f"PTX renderer can't render {op.name} on {t}: it is not native (see supports()), so the lowering must decompose it")
    self._emit(f"{_FLOAT_ASM[op]}.{t}{'.' + t if op is Ops.TRUNC else ''} {d}, {', '.join(srcs)};")

  def _alu_bool(self, op: Ops, srcs: list[str]) -> str:
    d = self._new(dtypes.bool)
    a = srcs[0]
    if op is Ops.WHERE:
      c, x, y = srcs
      nc, t1, t2 = self._new(dtypes.bool), self._new(dtypes.bool), self._new(dtypes.bool)
      self._emit(f"not.pred {nc}, {c};")
      self._emit(f"and.pred {t1}, {c}, {x};")
      self._emit(f"and.pred {t2}, {nc}, {y};")
      self._emit(f"or.pred {d}, {t1}, {t2};")
    elif op in (Ops.OR, Ops.ADD, Ops.MAX): self._emit(f"or.pred {d}, {a}, {srcs[1]};")
    elif op in (Ops.AND, Ops.MUL): self._emit(f"and.pred {d}, {a}, {srcs[1]};")
    elif op in (Ops.XOR, Ops.CMPNE): self._emit(f"xor.pred {d}, {a}, {srcs[1]};")
    elif op is Ops.CMPEQ:
      x = self._new(dtypes.bool)
      self._emit(f"xor.pred {x}, {a}, {srcs[1]};")
      self._emit(f"not.pred {d}, {x};")
    elif op is Ops.CMPLT:  # false < true only
      na = self._new(dtypes.bool)
      self._emit(f"not.pred {na}, {a};")
      self._emit(f"and.pred {d}, {na}, {srcs[1]};")
    elif op is Ops.NEG: self._emit(f"not.pred {d}, {a};")
    else: raise ValueError(f"PTX renderer can't render {op.name} on bool")
    return d

  # ---- casts ----
  def _cast(self, x: str, src: DType, dst: DType) -> str:
    """Emit a C conversion of scalar register `x` from `src` to `dst` and return the result register."""
    if src == dst: return x
    if src == dtypes.bool:
      d = self._new(dst)
      one, zero = (_imm(1.0, dst), _imm(0.0, dst)) if dtypes.is_float(dst) else ("1", "0")
      self._emit(f"selp.{_bits(dst) if dst not in (dtypes.float32, dtypes.float64) else _info(dst)[1]} {d}, {one}, {zero}, {x};")
      return d
    if src in _HALF and not (dst in _HALF and src == dst):
      x, src = self._tmp_f32(x, src), dtypes.float32
      if dst == src: return x
    if dst == dtypes.bool:
      d = self._new(dst)
      st = _info(src)[1]
      self._emit(f"setp.{'neu' if dtypes.is_float(src) else 'ne'}.{st} {d}, {x}, {_imm(0, src)};")
      return d
    d = self._new(dst)
    sr, st, _ = _info(src)
    dr, dt_, dm = _info(dst)
    if dst == dtypes.bfloat16 and (self.arch_num < 90 and src != dtypes.float32 or dtypes.is_int(src) and src.itemsize < 2):
      # before sm_90 only f32 -> bf16 exists; 8-bit ints go through f32 too (exact)
      return self._from_f32(self._cast(x, src, dtypes.float32), dst)
    if dtypes.is_float(dst) and dtypes.is_float(src):
      rnd = ".rn" if dst.itemsize < src.itemsize else ""
      self._emit(f"cvt{rnd}.{dt_}.{st} {d}, {x};")
    elif dtypes.is_float(dst): self._emit(f"cvt.rn.{dt_}.{st} {d}, {x};")  # int -> float rounds to nearest
    elif dtypes.is_float(src): self._emit(f"cvt.rzi.{dm if dst in _BYTE else dt_}.{st} {d}, {x};")  # float -> int truncates
    elif sr == dr and dst not in _BYTE: self._emit(f"mov.{_bits(dst)} {d}, {x};")  # same width: same bits
    else: self._emit(f"cvt.{dm if dst in _BYTE else dt_}.{st} {d}, {x};")  # wrap / extend, as C
    return d

  def _bitcast(self, x: str, src: DType, dst: DType) -> str:
    if src.itemsize != dst.itemsize: raise ValueError(f"can't bitcast {src} to {dst}: sizes differ ({src.itemsize} vs {dst.itemsize} bytes)")
    if src == dtypes.bool or dst == dtypes.bool: raise ValueError("can't bitcast bool: cast it instead")
    if dst in _BYTE: return self._cast(x, src, dst)  # same low byte, re-extended for dst's signedness
    d = self._new(dst)
    self._emit(f"mov.{_bits(dst)} {d}, {x};")
    return d

  # ---- memory ----
  def _address(self, idx: UOp) -> tuple[str, str, str | None]:
    """(state space, address operand, gate register) of INDEX `idx`; emits the address arithmetic."""
    buf, off = idx.src[0], idx.src[1]
    while buf.op in (Ops.AFTER, Ops.NOOP): buf = buf.src[0]
    space = {Ops.DEFINE_GLOBAL: "global", Ops.DEFINE_LOCAL: "shared", Ops.DEFINE_REG: "local"}.get(buf.op)
    if space is None: raise ValueError(f"INDEX into {buf.op.name}: expected DEFINE_GLOBAL, DEFINE_LOCAL or DEFINE_REG")
    gate = self.v[idx.src[2]][0] if len(idx.src) > 2 else None
    size = buf.dtype.base.itemsize
    base = self.v[buf][0]
    if off.op is Ops.CONST: return space, f"[{base}+{int(off.arg) * size}]", gate
    o, a = self._new(dtypes.int64), self._new(dtypes.int64)
    reg, t = self.v[off][0], _info(off.dtype)[1]
    if t in ("s32", "u32"): self._emit(f"mul.wide.{t} {o}, {reg}, {size};")
    elif t in ("s64", "u64"): self._emit(f"mul.lo.s64 {o}, {reg}, {size};")
    else:
      w = self._new(dtypes.int64)
      self._emit(f"cvt.{'s64' if t[0] == 's' else 'u64'}.{t} {w}, {reg};")
      self._emit(f"mul.lo.s64 {o}, {w}, {size};")
    self._emit(f"add.s64 {a}, {base}, {o};")
    return space, f"[{a}]", gate

  def _ldst(self, store: bool, space: str, addr: str, regs: list[str], dt: DType, gate: str | None, aligned: bool):
    """Emit the ld/st of `regs` (lanes of scalar dtype `dt`) at `addr`, one wide access when `aligned`, else lane by lane."""
    pred = f"@{gate} " if gate else ""
    mt = _info(dt)[2] if dt not in _HALF else "b16"
    if dt == dtypes.bool:
      for i, r in enumerate(regs):
        b, a = self._new(dtypes.uint16), self._lane_addr(addr, i)
        if store:
          self._emit(f"selp.u16 {b}, 1, 0, {r};")
          self._emit(f"{pred}st.{space}.u8 {a}, {b};")
        else:
          self._emit(f"mov.b16 {b}, 0;")
          self._emit(f"{pred}ld.{space}.u8 {b}, {a};")
          self._emit(f"setp.ne.b16 {r}, {b}, 0;")
      return
    if aligned and len(regs) * dt.itemsize > 16:  # 16 bytes is the widest access before sm_100 (4 x f64: two v2 halves, each aligned)
      per = 16 // dt.itemsize
      for k in range(0, len(regs), per): self._ldst(store, space, self._lane_addr(addr, k * dt.itemsize), regs[k:k + per], dt, gate, True)
      return
    if len(regs) == 8 and aligned:  # 8 x 16 bits: one 16-byte access as 4 x b32, each holding two lanes
      words = [self._new(dtypes.uint32) for _ in range(4)]
      if store:
        for w, i in zip(words, range(0, 8, 2)): self._emit(f"mov.b32 {w}, {{{regs[i]}, {regs[i + 1]}}};")
        self._emit(f"{pred}st.{space}.v4.b32 {addr}, {{{', '.join(words)}}};")
      else:
        if gate:  # a gated-off load keeps the alt values already in the lanes
          for w, i in zip(words, range(0, 8, 2)): self._emit(f"mov.b32 {w}, {{{regs[i]}, {regs[i + 1]}}};")
        self._emit(f"{pred}ld.{space}.v4.b32 {{{', '.join(words)}}}, {addr};")
        for w, i in zip(words, range(0, 8, 2)): self._emit(f"mov.b32 {{{regs[i]}, {regs[i + 1]}}}, {w};")
      return
    if len(regs) > 1 and aligned:
      vec = f"{{{', '.join(regs)}}}"
      self._emit(f"{pred}st.{space}.v{len(regs)}.{mt} {addr}, {vec};" if store else f"{pred}ld.{space}.v{len(regs)}.{mt} {vec}, {addr};")
      return
    for i, r in enumerate(regs):
      a = self._lane_addr(addr, i * dt.itemsize)
      self._emit(f"{pred}st.{space}.{mt} {a}, {r};" if store else f"{pred}ld.{space}.{mt} {r}, {a};")

  def _lane_addr(self, addr: str, byte_off: int) -> str:
    if byte_off == 0: return addr
    inner = addr[1:-1]
    if "+" in inner:
      base, off = inner.split("+")
      return f"[{base}+{int(off) + byte_off}]"
    return f"[{inner}+{byte_off}]"

  def _alt(self, u: UOp) -> UOp:
    if (alt := load_alt(u)) is None: raise ValueError("a gated LOAD needs an alt value: LOAD(INDEX(buf, idx, gate), alt)")
    return alt

  def _load(self, u: UOp):
    idx = u.src[0]
    if idx.op is not Ops.INDEX: raise ValueError(f"LOAD needs an INDEX source, got {idx.op.name}")
    dt, cnt = u.dtype.scalar(), u.dtype.count
    if (elems := self._reg_elems(idx)) is not None:  # register-backed DEFINE_REG
      out = [self._new(dt) for _ in range(cnt)]
      gate = self.v[idx.src[2]][0] if len(idx.src) > 2 else None
      if gate is not None:
        alt = self.v[self._alt(u)]
        for o, a in zip(out, alt * cnt if len(alt) == 1 else alt): self._emit(f"mov.{_movt(dt)} {o}, {a};")
      for o, s in zip(out, elems[:cnt]): self._emit(f"{'@' + gate + ' ' if gate else ''}mov.{_movt(dt)} {o}, {s};")
      self.v[u] = out
      return
    space, addr, gate = self._address(idx)
    out = [self._new(dt) for _ in range(cnt)]
    if gate is not None:
      alt = self.v[self._alt(u)]
      for o, a in zip(out, alt * cnt if len(alt) == 1 else alt):
        self._emit(f"mov.{_movt(dt)} {o}, {a};")
    self._ldst(False, space, addr, out, dt, gate, aligned_vector(idx.src[1], cnt, dt.itemsize))
    self.v[u] = out

  def _ldmatrix(self, u: UOp):
    """LOAD(shared INDEX, arg=("ldmatrix", matrices, trans)): one warp-wide ldmatrix, each b32 register split into two b16 lanes."""
    _, nmat, trans = u.arg
    _, addr, _ = self._address(u.src[0])
    words = [self._new(dtypes.uint32) for _ in range(nmat)]
    self._emit(f"ldmatrix.sync.aligned.m8n8.x{nmat}{'.trans' if trans else ''}.shared.b16 {{{', '.join(words)}}}, {addr};")
    out = [self._new(u.dtype.scalar()) for _ in range(2 * nmat)]
    for i, w in enumerate(words): self._emit(f"mov.b32 {{{out[2 * i]}, {out[2 * i + 1]}}}, {w};")
    self.v[u] = out

  def _async_copy(self, u: UOp):
    """STORE(shared INDEX, LOAD(global INDEX), arg="async"): a 16-byte cp.async (predicated off where the global index is gated)."""
    if u.src[1].dtype.itemsize != 16: raise ValueError(f"an async copy moves 16 bytes, got {u.src[1].dtype}")
    _, dst, _ = self._address(u.src[0])
    _, src, gate = self._address(u.src[1].src[0])
    self._emit(f"{'@' + gate + ' ' if gate else ''}cp.async.cg.shared.global {dst}, {src}, 16;")

  def _store(self, u: UOp):
    idx, val = u.src[0], u.src[1]
    if idx.op is not Ops.INDEX: raise ValueError(f"STORE needs an INDEX source, got {idx.op.name}")
    dt = val.dtype.scalar()
    if (elems := self._reg_elems(idx)) is not None:
      gate = self.v[idx.src[2]][0] if len(idx.src) > 2 else None
      for e, s in zip(elems, self.v[val]): self._emit(f"{'@' + gate + ' ' if gate else ''}mov.{_movt(dt)} {e}, {s};")
      return
    space, addr, gate = self._address(idx)
    self._ldst(True, space, addr, self.v[val], dt, gate, aligned_vector(idx.src[1], val.dtype.count, dt.itemsize))

  def _reg_elems(self, idx: UOp) -> list[str] | None:
    """The registers from the indexed element on, if `idx` addresses a register-backed DEFINE_REG."""
    buf = idx.src[0]
    while buf.op in (Ops.AFTER, Ops.NOOP): buf = buf.src[0]
    if buf not in self.reg_arrays: return None
    return [r for e in self.reg_arrays[buf][int(idx.src[1].arg):] for r in e]

  # ---- rendering ----
  def render(self, name: str, uops: list[UOp]) -> str:
    """PTX text of kernel `name` from linearized `uops`."""
    check_kernel_name(name)
    self.nregs: dict[str, int] = {}
    self.lines: list[str] = []
    self.v: dict[UOp, list[str]] = {}
    self.reg_arrays: dict[UOp, list[list[str]]] = {}
    params: list[tuple[int, str]] = []
    vars_: list[str] = []
    decls: list[str] = []
    loops: list[tuple[UOp, int]] = []
    ifs: list[int] = []
    nlabel = 0
    # a DEFINE_REG whose every INDEX is a constant becomes plain registers (no local memory traffic)
    const_only: dict[UOp, bool] = {}
    for u in uops:
      if u.op is Ops.INDEX and u.src[0].op is Ops.DEFINE_REG:
        const_only[u.src[0]] = const_only.get(u.src[0], True) and u.src[1].op is Ops.CONST
    body: list[str] = []
    pre: list[str] = []
    for u in uops:
      op = u.op
      if op is Ops.SINK: break
      if op in (Ops.NOOP, Ops.AFTER) and u.src: self.v[u] = self.v[u.src[0]]; continue
      # definitions and constants go before any control flow, so every later use sees them whatever IF/loop they appear in
      self.lines = pre if op in _HOISTED else body
      if op is Ops.DEFINE_GLOBAL:
        p = f"data{u.arg}"
        params.append((u.arg, f".param .u64 {p}"))
        r = self._new(dtypes.uint64)
        self._emit(f"ld.param.u64 {r}, [{p}];")
        self._emit(f"cvta.to.global.u64 {r}, {r};")
        self.v[u] = [r]
      elif op is Ops.DEFINE_VAR:
        p = sanitize(u.arg[0])
        _, t, _ = _info(u.dtype)
        vars_.append(f".param .{t} {p}")
        r = self._new(u.dtype)
        self._emit(f"ld.param.{t} {r}, [{p}];")
        self.v[u] = [r]
      elif op is Ops.SPECIAL:
        kind, dim = str(u.arg)[:4], int(str(u.arg)[4:] or 0)
        if kind not in ("gidx", "lidx") or dim > 2: raise ValueError(f"SPECIAL {u.arg!r}: expected gidx0..2 or lidx0..2")
        r = self._new(u.dtype)
        self._emit(f"mov.u32 {r}, %{'ctaid' if kind == 'gidx' else 'tid'}.{'xyz'[dim]};")
        self.v[u] = [r]
      elif op in (Ops.DEFINE_LOCAL, Ops.DEFINE_REG):
        base, size = u.dtype.base, u.dtype.size
        if op is Ops.DEFINE_REG and const_only.get(u, True):
          self.reg_arrays[u] = [[self._new(base.scalar()) for _ in range(base.count)] for _ in range(size)]
          continue
        space, nm = ("shared", f"smem{len(decls)}") if op is Ops.DEFINE_LOCAL else ("local", f"lmem{len(decls)}")
        decls.append(f".{space} .align 16 .b8 {nm}[{max(1, size * base.itemsize)}];")
        r = self._new(dtypes.uint64)
        self._emit(f"mov.u64 {r}, {nm};")
        self.v[u] = [r]
      elif op is Ops.CONST:
        r = self._new(u.dtype)
        self._emit(f"mov.{_movt(u.dtype)} {r}, {_imm(u.arg, u.dtype)};")
        self.v[u] = [r]
      elif op is Ops.VCONST:
        self.v[u] = []
        for x in u.arg:
          r = self._new(u.dtype.scalar())
          self._emit(f"mov.{_movt(u.dtype)} {r}, {_imm(x, u.dtype.scalar())};")
          self.v[u].append(r)
      elif op is Ops.RANGE:
        nlabel += 1
        r, end = self._new(u.dtype), u.src[0]
        _, t, _ = _info(u.dtype)
        self._emit(f"mov.{_bits(u.dtype)} {r}, 0;")
        if not (end.op is Ops.CONST and end.arg > 0):  # a do-while loop must not run when the bound is <= 0
          p = self._new(dtypes.bool)
          self._emit(f"setp.le.{t} {p}, {self.v[end][0]}, 0;")
          self._emit(f"@{p} bra $L_end{nlabel};")
        self.lines.append(f"$L_loop{nlabel}:")
        loops.append((u, nlabel))
        self.v[u] = [r]
      elif op is Ops.END:
        if not loops: raise ValueError("END without an open RANGE")
        rng, n = loops.pop()
        r, t = self.v[rng][0], _info(rng.dtype)[1]
        p = self._new(dtypes.bool)
        self._emit(f"add.{t} {r}, {r}, 1;")
        self._emit(f"setp.lt.{t} {p}, {r}, {self.v[rng.src[0]][0]};")
        self._emit(f"@{p} bra $L_loop{n};")
        self.lines.append(f"$L_end{n}:")
      elif op is Ops.IF:
        nlabel += 1
        ifs.append(nlabel)
        self._emit(f"@!{self.v[u.src[0]][0]} bra $L_endif{nlabel};")
      elif op is Ops.ENDIF:
        if not ifs: raise ValueError("ENDIF without an open IF")
        self.lines.append(f"$L_endif{ifs.pop()}:")
      elif op is Ops.BARRIER:
        if u.arg in ("commit", "wait1"): self._emit("cp.async.commit_group;")
        if u.arg == "wait1": self._emit("cp.async.wait_group 1;")
        if u.arg != "commit": self._emit("bar.sync 0;")
      elif op is Ops.INDEX: pass  # the address is computed where it is loaded or stored
      elif op is Ops.LOAD and u.arg == "async": self.v[u] = []  # its STORE copies memory to memory (cp.async)
      elif op is Ops.LOAD and type(u.arg) is tuple: self._ldmatrix(u)
      elif op is Ops.STORE and u.arg == "async": self._async_copy(u)
      elif op is Ops.LOAD: self._load(u)
      elif op is Ops.STORE: self._store(u)
      elif op is Ops.VECTORIZE: self.v[u] = [self.v[s][0] for s in u.src]
      elif op is Ops.GEP: self.v[u] = [self.v[u.src[0]][i] for i in u.arg]
      elif op in GroupOp.ALU:
        sdt = alu_dtype(u)
        if not self.supports(op, sdt):
          raise ValueError(f"PTX renderer can't render {op.name} on {sdt}: PTXRenderer.supports({op.name}, {sdt}) is False, so the "
                           "lowering must decompose it")
        srcs = [self.v[s] * (u.dtype.count if len(self.v[s]) == 1 else 1) for s in u.src]
        if op in (Ops.SHL, Ops.SHR) and _size(u.src[1].dtype) != 4:  # ptx shift amounts are 32-bit
          srcs[1] = [self._cast(x, u.src[1].dtype.scalar(), dtypes.uint32) for x in srcs[1]]
        cols = zip(*srcs)
        self.v[u] = [self._alu(op, u.dtype.scalar(), list(c), sdt) for c in cols]
      elif op in (Ops.CAST, Ops.BITCAST):
        f = self._cast if op is Ops.CAST else self._bitcast
        self.v[u] = [f(x, u.src[0].dtype.scalar(), u.dtype.scalar()) for x in self.v[u.src[0]]]
      elif op is Ops.WMMA: self._wmma(u)
      else: raise ValueError(f"PTX renderer can't render {op.name} in a linearized program (see CONTRACT 'Linearized program v1')")
    if loops or ifs: raise ValueError(f"{len(loops)} RANGE(s) and {len(ifs)} IF(s) are never closed")

    params.sort()
    plist = [p for _, p in params] + vars_
    lb = launch_bound(uops)
    regs = [f"  .reg .{_REG_DECL[c]} %{c}<{n + 1}>;" for c, n in self.nregs.items()]
    out = [f".version {self.ptx_version}", f".target {self.arch}", ".address_size 64", "",
           f".visible .entry {name}(" + (("\n  " + ",\n  ".join(plist) + "\n") if plist else "") + ")"]
    if lb: out.append(f".maxntid {lb}, 1, 1")
    out += ["{"] + regs + [f"  {d}" for d in decls] + pre + body + ["  ret;", "}"]
    return "\n".join(out) + "\n"

  def _wmma(self, u: UOp):
    tc = parse_wmma_arg(u.arg)
    a, b, c = u.src
    for s, want in zip(u.src, (tc.dtype_in.vec(8), tc.dtype_in.vec(4), tc.dtype_out.vec(4))):
      if s.dtype != want: raise ValueError(f"WMMA {tc.name} needs sources of dtype {want}, got {s.dtype} (see cuda.py's docstring)")
    def pack(regs: list[str]) -> list[str]:
      out = []
      for lo, hi in zip(regs[::2], regs[1::2]):
        r = self._new(dtypes.uint32)
        self._emit(f"mov.b32 {r}, {{{lo}, {hi}}};")  # first element in the low half
        out.append(r)
      return out
    pa, pb = pack(self.v[a]), pack(self.v[b])
    d = [self._new(dtypes.float32) for _ in range(4)]
    it = "f16" if tc.dtype_in == dtypes.float16 else "bf16"
    self._emit(f"mma.sync.aligned.m16n8k16.row.col.f32.{it}.{it}.f32 {{{', '.join(d)}}}, {{{', '.join(pa)}}}, {{{', '.join(pb)}}}, "
               f"{{{', '.join(self.v[c])}}};")
    self.v[u] = d
