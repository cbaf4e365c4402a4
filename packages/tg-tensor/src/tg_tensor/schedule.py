"""The scheduler: a tensor-level graph becomes an ordered list of kernels (and copies).

Which values are materialized is decided by the rules in `materialize_points` (read them there): the outputs, CONTIGUOUS, COPY,
and a reduction whose result is broadcast back (EXPAND) or reduced again. Everything else is recomputed inside the kernel that
uses it (elementwise work is cheaper to recompute than to store and load). Each kernel is a SINK of
`END(STORE(INDEX(out, idx), value), *ranges)`; movement ops become index arithmetic, PAD becomes gated loads, and each
reduction gets fresh ranges (DESIGN.md point 1)."""
from __future__ import annotations
import itertools, weakref
from dataclasses import dataclass, field
from tg_uop.dtype import dtypes
from tg_uop.helpers import prod
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_codegen.kernel import KernelInfo
from tg_tensor.buffers import new_buffer, buffer_device

@dataclass
class ScheduleItem:
  """One step: a kernel (`ast`, with `bufs` in DEFINE_GLOBAL order, buffer 0 the output) or a copy (`ast` is None, bufs = (dst, src))."""
  ast: UOp | None
  bufs: tuple[UOp, ...]
  device: str
  meta: dict = field(default_factory=dict)

class ScheduleError(RuntimeError): pass

def _base(u: UOp) -> UOp | None:
  """The BUFFER `u` is a plain contiguous view of (only RESHAPEs in between), else None."""
  while u.op is Ops.RESHAPE: u = u.src[0]
  return u if u.op is Ops.BUFFER else None

def materialize_points(outs: list[UOp]) -> set[UOp]:
  """The tensor-level UOps that get their own buffer. The rules, in order:
  1. every requested output that is not already a buffer;
  2. CONTIGUOUS (the user asked for it) and COPY (data moves between devices);
  3. a REDUCE_AXIS whose result is broadcast back with EXPAND: fusing it would recompute the whole reduction once per element
     of the broadcast (a reduction feeding another reduction directly is fused: it runs once per outer iteration, no waste);
  4. ASSIGN targets are written in place."""
  topo = UOp.sink(*outs).toposort()
  users: dict[UOp, list[UOp]] = {}
  for u in topo:
    for s in u.src: users.setdefault(s, []).append(u)
  out: set[UOp] = {u for u in outs if _base(u) is None}
  out |= {u for u in topo if u.op in (Ops.CONTIGUOUS, Ops.COPY, Ops.ASSIGN)}
  out |= {u.src[0] for u in topo if u.op is Ops.COPY and _base(u.src[0]) is None}  # a copy moves a buffer: compute its source first
  for u in topo:
    # a reduction over constants only has no device: it is recomputed by each kernel that reads it, on that kernel's device
    if u.op is not Ops.REDUCE_AXIS or not any(x.op is Ops.BUFFER for x in u.toposort()): continue
    # walk the consumers through elementwise and movement ops until a materialization point
    stack, seen = list(users.get(u, [])), set()
    while stack:
      v = stack.pop()
      if v in seen or v in out: continue
      seen.add(v)
      if v.op is Ops.EXPAND: out.add(u); break
      stack.extend(users.get(v, []))
  return out

