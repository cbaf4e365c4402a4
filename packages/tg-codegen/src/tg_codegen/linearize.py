"""Linearize a lowered kernel: order its UOps into a list with properly nested loops (the renderers' input).

Every UOp is placed in exactly the loops it depends on (so loop-invariant work is hoisted out for free); loops nest in the
order the lowering gives; a loop closes (END) once everything inside it has been placed. Ordering-only sources (RANGE markers on
LOAD/STORE) are dropped from the output, and ENDs that close the same loops are merged into one."""
from __future__ import annotations
import heapq
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.lower.lowerer import scope_of

class LinearizeError(RuntimeError): pass

def _nest(scope: dict[UOp, frozenset], key: dict[UOp, int]) -> dict[UOp, tuple[UOp, ...]]:
  """For each UOp, the stack of loops it must sit in: its ranges plus every range those must sit inside, outermost first."""
  outer: dict[UOp, set[UOp]] = {}
  for s in scope.values():
    for r in s: outer.setdefault(r, set()).update(x for x in s if key[x] < key[r])
  changed = True
  while changed:  # transitive closure: the loops around my enclosing loops enclose me too
    changed = False
    for r, o in outer.items():
      extra = set().union(*(outer.get(x, set()) for x in o)) - o
      if extra: o |= extra; changed = True  # noqa: E702
  out: dict[UOp, tuple[UOp, ...]] = {}
  for u, s in scope.items():
    full = set(s).union(*(outer.get(r, set()) for r in s))
    out[u] = tuple(sorted(full, key=key.__getitem__))
  return out

def linearize(sink: UOp, range_order: tuple[UOp, ...] = ()) -> list[UOp]:
  """The UOps under `sink` as a list in execution order, ending with the SINK."""
  topo = list(sink.toposort())
  pos = {u: i for i, u in enumerate(topo)}
  rngs = [u for u in topo if u.op is Ops.RANGE]
  key = {r: (range_order.index(r) if r in range_order else len(range_order) + pos[r]) for r in rngs}
  scope = scope_of(topo)
  nest = _nest(scope, key)
  closes = {u: tuple(sorted((x for x in u.src if x.op is Ops.RANGE), key=key.__getitem__)) for u in topo if u.op is Ops.END}
  # where each UOp may be placed: the exact loop stack that must be open
  need: dict[UOp, tuple[UOp, ...]] = {}
  for u in topo:
    if u.op is Ops.RANGE: need[u] = nest[u][:-1]
    elif u.op is Ops.END: need[u] = nest[u] + tuple(r for r in closes[u] if r not in nest[u])
    else: need[u] = nest[u]
  for u in topo:  # every source must be available where u runs: its loop stack a prefix of u's
    for s in u.src:
      have = nest[s]
      if need[u][:len(have)] != have:
        raise LinearizeError(f"{u.op.name} needs {s.op.name} from loops {[r.arg for r in have]} inside loops {[r.arg for r in need[u]]}")
  # a loop may close once nothing that lives inside it is still waiting
  inside: dict[UOp, int] = {r: 0 for r in rngs}
  for u in topo:
    if u.op is not Ops.END and u.op is not Ops.SINK:
      for r in nest[u]:
        if r is not u: inside[r] += 1
  waiting = {u: len(set(u.src)) for u in topo}
  users: dict[UOp, list[UOp]] = {}
  for u in topo:
    for s in set(u.src): users.setdefault(s, []).append(u)
  # a loop can start productively once everything its body reads from outside the loop has been placed
  ext: dict[UOp, set[UOp]] = {r: set() for r in rngs}
  for u in topo:
    for r in nest[u]:
      if r is not u: ext[r].update(s for s in u.src if r not in nest[s] and s is not r)
  ready: dict[tuple, list] = {}
  def make_ready(u: UOp):
    heapq.heappush(ready.setdefault(need[u], []), (2 if u.op is Ops.END else 1 if u.op is Ops.RANGE else 0, pos[u], u))
  for u in topo:
    if waiting[u] == 0 and u is not sink: make_ready(u)
  placed: list[UOp] = []
  done: set[UOp] = set()
  alias: dict[UOp, list[UOp]] = {}
  stack: list[UOp] = []
  def finish(u: UOp):
    done.add(u)
    if u.op is not Ops.END and u.op is not Ops.SINK:
      for r in nest[u]:
        if r is not u: inside[r] -= 1
    for v in users.get(u, ()):
      waiting[v] -= 1
      if waiting[v] == 0 and v is not sink: make_ready(v)
  def eligible(u: UOp) -> bool:
    if u.op is Ops.RANGE: return all(s in done for s in ext[u])
    if u.op is Ops.END:
      cl = closes[u]
      return not any(inside[r] for r in cl) and tuple(stack[len(stack) - len(cl):]) == cl
    return True
  total = len(topo) - 1
  while len(done) < total:
    bucket = ready.get(tuple(stack), [])
    skipped, chosen = [], None
    while bucket:
      item = heapq.heappop(bucket)
      if item[2] in done: continue
      if eligible(item[2]): chosen = item[2]; break  # noqa: E702
      skipped.append(item)
    for it in skipped: heapq.heappush(bucket, it)
    if chosen is None:
      raise LinearizeError(f"can't place the remaining {total - len(done)} UOps with loops {[r.arg for r in stack]} open: "
                           f"{sorted({v.op.name for v in topo if v not in done and v is not sink})}")
    placed.append(chosen)
    finish(chosen)
    if chosen.op is Ops.RANGE: stack.append(chosen)
    elif chosen.op is Ops.END:
      cl = closes[chosen]
      for _ in cl: stack.pop()
      # other ENDs closing exactly these loops end the same loop
      for v in topo:
        if v.op is Ops.END and v not in done and closes[v] == cl and need[v] == need[chosen] and waiting[v] == 0:
          alias.setdefault(chosen, []).append(v)
          finish(v)
  return _finalize(placed, sink, alias, closes)

