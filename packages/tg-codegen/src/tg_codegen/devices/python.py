"""The PYTHON device: an interpreter of linearized UOp programs. Slow and exact: the reference semantics other devices are checked against.

The "renderer" serializes the program (a readable listing in comments, then the UOps as base64 pickle), the "compiler" checks its
structure and passes it through, and `PythonProgram` runs it: every thread of every block runs the program, the threads of a
block in lockstep between BARRIERs (each thread is a generator that yields at a BARRIER). Values are Python scalars, vectors are
tuples of lanes, ALU ops are `tg_uop.alu.exec_alu`, and memory is bytes (global buffers) or lists of values (registers, locals).
"""
from __future__ import annotations
import base64, binascii, itertools, math, pickle, struct, time
from typing import Any, Callable, Iterator
from tg_uop.alu import python_alu, exec_alu
from tg_uop.dtype import DType, PtrDType, dtypes, truncate_float
from tg_uop.ops import Ops
from tg_uop.runtime.allocator import BufferSpec, LRUAllocator
from tg_uop.runtime.compiled import Compiled
from tg_uop.runtime.compiler import CompileError, Compiler
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.renderer import Renderer
from tg_codegen.tensor_cores import MMA_TENSOR_CORES, parse_wmma_arg, mma_reference, ldmatrix_reference, WarpGroupMMA, wgmma_reference, sw128

# ---- scalar encodings: how each dtype is laid out in memory ----
def _fp8e4m3_decode(b: int) -> float:
  s, e, m = b >> 7, (b >> 3) & 0xf, b & 7
  if e == 15 and m == 7: return math.nan  # e4m3fn: no infinities, one nan pattern per sign
  v = (m / 8) * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)
  return -v if s else v
_E4M3 = [_fp8e4m3_decode(b) for b in range(256)]
_E4M3_ENC = {(v, math.copysign(1, v)): b for b, v in enumerate(_E4M3) if not math.isnan(v)}

def _encoder(dt: DType) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
  """(encode, decode) between a Python value of scalar `dt` and its `dt.itemsize` little-endian bytes."""
  if dt == dtypes.bfloat16:
    # bfloat16 is the top half of a float32: round to bf16 first (nearest-even), then the low half is zero
    return (lambda v: struct.pack("<f", truncate_float(float(v), dt))[2:], lambda b: struct.unpack("<f", b"\0\0" + b)[0])
  if dt == dtypes.fp8e5m2:
    # e5m2 is the top byte of a float16
    return (lambda v: struct.pack("<e", truncate_float(float(v), dt))[1:], lambda b: struct.unpack("<e", b"\0" + b)[0])
  if dt == dtypes.fp8e4m3:
    def enc(v):
      r = truncate_float(float(v), dt)
      return bytes([0x7f if math.isnan(r) else _E4M3_ENC[(r, math.copysign(1, r))]])
    return enc, lambda b: _E4M3[b[0]]
  if dt == dtypes.index: dt = dtypes.int64
  if dt.fmt is None: raise TypeError(f"PYTHON device has no memory layout for {dt}")
  st = struct.Struct("<" + dt.fmt)
  def enc_std(v):
    try: return st.pack(v)
    except (struct.error, OverflowError): return st.pack(dtypes.as_const(v, dt))  # out-of-range values wrap / round as C stores do
  return enc_std, lambda b: st.unpack(b)[0]

class _Mem:
  """Memory a kernel addresses by element: scalars of `sdt`, `lanes` of them per element of the pointer's base dtype."""
  def __init__(self, name: str, base: DType, nscalars: int):
    self.name, self.sdt, self.lanes, self.nscalars = name, base.scalar(), base.count, nscalars
  def _check(self, kernel: str, what: str, idx: Any, count: int) -> int:
    if not isinstance(idx, int):
      raise RuntimeError(f"PYTHON kernel {kernel!r}: {what} {self.name} at a non-integer index {idx!r}")
    start = idx * self.lanes
    if idx < 0 or start + count > self.nscalars:
      n = self.nscalars // self.lanes
      raise IndexError(f"PYTHON kernel {kernel!r}: {what} {self.name}[{idx}]" + (f" ({count} lanes)" if count > 1 else "") +
                       f" is out of bounds: it holds {n} elements")
    return start

