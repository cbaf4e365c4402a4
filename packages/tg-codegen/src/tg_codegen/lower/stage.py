"""Staging a tensor-core kernel's operands through shared memory: the threads of a block copy each operand's tile once per
iteration of the reduce loop, then every warp reads its fragments from there.

Without it every warp gathers its own fragments from global memory: the same tile is fetched by each warp that uses it, with
2- or 4-byte loads scattered over rows. With it the block copies a tile with wide, coalesced loads (16 bytes a thread where the
tile's rows are contiguous and provably aligned in memory) and the fragments come from shared memory.

Only operands that several warps of the block share are staged (a LOCAL axis their address doesn't use). The tile of an operand
is the product of the block-internal axes (LOCAL, UPCAST, UNROLL and the tensor core's M/N/K parts) its address uses; global and
loop axes stay in the address. In shared memory the tile keeps the order of the operand's memory (largest stride outermost); its
innermost evenly strided run (`row`) is padded by 16 bytes where the row is a multiple of 32 bytes, so the 8 rows a fragment load
touches start in different banks. One iteration is: BARRIER (the previous iteration's reads are done), the copies, BARRIER, the
compute. Set `TC_STAGE=0` to gather fragments from global memory instead (for comparison)."""
from __future__ import annotations
from tg_uop.dtype import dtypes
from tg_uop.helpers import ContextVar, prod
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.kernel import AxisType, KernelInfo, mma_operands

TC_STAGE = ContextVar("TC_STAGE", 1)
_TILE_AXES = (AxisType.LOCAL, AxisType.UPCAST, AxisType.UNROLL, AxisType.TC)

def range_stride(idx: UOp, r: UOp, rngs: list[UOp]) -> int | None:
  """How far `idx` moves in memory when `r` grows by one, with every other range at 0; None if that isn't a known constant."""
  zero = {x: x.const_like(0) for x in rngs if x is not r}
  d = (idx.substitute({**zero, r: r.const_like(1)}) - idx.substitute({**zero, r: r.const_like(0)})).simplify()
  return d.arg if d.op is Ops.CONST else None

class _Tile:
  """The layout of one operand's tile in shared memory."""
  def __init__(self, load: UOp, axes: list, itemsize: int, kset: set):
    idx = load.src[0].src[1]
    rngs = [u for u in idx.toposort() if u.op is Ops.RANGE]
    strides = {a.rng: range_stride(idx, a.rng, rngs) for a in axes}
    # memory order: largest stride outermost (unknown strides outermost of all); ties keep the axes' order
    self.axes = sorted(axes, key=lambda a: -(strides[a.rng] if strides[a.rng] is not None else 1 << 62))
    self.sizes = [a.size for a in self.axes]
    g = [strides[a.rng] for a in self.axes]
    # the row: the innermost axes that are one evenly strided run in memory (each outer one spanning the inner ones); copies move
    # several elements at once only where that run is contiguous (stride 1)
    n = len(self.axes)
    start, span = n - 1, self.sizes[-1]
    while start > 0 and g[-1] is not None and g[start - 1] == g[-1] * span: start, span = start - 1, span * self.sizes[start - 1]
    # ... and no wider than the innermost axes of one role (all K, or all M/N): a fragment reads 8 such rows at once, and they
    # must be padded apart even where memory runs on evenly (a conv's weights: output channel after input channel)
    role = [a.rng in kset for a in self.axes]
    while start < n - 1 and role[start] != role[-1]: start, span = start + 1, span // self.sizes[start]
    self.row_start, self.row, self.contiguous = start, span, g[-1] == 1
    # fragment loads read 8 rows at a time: a row of a multiple of 32 bytes is padded by 16 so those rows start in different banks
    pad = 16 // itemsize if start > 0 and (self.row * itemsize) % 32 == 0 else 0
    # shared-memory strides: dense inside the row, the row padded, dense again outside it
    self.smem_strides = [0] * n
    acc = 1
    for i in reversed(range(n)):
      self.smem_strides[i] = acc
      acc = acc * self.sizes[i] + (pad if i == start and start > 0 else 0)
    self.smem_size = acc
    self.elems = prod(self.sizes)
    self.idx = idx

