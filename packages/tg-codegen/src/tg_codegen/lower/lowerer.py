"""Lowering a kernel with its `KernelInfo` into a graph a renderer can take once linearized.

Steps, each a small function: rebuild the kernel over the split ranges (with PADTO gates); expand UNROLL and UPCAST ranges by
substitution; map ranges to the device's grid (SPECIAL gidx/lidx) or keep them as loops; turn REDUCEs into accumulators (and
local-memory reductions for GROUP); simplify. Ordering between accesses to accumulators and local memory is explicit: a LOAD or
STORE carries the STORE/END/BARRIER it must follow as a void source, and RANGE sources that mark the loops it belongs to (the
linearizer uses them for placement and removes them)."""
from __future__ import annotations
import functools, itertools
from dataclasses import dataclass, replace
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_uop.rewrite import UPat, PatternMatcher
from tg_uop.helpers import prod
from tg_codegen.kernel import KernelInfo, AxisType, reduce_identity
from tg_codegen.lower.tensor_core import accumulate, apply_tc
from tg_codegen.lower.stage import stage_operands
from tg_codegen.lower.wgmma import wgmma_applies, apply_wgmma, after_reduces

@dataclass(frozen=True)
class Lowered:
  """A lowered kernel: its sink, launch dims, and the loop order the linearizer nests ranges in."""
  sink: UOp
  global_size: tuple[int, int, int]
  local_size: tuple[int, int, int]
  range_order: tuple[UOp, ...]

def scope_of(topo) -> dict[UOp, frozenset]:
  """For each UOp, the loops (RANGEs) it lies inside: the ranges it depends on that no END between them has closed."""
  scope: dict[UOp, frozenset] = {}
  for u in topo:
    s = frozenset().union(*(scope[x] for x in u.src)) if u.src else frozenset()
    if u.op is Ops.RANGE: s = s | {u}
    elif u.op is Ops.END: s = s - {x for x in u.src if x.op is Ops.RANGE}
    scope[u] = s
  return scope

def _fold(op: Ops, vals: list[UOp]) -> UOp:
  out = vals[0]
  for v in vals[1:]: out = out.alu(op, v)
  return out

def rebuild(ast: UOp, info: KernelInfo) -> UOp:
  """The kernel over the ranges of `info`: originals substituted, REDUCE/END over the new ranges, PADTO gates applied."""
  subst = dict(info.subst)
  new_of = {o: [a.rng for a in info.axes if a.origin == o] for o, _ in info.subst}
  pads = {c: {r for r in c.toposort() if r.op is Ops.RANGE} for c in info.padded}
  valid = lambda u: [c for c, rs in pads.items() if rs & set(u.toposort())]  # noqa: E731
  new: dict[UOp, UOp] = {}
  for u in ast.toposort():
    if u.op is Ops.RANGE:
      new[u] = subst[u.arg]
      continue
    src = [new[s] for s in u.src]
    if u.op is Ops.REDUCE:
      rr = [r for o in u.src[1:] for r in new_of[o.arg]]
      x = src[0]
      if conds := [c for c in valid(x) if any(r in c.toposort() for r in rr)]:
        x = _fold(Ops.AND, conds).where(x, x.const_like(reduce_identity(u.arg, x.dtype)))
      new[u] = UOp(Ops.REDUCE, u.dtype, (x, *rr), u.arg)
    elif u.op is Ops.END:
      vals = [s for s, o in zip(src, u.src) if o.op is not Ops.RANGE]
      rr = [r for o in u.src if o.op is Ops.RANGE for r in new_of[o.arg]]
      new[u] = UOp(Ops.END, dtypes.void, (*vals, *rr))
    elif u.op is Ops.INDEX and u.src[0].op is Ops.DEFINE_GLOBAL and pads and (conds := valid(src[1])):
      gate = _fold(Ops.AND, conds + ([src[2]] if len(src) > 2 else []))
      new[u] = UOp(Ops.INDEX, u.dtype, (src[0], src[1], gate))
    elif u.op is Ops.LOAD and len(src[0].src) == 3 and len(u.src[0].src) == 2:
      new[u] = UOp(Ops.LOAD, u.dtype, (src[0], UOp.const(u.dtype, 0), *src[1:]))  # newly gated: padded reads give 0
    else: new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
  return new[ast]