def _finalize(placed: list[UOp], sink: UOp, alias: dict[UOp, list[UOp]], closes: dict[UOp, tuple]) -> list[UOp]:
  """Rebuild the placed UOps without ordering-only sources; multi-loop ENDs become one END per loop, innermost first."""
  m: dict[UOp, UOp] = {}
  out: list[UOp] = []
  def keep(u: UOp) -> tuple[UOp, ...]:
    s = u.src
    if u.op is Ops.LOAD:
      head = s[:2] if len(s[0].src) == 3 and len(s) > 1 else s[:1]
      return head + tuple(x for x in s[len(head):] if x.dtype == dtypes.void)
    # a TMA copy keeps its mbarrier (STORE arg ("tma", ...)); an mbarrier BARRIER (arg ("mbar_*", ...)) its barrier and value
    lead = 3 if u.op is Ops.STORE and type(u.arg) is tuple else 2 if u.op is Ops.STORE or type(u.arg) is tuple else 0
    if u.op in (Ops.STORE, Ops.BARRIER): return s[:lead] + tuple(x for x in s[lead:] if x.dtype == dtypes.void)
    return s
  for u in placed:
    if u.op is Ops.END:
      vals = [m[x] for x in u.src if x.op is not Ops.RANGE]
      if not closes[u]:  # an END that closes no loop only groups its values
        if len(vals) != 1: raise LinearizeError(f"an END closes no loop but groups {len(vals)} values: lower it to a SINK")
        m[u] = vals[0]
        continue
      cur = None
      for r in reversed(closes[u]):
        cur = UOp(Ops.END, dtypes.void, (*(vals if cur is None else [cur]), m[r]))
        out.append(cur)
      m[u] = cur
      for v in alias.get(u, ()): m[v] = cur
      continue
    nu = UOp(u.op, u.dtype, tuple(m[x] for x in keep(u)), u.arg)
    m[u] = nu
    out.append(nu)
  out.append(UOp(Ops.SINK, dtypes.void, tuple(m[x] for x in sink.src), sink.arg))
  if len(set(out)) != len(out): raise LinearizeError("two placed UOps became identical after dropping ordering sources")
  return out
