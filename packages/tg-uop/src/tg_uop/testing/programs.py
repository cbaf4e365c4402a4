"""Hand-written linearized UOp programs (contract "Linearized program v1") with their inputs and numpy reference results.

Every renderer and device is checked against these: they are small on purpose, so a failure points at one feature (loops,
accumulators, launch dims, gates, casts, vectors, local memory, symbolic sizes). numpy is imported lazily: the core doesn't need it.
"""
from __future__ import annotations
import functools
from dataclasses import dataclass
from typing import Any, Callable
from tg_uop.dtype import DType, dtypes, to_np_name, truncate_float
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp

@dataclass
class ConformanceProgram:
  """One linearized program: `bufs[i]` = (dtype, element count) of kernel parameter i; `inputs` are copied in before the launch
  (also used to prefill outputs that the program writes only partly); `expected` maps buffer index to the numpy result."""
  name: str
  uops: list[UOp]
  bufs: list[tuple[DType, int]]
  inputs: dict[int, Any]
  expected: dict[int, Any]
  global_size: tuple[int, int, int] = (1, 1, 1)
  local_size: tuple[int, int, int] = (1, 1, 1)
  vals: tuple[int, ...] = ()
  requires: frozenset[str] = frozenset()  # "local" (DEFINE_LOCAL/lidx/BARRIER) and/or "float4" (vector LOAD/STORE)
  rtol: float = 1e-6
  atol: float = 1e-6
  description: str = ""

  @property
  def alu_ops(self) -> frozenset[Ops]:
    """The ALU ops this program uses (a renderer without one of them natively can't run it unlowered)."""
    return frozenset(u.op for u in self.uops if u.op in GroupOp.ALU)

  @property
  def alu_uses(self) -> frozenset[tuple[Ops, DType]]:
    """(op, the scalar dtype it computes on) for each ALU op this program uses: what `Renderer.supports` is asked about."""
    from tg_uop.runtime.renderer import alu_dtype
    return frozenset((u.op, alu_dtype(u)) for u in self.uops if u.op in GroupOp.ALU)

def _np():
  try: import numpy as np
  except ImportError: raise ImportError("tg_uop.testing needs numpy for its reference results: pip install numpy") from None
  return np

# ---- building linearized programs by hand ----
_TOP = (Ops.DEFINE_GLOBAL, Ops.DEFINE_VAR, Ops.DEFINE_REG, Ops.DEFINE_LOCAL, Ops.CONST, Ops.VCONST)