def _simplify_indices(sink: UOp) -> UOp:
  """The kernel with its addresses and gates simplified, before UNROLL/UPCAST copy them once per lane: the schedule's index
  arithmetic (nested views: `((x*512+y)//512)%784`...) is simplified once here, not in every copy."""
  from tg_uop.symbolic import symbolic
  from tg_uop.rewrite import graph_rewrite
  idxs = [u for u in sink.toposort() if u.op is Ops.INDEX and len(u.src) > 1]
  exprs = list(dict.fromkeys(s for u in idxs for s in u.src[1:]))
  simple = dict(zip(exprs, graph_rewrite(UOp(Ops.SINK, dtypes.void, tuple(exprs)), symbolic).src)) if exprs else {}  # shared parts once
  sub: dict[UOp, UOp] = {}
  for u in idxs:
    src = u.src[:1] + tuple(simple[s] for s in u.src[1:])
    if any(a is not b for a, b in zip(src, u.src)): sub[u] = u.replace(src=src)
  return sink.substitute(sub)

def _combos(rngs: list[UOp]):
  for vals in itertools.product(*(range(r.src[0].arg) for r in rngs)): yield {r: r.const_like(v) for r, v in zip(rngs, vals)}

def _copies(roots: list[UOp], rngs: list[UOp]) -> list[UOp]:
  """`[x.substitute(c) for c in _combos(rngs) for x in roots]`, walking the graph once: only the part that depends on `rngs` is
  rebuilt for each combination (an UPCAST END copies its stores once per lane; each substitute walked the whole kernel)."""
  dep: set[UOp] = set(rngs)
  part: list[UOp] = []  # the UOps that depend on the ranges, in toposort order
  for u in list(UOp(Ops.SINK, dtypes.void, tuple(roots)).toposort())[:-1]:  # without that SINK
    if u not in dep and any(s in dep for s in u.src):
      dep.add(u)
      part.append(u)
  out: list[UOp] = []
  for c in _combos(rngs):
    new = dict(c)
    for u in part: new[u] = UOp(u.op, u.dtype, tuple(new.get(s, s) for s in u.src), u.arg)
    out.extend(new.get(x, x) for x in roots)
  return out

def vector_axis(sink: UOp, info: KernelInfo, ren) -> UOp | None:
  """The UPCAST range to turn into vector lanes: of a width the renderer's vectors take, preferring one that makes the stores,
  then the most loads, contiguous; None if there is none."""
  if not getattr(ren, "supports_float4", False): return None
  widths = (2, 4, 8, 16) if getattr(ren, "device", None) == "CPU" else (2, 4)
  ups = [a.rng for a in info.axes if a.type in (AxisType.UPCAST, AxisType.UNROLL) and a.size in widths]
  if not ups: return None
  mem = [u for u in sink.toposort() if u.op in (Ops.LOAD, Ops.STORE) and u.src[0].op is Ops.INDEX and len(u.src[0].src) == 2]
  def score(r: UOp) -> tuple[int, int, int]:
    n = r.src[0].arg
    ok = [u for u in mem if _unit_stride(u.src[0].src[1], r)]
    return (sum(u.op is Ops.STORE for u in ok), len(ok), n)
  return max(reversed(ups), key=score)

def _lanes(idx: UOp, r: UOp, n: int) -> list[UOp]:
  # one copy of `idx` per lane (simplified later, with the whole kernel)
  return [idx.substitute({r: r.const_like(k)}) for k in range(n)]

def _terms(u: UOp) -> list[UOp]: return [t for s in u.src for t in _terms(s)] if u.op is Ops.ADD else [u]

@functools.lru_cache(maxsize=4096)
def _unit_stride(idx: UOp, r: UOp) -> bool:
  """`idx` is (something without r) + r: consecutive lanes of r address consecutive elements."""
  from tg_uop.symbolic import symbolic
  from tg_uop.rewrite import graph_rewrite
  rterms = [t for t in _terms(graph_rewrite(idx, symbolic)) if r in t.toposort()]
  return len(rterms) == 1 and rterms[0] is r

