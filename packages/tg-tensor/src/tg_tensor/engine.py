"""The realize engine: schedule the requested tensor-level UOps, then run each step on its device.

Compiled kernels are kept per (kernel, device), so running the same graph again reuses them (and the compiler's disk cache makes
a new process skip compiling too)."""
from __future__ import annotations
from tg_uop.helpers import DEBUG
from tg_uop.uop import UOp
from tg_tensor.buffers import get_buffer
from tg_tensor.schedule import ScheduleItem, create_schedule, _base

_runners: dict[tuple[UOp, str], object] = {}
kernel_count = 0  # kernels run by this process (the demo and tests read it)

def run_schedule(items: list[ScheduleItem]) -> None:
  """Run the steps in order on their devices."""
  global kernel_count
  from tg_uop.device import Device
  from tg_codegen.program import get_program, CompiledRunner
  for it in items:
    bufs = [get_buffer(b) for b in it.bufs]
    for b in bufs:
      if not b.is_allocated(): b.allocate()
    if it.ast is None:
      bufs[0].copy_from(bufs[1])
      continue
    key = (it.ast, it.device)
    if (runner := _runners.get(key)) is None:
      runner = _runners[key] = CompiledRunner(it.device, get_program(it.ast, Device[it.device].renderer, None, it.device))
    runner(bufs, wait=DEBUG >= 2)
    kernel_count += 1

def realize(*uops: UOp) -> list[UOp]:
  """Compute `uops`; returns for each an equivalent UOp that is a BUFFER (behind a RESHAPE to its shape) holding the data."""
  from tg_uop.device import Device
  items, realized = create_schedule(list(uops), Device.DEFAULT)
  run_schedule(items)
  out = []
  for u in uops:
    b = realized[u] if u in realized else _base(u)
    out.append(b if b.shape == u.shape else b.reshape(u.shape))
  return out