def linearize_steps(sink: UOp, *steps: UOp) -> list[UOp]:
  """The program `sink` in execution order: definitions and constants first (DEFINE_GLOBALs by index), then each step with
  whatever it needs that isn't emitted yet, then anything left, then SINK. The steps decide where loops open and close."""
  topo = list(sink.toposort())
  top = sorted((u for u in topo if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg) + \
        [u for u in topo if u.op in _TOP and u.op is not Ops.DEFINE_GLOBAL]
  out: list[UOp] = []
  seen: set[UOp] = set()
  for u in top + [x for s in steps for x in s.toposort()] + topo:
    if u not in seen: seen.add(u); out.append(u)
  return out

def validate_linear(uops: list[UOp]) -> None:
  """Raise ValueError naming the first place where `uops` breaks the linearized-program rules (order, scopes, loop nesting)."""
  if not uops or uops[-1].op is not Ops.SINK: raise ValueError("a linearized program must end with a SINK")
  pos = {u: i for i, u in enumerate(uops)}
  if len(pos) != len(uops): raise ValueError("a UOp appears twice in the program: each must appear once")
  scope: dict[UOp, tuple[UOp, ...]] = {}
  open_: list[UOp] = []
  for i, u in enumerate(uops):
    for j, s in enumerate(u.src):
      if s not in pos or pos[s] >= i: raise ValueError(f"uop {i} ({u.op.name}) uses a source that is not defined before it ({s.op.name})")
      lax = u.op in (Ops.END, Ops.SINK, Ops.ENDIF, Ops.BARRIER) and (u.op is not Ops.END or j < len(u.src) - 1)
      if not lax and tuple(open_[:len(scope[s])]) != scope[s]:
        raise ValueError(f"uop {i} ({u.op.name}) uses {s.op.name} (uop {pos[s]}) outside the loop or IF that defines it")
    scope[u] = tuple(open_)
    if u.op is Ops.END:
      if not open_ or open_[-1] is not u.src[-1] or u.src[-1].op is not Ops.RANGE:
        raise ValueError(f"END at uop {i} does not close the innermost open RANGE")
      open_.pop()
    elif u.op is Ops.ENDIF:
      if not open_ or open_[-1] is not u.src[0]: raise ValueError(f"ENDIF at uop {i} does not close the innermost open IF")
      open_.pop()
    if u.op in (Ops.RANGE, Ops.IF): open_.append(u)
  if open_: raise ValueError(f"{len(open_)} loop(s)/IF(s) are never closed")

def _g(i: int, dt: DType, size: int) -> UOp: return UOp(Ops.DEFINE_GLOBAL, dt.ptr(size), (), i)
def _c(v, dt: DType = dtypes.index) -> UOp: return UOp.const(dt, v)
def _rng(seed: int):
  return _np().random.default_rng(seed)

# ---- the programs ----
def elementwise(n: int = 16) -> ConformanceProgram:
  """c[i] = a[i]*b[i] + a[i] over a RANGE loop (float32)."""
  np = _np()
  c, a, b = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n), _g(2, dtypes.float32, n)
  r = UOp.range(n, 0)
  av, bv = a.index(r).load(), b.index(r).load()
  end = c.index(r).store(av * bv + av).end(r)
  sink = UOp.sink(end)
  x, y = _rng(0).standard_normal(n).astype(np.float32), _rng(1).standard_normal(n).astype(np.float32)
  return ConformanceProgram("elementwise", linearize_steps(sink, end), [(dtypes.float32, n)] * 3, {1: x, 2: y}, {0: x * y + x},
                            description="float32 a*b+a over a RANGE loop")

def elementwise_special(n: int = 16) -> ConformanceProgram:
  """c[gidx0] = a*b + a, one block per element (GPU-style launch, no local dims)."""
  np = _np()
  c, a, b = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n), _g(2, dtypes.float32, n)
  g = UOp.special(n, "gidx0")
  av, bv = a.index(g).load(), b.index(g).load()
  st = c.index(g).store(av * bv + av)
  sink = UOp.sink(st)
  x, y = _rng(2).standard_normal(n).astype(np.float32), _rng(3).standard_normal(n).astype(np.float32)
  return ConformanceProgram("elementwise_special", linearize_steps(sink, st), [(dtypes.float32, n)] * 3, {1: x, 2: y}, {0: x * y + x},
                            global_size=(n, 1, 1), description="float32 a*b+a over SPECIAL gidx0")

def reduce_rows(m: int = 4, n: int = 8) -> ConformanceProgram:
  """out[i] = sum_j a[i, j] with a DEFINE_REG accumulator, nested RANGE loops and ENDs."""
  np = _np()
  out, a = _g(0, dtypes.float32, m), _g(1, dtypes.float32, m * n)
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 0)
  i, j = UOp.range(m, 0), UOp.range(n, 1)
  init = acc.index(_c(0)).store(_c(0.0, dtypes.float32))
  upd = acc.index(_c(0)).store(acc.index(_c(0)).load() + a.index(i * n + j).load())
  endj = upd.end(j)
  # UOps are hash-consed, so the read after the loop must differ from the one inside: it indexes with an int32 zero
  final = acc.index(_c(0, dtypes.int32)).load()
  st = out.index(i).store(final)
  endi = UOp(Ops.END, dtypes.void, (st, init, endj, i))
  sink = UOp.sink(endi)
  x = _rng(4).standard_normal((m, n)).astype(np.float32)
  return ConformanceProgram("reduce_rows", linearize_steps(sink, i, init, j, upd, endj, final, st, endi),
                            [(dtypes.float32, m), (dtypes.float32, m * n)], {1: x.reshape(-1)}, {0: x.sum(axis=1)}, rtol=1e-5, atol=1e-5,
                            description="row sums with a DEFINE_REG accumulator")