def vectorize(sink: UOp, r: UOp) -> UOp:
  """Turn range `r` (n lanes) into vector lanes: values depending on it become vectors; memory accesses whose lanes are
  contiguous become one vector LOAD/STORE, others a gather (VECTORIZE of loads) or a scatter (one STORE per lane)."""
  n = r.src[0].arg
  topo = list(sink.toposort())
  dep: set[UOp] = set()
  for u in topo:
    if u is r or any(s in dep for s in u.src): dep.add(u)
  new: dict[UOp, UOp] = {}
  def ix_free(ix: UOp) -> bool: return ix not in dep
  def vec(s: UOp) -> UOp: return new[s] if new[s].dtype.count == n else new[s].broadcast(n)
  for u in topo:
    # a value that depends on r only through a reduction over r's lanes is scalar again: rebuild it as a scalar
    scalar_again = u in dep and u is not r and all(new[s].dtype.count == 1 for s in u.src) and \
      (u.op not in (Ops.LOAD, Ops.STORE, Ops.INDEX) or ix_free(u.src[0] if u.op is not Ops.INDEX else u))
    if u not in dep or scalar_again:
      src = tuple(new[s] for s in u.src)
      new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, src, u.arg)
    elif u is r: new[u] = UOp(Ops.VCONST, r.dtype.vec(n), (), tuple(range(n)))
    elif u.op is Ops.INDEX: new[u] = u  # placeholder: LOAD and STORE rebuild their INDEX lane by lane
    elif u.op is Ops.LOAD:
      ix = u.src[0]
      rest = tuple(new[s] for s in u.src[1:])
      if len(ix.src) == 2 and _unit_stride(ix.src[1], r):
        new[u] = UOp(Ops.LOAD, u.dtype.vec(n), (_lanes(ix, r, 1)[0], *rest))
      else:
        lanes = _lanes(ix, r, n)
        lane_src = lambda o, k: new[o].gep(k) if o in dep and new[o].dtype.count == n else new[o]  # noqa: E731
        new[u] = UOp.vectorize(*[UOp(Ops.LOAD, u.dtype, (lx, *(lane_src(o, k) for o in u.src[1:]))) for k, lx in enumerate(lanes)])
    elif u.op is Ops.STORE and ix_free(u.src[0]):  # the address doesn't depend on r: a value reduced over r's lanes
      new[u] = UOp(Ops.STORE, dtypes.void, tuple(new[s] for s in u.src))
    elif u.op is Ops.STORE:
      ix, val = u.src[0], vec(u.src[1])
      lanes = _lanes(ix, r, n)
      rest = tuple(new[s] for s in u.src[2:])
      if len(ix.src) == 2 and _unit_stride(ix.src[1], r):
        new[u] = UOp(Ops.STORE, dtypes.void, (lanes[0], val, *rest))
      else: new[u] = UOp(Ops.SINK, dtypes.void, tuple(UOp(Ops.STORE, dtypes.void, (lx, val.gep(k), *rest)) for k, lx in enumerate(lanes)))
    elif u.op is Ops.END:  # an END left without loops (r was its only one) is just its stores
      src = tuple(new[s] for s in u.src if s is not r)
      new[u] = UOp(Ops.END, dtypes.void, src) if any(s.op is Ops.RANGE for s in src) else src[0] if len(src) == 1 else UOp(Ops.SINK, dtypes.void, src)
    elif u.op is Ops.REDUCE and r in u.src[1:]:  # r is an unrolled reduce axis: reduce in n lanes, then fold the lanes once
      rest = [new[s] for s in u.src[1:] if s is not r]
      inner = UOp(Ops.REDUCE, u.dtype.vec(n), (vec(u.src[0]), *rest), u.arg) if rest else vec(u.src[0])
      new[u] = _fold(u.arg, [inner.gep(k) for k in range(n)])
    elif u.op is Ops.REDUCE: new[u] = UOp(Ops.REDUCE, u.dtype.vec(n), (vec(u.src[0]), *(new[s] for s in u.src[1:])), u.arg)
    elif u.op in GroupOp.ALU or u.op in (Ops.CAST, Ops.BITCAST):
      dt = u.dtype.scalar().vec(n)
      new[u] = UOp(u.op, dt, tuple(vec(s) for s in u.src), u.arg)
    elif u.op is Ops.SINK: new[u] = UOp(Ops.SINK, dtypes.void, tuple(new[s] for s in u.src), u.arg)
    else: raise ValueError(f"can't vectorize {u.op.name} over an upcast axis")
  out = new[sink]
  return UOp(Ops.SINK, dtypes.void, tuple(x for s in out.src for x in (s.src if s.op is Ops.SINK else (s,))), out.arg)