class _KernelBuilder:
  """Builds one kernel's value graph: `emit(u, idx, gate)` is the value of tensor `u` at multi-index `idx`."""
  def __init__(self, realized: dict[UOp, UOp]):
    self.realized, self.globals, self.rng = realized, {}, itertools.count()
    self.memo: dict[tuple, UOp] = {}
  def glob(self, buf: UOp) -> UOp:
    if buf not in self.globals: self.globals[buf] = UOp(Ops.DEFINE_GLOBAL, buf.dtype.ptr(buf.arg[0]), (), len(self.globals))
    return self.globals[buf]
  def new_range(self, n: int) -> UOp: return UOp.range(n, next(self.rng))
  def load(self, buf: UOp, shape: tuple, idx: tuple, gate: UOp | None) -> UOp:
    lin = _linear(idx, shape)
    g = self.glob(buf)
    if gate is None: return g.index(lin).load()
    return UOp(Ops.LOAD, buf.dtype, (g.index(lin, gate=gate), UOp.const(buf.dtype, 0)))
  def emit(self, u: UOp, idx: tuple, gate: UOp | None = None) -> UOp:
    key = (u, idx, gate)
    if (r := self.memo.get(key)) is not None: return r
    self.memo[key] = r = self._emit(u, idx, gate)
    return r
  def _emit(self, u: UOp, idx: tuple, gate: UOp | None) -> UOp:
    if u in self.realized: return self.load(self.realized[u], u.shape, idx, gate)
    if u.op is Ops.BUFFER: return self.load(u, u.shape, idx, gate)
    if u.op is Ops.CONST: return u
    if u.op in (Ops.DETACH, Ops.CONTIGUOUS): return self.emit(u.src[0], idx, gate)
    if u.op is Ops.RESHAPE:
      lin = _linear(idx, u.shape)
      return self.emit(u.src[0], _unlinear(lin, u.src[0].shape), gate)
    if u.op is Ops.PERMUTE:
      inner = [None] * len(idx)
      for i, o in enumerate(u.arg): inner[o] = idx[i]
      return self.emit(u.src[0], tuple(inner), gate)
    if u.op is Ops.EXPAND:
      return self.emit(u.src[0], tuple(UOp.const(dtypes.index, 0) if s == 1 and d != 1 else i for i, s, d in zip(idx, u.src[0].shape, u.arg)), gate)
    if u.op is Ops.SHRINK: return self.emit(u.src[0], tuple(i + b if b else i for i, (b, _) in zip(idx, u.arg)), gate)
    if u.op is Ops.FLIP: return self.emit(u.src[0], tuple((s - 1) - i if f else i for i, s, f in zip(idx, u.shape, u.arg)), gate)
    if u.op is Ops.PAD:
      conds = []
      for i, (b, a), s in zip(idx, u.arg, u.src[0].shape):
        if b: conds.append(i >= b)
        if a: conds.append(i < b + s)
      valid = _and(conds)
      inner_gate = valid if gate is None else (gate & valid if valid is not None else gate)
      v = self.emit(u.src[0], tuple(i - b if b else i for i, (b, _) in zip(idx, u.arg)), inner_gate)
      return v if valid is None else valid.where(v, v.const_like(0))
    if u.op is Ops.REDUCE_AXIS:
      op, axes = u.arg
      full, it, rngs = [], iter(idx), []
      for ax, s in enumerate(u.src[0].shape):
        if ax in axes:
          rngs.append(self.new_range(s)); full.append(rngs[-1])
        else: full.append(next(it))
      return UOp(Ops.REDUCE, u.dtype, (self.emit(u.src[0], tuple(full), gate), *rngs), op)
    if u.op in GroupOp.ALU or u.op in (Ops.CAST, Ops.BITCAST):
      return UOp(u.op, u.dtype, tuple(self.emit(s, idx, gate) for s in u.src), u.arg)
    raise ScheduleError(f"the scheduler can't compute {u.op.name} inside a kernel")

def _and(conds: list[UOp]) -> UOp | None:
  out = None
  for c in conds: out = c if out is None else out & c
  return out

def _strides(shape: tuple) -> list[int]:
  st, acc = [], 1
  for s in reversed(shape): st.append(acc); acc *= s
  return list(reversed(st))

def _linear(idx: tuple, shape: tuple) -> UOp:
  out = UOp.const(dtypes.index, 0)
  for i, st, s in zip(idx, _strides(shape), shape):
    if s != 1: out = out + i * st
  return out