def matmul(m: int = 8, k: int = 16, n: int = 4) -> ConformanceProgram:
  """c = a @ b (m x k @ k x n, float32) with loops i, j and a reduce loop over k into an accumulator."""
  np = _np()
  c, a, b = _g(0, dtypes.float32, m * n), _g(1, dtypes.float32, m * k), _g(2, dtypes.float32, k * n)
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 0)
  i, j, r = UOp.range(m, 0), UOp.range(n, 1), UOp.range(k, 2)
  init = acc.index(_c(0)).store(_c(0.0, dtypes.float32))
  prod = a.index(i * k + r).load() * b.index(r * n + j).load()
  upd = acc.index(_c(0)).store(acc.index(_c(0)).load() + prod)
  endr = upd.end(r)
  final = acc.index(_c(0, dtypes.int32)).load()
  st = c.index(i * n + j).store(final)
  endj = UOp(Ops.END, dtypes.void, (st, init, endr, j))
  endi = endj.end(i)
  sink = UOp.sink(endi)
  x, y = _rng(5).standard_normal((m, k)).astype(np.float32), _rng(6).standard_normal((k, n)).astype(np.float32)
  return ConformanceProgram("matmul", linearize_steps(sink, i, j, init, r, upd, endr, final, st, endj, endi),
                            [(dtypes.float32, m * n), (dtypes.float32, m * k), (dtypes.float32, k * n)],
                            {1: x.reshape(-1), 2: y.reshape(-1)}, {0: (x @ y).reshape(-1)}, rtol=1e-5, atol=1e-5,
                            description=f"{m}x{k} @ {k}x{n} float32 with an accumulator")