def expand(sink: UOp, info: KernelInfo) -> UOp:
  """Unroll UNROLL ranges inside REDUCEs and UPCAST ranges at their ENDs, by substituting each value of the range."""
  unroll = {a.rng for a in info.axes if a.type is AxisType.UNROLL}
  upcast = {a.rng for a in info.axes if a.type is AxisType.UPCAST}
  new: dict[UOp, UOp] = {}
  for u in sink.toposort():
    src = [new[s] for s in u.src]
    if u.op is Ops.REDUCE and (ur := [r for r in src[1:] if r in unroll]):
      rest = [r for r in src[1:] if r not in unroll]
      x = _fold(u.arg, _copies([src[0]], ur))
      new[u] = UOp(Ops.REDUCE, u.dtype, (x, *rest), u.arg) if rest else x
    elif u.op is Ops.END and (up := [r for r in src if r in upcast]):
      vals = [s for s in src if s.op is not Ops.RANGE]
      rest = [r for r in src if r.op is Ops.RANGE and r not in upcast]
      xs = _copies(vals, up)
      new[u] = UOp(Ops.END, dtypes.void, (*xs, *rest)) if rest else UOp(Ops.SINK, dtypes.void, tuple(xs))
    else: new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
  out = new[sink]
  # flatten groups of stores that lost all their loops into the kernel's SINK
  return UOp(Ops.SINK, dtypes.void, tuple(x for s in out.src for x in (s.src if s.op is Ops.SINK else (s,))), out.arg)