class _ByteMem(_Mem):
  """A global buffer: the device's bytes, read and written through the dtype's encoding."""
  def __init__(self, name: str, base: DType, mv: memoryview):
    isz = base.scalar().itemsize
    super().__init__(name, base, len(mv) // isz)
    self.mv, self.isz = mv, isz
    self.enc, self.dec = _encoder(self.sdt)
  def load(self, kernel: str, idx: int, count: int) -> Any:
    s = self._check(kernel, "load of", idx, count) * self.isz
    vals = tuple(self.dec(bytes(self.mv[o:o + self.isz])) for o in range(s, s + count * self.isz, self.isz))
    return vals[0] if count == 1 else vals
  def store(self, kernel: str, idx: int, vals: tuple) -> None:
    s = self._check(kernel, "store to", idx, len(vals)) * self.isz
    self.mv[s:s + len(vals) * self.isz] = b"".join(self.enc(v) for v in vals)

class _ListMem(_Mem):
  """A register array or local memory: a list of already-rounded values, zero to start with."""
  def __init__(self, name: str, base: DType, size: int):
    if size < 0: raise RuntimeError(f"PYTHON: {name} needs a known size, got {size}")
    super().__init__(name, base, size * base.count)
    self.data: list = [dtypes.as_const(0, base.scalar())] * self.nscalars
  def load(self, kernel: str, idx: int, count: int) -> Any:
    s = self._check(kernel, "load of", idx, count)
    return self.data[s] if count == 1 else tuple(self.data[s:s + count])
  def store(self, kernel: str, idx: int, vals: tuple) -> None:
    s = self._check(kernel, "store to", idx, len(vals))
    self.data[s:s + len(vals)] = [dtypes.as_const(v, self.sdt) for v in vals]

# ---- renderer and compiler ----
SUPPORTED = frozenset(python_alu) | {Ops.DEFINE_GLOBAL, Ops.DEFINE_VAR, Ops.DEFINE_REG, Ops.DEFINE_LOCAL, Ops.SPECIAL, Ops.RANGE, Ops.END,
  Ops.CONST, Ops.VCONST, Ops.INDEX, Ops.LOAD, Ops.STORE, Ops.CAST, Ops.BITCAST, Ops.VECTORIZE, Ops.GEP, Ops.IF, Ops.ENDIF, Ops.BARRIER,
  Ops.SINK, Ops.NOOP, Ops.AFTER, Ops.WMMA}
_MAGIC = "tg-python-v1"

class PythonRenderer(Renderer):
  """Serializes a linearized program for the PYTHON interpreter: a commented listing for people, then the UOps as base64 pickle."""
  device, suffix = "PYTHON", "PY"
  has_local, has_shared, supports_float4 = True, True, True
  async_copy = True  # cp.async-staged tiles run as plain loads and stores: the same program, checked without a GPU
  ldmatrix = True    # emulated warp-wide (`tensor_cores.ldmatrix_reference`)
  wgmma = True       # emulated warpgroup-wide (`tensor_cores.wgmma_reference`)
  tma = True         # bulk tensor copies run as element copies into the swizzled box; mbarrier waits are block-wide syncs
  shared_max_dynamic = 232448  # as Hopper's: wgmma's pipelines get the stages they get on the H100 (opts keep `shared_max`)
  supported_ops = frozenset(python_alu)
  tensor_cores: list = list(MMA_TENSOR_CORES)  # emulated exactly (`mma_reference`), so the TC opt is tested without a GPU

  def render(self, name: str, uops: list) -> str:
    index = {u: i for i, u in enumerate(uops)}
    if (bad := sorted({u.op.name for u in uops} - {o.name for o in SUPPORTED})):
      raise CompileError(f"PYTHON can't run {', '.join(bad)} in kernel {name!r}: lower those ops before rendering for PYTHON")
    insts = []
    for i, u in enumerate(uops):
      if (missing := [s.op.name for s in u.src if s not in index]):
        raise CompileError(f"kernel {name!r}: uop {i} ({u.op.name}) uses {missing[0]} which is not in the program: linearize every source")
      insts.append((u.op.name, u.dtype, tuple(index[s] for s in u.src), u.arg))
    listing = [f"# {i:4d} {op:<14} {dt!r:<28} {list(src)} {arg!r}" for i, (op, dt, src, arg) in enumerate(insts)]
    payload = base64.b64encode(pickle.dumps((name, insts), protocol=4)).decode()
    return "\n".join([f"# {_MAGIC} kernel {name}: {len(insts)} uops", *listing, payload]) + "\n"

def _decode(src: str) -> tuple[str, list[tuple]]:
  lines = [ln for ln in src.strip().splitlines() if ln.strip()]
  if not lines or not lines[0].startswith(f"# {_MAGIC}"):
    raise CompileError("not a PYTHON program: PythonRenderer output starts with '# tg-python-v1' (render with the PYTHON renderer)")
  try: name, raw = pickle.loads(base64.b64decode(lines[-1], validate=True))
  except (binascii.Error, pickle.UnpicklingError, ValueError, EOFError) as e: raise CompileError(f"corrupt PYTHON program payload: {e}") from e
  return name, [(Ops[op], dt, src, arg) for op, dt, src, arg in raw]

def _jumps(name: str, insts: list[tuple]) -> dict[int, int]:
  """RANGE <-> END and IF -> ENDIF indices, checking that loops and IFs nest properly."""
  jump: dict[int, int] = {}
  stack: list[int] = []
  for i, (op, _, src, _) in enumerate(insts):
    if op in (Ops.RANGE, Ops.IF): stack.append(i)
    elif op in (Ops.END, Ops.ENDIF):
      want, target = (Ops.RANGE, src[-1] if src else -1) if op is Ops.END else (Ops.IF, src[0] if src else -1)
      if not stack or stack[-1] != target or insts[target][0] is not want:
        raise CompileError(f"kernel {name!r}: {op.name} at uop {i} does not close the innermost open {want.name}")
      jump[stack.pop()], jump[i] = i, target
  if stack: raise CompileError(f"kernel {name!r}: {insts[stack[-1]][0].name} at uop {stack[-1]} is never closed")
  if not insts or insts[-1][0] is not Ops.SINK: raise CompileError(f"kernel {name!r}: a linearized program must end with SINK")
  return jump

class PythonCompiler(Compiler):
  """Checks the serialized program's structure and passes it through (nothing to cache: there is no work to save)."""
  def __init__(self): super().__init__(cachekey=None)
  def compile(self, src: str) -> bytes:
    name, insts = _decode(src)
    _jumps(name, insts)
    return src.encode()

# ---- the interpreter ----
def _lane(x: Any, k: int) -> Any: return x[k] if type(x) is tuple else x

def _cast(v: Any, dt: DType) -> Any:
  # C conversions: float -> int truncates (non-finite gives 0, as constant folding does), to bool is != 0, ints wrap
  sdt = dt.scalar()
  return tuple(dtypes.as_const(x, sdt) for x in v) if type(v) is tuple else dtypes.as_const(v, sdt)

def _bitcast(v: Any, src: DType, dst: DType) -> Any:
  if src.itemsize != dst.itemsize: raise RuntimeError(f"PYTHON: can't bitcast {src} to {dst}: sizes differ ({src.itemsize} vs {dst.itemsize} bytes)")
  enc = _encoder(src.scalar())[0]
  raw = b"".join(enc(x) for x in (v if type(v) is tuple else (v,)))
  dec, isz = _encoder(dst.scalar())[1], dst.scalar().itemsize
  out = tuple(dec(raw[o:o + isz]) for o in range(0, len(raw), isz))
  return out[0] if dst.count == 1 else out

def _alu(op: Ops, dt: DType, args: list) -> Any:
  if dt.count == 1 and not any(type(a) is tuple for a in args): return exec_alu(op, dt, tuple(args))
  sdt = dt.scalar()
  return tuple(exec_alu(op, sdt, tuple(_lane(a, k) for a in args)) for k in range(dt.count))

def _is_ldmatrix(op: Ops, arg: Any) -> bool: return op is Ops.LOAD and type(arg) is tuple and arg[:1] == ("ldmatrix",)

class PythonProgram(Program):
  """A serialized linearized program, run by the interpreter on the device's byte buffers."""
  def __init__(self, device: Any, name: str, lib: bytes):
    super().__init__(device, name, lib)
    _, self.insts = _decode(lib.decode())
    self.jump = _jumps(name, self.insts)
    self.nbufs = max((arg + 1 for op, _, _, arg in self.insts if op is Ops.DEFINE_GLOBAL), default=0)
    self.vars = [i for i, (op, *_) in enumerate(self.insts) if op is Ops.DEFINE_VAR]
    # BARRIER and WMMA (a warp's lanes exchange fragments) run the threads of a block in lockstep
    self.has_sync = any(op is Ops.BARRIER or op is Ops.WMMA or _is_ldmatrix(op, arg) for op, _, _, arg in self.insts)
    self.is_alu = [op in python_alu for op, *_ in self.insts]  # precomputed: hashing an enum per executed uop is slow

  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    gs, ls = check_launch_dims(global_size, local_size)
    if len(bufs) != self.nbufs: raise ValueError(f"PYTHON kernel {self.name!r} takes {self.nbufs} buffers, got {len(bufs)}")
    if len(vals) != len(self.vars):
      raise ValueError(f"PYTHON kernel {self.name!r} takes {len(self.vars)} variable values "
                       f"({', '.join(self.insts[i][3][0] for i in self.vars) or 'none'}), got {len(vals)}")
    varvals: dict[int, int] = {}
    for i, v in zip(self.vars, vals):
      vname, lo, hi = self.insts[i][3]
      if not isinstance(v, int) or not lo <= v <= hi: raise ValueError(f"PYTHON kernel {self.name!r}: variable {vname}={v!r} is outside [{lo}, {hi}]")
      varvals[i] = v
    mems = {}
    for op, dt, _, arg in self.insts:
      if op is Ops.DEFINE_GLOBAL:
        mv = bufs[arg] if isinstance(bufs[arg], memoryview) else memoryview(bufs[arg])
        mems[arg] = _ByteMem(f"data{arg}", dt.base if isinstance(dt, PtrDType) else dt, mv.cast("B") if mv.format != "B" else mv)
    st = time.perf_counter()
    for gid in itertools.product(*(range(g) for g in reversed(gs))):
      gid = gid[::-1]
      local_mem: dict[int, _ListMem] = {}
      threads = [self._thread(mems, varvals, local_mem, gid, lid[::-1], ls) for lid in itertools.product(*(range(x) for x in reversed(ls)))]
      self._run_block(threads, gid)
    return time.perf_counter() - st if wait else None

  def _run_block(self, threads: list[Iterator[None]], gid: tuple[int, ...]) -> None:
    if not self.has_sync:
      for t in threads:
        for _ in t: pass
      return
    # lockstep: every thread runs to its next BARRIER (yielding None) or WMMA (yielding its fragments) before any passes it
    replies: list[Any] = [None] * len(threads)
    while threads:
      done, reqs = 0, []
      for t, r in zip(threads, replies):
        try: reqs.append(t.send(r))
        except StopIteration: done += 1
      if done and done != len(threads):
        raise RuntimeError(f"PYTHON kernel {self.name!r}: in block {gid}, {done} of {len(threads)} threads finished while the others wait at a "
                           "BARRIER or WMMA (every thread of the block must reach it)")
      if done: return
      replies = self._warp_op(reqs, gid) if any(q is not None for q in reqs) else [None] * len(threads)

  def _warp_op(self, reqs: list[Any], gid: tuple[int, ...]) -> list[Any]:
    # threads are in linear order (x fastest), so each run of 32 is one warp, as on the GPU
    if any(q is None for q in reqs) or len({q[0] for q in reqs}) != 1:
      raise RuntimeError(f"PYTHON kernel {self.name!r}: in block {gid}, threads reached different BARRIER/WMMA uops (divergent control flow)")
    op, _, _, arg = self.insts[reqs[0][0]]
    if op is Ops.LOAD: return self._ldmatrix(reqs, arg, gid)
    if str(arg[0]).startswith("WGMMA"): return self._wgmma(reqs, arg, gid)
    tc = parse_wmma_arg(arg)
    if len(reqs) % tc.threads:
      raise RuntimeError(f"PYTHON kernel {self.name!r}: WMMA needs blocks of whole warps ({tc.threads}), got {len(reqs)} threads")
    out: list[Any] = []
    for w in range(0, len(reqs), tc.threads): out += mma_reference(tc, [q[1:] for q in reqs[w:w + tc.threads]])
    return out

  def _wgmma(self, reqs: list[Any], arg: tuple, gid: tuple[int, ...]) -> list[Any]:
    # a warpgroup's 128 lanes read A and B through the (same) descriptors: pointers into shared memory and the layouts in the arg
    wg = WarpGroupMMA(arg[1][1], arg[2], arg[3])
    if len(reqs) % wg.threads:
      raise RuntimeError(f"PYTHON kernel {self.name!r}: WGMMA needs blocks of whole warpgroups (128 threads), got {len(reqs)}")
    _, a_layout, b_layout, ksteps, _pipelined, b_kmajor = arg[6]
    out: list[Any] = []
    for w in range(0, len(reqs), wg.threads):
      group = reqs[w:w + wg.threads]
      (am, ai, _), (bm, bi, _) = group[0][1], group[0][2]
      if any(q[1][1] != ai or q[2][1] != bi for q in group):
        raise RuntimeError(f"PYTHON kernel {self.name!r}: the lanes of a warpgroup gave different WGMMA descriptors")
      (la, sa_, swa), (lb, sb_, swb) = a_layout, b_layout
      out += wgmma_reference(wg, lambda o: am.load(self.name, o, 1), lambda o: bm.load(self.name, o, 1), [q[3] for q in group],
                             (ai, swa, la, sa_), (bi, swb, lb, sb_), ksteps, b_kmajor)
    return out

  def _ldmatrix(self, reqs: list[Any], arg: tuple, gid: tuple[int, ...]) -> list[Any]:
    # each lane gave a row address; the warp's lanes exchange the rows (tensor_cores.ldmatrix_reference)
    _, nmat, trans = arg
    if len(reqs) % 32: raise RuntimeError(f"PYTHON kernel {self.name!r}: ldmatrix needs blocks of whole warps (32), got {len(reqs)} threads")
    out: list[Any] = []
    for w in range(0, len(reqs), 32):
      rows = []
      for _, (mem, idx, _gate) in reqs[w:w + 8 * nmat]:
        if type(idx) is not int or idx % 8: raise RuntimeError(f"PYTHON kernel {self.name!r}: ldmatrix row at {idx!r} is not 16-byte aligned")
        rows.append(mem.load(self.name, idx, 8))
      out += ldmatrix_reference(rows, nmat, trans)
    return out

  def _thread(self, mems: dict[int, _ByteMem], varvals: dict[int, int], local_mem: dict[int, _ListMem], gid: tuple[int, ...],
              lid: tuple[int, ...], ls: tuple[int, ...]) -> Iterator[None]:
    insts, jump, is_alu = self.insts, self.jump, self.is_alu
    v: list[Any] = [None] * len(insts)
    pc, n = 0, len(insts)
    while pc < n:
      op, dt, src, arg = insts[pc]
      if is_alu[pc]: v[pc] = _alu(op, dt, [v[s] for s in src])
      elif op is Ops.CONST: v[pc] = arg
      elif op is Ops.INDEX: v[pc] = (v[src[0]], v[src[1]], v[src[2]] if len(src) > 2 else True)
      elif op is Ops.LOAD and type(arg) is tuple: v[pc] = yield (pc, v[src[0]])  # ldmatrix: a warp-wide exchange
      elif op is Ops.LOAD: v[pc] = self._load(dt, v[src[0]], v[src[1]] if len(src) > 1 else None)
      elif op is Ops.STORE and type(arg) is tuple: self._tma(arg, v[src[0]], v[insts[src[1]][2][0]])
      elif op is Ops.STORE: self._store(v[src[0]], v[src[1]])
      elif op is Ops.RANGE:
        v[pc] = 0
        if v[src[0]] <= 0:
          pc = jump[pc] + 1
          continue
      elif op is Ops.END:
        r = src[-1]
        v[r] += 1
        if v[r] < v[insts[r][2][0]]:
          pc = r + 1
          continue
      elif op is Ops.IF:
        if not v[src[0]]:
          pc = jump[pc] + 1
          continue
      elif op is Ops.BARRIER: yield
      elif op is Ops.WMMA: v[pc] = yield (pc, v[src[0]], v[src[1]], v[src[2]])
      elif op is Ops.SINK: return
      elif op is Ops.DEFINE_GLOBAL: v[pc] = mems[arg]
      elif op is Ops.DEFINE_VAR: v[pc] = varvals[pc]
      elif op is Ops.DEFINE_REG: v[pc] = _ListMem(f"reg{arg}", dt.base, dt.size)
      elif op is Ops.DEFINE_LOCAL:
        if pc not in local_mem: local_mem[pc] = _ListMem(f"local{arg}", dt.base, dt.size)
        v[pc] = local_mem[pc]
      elif op is Ops.SPECIAL: v[pc] = self._special(arg, gid, lid, ls)
      elif op is Ops.VCONST: v[pc] = tuple(arg)
      elif op is Ops.CAST: v[pc] = _cast(v[src[0]], dt)
      elif op is Ops.BITCAST: v[pc] = _bitcast(v[src[0]], insts[src[0]][1], dt)
      elif op is Ops.VECTORIZE: v[pc] = tuple(x for s in src for x in (v[s] if type(v[s]) is tuple else (v[s],)))
      elif op is Ops.GEP: v[pc] = v[src[0]][arg[0]] if len(arg) == 1 else tuple(v[src[0]][k] for k in arg)
      elif op is Ops.NOOP or op is Ops.AFTER: v[pc] = v[src[0]] if src else None
      # ENDIF: nothing to do, the IF jumped past it when its condition was false
      pc += 1

  def _tma(self, arg: tuple, dst: tuple, src: tuple) -> None:
    # a TMA copy (tg_codegen.lower.wgmma, renderer/cuda.py `_render_tma`): boxes of 64 columns x `box` rows, 128-byte swizzled
    (smem, base, gate), (gmem, origin, _) = dst, src
    if not gate: return
    _, rs, rows, box, nbox, bstride, _expect = arg
    if base % 512: raise RuntimeError(f"PYTHON kernel {self.name!r}: a TMA box at shared element {base} is not 1024-byte aligned")
    if origin % rs + 64 * nbox > rs or origin // rs + box > rows:
      raise RuntimeError(f"PYTHON kernel {self.name!r}: a TMA box at element {origin} leaves its {rows} x {rs} view")
    for i in range(nbox):
      for r in range(box):
        vals = gmem.load(self.name, origin + r * rs + 64 * i, 64)
        for c in range(64): smem.store(self.name, base + i * bstride + sw128(r * 64 + c), (vals[c],))

  def _special(self, arg: str, gid: tuple[int, ...], lid: tuple[int, ...], ls: tuple[int, ...]) -> int:
    try: d = int(arg[-1])
    except (ValueError, IndexError): d = -1
    if 0 <= d < 3:
      if arg.startswith("gidx"): return gid[d]
      if arg.startswith("lidx"): return lid[d]
      if arg.startswith("idx"): return gid[d] * ls[d] + lid[d]  # a global thread index (launches without separate local dims)
    raise RuntimeError(f"PYTHON kernel {self.name!r}: unknown SPECIAL {arg!r}: use gidx0-2, lidx0-2 or idx0-2")

  def _load(self, dt: DType, ptr: tuple, alt: Any) -> Any:
    mem, idx, gate = ptr
    if type(idx) is tuple:  # one address per lane: a gather
      return tuple(mem.load(self.name, i, 1) if _lane(gate, k) else _lane(alt, k) for k, i in enumerate(idx))
    if type(gate) is tuple:  # contiguous lanes, each with its own gate
      return tuple(mem.load(self.name, idx + k, 1) if g else _lane(alt, k) for k, g in enumerate(gate))
    if not gate: return alt if alt is not None else _cast(tuple([0] * dt.count) if dt.count > 1 else 0, dt)
    return mem.load(self.name, idx, dt.count)

  def _store(self, ptr: tuple, val: Any) -> None:
    mem, idx, gate = ptr
    lanes = val if type(val) is tuple else (val,)
    if type(idx) is tuple:  # a scatter
      for k, i in enumerate(idx):
        if _lane(gate, k): mem.store(self.name, i, (lanes[k],))
    elif type(gate) is tuple:
      for k, g in enumerate(gate):
        if g: mem.store(self.name, idx + k, (lanes[k],))
    elif gate: mem.store(self.name, idx, lanes)

# ---- memory and the device ----
class PythonAllocator(LRUAllocator):
  """Host memory: each buffer is a memoryview of a bytearray, and views are slices of it."""
  def _alloc(self, size: int, options: BufferSpec | None) -> memoryview:
    if options is not None and options.external_ptr is not None:
      raise ValueError("the PYTHON device can't wrap external memory (external_ptr): copy the data in with Buffer.copyin instead")
    return memoryview(bytearray(size))
  def _copyin(self, dest: memoryview, src: memoryview) -> None: dest[:] = src.cast("B") if src.format != "B" else src
  def _copyout(self, dest: memoryview, src: memoryview) -> None: dest[:] = src
  def _offset(self, buf: memoryview, size: int, offset: int) -> memoryview: return buf[offset:offset + size]
  def _transfer(self, dest: memoryview, src: memoryview, nbytes: int) -> None: dest[:nbytes] = src[:nbytes]

class PythonDevice(Compiled):
  """The PYTHON device: interprets linearized UOps with exact reference semantics. Always available; slow."""
  def __init__(self, device: str = "PYTHON", renderer: Renderer | None = None, interface: Any = None):
    super().__init__(device, PythonAllocator(device), renderer if renderer is not None else PythonRenderer(), PythonCompiler(), PythonProgram)
    self.interface = interface
