"""The memory planner: intermediate buffers of one schedule share memory when their lifetimes don't overlap.

An intermediate is a buffer the schedule creates that is neither a requested output nor written in place (ASSIGN): it lives
from the step that writes it to the last step that reads it. Buffers of the same device, dtype and size are reused first-fit
in schedule order. `DEBUG=1` prints what this saved."""
from __future__ import annotations
from dataclasses import dataclass
from tg_uop.helpers import DEBUG
from tg_uop.uop import UOp

@dataclass
class MemoryPlan:
  """Which intermediate BUFFER UOp uses whose memory, and the bytes asked for versus allocated."""
  share: dict[UOp, UOp]
  requested: int
  allocated: int

def plan_memory(items: list, keep: set[UOp]) -> MemoryPlan:
  """Plan intermediates of `items` (ScheduleItems); buffers in `keep` (outputs, inputs, assign targets) are never shared."""
  first: dict[UOp, int] = {}
  last: dict[UOp, int] = {}
  for i, it in enumerate(items):
    for j, b in enumerate(it.bufs):
      if b in keep: continue
      if j == 0 and b not in first: first[b] = i  # written here: its life starts
      last[b] = i
  inter = [b for b in first]  # only buffers this schedule writes before reading
  free: dict[tuple, list[tuple[int, UOp]]] = {}  # (device, dtype, size) -> [(free after step, owner)]
  share: dict[UOp, UOp] = {}
  requested = allocated = 0
  for b in sorted(inter, key=lambda b: first[b]):
    key = (b.src[0].arg, b.dtype, b.arg[0])
    nbytes = b.arg[0] * b.dtype.itemsize
    requested += nbytes
    pool = free.setdefault(key, [])
    slot = next((k for k, (t, _) in enumerate(pool) if t < first[b]), None)
    if slot is None: owner = b; allocated += nbytes
    else: owner = pool.pop(slot)[1]
    share[b] = owner
    pool.append((last[b], owner))
  if DEBUG >= 1 and requested: print(f"memory planner: {len(inter)} intermediate buffers, {requested/1e6:.2f} MB asked, "
                                     f"{allocated/1e6:.2f} MB allocated, {(requested-allocated)/1e6:.2f} MB saved")
  return MemoryPlan(share, requested, allocated)