def int32_alu() -> ConformanceProgram:
  """C-semantics int32 IDIV/MOD with negative operands, MAX, CMPLT, WHERE, bitwise ops."""
  np = _np()
  a = np.array([7, -7, 7, -7, 0, 13, -13, 100, -100, 5, -1, 2147483647], dtype=np.int32)
  b = np.array([2, 2, -2, -2, 3, 5, 5, -7, -7, -5, 3, -2], dtype=np.int32)
  n = len(a)
  outs = [_g(i, dtypes.int32, n) for i in range(5)]
  lt_buf = _g(5, dtypes.bool, n)
  ga, gb = _g(6, dtypes.int32, n), _g(7, dtypes.int32, n)
  r = UOp.range(n, 0)
  av, bv = ga.index(r).load(), gb.index(r).load()
  lt = av < bv
  vals = [av // bv, av % bv, av.maximum(bv), lt.where(av, bv * 3), (av ^ bv) & 0xff | (bv << 1)]
  stores = [o.index(r).store(v) for o, v in zip(outs, vals)] + [lt_buf.index(r).store(lt)]
  end = UOp(Ops.END, dtypes.void, (*stores, r))
  sink = UOp.sink(end)
  rem = np.fmod(a, b)  # C: the remainder has the dividend's sign
  exp = {0: (a - rem) // b, 1: rem, 2: np.maximum(a, b), 3: np.where(a < b, a, b * 3), 4: ((a ^ b) & 0xff) | (b << 1), 5: a < b}
  return ConformanceProgram("int32_alu", linearize_steps(sink, r, *stores, end), [(dtypes.int32, n)] * 5 + [(dtypes.bool, n)] +
                            [(dtypes.int32, n)] * 2, {6: a, 7: b}, exp, description="int32 C-semantics division, MAX, CMPLT, WHERE")

def gated(n: int = 16, valid: int = 10) -> ConformanceProgram:
  """Gated LOAD (alt where the gate is false, memory untouched), gated STORE, and a STORE inside IF/ENDIF."""
  np = _np()
  out0, out1, out2, inp = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n), _g(2, dtypes.float32, n), _g(3, dtypes.float32, valid)
  r = UOp.range(n, 0)
  v = UOp(Ops.LOAD, dtypes.float32, (inp.index(r, gate=r < valid), _c(-1.0, dtypes.float32)))
  st0 = out0.index(r).store(v)
  st1 = out1.index(r, gate=_c(0.0, dtypes.float32) < v).store(v * 2.0)
  if_ = UOp(Ops.IF, dtypes.void, ((r % 2).ne(0),))
  st2 = out2.index(r).store(v + 1.0)
  endif = UOp(Ops.ENDIF, dtypes.void, (if_,))
  end = UOp(Ops.END, dtypes.void, (st0, st1, st2, endif, r))
  sink = UOp.sink(end)
  x = _rng(7).standard_normal(valid).astype(np.float32)
  pre1, pre2 = np.full(n, 7.0, np.float32), np.full(n, -3.0, np.float32)
  v_ref = np.concatenate([x, np.full(n - valid, -1.0, np.float32)])
  e1 = np.where(v_ref > 0, v_ref * 2, pre1).astype(np.float32)
  e2 = np.where(np.arange(n) % 2 == 1, v_ref + 1, pre2).astype(np.float32)
  return ConformanceProgram("gated", linearize_steps(sink, r, st0, st1, if_, st2, endif, end),
                            [(dtypes.float32, n)] * 3 + [(dtypes.float32, valid)], {1: pre1, 2: pre2, 3: x}, {0: v_ref, 1: e1, 2: e2},
                            description="gated load/store and IF/ENDIF")

def casts() -> ConformanceProgram:
  """CAST float->int (truncation), int->float, ->bool (!= 0), int->uint8 (wraps), bool->float, and BITCAST float->int."""
  np = _np()
  x = np.array([-2.7, -0.5, 0.0, 0.5, 1.5, 2.7, 100.9, -100.9], dtype=np.float32)
  y = np.array([-3, -1, 0, 1, 2, 300, -129, 65537], dtype=np.int32)
  n = len(x)
  specs = [dtypes.int32, dtypes.float32, dtypes.bool, dtypes.uint8, dtypes.float32, dtypes.int32]
  outs = [_g(i, dt, n) for i, dt in enumerate(specs)]
  gx, gy = _g(6, dtypes.float32, n), _g(7, dtypes.int32, n)
  r = UOp.range(n, 0)
  xv, yv = gx.index(r).load(), gy.index(r).load()
  vals = [xv.cast(dtypes.int32), yv.cast(dtypes.float32), xv.cast(dtypes.bool), yv.cast(dtypes.uint8),
          yv.cast(dtypes.bool).cast(dtypes.float32), xv.bitcast(dtypes.int32)]
  stores = [o.index(r).store(v) for o, v in zip(outs, vals)]
  end = UOp(Ops.END, dtypes.void, (*stores, r))
  sink = UOp.sink(end)
  exp = {0: np.trunc(x).astype(np.int32), 1: y.astype(np.float32), 2: x != 0, 3: y.astype(np.uint8), 4: (y != 0).astype(np.float32),
         5: x.view(np.int32)}
  return ConformanceProgram("casts", linearize_steps(sink, r, *stores, end), [(dt, n) for dt in specs] + [(dtypes.float32, n), (dtypes.int32, n)],
                            {6: x, 7: y}, exp, description="C conversions and a bitcast")

def cast_half() -> ConformanceProgram:
  """float32 -> float16 / bfloat16 -> float32 round trips (round-to-nearest-even), a float16 store and a float16 multiply."""
  np = _np()
  x = np.array([1.0, 1 / 3, 3.14159, -2.71828, 200.0, 1e-5, 300.5, -1e-4, 1.00390625, 65504.0], dtype=np.float32)
  n = len(x)
  o0, o1, o2, o3 = (_g(i, dt, n) for i, dt in enumerate((dtypes.float32, dtypes.float32, dtypes.float16, dtypes.float16)))
  gx = _g(4, dtypes.float32, n)
  r = UOp.range(n, 0)
  xv = gx.index(r).load()
  h = xv.cast(dtypes.float16)
  stores = [o0.index(r).store(h.cast(dtypes.float32)), o1.index(r).store(xv.cast(dtypes.bfloat16).cast(dtypes.float32)),
            o2.index(r).store(h), o3.index(r).store(h * h.maximum(0.0))]
  end = UOp(Ops.END, dtypes.void, (*stores, r))
  sink = UOp.sink(end)
  h_ref = x.astype(np.float16)
  with np.errstate(over="ignore"): sq = (h_ref * np.maximum(h_ref, np.float16(0))).astype(np.float16)
  bf = np.array([truncate_float(float(v), dtypes.bfloat16) for v in x], dtype=np.float32)
  return ConformanceProgram("cast_half", linearize_steps(sink, r, *stores, end),
                            [(dtypes.float32, n), (dtypes.float32, n), (dtypes.float16, n), (dtypes.float16, n), (dtypes.float32, n)],
                            {4: x}, {0: h_ref.astype(np.float32), 1: bf, 2: h_ref, 3: sq}, rtol=0, atol=0,
                            description="float16 and bfloat16 conversions with round-to-nearest-even")

def float_alu(n: int = 12) -> ConformanceProgram:
  """Float unary/binary ALU ops: SQRT, RECIP, TRUNC, NEG, MAX, FDIV, EXP2, LOG2, SIN, CMPNE."""
  np = _np()
  x = (_rng(8).random(n) * 4 + 0.25).astype(np.float32)
  y = (_rng(9).standard_normal(n) * 3).astype(np.float32)
  outs = [_g(i, dtypes.float32, n) for i in range(9)]
  gx, gy = _g(9, dtypes.float32, n), _g(10, dtypes.float32, n)
  r = UOp.range(n, 0)
  xv, yv = gx.index(r).load(), gy.index(r).load()
  u = lambda op, v: UOp(op, dtypes.float32, (v,))
  vals = [u(Ops.SQRT, xv), u(Ops.RECIP, xv), u(Ops.TRUNC, yv), -yv, xv.maximum(yv), xv / yv, u(Ops.EXP2, yv), u(Ops.LOG2, xv),
          yv.ne(xv).where(u(Ops.SIN, yv), _c(0.0, dtypes.float32))]
  stores = [o.index(r).store(v) for o, v in zip(outs, vals)]
  end = UOp(Ops.END, dtypes.void, (*stores, r))
  sink = UOp.sink(end)
  f = np.float32
  exp = dict(enumerate([np.sqrt(x), f(1) / x, np.trunc(y), -y, np.maximum(x, y), x / y, np.exp2(y), np.log2(x), np.where(y != x, np.sin(y), f(0))]))
  return ConformanceProgram("float_alu", linearize_steps(sink, r, *stores, end), [(dtypes.float32, n)] * 11, {9: x, 10: y},
                            {k: v.astype(np.float32) for k, v in exp.items()}, rtol=1e-5, atol=1e-6, description="float32 ALU ops")

def define_var(n: int = 16, used: int = 10) -> ConformanceProgram:
  """out[i] = a[i] + 1 for i < n, where n is a DEFINE_VAR passed in `vals` (a symbolic size)."""
  np = _np()
  out, a = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n)
  var = UOp.variable("n", 1, n)
  r = UOp.range(var, 0)
  end = out.index(r).store(a.index(r).load() + 1.0).end(r)
  sink = UOp.sink(end)
  x = _rng(10).standard_normal(n).astype(np.float32)
  e = np.zeros(n, np.float32)
  e[:used] = x[:used] + 1
  return ConformanceProgram("define_var", linearize_steps(sink, end), [(dtypes.float32, n)] * 2, {0: np.zeros(n, np.float32), 1: x}, {0: e},
                            vals=(used,), description="a loop bound given at launch")