def map_grid(sink: UOp, info: KernelInfo, ren) -> tuple[UOp, tuple, tuple]:
  """Turn parallel ranges into SPECIALs: on GPUs globals become gidx and locals lidx; on the CPU the first global becomes gidx0
  (split across cores) and the rest stay loops."""
  glb = [a for a in info.axes if a.type is AxisType.GLOBAL]
  # a tensor core's lanes go last, so they become lidx0 (threadIdx.x): a warp is 32 consecutive threads
  loc = [a for a in info.axes if a.type in (AxisType.LOCAL, AxisType.GROUP_REDUCE)] + [a for a in info.axes if a.type is AxisType.TC_LANE]
  sub: dict[UOp, UOp] = {}
  gs, ls = [1, 1, 1], [1, 1, 1]
  if not ren.has_local:
    if glb:
      end = glb[0].rng.src[0]  # may be symbolic: the launch size is then computed from the variables at run time
      sub[glb[0].rng] = UOp.special(end, "gidx0", glb[0].rng.dtype)
      gs[0] = end.arg if end.op is Ops.CONST else end
  else:
    for axes, prefix, dims in ((glb, "gidx", gs), (loc, "lidx", ls)):
      axes = list(reversed(axes))  # the innermost (last) axis maps to x, for coalesced accesses
      if len(axes) > 3:  # fold the outer ones into the third dimension
        keep, merged = axes[:2], axes[2:]
        total = prod(a.size for a in merged)
        sp = UOp.special(total, f"{prefix}2", merged[0].rng.dtype)
        div = total
        for a in reversed(merged):
          div //= a.size
          sub[a.rng] = (sp // div) % a.size if div > 1 else sp % a.size
        dims[2] = total
        axes = keep
      for d, a in enumerate(axes):
        end = a.rng.src[0]
        if prefix == "lidx" and end.op is not Ops.CONST: raise ValueError("a local (workgroup) axis needs a constant size")
        sub[a.rng] = UOp.special(end, f"{prefix}{d}", a.rng.dtype)
        dims[d] = end.arg if end.op is Ops.CONST else end
    lmax = getattr(ren, "local_max", None)
    if lmax and any(isinstance(x, int) and x > m for x, m in zip(ls, lmax)):
      from tg_codegen.kernel import KernelOptError
      raise KernelOptError(f"local size {tuple(ls)} exceeds the device limit {tuple(lmax)} per dimension: use smaller LOCAL/GROUP opts")
    gmax = getattr(ren, "global_max", None)
    if gmax and any(isinstance(g, int) and g > m for g, m in zip(gs, gmax)):
      raise ValueError(f"global size {tuple(gs)} exceeds the device limit {tuple(gmax)}: apply LOCAL/UPCAST opts to shrink the grid")
  out = sink.substitute(sub)
  # ENDs no longer close ranges that became SPECIALs
  fix: dict[UOp, UOp] = {}
  for u in out.toposort():
    src = [fix[s] for s in u.src]
    if u.op is Ops.END and any(s.op is Ops.SPECIAL for s in src):
      vals = [s for s in src if s.op not in (Ops.RANGE, Ops.SPECIAL)]
      rr = [s for s in src if s.op is Ops.RANGE]
      fix[u] = UOp(Ops.END, dtypes.void, (*vals, *rr)) if rr else (vals[0] if len(vals) == 1 else UOp(Ops.SINK, dtypes.void, tuple(vals)))
    else: fix[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
  out = fix[out]
  out = UOp(Ops.SINK, dtypes.void, tuple(x for s in out.src for x in (s.src if s.op is Ops.SINK else (s,))), out.arg)
  return out, tuple(gs), tuple(ls)

def lower_reduces(sink: UOp) -> UOp:
  """REDUCE over loops becomes an accumulator in a register; REDUCE over lidx (GROUP) a reduction through local memory."""
  regs, locs = itertools.count(), itertools.count()
  new: dict[UOp, UOp] = {}
  group_lidx: list[UOp] = []
  topo = list(sink.toposort())
  all_lidx = sorted({u for u in topo if u.op is Ops.SPECIAL and u.arg.startswith("lidx")}, key=lambda u: u.arg)
  for u in topo:
    src = [new[s] for s in u.src]
    if u.op is not Ops.REDUCE:
      new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
      continue
    x, rr = src[0], src[1:]
    loops = [r for r in rr if r.op is Ops.RANGE]
    grp = [r for r in rr if r.op is Ops.SPECIAL]
    ident = x.const_like(reduce_identity(u.arg, x.dtype))
    val = x
    if loops:
      # memory holds scalars: a vector value is n consecutive elements, read and written with one vector access
      acc = UOp(Ops.DEFINE_REG, x.dtype.scalar().ptr(x.dtype.count, "reg"), (), next(regs))
      idx = acc.index(UOp.const(dtypes.index, 0))
      outer = sorted(scope_of(x.toposort())[x] - set(loops), key=lambda r: r.arg)
      init = UOp(Ops.STORE, dtypes.void, (idx, ident, *outer))
      cur = UOp(Ops.LOAD, x.dtype, (idx, init, *loops))
      upd = UOp(Ops.STORE, dtypes.void, (idx, accumulate(cur, x) if u.arg is Ops.ADD and x.dtype.count > 1 else cur.alu(u.arg, x)))
      val = UOp(Ops.LOAD, x.dtype, (idx, UOp(Ops.END, dtypes.void, (upd, *loops))))
    if grp:
      size = prod(g.src[0].arg for g in grp)
      lid = grp[0]
      for g in grp[1:]: lid = lid * g.src[0].arg + g
      # other local threads of the block reduce their own values: each gets its own slice of local memory
      others = [o for o in all_lidx if o not in grp]
      base = UOp.const(dtypes.index, 0)
      for o in others: base = base * o.src[0].arg + o
      w = x.dtype.count
      smem = UOp(Ops.DEFINE_LOCAL, x.dtype.scalar().ptr(size * prod(o.src[0].arg for o in others) * w, "local"), (), next(locs))
      bar = UOp(Ops.BARRIER, dtypes.void, (UOp(Ops.STORE, dtypes.void, (smem.index((base * size + lid) * w), val)),))
      # only the first thread of the group reads the partial results back (the others' loads are gated off: no memory traffic)
      first = _fold(Ops.AND, [g.eq(0) for g in grp])
      val = _fold(u.arg, [UOp(Ops.LOAD, x.dtype, (smem.index((base * size + k) * w, gate=first), ident, bar)) for k in range(size)])
      group_lidx.extend(g for g in grp if g not in group_lidx)
    new[u] = val
  out = new[sink]
  if group_lidx:  # after a GROUP reduce every thread holds the result: only the first thread of the group stores it
    first = _fold(Ops.AND, [g.eq(0) for g in group_lidx])
    gate: dict[UOp, UOp] = {}
    for u in out.toposort():
      src = [gate[s] for s in u.src]
      if u.op is Ops.STORE and u.src[0].op is Ops.INDEX and u.src[0].src[0].op is Ops.DEFINE_GLOBAL:
        ix = src[0]
        g = first if len(ix.src) == 2 else ix.src[2] & first
        gate[u] = UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, ix.dtype, (ix.src[0], ix.src[1], g)), *src[1:]))
      else: gate[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, tuple(src), u.arg)
    out = gate[out]
  return out

