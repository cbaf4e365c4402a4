"""Lowering the TC opt to Hopper's warpgroup MMA (`wgmma.mma_async`, sm_90a) where the kernel's shape allows it.

A warpgroup is the 4 warps of a LOCAL axis of size 4 over M that is the kernel's last LOCAL (it becomes threadIdx.y, right above the
32 lanes): together they take 64 rows (4 x the tensor core's 16), and the UPCASTs of N make the instruction's N (8 x their sizes, up
to 256). Both operands are staged in shared memory in the layouts the descriptors describe (`tg_codegen.tensor_cores`: core
matrices of 8 rows x 16 bytes; A K-major, B N-major), copied 16 bytes at a time with coalesced global reads and conflict-free
shared stores. Each iteration of the K loop is then one WGMMA per remaining M upcast: its K steps of 16 (the UNROLLs of K) issue
back to back on one accumulator (N/2 floats a lane). The stores take the wgmma result layout. Where S >= 3 sets of tiles fit in
shared memory the copies are cp.async S-2 iterations ahead and the WGMMAs asynchronous: BARRIER after waiting for all but the last
WGMMA group, copies for i+S-2, wait for i's copies + proxy fence + BARRIER, WGMMAs of i (committed, not waited for; the renderer
keeps the accumulators in place and waits for them at the iteration's end). Where both tiles are boxes of their buffers' rows, TMA
copies them instead (`_tma_pipeline`: thread 0, mbarriers, 3 stages ahead). Otherwise: BARRIER, copies, proxy fence + BARRIER, WGMMAs
waited for.

Needs: a float16/bfloat16 tensor core, both operands plain loads whose K (A) and N (B) run along memory 16-byte aligned (or B's K,
then it is K-major like A, which only the TMA pipeline copies), and the tiles within the renderer's shared memory; otherwise the TC
opt lowers to mma.sync (`tensor_core.apply_tc`)."""
from __future__ import annotations
from typing import Any
from tg_uop.dtype import dtypes
from tg_uop.helpers import prod
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.kernel import AxisType, KernelInfo, mma_operands
from tg_uop.helpers import ContextVar
from tg_codegen.lower.stage import TC_STAGE, range_stride, copy_to_shared

TC_TMA = ContextVar("TC_TMA", 1)  # 0: wgmma's tiles copied by every thread with cp.async even where TMA could copy them
from tg_codegen.tensor_cores import WarpGroupMMA, wg_offset

def _radix(axes: list) -> list[tuple[UOp, int, int]]:
  """(range, size, stride) of `axes` as digits of one number, the last innermost."""
  out, s = [], 1
  for a in reversed(axes):
    out.append((a.rng, a.size, s))
    s *= a.size
  return out[::-1]

def _value(axes: list, at: dict | None = None) -> UOp:
  """The number whose digits are `axes`' ranges (or their values in `at`)."""
  at = at or {}
  return sum((at.get(r, r) * s for r, _, s in _radix(axes)), start=UOp.const(dtypes.index, 0))