def vector(rows: int = 4) -> ConformanceProgram:
  """float4 LOAD, VCONST multiply, GEP lane swizzle, VECTORIZE, float4 STORE."""
  np = _np()
  n = rows * 4
  out, a = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n)
  r = UOp.range(rows, 0)
  v = UOp(Ops.LOAD, dtypes.float32.vec(4), (a.index(r * 4),))
  w = v * UOp.const(dtypes.float32.vec(4), (1.0, 2.0, 3.0, 4.0))
  sw = UOp.vectorize(*(w.gep(i) for i in (3, 2, 1, 0)))
  end = out.index(r * 4).store(sw).end(r)
  sink = UOp.sink(end)
  x = _rng(11).standard_normal(n).astype(np.float32)
  e = (x.reshape(rows, 4) * np.array([1, 2, 3, 4], np.float32))[:, ::-1].reshape(-1)
  return ConformanceProgram("vector", linearize_steps(sink, end), [(dtypes.float32, n)] * 2, {1: x}, {0: np.ascontiguousarray(e)},
                            requires=frozenset({"float4"}), description="vector loads and stores with lane shuffles")

def local_reverse(blocks: int = 4, threads: int = 8) -> ConformanceProgram:
  """Each block reverses its chunk through DEFINE_LOCAL memory with a BARRIER (gidx0 blocks x lidx0 threads)."""
  np = _np()
  n = blocks * threads
  out, inp = _g(0, dtypes.float32, n), _g(1, dtypes.float32, n)
  g, l = UOp.special(blocks, "gidx0"), UOp.special(threads, "lidx0")
  lm = UOp(Ops.DEFINE_LOCAL, dtypes.float32.ptr(threads, "local"), (), 0)
  st1 = lm.index(l).store(inp.index(g * threads + l).load())
  bar = UOp(Ops.BARRIER, dtypes.void, (st1,))
  st2 = out.index(g * threads + l).store(lm.index((threads - 1) - l).load())
  sink = UOp.sink(bar, st2)
  x = _rng(12).standard_normal(n).astype(np.float32)
  return ConformanceProgram("local_reverse", linearize_steps(sink, g, l, st1, bar, st2), [(dtypes.float32, n)] * 2, {1: x},
                            {0: x.reshape(blocks, threads)[:, ::-1].reshape(-1).copy()}, global_size=(blocks, 1, 1),
                            local_size=(threads, 1, 1), requires=frozenset({"local"}), description="shared memory and a barrier")