def _splice_groups(u: UOp) -> UOp | None:
  # groups of stores (a SINK inside the graph, left where all loops of an END folded away) spliced into their user
  if not any(s.op is Ops.SINK for s in u.src): return None
  return u.replace(src=tuple(x for s in u.src for x in (s.src if s.op is Ops.SINK else (s,))))
splice_groups = PatternMatcher([(UPat((Ops.END, Ops.SINK), name="u"), _splice_groups)], name="splice_groups")

@functools.lru_cache(maxsize=None)
def _final_rules(supported: frozenset, limits: frozenset = frozenset()):
  # built once per set of native ops (and their dtype limits): assembling a PatternMatcher indexes every rule, too slow to redo per kernel
  from tg_uop.symbolic import symbolic
  from tg_codegen.lower.decompose import decompositions_for
  return symbolic + decompositions_for(supported, limits) + splice_groups

def lower(ast: UOp, info: KernelInfo, ren) -> Lowered:
  """The kernel `ast` with the choices of `info`, lowered for renderer `ren`."""
  from tg_uop.rewrite import graph_rewrite
  from tg_codegen.lower.decompose import supported_ops, native_dtypes
  sink = _simplify_indices(rebuild(ast, info))
  plan = None
  if info.tc is not None:
    sink = apply_wgmma(sink, info, plan, ren) if (plan := wgmma_applies(sink, info, ren)) is not None else \
      apply_tc(stage_operands(sink, info, ren), info, ren)
  elif (vr := vector_axis(sink, info, ren)) is not None:
    sink = vectorize(sink, vr)
    info = replace(info, axes=tuple(a for a in info.axes if a.rng is not vr))
  sink = expand(sink, info)
  sink, gs, ls = map_grid(sink, info, ren)
  sink = lower_reduces(sink)
  if plan is not None: sink = after_reduces(sink)
  smem = sum(u.dtype.size * u.dtype.base.itemsize for u in sink.toposort() if u.op is Ops.DEFINE_LOCAL)
  # (a wgmma pipeline sizes its stages to the dynamic shared memory; everything else stays within the static limit)
  limit = getattr(ren, "shared_max_dynamic", None) if plan is not None else None
  if (limit := limit or getattr(ren, "shared_max", None)) and smem > limit:
    from tg_codegen.kernel import KernelOptError
    raise KernelOptError(f"opts {list(info.opts)} need {smem} bytes of local memory, more than the {limit} {type(ren).__name__} allows: "
                         "use a smaller GROUP or fewer upcasts")
  sink = graph_rewrite(sink, _final_rules(frozenset(supported_ops(ren)), native_dtypes(ren)))
  order = tuple(a.rng for a in info.axes if a.type in (AxisType.GLOBAL, AxisType.REDUCE))
  return Lowered(sink, gs, ls, order)