def _unlinear(lin: UOp, shape: tuple) -> tuple:
  return tuple(UOp.const(dtypes.index, 0) if s == 1 else (lin // st if st > 1 else lin) % s for st, s in zip(_strides(shape), shape))

def _device_of(u: UOp, realized: dict[UOp, UOp]) -> set[str]:
  """The devices of the buffers `u` reads (a realized value counts as its buffer; the graph behind it is not walked)."""
  devs: set[str] = set()
  stack, seen = [u], set()
  while stack:
    x = stack.pop()
    if x in seen: continue
    seen.add(x)
    if x in realized and x is not u: devs.add(buffer_device(realized[x]))
    elif x.op is Ops.BUFFER: devs.add(buffer_device(x))
    else: stack.extend(x.src)
  return devs

def _direct_reads(u: UOp, points: set[UOp]) -> tuple[set[UOp], set[UOp]]:
  """(the points and the BUFFERs that the kernel computing `u` reads directly, not through another point)."""
  pts, bufs, stack, seen = set(), set(), list(u.src), set()
  while stack:
    x = stack.pop()
    if x in seen: continue
    seen.add(x)
    if x in points: pts.add(x)
    elif x.op is Ops.BUFFER: bufs.add(x)
    else: stack.extend(x.src)
  return pts, bufs

def order_points(outs: list[UOp], points: set[UOp], stop: set[UOp] | None = None) -> list[UOp]:
  """The materialization points in an order that respects data flow (read after write) and lets every kernel that reads a
  buffer's old value run before an ASSIGN overwrites it (write after read). A cycle between the two is an error."""
  topo = [u for u in UOp.sink(*outs).toposort() if u in points]
  pos = {u: i for i, u in enumerate(topo)}
  reads = {u: _direct_reads(u, points | (stop or set())) for u in topo}
  deps: dict[UOp, set[UOp]] = {u: set(reads[u][0]) & points for u in topo}
  for a in topo:
    if a.op is not Ops.ASSIGN or (b := _base(a.src[0])) is None: continue
    for p in topo:
      if p is not a and b in reads[p][1]: deps[a].add(p)  # p reads b's old value: it runs before the assign
  out, done, state = [], set(), {}
  def visit(u: UOp, path: list[UOp]):
    if u in done: return
    if state.get(u) == "active":
      cyc = path[path.index(u):] + [u]
      raise ScheduleError("assign cycle: " + " -> ".join(f"{x.op.name}#{pos[x]}" for x in cyc) +
                          ": a value both reads a buffer's old contents and depends on its new ones; realize one of them first")
    state[u] = "active"
    for d in sorted(deps[u], key=pos.__getitem__): visit(d, path + [u])
    state[u] = "done"; done.add(u); out.append(u)  # noqa: E702
  for u in topo: visit(u, [])
  return out

def create_schedule(outs: list[UOp], default_device: str, realized: dict[UOp, UOp] | None = None) -> tuple[list[ScheduleItem], dict[UOp, UOp]]:
  """The steps computing `outs`, in order, and for each materialized UOp the BUFFER holding it (`realized` may hold values
  already computed, which are read instead of recomputed)."""
  realized = {} if realized is None else realized
  points = materialize_points(outs) - set(realized)
  items: list[ScheduleItem] = []
  for u in order_points(outs, points, set(realized)):
    if u.op is Ops.COPY:
      src = u.src[0]
      sbuf = realized[src] if src in realized else _base(src)
      if sbuf is None: raise ScheduleError("COPY of an unrealized value: the scheduler materializes it first")  # guarded by rule 1/2
      dst = new_buffer(u.src[1].arg, prod(u.shape), u.dtype)
      items.append(ScheduleItem(None, (dst, sbuf), u.src[1].arg))
      realized[u] = dst
      continue
    devs = _device_of(u, realized)
    if len(devs) > 1: raise ScheduleError(f"{u.op.name} mixes tensors on devices {sorted(devs)}: move them to one device with .to(device)")
    device = next(iter(devs)) if devs else default_device
    target, value = (u.src[0], u.src[1]) if u.op is Ops.ASSIGN else (None, u.src[0] if u.op is Ops.CONTIGUOUS else u)
    out = _base(target) if target is not None else new_buffer(device, prod(u.shape), u.dtype)
    if target is not None and out is None: raise ScheduleError("assign needs a target that is a whole buffer (a realized, contiguous tensor)")
    kb = _KernelBuilder(realized)
    kb.glob(out)
    rngs = tuple(kb.new_range(s) for s in u.shape)
    val = kb.emit(value, rngs)
    if target is not None and out in kb.globals and _reads_elsewhere(val, kb.globals[out], _linear(rngs, u.shape)):
      # the value reads the target at other positions than it writes: compute it into a temporary first (write-after-read)
      tmp_u = value.contiguous()
      sub_items, sub_real = create_schedule([tmp_u], device, dict(realized))
      items.extend(sub_items)
      kb = _KernelBuilder(sub_real)
      kb.glob(out)
      rngs = tuple(kb.new_range(s) for s in u.shape)
      val = kb.emit(tmp_u, rngs)
    st = kb.globals[out].index(_linear(rngs, u.shape)).store(val)
    live = [r for r in rngs if r.src[0].arg != 1] if u.shape else []
    opts = u.arg if u.op is Ops.CONTIGUOUS and u.arg else None
    ast = UOp.sink(st.end(*live) if live else st, arg=KernelInfo(opts=tuple(opts)) if opts else None)
    bufs = tuple(sorted(kb.globals, key=lambda b: kb.globals[b].arg))
    if prod(u.shape) > 0: items.append(ScheduleItem(ast, bufs, device))
    realized[u] = out
  return items, realized

def _reads_elsewhere(val: UOp, g: UOp, store_idx: UOp) -> bool:
  """Does `val` read buffer `g` at an index other than the one the kernel stores to (compared after simplification)?"""
  from tg_uop.rewrite import graph_rewrite
  from tg_uop.symbolic import symbolic
  st = graph_rewrite(store_idx, symbolic)
  return any(x.op is Ops.INDEX and x.src[0] is g and graph_rewrite(x.src[1], symbolic) is not st for x in val.toposort())

# ---- schedule cache: graphs that differ only in which buffers they read reuse one schedule ----
_cache: dict[tuple, tuple[list[ScheduleItem], tuple[UOp, ...], tuple[UOp, ...]]] = {}
CACHE_LIMIT = 256
cache_stats = {"hits": 0, "misses": 0}

# an ASSIGN that already ran is, for every graph built on it, just its target buffer: it must not run again
done_assigns: "weakref.WeakKeyDictionary[UOp, UOp]" = weakref.WeakKeyDictionary()

def _templatize(sink: UOp, ph: dict[UOp, UOp | None]) -> UOp:
  new: dict[UOp, UOp] = {}
  k = 0
  for u in sink.toposort():
    if u.op is Ops.BUFFER and u in ph: new[u] = ph[u]; continue  # noqa: E702
    src = tuple(new[s] for s in u.src)
    if u.op is Ops.ASSIGN: new[u] = UOp(Ops.ASSIGN, u.dtype, src, ("assign", k)); k += 1  # noqa: E702
    else: new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, src, u.arg)
  return new[sink]

def schedule_cached(outs: list[UOp], default_device: str) -> tuple[list[ScheduleItem], dict[UOp, UOp]]:
  """`create_schedule`, cached by graph structure: every BUFFER is replaced by a numbered placeholder, so a training step that
  runs the same graph on new buffers is scheduled once. Buffers the schedule creates are fresh on every call."""
  topo = UOp.sink(*outs).toposort()
  if done_assigns and (done := {u: done_assigns[u] for u in topo if u.op is Ops.ASSIGN and u in done_assigns}):
    orig = outs
    outs = [o.substitute(done) for o in outs]
    items, realized = schedule_cached(outs, default_device)
    return items, {o: realized[n] for o, n in zip(orig, outs) if n in realized} | {o: done[o] for o in orig if o in done}
  bufs = [u for u in topo if u.op is Ops.BUFFER]
  ph = {b: UOp(Ops.BUFFER, b.dtype, b.src, (b.arg[0], -(i + 1))) for i, b in enumerate(bufs)}
  # ASSIGNs carry a unique id (so the same update twice runs twice); in the cache key they are numbered by position
  ph.update({a: None for a in topo if a.op is Ops.ASSIGN})
  template = _templatize(UOp.sink(*outs), ph)
  key = (template, default_device)
  if (hit := _cache.get(key)) is None:
    cache_stats["misses"] += 1
    items, realized = create_schedule(list(template.src), default_device)
    created = tuple(dict.fromkeys(b for it in items for b in it.bufs if b.arg[1] >= 0))
    hit = (items, tuple(realized[t] if t in realized else _base(t) for t in template.src), created)
    if len(_cache) >= CACHE_LIMIT: _cache.pop(next(iter(_cache)))
    _cache[key] = hit
  else: cache_stats["hits"] += 1
  items, outs_t, created = hit
  back: dict[UOp, UOp] = {v: k for k, v in ph.items() if v is not None}
  back.update({c: new_buffer(c.src[0].arg, c.arg[0], c.dtype) for c in created})
  new_items = [ScheduleItem(it.ast, tuple(back.get(b, b) for b in it.bufs), it.device, it.meta) for it in items]
  return new_items, {o: back.get(t, t) for o, t in zip(outs, outs_t) if t is not None}
