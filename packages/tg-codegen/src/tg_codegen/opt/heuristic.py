"""The default opt-op choice: a few readable rules, each tried and kept only if it fits the kernel."""
from __future__ import annotations
import functools
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.lower.lowerer import _unit_stride
from tg_codegen.kernel import Opt, OptOps, AxisType, KernelInfo, KernelOptError, initial_info, apply_opt

def _try(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  try: return apply_opt(info, opt, ren)
  except KernelOptError: return info

def _axes(info: KernelInfo, t: AxisType) -> list[int]: return [i for i, a in enumerate(info.axes) if a.type is t]

def _by_origin(info: KernelInfo, origin: int) -> int | None:
  return next((i for i, a in enumerate(info.axes) if a.origin == origin and a.type is AxisType.GLOBAL), None)

def _tc_choice(ast: UOp, info: KernelInfo, ren) -> int | None:
  """The TC choice (index into `info.mma`) to take: the first that fits whose N runs along B's memory (or M along A's), so tiles
  are rows of memory; else the first that fits."""
  from tg_codegen.kernel import mma_operands
  fits = [c for c in range(len(info.mma)) if _try(info, Opt(OptOps.TC, c, 0), ren) is not info]
  red = next((u for u in ast.toposort() if u.op is Ops.REDUCE), None)
  ops = mma_operands(red) if red is not None else None
  rng = {u.arg: u for u in ast.toposort() if u.op is Ops.RANGE}
  def along(x: UOp, r: int) -> bool: return x.op is Ops.LOAD and x.src[0].op is Ops.INDEX and _unit_stride(x.src[0].src[1], rng[r])
  for c in fits:
    m, n = info.mma[c][0], info.mma[c][1]
    a, b = ops if ops is not None and rng[m] in ops[0].toposort() else (ops[::-1] if ops else (None, None))
    if a is not None and (along(b, n) or along(a, m)): return c
  return fits[0] if fits else None

# Hopper's tiles: 128 x 256 a block, two warpgroups side by side along N, each two m64n128k16 WGMMAs an iteration of K 64, the
# tiles copied by TMA. (the H100, float16 4096^3 / 8192^3: 0.265 / 1.815 ms, cuBLAS 0.174 / 1.368 ms; 256 x 128 0.267 / 1.773;
# 128 x 128 0.315 / 2.886; the same 128 x 256 with cp.async copies 0.362 / 2.610; mma.sync with ldmatrix 0.475 / 3.532)
_WGMMA_STEPS = (("n", OptOps.UPCAST, 16), ("n", OptOps.LOCAL, 2), ("m", OptOps.LOCAL, 4), ("m", OptOps.UPCAST, 2), ("k", OptOps.UNROLL, 4))

def _wgmma_tiles(ast: UOp, info: KernelInfo, c: int, ren) -> KernelInfo | None:
  """`info` (TC applied) with Hopper's tiles where the renderer has wgmma and TMA, every step fits and the lowering then takes the
  wgmma path with TMA copies; else None."""
  if not (getattr(ren, "wgmma", False) and getattr(ren, "tma", False)): return None
  from tg_codegen.lower.lowerer import rebuild, _simplify_indices
  from tg_codegen.lower.wgmma import wgmma_applies
  ids = dict(zip("mnk", info.mma[c][:3]))
  for role, op, amt in _WGMMA_STEPS:
    t = AxisType.REDUCE if role == "k" else AxisType.GLOBAL
    i = next((i for i, a in enumerate(info.axes) if a.origin == ids[role] and a.type is t), None)
    if i is None or info.axes[i].size % amt or (new := _try(info, Opt(op, i, amt), ren)) is info: return None
    info = new
  plan = wgmma_applies(_simplify_indices(rebuild(ast, info)), info, ren)
  return info if plan is not None and plan.tma else None

def tensor_core_opts(ast: UOp, info: KernelInfo, ren) -> KernelInfo | None:
  """A matmul-like kernel of float16/bfloat16 on a renderer with tensor cores: TC, then each warp takes a register tile of up to
  4x8 tensor-core tiles (UPCAST of the outer M and N axes), a block holds 2x2 warps (LOCAL) and K is unrolled by 4; None if TC
  does not fit. Where N can't be upcast (a conv's output width, 56 = 7 tiles of 8), other axes only B uses (a conv's output rows
  and batch) take its place: an UPCAST of the innermost by 4 and a LOCAL of 2 on each, so the warps of a block share A (the
  weights) through shared memory; K is then unrolled by 2 and the filter's rows whole."""
  if not getattr(ren, "tensor_cores", None): return None
  if (c := _tc_choice(ast, info, ren)) is None: return None
  info = apply_opt(info, Opt(OptOps.TC, c, 0), ren)
  if (wg := _wgmma_tiles(ast, info, c, ren)) is not None: return wg
  m_id, n_id = info.mma[c][0], info.mma[c][1]
  # (the H100, float16 4096^3, CUDA, before shared-memory staging: this 4x8 tile of tensor-core tiles per warp 1.22 ms; 8x4 1.50 ms;
  # 4x4 1.91 ms; without the K unroll 2.2 ms. Staged with ldmatrix: 0.47 ms, BEAM=2 found nothing faster)
  steps = ((n_id, OptOps.UPCAST, (4, 2)), (m_id, OptOps.UPCAST, (4, 2)), (m_id, OptOps.LOCAL, (2,)), (n_id, OptOps.LOCAL, (2,)),
           (n_id, OptOps.UPCAST, (2,)))
  for origin, op, amts in steps:
    for amt in amts:
      if (i := _by_origin(info, origin)) is not None and info.axes[i].size % amt == 0:
        if (new := _try(info, Opt(op, i, amt), ren)) is not info: info = new; break  # noqa: E702
  unroll = (4, 2)
  if not any(a.type is AxisType.UPCAST and a.origin == n_id for a in info.axes):
    # (the H100, float16 conv 32x64x58x58 by 64x3x3: 0.089 ms with output rows upcast 4, LOCAL 2 on batch and rows, K unrolled 2;
    # 0.099 ms unrolled 4; 0.876 ms with the first TC choice (M = batch) and no locals)
    from tg_codegen.kernel import mma_operands
    red = next(u for u in ast.toposort() if u.op is Ops.REDUCE)
    a, b = mma_operands(red)
    ra, rb = ({u.arg for u in x.toposort() if u.op is Ops.RANGE} for x in (a, b))
    if m_id in rb: ra, rb = rb, ra
    others = [x.origin for x in info.axes if x.type is AxisType.GLOBAL and x.origin in rb - ra and x.origin != n_id]
    if others:
      for origin, op, amt in [(others[-1], OptOps.UPCAST, 4)] + [(o, OptOps.LOCAL, 2) for o in others]:
        if (i := _by_origin(info, origin)) is not None and info.axes[i].size % amt == 0 and info.axes[i].size > amt:
          info = _try(info, Opt(op, i, amt), ren)
      unroll = (2,)
  k_id = info.mma[c][2]
  if (k := next((i for i, a in enumerate(info.axes) if a.origin == k_id and a.type is AxisType.REDUCE), None)) is not None:
    for amt in unroll:
      if info.axes[k].size % amt == 0 and (new := _try(info, Opt(OptOps.UNROLL, k, amt), ren)) is not info: info = new; break  # noqa: E702
  if unroll == (2,):  # a conv: its first other short reduce loop (the filter's rows) unrolled whole
    # (the H100 conv above: 0.089 -> 0.077 ms, BEAM=3's pick; cuDNN 0.061 ms)
    if (r := next((i for i, a in enumerate(info.axes) if a.type is AxisType.REDUCE and a.origin != k_id and 1 < a.size <= 4), None)) is not None:
      info = _try(info, Opt(OptOps.UNROLL, r, info.axes[r].size), ren)
  return info

def gpu_row_reduce_opts(ast: UOp, ren) -> list[Opt] | None:
  """GPU opts for a long reduction along memory (row sums, softmax's max and sum): a block per output whose threads read 16-byte
  vectors side by side (UNROLL 4 gives the vector lanes, GROUP the threads: coalesced float4 loads), each folding its share in a
  register before the block folds the partials through shared memory. None when the kernel is not such a reduction (its
  reduced loads don't run along memory, one also runs along the last parallel axis as in a matmul, or the reduction is short)."""
  if not (ren.has_local and getattr(ren, "has_shared", False)): return None
  info = initial_info(ast)
  glb, red = _axes(info, AxisType.GLOBAL), _axes(info, AxisType.REDUCE)
  if not red or (size := info.axes[red[-1]].size) < 256: return None
  r = info.axes[red[-1]].rng
  loads = [ix for u in ast.toposort() if u.op is Ops.LOAD and u.src[0].op is Ops.INDEX and r in (ix := u.src[0].src[1]).toposort()]
  if not loads or not all(_unit_stride(ix, r) for ix in loads): return None
  if glb and any(_unit_stride(ix, info.axes[glb[-1]].rng) for ix in loads): return None
  outputs = 1
  for i in glb: outputs *= info.axes[i].size
  vec = next((v for v in (4, 2) if size % v == 0), 1)
  if vec > 1: info = _try(info, Opt(OptOps.UNROLL, red[-1], vec), ren)
  n = info.axes[red[-1]].size
  # a warp per output: each step reads 512 contiguous bytes, and the first thread folds only 32 partials (that fold is serial:
  # on the H100, 64/128/256 threads per row ran 1.07x/1.05x/1.7x slower than 32 on a 4096x8192 row sum); with too few outputs
  # to fill the GPU, more threads per output, each still reading at least 4 vectors
  for amt in ((32,) if outputs >= 1024 else (256, 128, 64, 32)):
    if n % amt == 0 and (n // amt >= 4 or amt == 32) and (new := _try(info, Opt(OptOps.GROUP, red[-1], amt), ren)) is not info:
      return list(new.opts)
  return None

def hand_coded_optimizations(ast: UOp, ren) -> list[Opt]:
  """Opts for `ast` on `ren`: tensor cores where they fit, register tiles via UPCAST, UNROLL of short reduce loops, and LOCAL/GROUP
  on GPUs."""
  info = initial_info(ast)
  if (tc := tensor_core_opts(ast, info, ren)) is not None: return list(tc.opts)
  glb, red = _axes(info, AxisType.GLOBAL), _axes(info, AxisType.REDUCE)
  outputs = 1
  for i in glb: outputs *= info.axes[i].size
  if ren.has_local and red and outputs < 2048 and info.axes[red[0]].size >= 256:
    # few outputs, long reductions: spread each reduction over a workgroup
    for amt in (256, 128, 64, 32, 16):
      if (new := _try(info, Opt(OptOps.GROUPTOP, red[0], amt), ren)) is not info: info = new; break  # noqa: E702
  if not ren.has_local: return _cpu_opts(ast, info, ren)
  if (rows := gpu_row_reduce_opts(ast, ren)) is not None: return rows
  # GPU register tiling: upcast up to two parallel axes (the last ones first) when the kernel reduces, one otherwise
  for i in list(reversed(glb))[:2 if red else 1]:
    size = info.axes[i].size
    for amt in ((4,) if red else (4, 2)):
      if size % amt == 0 and size > amt: info = _try(info, Opt(OptOps.UPCAST, i, amt), ren); break  # noqa: E702
  red = _axes(info, AxisType.REDUCE)
  if red and info.axes[red[-1]].size % 4 == 0 and info.axes[red[-1]].size <= 4096:
    info = _try(info, Opt(OptOps.UNROLL, red[-1], 4), ren)
  if ren.has_local and not info.nolocals:
    glb = _axes(info, AxisType.GLOBAL)
    budget = 256
    for i in reversed(glb):
      size = info.axes[i].size
      # without a reduction a block is one strip of the innermost axis (up to 256 threads: 32-thread blocks leave half of an SM's
      # thread slots empty, since it holds at most 32 blocks); with one, a 2-D tile of outputs shares the loads
      for amt in ((256, 128, 64, 32, 16, 8, 4, 2) if not red else (32, 16, 8, 4, 2)):
        if size % amt == 0 and amt <= budget and size >= amt:
          new = _try(info, Opt(OptOps.LOCAL, i, amt), ren)
          if new is not info: info, budget = new, budget // amt; break  # noqa: E702
      if budget < 2: break
  return list(info.opts)

def _cpu_opts(ast: UOp, info: KernelInfo, ren) -> list[Opt]:
  """CPU: the last parallel axis becomes SIMD lanes (16 floats fill an AVX-512 register, two AVX2 ones); with a reduction, a
  second axis is upcast too, so each loaded value feeds several accumulators (a register tile, as in a BLAS kernel).
  The lowering turns into lanes the upcast axis that makes the stores contiguous, else the one most loads walk along; the tiles
  below are chosen so that it picks the lanes meant here."""
  glb, red = _axes(info, AxisType.GLOBAL), _axes(info, AxisType.REDUCE)
  mem = [u for u in ast.toposort() if u.op in (Ops.LOAD, Ops.STORE) and u.src[0].op is Ops.INDEX]
  loads, stores = [u.src[0].src[1] for u in mem if u.op is Ops.LOAD], [u.src[0].src[1] for u in mem if u.op is Ops.STORE]
  unit = lambda r, ixs: any(_unit_stride(ix, r) for ix in ixs)  # noqa: E731
  rng = {i: info.axes[i].rng for i in glb + red}  # the kernel's own ranges (opts split axes into new ones)
  # the reduction runs along memory when its biggest operand does (a batch of labels or row statistics read along it doesn't count)
  along = _biggest_loads(mem, rng[red[-1]]) if red else []
  if red and not (glb and unit(rng[glb[-1]], loads)) and along and all(_unit_stride(ix, rng[red[-1]]) for ix in along):
    # a reduction along memory (row sums, x @ w.T): SIMD lanes over the reduce axis, and a tile of 4 outputs along an axis whose
    # stores are not contiguous (one that is would take the lanes, and the loads along the reduction would become gathers)
    for amt in (16, 8, 4):
      if info.axes[red[-1]].size % amt == 0 and (new := _try(info, Opt(OptOps.UNROLL, red[-1], amt), ren)) is not info:
        info = new
        break
    for ax in reversed(glb):
      if not unit(rng[ax], stores) and info.axes[ax].size % 4 == 0 and info.axes[ax].size > 4:
        info = _try(info, Opt(OptOps.UPCAST, ax, 4), ren)
        break
    return list(info.opts)
  if red and len(glb) > 1 and (tile := _lanes_where_work_varies(ast, info, ren, glb, mem)) is not None: return tile
  if glb:
    last, lanes = glb[-1], False
    for amt in (16, 8, 4):
      if info.axes[last].size % amt == 0 and (new := _try(info, Opt(OptOps.UPCAST, last, amt), ren)) is not info:
        info, lanes = new, True
        break
    if red and len(glb) > 1:
      # an outer-product reduction: lanes along the last axis and a tile along the first. Work in the loop that doesn't depend on
      # the last axis (a fused softmax gradient or ReLU, say) runs once per lane group: when there is some, the tile grows along
      # the last axis instead (all of it when it is short and took no lanes), so that work runs once per 64-128 outputs
      wide = False
      if _computes_without(ast, rng[last]):
        for amt in (8, 4, 2) if lanes else (info.axes[last].size,) if info.axes[last].size <= 32 else ():
          if info.axes[last].size % amt == 0 and (new := _try(info, Opt(OptOps.UPCAST, last, amt), ren)) is not info:
            info, wide = new, lanes
            break
      for amt in (2,) if wide else (8, 4, 2):
        if info.axes[glb[0]].size % amt == 0 and info.axes[glb[0]].size >= 2 * amt:
          if (new := _try(info, Opt(OptOps.UPCAST, glb[0], amt), ren)) is not info: info = new; break  # noqa: E702
  red = _axes(info, AxisType.REDUCE)
  if red and not glb and info.axes[red[-1]].size % 4 == 0: info = _try(info, Opt(OptOps.UNROLL, red[-1], 4), ren)
  return list(info.opts)

def _lanes_where_work_varies(ast: UOp, info: KernelInfo, ren, glb: list[int], mem: list[UOp]) -> list[Opt] | None:
  """An outer-product reduction whose loop computes something (a ReLU mask, say) that varies along the first parallel axis but
  not the last: lanes along the first axis (16; every load that depends on it is contiguous along it, so no gathers) vectorize
  that work, and a tile along the last one shares it. The tile's size is not a vector width, so the lowering keeps the lanes here
  though the last axis makes stores contiguous. None when the kernel is not of this kind or the sizes don't divide."""
  first, last = info.axes[glb[0]], info.axes[glb[-1]]
  if first.size % 16 or not _computes_without(ast, last.rng): return None
  loads = [u.src[0].src[1] for u in mem if u.op is Ops.LOAD and first.rng in _index_ranges(u.src[0].src[1])]
  if not loads or not all(_unit_stride(ix, first.rng) for ix in loads): return None
  amt = next((a for a in (14, 12, 10, 7, 6, 5, 3) if last.size % a == 0), None)
  if amt is None or (new := _try(info, Opt(OptOps.UPCAST, glb[0], 16), ren)) is info: return None
  return list(_try(new, Opt(OptOps.UPCAST, glb[-1], amt), ren).opts)

def _biggest_loads(mem: list[UOp], r: UOp) -> list[UOp]:
  """The indices of the loads from the biggest buffer read at positions that depend on range `r`."""
  ld = [(u.src[0].src[0].dtype.size, u.src[0].src[1]) for u in mem if u.op is Ops.LOAD and r in _index_ranges(u.src[0].src[1])]
  return [ix for n, ix in ld if n == max(n for n, _ in ld)] if ld else []

_COSTLY = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT, Ops.RECIP, Ops.FDIV, Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.WHERE}

@functools.lru_cache(maxsize=4096)
def _index_ranges(idx: UOp) -> frozenset[UOp]:
  """The ranges an index depends on once simplified (a reshape's `(r1*512 + r0) % 512` depends on r0 only)."""
  from tg_uop.symbolic import symbolic
  from tg_uop.rewrite import graph_rewrite
  return frozenset(u for u in graph_rewrite(idx, symbolic).toposort() if u.op is Ops.RANGE)

@functools.lru_cache(maxsize=1024)
def _computes_without(ast: UOp, rng: UOp) -> bool:
  """Does a reduction's body compute (beyond loads and multiply-adds) a value that varies inside the kernel but not with `rng`?"""
  deps: dict[UOp, frozenset[UOp]] = {}
  body: set[UOp] = set()
  for u in ast.toposort():
    deps[u] = frozenset([u]) if u.op is Ops.RANGE else frozenset().union(*(deps[s] for s in u.src))
    # an index that names rng may not depend on it once simplified: only those pay for the simplification
    if u.op is Ops.INDEX and rng in deps[u]: deps[u] = _index_ranges(u.src[1]).union(*(deps[s] for s in u.src[2:]))
    if u.op is Ops.REDUCE: body.add(u.src[0])
  inside = {v for b in body for v in b.toposort()}
  return any(v.op in _COSTLY and rng not in deps[v] and deps[v] for v in inside)