PROGRAMS: dict[str, Callable[[], ConformanceProgram]] = {f.__name__: f for f in (elementwise, elementwise_special, reduce_rows, matmul,
  int32_alu, gated, casts, cast_half, float_alu, define_var, vector, local_reverse)}

@functools.cache
def get_program(name: str) -> ConformanceProgram:
  """The conformance program called `name` (built once)."""
  if name not in PROGRAMS: raise ValueError(f"no conformance program {name!r}: choose one of {', '.join(PROGRAMS)}")
  return PROGRAMS[name]()

def all_programs() -> list[ConformanceProgram]:
  """Every conformance program."""
  return [get_program(n) for n in PROGRAMS]

def unsupported(prog: ConformanceProgram, renderer: Any) -> str | None:
  """Why `renderer` can't take `prog` as written (None if it can): missing locals, vectors or native ALU ops."""
  if "local" in prog.requires and not (getattr(renderer, "has_local", True) and getattr(renderer, "has_shared", True)):
    return f"{type(renderer).__name__} has no local memory / local launch dims"
  if "float4" in prog.requires and not getattr(renderer, "supports_float4", True): return f"{type(renderer).__name__} has no vector loads"
  if (supports := getattr(renderer, "supports", None)) is None:  # a renderer-like object without the base class: its op set alone
    ops = getattr(renderer, "supported_ops", None)
    supports = lambda op, dt: ops is None or op in ops
  if missing := sorted({f"{op.name} on {dt}" for op, dt in prog.alu_uses if not supports(op, dt)}):
    return f"{type(renderer).__name__} lacks native {', '.join(missing)} (the lowering would rewrite them)"
  return None