def _vector_width(t: _Tile, threads: int, itemsize: int) -> int:
  """The widest copy (elements a thread moves at once) that stays inside a contiguous row, divides the work evenly and is
  provably aligned in global memory; 1 if none is."""
  if not t.contiguous: return 1 if t.elems % threads == 0 else 0
  base = t.idx.substitute({a.rng: a.rng.const_like(0) for a in t.axes[t.row_start:]}).simplify()
  for v in (16 // itemsize, 8 // itemsize, 4 // itemsize, 1):
    if v >= 1 and t.row % v == 0 and t.elems % (threads * v) == 0 and (v == 1 or base.const_factor() % v == 0): return v
  return 0

def _copies(t: _Tile, tid: UOp, threads: int, v: int) -> list[tuple[UOp, UOp]]:
  """(shared-memory offset, global index) of each copy a thread makes of the tile: slot q = j*threads + tid moves elements
  q*v .. q*v+v-1."""
  out = []
  per_row = t.row // v
  for j in range(t.elems // (threads * v)):
    q = tid + j * threads
    rpos = (q % per_row) * v if per_row > 1 else q.const_like(0)
    outer = q // per_row if per_row > 1 else q
    coords: dict[UOp, UOp] = {}
    soff = rpos
    div = 1
    for i in reversed(range(t.row_start)):
      c = (outer // div) % t.sizes[i] if t.sizes[i] > 1 else outer.const_like(0)
      div *= t.sizes[i]
      coords[t.axes[i].rng] = c
      soff = soff + c * t.smem_strides[i]
    if t.contiguous:  # the row's axes at 0 plus the position along the row: an address whose alignment the renderer can see
      coords.update({a.rng: a.rng.const_like(0) for a in t.axes[t.row_start:]})
      gidx = t.idx.substitute(coords) + rpos
    else:
      div = 1
      for i in reversed(range(t.row_start, len(t.axes))):
        coords[t.axes[i].rng] = (rpos // div) % t.sizes[i] if t.sizes[i] > 1 else rpos.const_like(0)
        div *= t.sizes[i]
      gidx = t.idx.substitute(coords)
    out.append((soff, gidx))
  return out

def copy_to_shared(buf: UOp, smem: UOp, dt, v: int, soff: UOp, gidx: UOp, after: tuple = (), gate: UOp | None = None,
                   kind: str | None = None) -> UOp:
  """STORE of v elements at global `gidx` into shared `soff`, after the ordering sources `after`, both sides skipped where `gate`
  is false; `kind="async"` marks a cp.async copy (the LOAD is not a register value: the renderer copies memory to memory; the
  PYTHON device and any reader of the graph see a plain load and store)."""
  vdt = dt.vec(v) if v > 1 else dt
  if gate is None: return UOp(Ops.STORE, dtypes.void, (smem.index(soff), UOp(Ops.LOAD, vdt, (buf.index(gidx),), kind), *after), kind)
  val = UOp(Ops.LOAD, vdt, (buf.index(gidx, gate=gate), UOp.const(vdt, 0)), kind)
  return UOp(Ops.STORE, dtypes.void, (smem.index(soff, gate=gate), val, *after), kind)

def stage_operands(sink: UOp, info: KernelInfo, ren) -> UOp:
  """`sink` (after `rebuild`) with the tensor core's operands read from shared-memory tiles where that fits (see the module
  docstring); unchanged when staging is off, the renderer has no shared memory, or no operand can be staged."""
  if not TC_STAGE or not getattr(ren, "has_shared", False) or info.tc is None: return sink
  if any(a.type is AxisType.GROUP_REDUCE for a in info.axes): return sink
  lane = info.tc[4]
  red = next(u for u in sink.toposort() if u.op is Ops.REDUCE and info.tc[3] in u.src[1:])
  locals_ = [a.rng for a in info.axes if a.type is AxisType.LOCAL]
  threads = 32 * prod(r.src[0].arg for r in locals_)
  tid = lane
  for r in locals_: tid = tid + r * (tid.vmax + 1)
  loops = [r for r in red.src[1:] if any(a.rng is r and a.type is AxisType.REDUCE for a in info.axes)]
  tile_axes = [a for a in info.axes if a.type in _TILE_AXES]
  kset = {a.rng for a in info.axes if a.type is AxisType.UNROLL or a.rng is info.tc[3]}
  budget = getattr(ren, "shared_max", 0) - sum(u.dtype.size * u.dtype.base.itemsize for u in sink.toposort() if u.op is Ops.DEFINE_LOCAL)
  plans = []
  for x in dict.fromkeys(mma_operands(red)):
    if x.op is not Ops.LOAD or len(x.src) != 1 or x.src[0].op is not Ops.INDEX or len(x.src[0].src) != 2: continue
    if x.src[0].src[0].op is not Ops.DEFINE_GLOBAL: continue
    used = {u for u in x.src[0].src[1].toposort() if u.op is Ops.RANGE}
    # only a tile that several warps read (a LOCAL axis it doesn't use) is worth the copy: one warp alone reuses what it loads in
    # registers already
    if all(r in used for r in locals_) or not (axes := [a for a in tile_axes if a.rng in used]): continue
    t = _Tile(x, axes, x.dtype.itemsize, kset)
    v = _vector_width(t, threads, x.dtype.itemsize)
    if not v or t.elems <= 32 or t.smem_size * x.dtype.itemsize > budget: continue
    budget -= t.smem_size * x.dtype.itemsize
    plans.append((x, t, v))
  if not plans: return sink
  # double-buffered with cp.async where every copy is 16 bytes, there is one loop, and twice the tiles fit
  pipe = getattr(ren, "async_copy", False) and len(loops) == 1 and all(v * x.dtype.itemsize == 16 for x, _, v in plans) and \
    sum(t.smem_size * x.dtype.itemsize for x, t, _ in plans) <= budget
  nid = max([u.arg for u in sink.toposort() if u.op is Ops.DEFINE_LOCAL] + [-1]) + 1
  sub: dict[UOp, UOp] = {}
  if not pipe:
    free = UOp(Ops.BARRIER, dtypes.void, tuple(loops))  # the previous iteration's fragment reads are done
    stores = []
    for i, (x, t, v) in enumerate(plans):
      smem = UOp(Ops.DEFINE_LOCAL, x.dtype.ptr(t.smem_size, "local"), (), nid + i)
      stores += [copy_to_shared(x.src[0].src[0], smem, x.dtype, v, so, gi, (free,)) for so, gi in _copies(t, tid, threads, v)]
      sub[x] = smem.index(_tile_offset(t))
    ready = UOp(Ops.BARRIER, dtypes.void, tuple(stores))  # the tiles are in shared memory
  else:
    # prologue: iteration 0's tiles into buffer 0 (one cp.async group); iteration i: wait for the reads of i-1, start i+1's copies
    # into the other buffer, commit, wait until only that group is in flight, sync, compute from buffer i % 2
    loop = loops[0]
    n = loop.src[0]
    first, later = [], []
    for i, (x, t, v) in enumerate(plans):
      smem = UOp(Ops.DEFINE_LOCAL, x.dtype.ptr(2 * t.smem_size, "local"), (), nid + i)
      for so, gi in _copies(t, tid, threads, v):
        first.append(copy_to_shared(x.src[0].src[0], smem, x.dtype, v, so, gi.substitute({loop: loop.const_like(0)}), kind="async"))
    commit = UOp(Ops.BARRIER, dtypes.void, tuple(first), "commit")
    free = UOp(Ops.BARRIER, dtypes.void, (loop, commit))
    for i, (x, t, v) in enumerate(plans):
      smem = UOp(Ops.DEFINE_LOCAL, x.dtype.ptr(2 * t.smem_size, "local"), (), nid + i)
      nxt = ((loop + 1) % 2) * t.smem_size
      for so, gi in _copies(t, tid, threads, v):
        later.append(copy_to_shared(x.src[0].src[0], smem, x.dtype, v, so + nxt, gi.substitute({loop: loop + 1}), (free,), gate=(loop + 1) < n,
                           kind="async"))
      sub[x] = smem.index(_tile_offset(t) + (loop % 2) * t.smem_size)
    ready = UOp(Ops.BARRIER, dtypes.void, tuple(later), "wait1")
  new_red = red.substitute({x: UOp(Ops.LOAD, x.dtype, (ix, ready)) for x, ix in sub.items()})
  return sink.substitute({red: new_red})

def _tile_offset(t: _Tile) -> UOp:
  """Where the element at the tile axes' current values sits in the tile."""
  return sum((a.rng * s for a, s in zip(t.axes, t.smem_strides)), start=UOp.const(dtypes.index, 0))