def _digits(x: UOp, axes: list) -> dict[UOp, UOp]:
  """Each of `axes`' ranges at its digit of `x`."""
  return {r: (x // s) % n if n > 1 else x.const_like(0) for r, n, s in _radix(axes)}

class _Plan:
  """Everything the wgmma lowering needs, or the reason it can't apply (`why`)."""
  def __init__(self, sink: UOp, info: KernelInfo, ren):
    self.why = None
    sel, m, n, k, lane = info.tc
    ax = {a.rng: a for a in info.axes}
    tc = ren.tensor_cores[sel]
    self.m, self.n, self.k, self.lane = m, n, k, lane
    self.red = next(u for u in sink.toposort() if u.op is Ops.REDUCE and k in u.src[1:])
    m_id, n_id, k_id = ax[m].origin, ax[n].origin, ax[k].origin
    locals_ = [a for a in info.axes if a.type is AxisType.LOCAL]
    if any(a.type is AxisType.GROUP_REDUCE for a in info.axes): self.why = "a GROUP reduce"; return
    if not locals_ or locals_[-1].origin != m_id or locals_[-1].size != 4: self.why = "no warpgroup (the last LOCAL must be M by 4)"; return
    self.warp, self.locals = locals_[-1].rng, [a.rng for a in locals_]
    self.nups = [a for a in info.axes if a.type is AxisType.UPCAST and a.origin == n_id]
    self.wg = WarpGroupMMA(8 * prod(a.size for a in self.nups), tc.dtype_in)
    if self.wg.n > 256: self.why = f"N = {self.wg.n} > 256"; return
    a, b = mma_operands(self.red)
    if m not in a.toposort(): a, b = b, a
    self.a, self.b = a, b
    for x in (a, b):
      if x.op is not Ops.LOAD or len(x.src) != 1 or x.src[0].op is not Ops.INDEX or len(x.src[0].src) != 2 or \
         x.src[0].src[0].op is not Ops.DEFINE_GLOBAL or x.dtype != tc.dtype_in:
        self.why = "an operand is not a plain load"; return
    role = lambda o, types: [x for x in info.axes if x.origin == o and x.type in types]  # noqa: E731
    inner = (AxisType.LOCAL, AxisType.UPCAST)
    # digit order: the warpgroup's 64 rows (warp, then the tensor core's 16) and one WGMMA's N columns (N upcasts, then 8) innermost
    self.mrole = [x for x in role(m_id, inner) if x.rng is not self.warp] + [ax[self.warp], ax[m]]
    self.nrole = [x for x in role(n_id, inner) if x not in self.nups] + self.nups + [ax[n]]
    self.krole = role(k_id, (AxisType.UNROLL,)) + [ax[k]]
    tile = {x.rng for x in info.axes if x.type in (AxisType.LOCAL, AxisType.UPCAST, AxisType.UNROLL, AxisType.TC)}
    for x, own in ((a, self.mrole + self.krole), (b, self.nrole + self.krole)):
      used = {u for u in x.src[0].src[1].toposort() if u.op is Ops.RANGE} & tile
      if not used <= {r.rng for r in own}: self.why = "an operand uses the other operand's axes"; return
    ia, ib = a.src[0].src[1], b.src[0].src[1]
    rng_a, rng_b = [u for u in ia.toposort() if u.op is Ops.RANGE], [u for u in ib.toposort() if u.op is Ops.RANGE]
    # B comes N-major (N along memory) or, where only K runs along its memory (x @ w.T), K-major like A: that one only by TMA
    self.b_kmajor = range_stride(ib, n, rng_b) != 1 and range_stride(ib, k, rng_b) == 1
    if range_stride(ia, k, rng_a) != 1 or (range_stride(ib, n, rng_b) != 1 and not self.b_kmajor):
      self.why = "A's K or B's N (or K) doesn't run along memory"; return
    for idx, runs in ((ia, [k]), (ib, [k if self.b_kmajor else n])):
      if idx.substitute({r: r.const_like(0) for r in runs}).simplify().const_factor() % 8: self.why = "rows not 16-byte aligned"; return
    self.bm, self.bn, self.bk = (prod(x.size for x in r) for r in (self.mrole, self.nrole, self.krole))
    self.threads = 32 * prod(r.src[0].arg for r in self.locals)
    used_smem = sum(u.dtype.size * u.dtype.base.itemsize for u in sink.toposort() if u.op is Ops.DEFINE_LOCAL)
    budget = getattr(ren, "shared_max_dynamic", getattr(ren, "shared_max", 0))
    self.smem_bytes, self.smem_budget = (self.bm * self.bk + self.bk * self.bn) * tc.dtype_in.itemsize, budget - used_smem
    if self.smem_bytes > self.smem_budget:
      self.why = "tiles exceed shared memory"; return
    self.loops = [r for r in self.red.src[1:] if ax.get(r) is not None and ax[r].type is AxisType.REDUCE]
    # layouts (lbo, sbo, 128-byte swizzle) in elements. Swizzled where a row of 128 bytes is exactly the iteration's K (A) and N
    # comes in atoms of 64 (B): A's 8-row groups 1024 bytes apart; B's atoms along N 1024 bytes apart, its 8-row groups along K
    # hold all of N. Otherwise core matrices: A's along K adjacent (lbo 64), 8-row groups holding all of K (sbo 8*BK); B's along N
    # adjacent (sbo 64), 8-row groups along K holding all of N (lbo 8*BN)
    self.swizzle = self.bk == 64 and self.wg.n % 64 == 0
    self.a_layout = (8, 512, True) if self.swizzle else (64, 8 * self.bk, False)
    self.b_layout = (512, 8 * self.bn, True) if self.swizzle else (8 * self.bn, 64, False)
    if self.b_kmajor: self.b_layout = self.a_layout  # its N rows as A's M rows
    self.tma = getattr(ren, "tma", False) and TC_TMA.value and self.swizzle and len(self.loops) == 1 and self._tma_rows()
    # TMA writes an N-major B's 64-column atoms one after the other, each all BK rows: atoms BK*64 elements apart, 8-row groups 512
    if self.tma and not self.b_kmajor: self.b_layout = (64 * self.bk, 512, True)
    if self.b_kmajor and not (self.tma and getattr(ren, "async_copy", False) and (self.smem_budget - 1024) // self.smem_bytes >= 3):
      self.why = "a K-major B needs the TMA pipeline"; return

  def _tma_rows(self) -> bool:
    """Whether both tiles are boxes of a 2-D view of their buffers (rows of `rs` elements; A: BM rows of BK, B: BK rows of BN, or
    BN rows of BK where it is K-major)
    that TMA can copy: every tile digit a whole number of rows or columns, rows 16-byte aligned, tiles starting on 64-column
    boundaries (so a box never wraps a row). Sets `a_rows`/`b_rows` = (row stride, rows in the buffer)."""
    b = (self.b, self.nrole, self.krole, "b_rows") if self.b_kmajor else (self.b, self.krole, self.nrole, "b_rows")
    for x, rows, cols, name in ((self.a, self.mrole, self.krole, "a_rows"), b):
      if prod(r.size for r in rows) > 256: return False  # a box has at most 256 rows
      idx = x.src[0].src[1]
      rngs = [u for u in idx.toposort() if u.op is Ops.RANGE]
      rs = range_stride(idx, rows[-1].rng, rngs)  # the innermost row digit: the tensor core's M (A) or K (B)
      if not isinstance(rs, int) or rs <= 0 or rs % 64: return False
      want = {**{r: s * rs for r, _, s in _radix(rows)}, **{r: s for r, _, s in _radix(cols)}}
      if any(range_stride(idx, r, rngs) != w for r, w in want.items()): return False
      origin = idx.substitute({r: r.const_like(0) for r in want}).simplify()
      size = x.src[0].src[0].dtype.size
      if origin.const_factor() % 64 or size % rs: return False
      setattr(self, name, (rs, size // rs))
    return True

def wgmma_applies(sink: UOp, info: KernelInfo, ren) -> _Plan | None:
  """The plan when the TC opt of `info` lowers to wgmma on `ren` (see the module docstring), else None."""
  if not TC_STAGE or not getattr(ren, "wgmma", False) or info.tc is None: return None
  p = _Plan(sink, info, ren)
  return p if p.why is None else None

def _tid(p: _Plan) -> UOp:
  t = p.lane
  for r in p.locals: t = t + r * (t.vmax + 1)
  return t

def apply_wgmma(sink: UOp, info: KernelInfo, p: _Plan, ren) -> UOp:
  """`sink` (after `rebuild`) with the tensor core's reduction as WGMMAs over staged tiles and its stores in the wgmma layout."""
  dt = p.a.dtype
  nid = max([u.arg for u in sink.toposort() if u.op is Ops.DEFINE_LOCAL] + [-1]) + 1
  asz, bsz = p.bm * p.bk, p.bk * p.bn
  # S >= 3 buffers where they fit (up to 8): iteration i's copies go D = S-2 iterations ahead, into buffer (i+D)%S, last read by
  # the WGMMAs of i-2 (each iteration starts by waiting for all but the newest WGMMA group, then syncs); the copies of i are waited
  # for (all but the D newest cp.async groups) before i's WGMMAs
  # (with TMA, the stages' mbarriers take one more 1024-byte slice of shared memory)
  stages = min(8, (p.smem_budget - 1024 * p.tma) // p.smem_bytes) if getattr(ren, "async_copy", False) and len(p.loops) == 1 else 1
  pipe = stages >= 3
  nbuf = stages if pipe else 1
  sa = UOp(Ops.DEFINE_LOCAL, dt.ptr(nbuf * asz, "local"), (), nid)
  sb = UOp(Ops.DEFINE_LOCAL, dt.ptr(nbuf * bsz, "local"), (), nid + 1)
  tid = _tid(p)
  kin, nin = p.krole[:-1], p.nrole[:-1]  # the K digits above the tensor core's 16; the N digits above its 8
  def k_at(k8: UOp) -> dict:  # K digits for K = 8*k8: the tensor core's part as 8*(k8 % 2), so alignment stays visible
    return {p.k: (k8 % 2) * 8, **_digits(k8 // 2, kin)}
  na, nb = asz // 8, bsz // 8
  def copies() -> list[tuple]:  # (slot, slots in all, buffer, global index, shared buffer, offset) of each 16-byte copy
    out = []
    for j in range(-(-na // p.threads)):  # A: 8 threads fill one core matrix (8 rows of 16 bytes)
      q = tid + j * p.threads
      r8, kq, mg = q % 8, (q // 8) % (p.bk // 8), q // (8 * (p.bk // 8))
      gi = p.a.src[0].src[1].substitute({**_digits(mg * 8 + r8, p.mrole), **k_at(kq)})
      out.append((q, na, p.a.src[0].src[0], gi, sa, wg_offset(True, p.swizzle, *p.a_layout[:2], mg * 8 + r8, kq * 8), asz))
    for j in range(-(-nb // p.threads)):  # B: 8 threads fill one core matrix (8 K rows of 16 bytes along N)
      q = tid + j * p.threads
      r8, nq, kg = q % 8, (q // 8) % (p.bn // 8), q // (8 * (p.bn // 8))
      kk = kg * 8 + r8
      gi = p.b.src[0].src[1].substitute({p.n: p.n.const_like(0), **_digits(nq, nin), p.k: kk % 16, **_digits(kk // 16, kin)})
      out.append((q, nb, p.b.src[0].src[0], gi, sb, wg_offset(False, p.swizzle, *p.b_layout[:2], nq * 8, kk), bsz))
    return out
  def copy(q, total, buf, gi, smem, off, after, gate=None, kind=None) -> UOp:  # 16 bytes; gated off past the tile's end
    if total % p.threads: gate = (q < total) if gate is None else gate & (q < total)
    return copy_to_shared(buf, smem, dt, 8, off, gi, after, gate, kind)
  # the tiles are written by ordinary stores or cp.async and read by the tensor cores through the async proxy: each thread fences
  # its writes for that proxy before the sync
  refill = None
  if pipe and p.tma:
    ready, cur, refill = _tma_pipeline(p, sa, sb, nid + 2, nbuf, tid, asz, bsz)
  elif not pipe:
    free = UOp(Ops.BARRIER, dtypes.void, tuple(p.loops))  # the previous iteration's WGMMAs are done
    ready = UOp(Ops.BARRIER, dtypes.void, tuple(copy(q, t, b, gi, sm, off, (free,)) for q, t, b, gi, sm, off, _ in copies()), "async_proxy")
    cur = {sa: 0, sb: 0}
  else:
    loop, ahead, n = p.loops[0], nbuf - 2, p.loops[0].src[0]
    commit: tuple = ()
    for d in range(ahead):  # the prologue: iterations 0 .. D-1, one cp.async group each
      gate = None if n.op is Ops.CONST and d < n.arg else loop.const_like(d) < n
      first = [copy(q, t, b, gi.substitute({loop: loop.const_like(d)}), sm, off + d * size, commit, gate=gate, kind="async")
               for q, t, b, gi, sm, off, size in copies()]
      commit = (UOp(Ops.BARRIER, dtypes.void, tuple(first), "commit"),)
    free = UOp(Ops.BARRIER, dtypes.void, (loop, *commit), "wgmma_wait1")
    later = [copy(q, t, b, gi.substitute({loop: loop + ahead}), sm, off + ((loop + ahead) % nbuf) * size, (free,),
                  gate=(loop + ahead) < n, kind="async") for q, t, b, gi, sm, off, size in copies()]
    ready = UOp(Ops.BARRIER, dtypes.void, tuple(later), f"wait{ahead}_proxy")
    cur = {sa: (loop % nbuf) * asz, sb: (loop % nbuf) * bsz}
  # one WGMMA per remaining M upcast, covering every K step of 16 of the iteration (the UNROLLs of K) on one accumulator:
  # descriptors at the warpgroup's first row and the iteration's first K
  m0 = _value(p.mrole, {p.warp: p.warp.const_like(0), p.m: p.m.const_like(0)})
  k0 = UOp.const(dtypes.index, 0)
  ksteps = p.bk // 16
  n0 = _value(p.nrole, {p.n: p.n.const_like(0), **{x.rng: x.rng.const_like(0) for x in p.nups}})
  nc = p.wg.n // 2
  out_dt = dtypes.float32.vec(nc)
  # pipelined, a WGMMA is only committed (the renderer waits for it at the end of the iteration)
  arg = (p.wg.name, p.wg.dims, dt, dtypes.float32, ren.device, p.wg.threads, ("wgmma", p.a_layout, p.b_layout, ksteps, pipe, p.b_kmajor))
  w = UOp(Ops.WMMA, out_dt, (sa.index(wg_offset(True, p.swizzle, *p.a_layout[:2], m0, k0) + cur[sa]),
                             sb.index(wg_offset(p.b_kmajor, p.swizzle, *p.b_layout[:2], n0, k0) + cur[sb]),
                             UOp.const(out_dt, 0.0), ready), arg)
  rest = tuple(r for r in p.red.src[1:] if r is not p.k and r not in {x.rng for x in p.krole})
  res = UOp(Ops.REDUCE, out_dt, (w, *rest), Ops.ADD) if rest else w
  if p.red.dtype != dtypes.float32: res = res.cast(p.red.dtype.vec(nc))
  gone = {p.m, p.n, *(x.rng for x in p.nups)}
  g, t = p.lane // 4, p.lane % 4
  def at(i: int) -> dict:  # element i of a lane: the tensor core's row and column, and the N upcasts' digits of its 8-column chunk
    return {p.m: g + 8 * ((i % 4) // 2), p.n: t * 2 + i % 2, **{r: r.const_like(v) for r, v in _chunk(p.nups, i // 4).items()}}
  new: dict[UOp, UOp] = {}
  for u in sink.toposort():
    if u is p.red:
      new[u] = res
      continue
    src = [new[s] for s in u.src]
    if u.op is Ops.END and p.m in u.src and p.n in u.src:
      vals = [v for v in u.src if v.op is not Ops.RANGE]
      xs = [x for i in range(0, nc, 2) for v in vals
            for x in _pair(v, [v.substitute({p.red: res.gep(j)}).substitute(at(j)) for j in (i, i + 1)], p.n)]
      rr = [r for r in u.src if r.op is Ops.RANGE and r not in gone]
      new[u] = UOp(Ops.END, dtypes.void, (*xs, *rr)) if rr else UOp(Ops.SINK, dtypes.void, tuple(xs))
    else: new[u] = u if all(x is y for x, y in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
  out = new[sink]
  if any(x in out.toposort() for x in (*gone, *(x.rng for x in p.krole))):
    raise ValueError(f"wgmma lowering of {info.name}: the tensor core's M/N/K or N upcast ranges are still used outside the reduction")
  # (TMA: the refill copies follow the iteration's WGMMAs; nothing reads them, so the SINK holds them, in their END of the loop)
  return UOp(Ops.SINK, dtypes.void, tuple(x for s in out.src for x in (s.src if s.op is Ops.SINK else (s,))) +
             ((refill,) if refill is not None else ()), out.arg)

def _tma_pipeline(p: _Plan, sa: UOp, sb: UOp, bar_id: int, nbuf: int, tid: UOp, asz: int, bsz: int) -> tuple[UOp, dict, Any]:
  """The S-stage pipeline with TMA: thread 0 copies each iteration's tiles with bulk tensor copies (A one box of BM rows x 64;
  B one box of BK rows x 64 per 64 columns, or where K-major one box of BN rows x 64; all 128-byte swizzled by the copy engine)
  that complete on the stage's mbarrier; every thread waits on that mbarrier instead of a block-wide sync. Iteration i: everyone
  waits for stage i%S (phase (i//S)%2), issues i's WGMMAs, waits for all but i's WGMMA groups (i-1's are done) and syncs: stage
  (i-1)%S is free, and thread 0 starts the copies of i+S-1 into it, while i's WGMMAs run. Returns the UOp the WGMMAs follow, the
  tiles' offsets of the current stage, and the refill (an END of the loop for the SINK; its wait is linked by `after_reduces`)."""
  loop, ahead, n = p.loops[0], nbuf - 1, p.loops[0].src[0]
  bar = UOp(Ops.DEFINE_LOCAL, dtypes.uint64.ptr(nbuf, "local"), (), bar_id)
  first = tid.eq(0)
  init = UOp(Ops.BARRIER, dtypes.void, (bar.index(UOp.const(dtypes.index, 0)), first), ("mbar_init", nbuf))
  zero_a = {r: r.const_like(0) for r, _, _ in _radix(p.mrole + p.krole)}
  zero_b = {r: r.const_like(0) for r, _, _ in _radix(p.krole + p.nrole)}
  stage_bytes = (asz + bsz) * p.a.dtype.itemsize
  def copies(it: UOp, gate: UOp, after: tuple) -> UOp:  # iteration `it`'s tiles into stage it % S; B's copy follows A's
    st = it % nbuf if it.op is not Ops.CONST else it.const_like(it.arg % nbuf)
    (rsa, rowsa), (rsb, rowsb) = p.a_rows, p.b_rows
    ga = p.a.src[0].src[1].substitute({**zero_a, loop: it})
    gb = p.b.src[0].src[1].substitute({**zero_b, loop: it})
    # arg: ("tma", row stride, rows in the buffer, box rows, boxes (64 columns each), shared elements between boxes, bytes the
    # stage's mbarrier expects (the first copy of a stage arrives on it for the whole stage; 0: no arrival))
    ca = UOp(Ops.STORE, dtypes.void, (sa.index(st * asz, gate=gate), UOp(Ops.LOAD, p.a.dtype, (p.a.src[0].src[0].index(ga, gate=gate),
             UOp.const(p.a.dtype, 0)), "tma"), bar.index(st), *after), ("tma", rsa, rowsa, p.bm, 1, 0, stage_bytes))
    bbox = ("tma", rsb, rowsb, p.bn, 1, 0, 0) if p.b_kmajor else ("tma", rsb, rowsb, p.bk, p.bn // 64, 64 * p.bk, 0)
    return UOp(Ops.STORE, dtypes.void, (sb.index(st * bsz, gate=gate), UOp(Ops.LOAD, p.b.dtype, (p.b.src[0].src[0].index(gb, gate=gate),
               UOp.const(p.b.dtype, 0)), "tma"), bar.index(st), ca), bbox)
  pro = (init,)
  for d in range(ahead):  # the prologue: iterations 0 .. D-1
    gate = first if n.op is Ops.CONST and d < n.arg else first & (loop.const_like(d) < n)
    pro = (copies(loop.const_like(d), gate, pro),)
  ready = UOp(Ops.BARRIER, dtypes.void, (bar.index(loop % nbuf), (loop // nbuf) % 2, loop, *pro), ("mbar_wait",))
  # the refill's wait follows the iteration's WGMMAs: a placeholder until they exist in their final form (`after_reduces`)
  after = UOp(Ops.BARRIER, dtypes.void, (UOp(Ops.NOOP, dtypes.void, (), _WGMMA_DONE),), "wgmma_wait1")
  refill = UOp(Ops.END, dtypes.void, (copies(loop + ahead, first & ((loop + ahead) < n), (after,)), loop))
  return ready, {sa: (loop % nbuf) * asz, sb: (loop % nbuf) * bsz}, refill

_WGMMA_DONE = "the iteration's WGMMAs"

def after_reduces(sink: UOp) -> UOp:
  """`sink` of a wgmma kernel with its reductions lowered: the TMA refill's wait follows the kernel's WGMMAs (see
  `_tma_pipeline`), and the epilogue's other global loads (a bias, a residual) follow the K loop, so they don't hold registers
  through it (the accumulators take 128 a thread: with a bias read before the loop a 128x256 kernel needed all 255)."""
  topo = list(sink.toposort())
  ws = tuple(u for u in topo if u.op is Ops.WMMA and str(u.arg[0]).startswith("WGMMA"))
  marks = [u for u in topo if u.op is Ops.BARRIER and len(u.src) == 1 and u.src[0].op is Ops.NOOP and u.src[0].arg == _WGMMA_DONE]
  # each WGMMA UOp is one commit group: waiting for all but this iteration's leaves the previous iteration's done
  if marks: sink = sink.substitute({m: UOp(Ops.BARRIER, dtypes.void, ws, f"wgmma_wait{len(ws)}") for m in marks})
  loops = {r for w in ws for r in w.toposort() if r.op is Ops.RANGE}  # (the grid is SPECIALs by now: these are the K loops)
  topo = list(sink.toposort())
  ends = tuple(u for u in topo if u.op is Ops.END and any(r in loops for r in u.src))
  if not ends: return sink
  inside = set().union(*(e.toposort() for e in ends))
  late = {u: UOp(Ops.LOAD, u.dtype, (*u.src, *ends), u.arg) for u in topo if u.op is Ops.LOAD and u not in inside and u.arg is None
          and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL}
  return sink.substitute(late) if late else sink

def _pair(v: UOp, xs: list[UOp], n: UOp) -> list[UOp]:
  """A lane's stores `xs` of `v` for two adjacent columns of the tensor core's N: one 2-wide STORE where `v` is a plain store
  whose address moves by one element along N, else both."""
  if v.op is not Ops.STORE or len(v.src) != 2 or v.src[0].op is not Ops.INDEX or len(v.src[0].src) != 2: return xs
  idx = v.src[0].src[1]
  if range_stride(idx, n, [u for u in idx.toposort() if u.op is Ops.RANGE]) != 1: return xs
  a, b = xs
  return [UOp(Ops.STORE, dtypes.void, (a.src[0], UOp(Ops.VECTORIZE, a.src[1].dtype.vec(2), (a.src[1], b.src[1]))))]

def _chunk(nups: list, c: int) -> dict:
  """The N upcasts' values (ints) for 8-column chunk `c` of a WGMMA's result."""
  out, s = {}, 1
  for a in reversed(nups):
    out[a.rng] = (c // s) % a.size
    s *= a.size
  return out