# ---- running ----
def _device(device: Any) -> tuple[str, Any]:
  if isinstance(device, str):
    from tg_uop.device import Device
    return device, Device[device]
  return device.device, device

def compile_program(device: Any, prog: ConformanceProgram) -> tuple[str, bytes, Any]:
  """(source, binary, loaded Program) for `prog` on `device` (a name or a `Compiled`)."""
  _, dev = _device(device)
  src = dev.renderer.render(prog.name, prog.uops)
  lib = dev.compiler.compile_cached(src)
  return src, lib, dev.runtime(dev, prog.name, lib)

def run_program(device: Any, prog: ConformanceProgram) -> dict[int, Any]:
  """Render, compile and run `prog` on `device` (a name or a `Compiled`); returns the buffers named in `prog.expected` as numpy arrays."""
  np = _np()
  _, dev = _device(device)
  _, _, fxn = compile_program(dev, prog)
  alloc = dev.allocator
  sizes = [dt.itemsize * n for dt, n in prog.bufs]
  opaques = [alloc.alloc(max(sz, 1)) for sz in sizes]
  try:
    for i, arr in prog.inputs.items():
      data = np.ascontiguousarray(arr, dtype=to_np_name(prog.bufs[i][0]))
      if data.nbytes != sizes[i]: raise ValueError(f"{prog.name}: input {i} has {data.nbytes} bytes, buffer {i} holds {sizes[i]}")
      alloc._copyin(opaques[i], memoryview(data.tobytes()))
    fxn(*opaques, global_size=prog.global_size, local_size=prog.local_size, vals=prog.vals, wait=True)
    dev.synchronize()
    out = {}
    for i in prog.expected:
      host = bytearray(sizes[i])
      alloc._copyout(memoryview(host), opaques[i])
      out[i] = np.frombuffer(host, dtype=to_np_name(prog.bufs[i][0])).copy()
    return out
  finally:
    for o, sz in zip(opaques, sizes): alloc.free(o, max(sz, 1))

def check_results(prog: ConformanceProgram, got: dict[int, Any]) -> str | None:
  """None when `got` matches `prog.expected`, else a sentence naming the first wrong buffer and elements."""
  np = _np()
  for i, exp in prog.expected.items():
    res = got[i]
    if res.shape != exp.shape: return f"{prog.name}: buffer {i} has shape {res.shape}, expected {exp.shape}"
    if exp.dtype.kind == "f":
      ok = np.isclose(res.astype(np.float64), exp.astype(np.float64), rtol=prog.rtol, atol=prog.atol, equal_nan=True)
    else: ok = res == exp
    if not ok.all():
      bad = np.flatnonzero(~ok)[:4]
      return f"{prog.name}: buffer {i} differs at {bad.tolist()}: got {res[bad].tolist()}, expected {exp[bad].tolist()}"
  return None

def probe_device(name: str) -> str | None:
  """Run the elementwise program on device `name`: None when it works (or compiles, for devices that don't execute), else the error."""
  try:
    _, dev = _device(name)
    prog = get_program("elementwise")
    if not getattr(dev, "executes", True):
      compile_program(dev, prog)
      return None
    return check_results(prog, run_program(dev, prog))
  except Exception as e: return f"{type(e).__name__}: {e}"
