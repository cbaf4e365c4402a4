"""The realize engine: schedule the requested tensor-level UOps, then run each step on its device.

Compiled kernels are kept per (kernel, device), so running the same graph again reuses them (and the compiler's disk cache makes
a new process skip compiling too)."""
from __future__ import annotations
from tg_uop.helpers import DEBUG
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor.buffers import get_buffer
from tg_tensor.memory import plan_memory
from tg_tensor.schedule import ScheduleItem, schedule_cached, done_assigns, _base

_runners: dict[tuple[UOp, str], object] = {}
kernel_count = 0  # kernels run by this process (the demo and tests read it)
capturing: list | None = None  # TinyJit sets a list here to record each step run: (runner or None for a copy, buffer UOps)

def run_schedule(items: list[ScheduleItem], share: dict[UOp, UOp] | None = None) -> None:
  """Run the steps in order on their devices; `share` maps intermediate buffers to the one whose memory they use."""
  global kernel_count
  from tg_uop.device import Device
  from tg_codegen.program import get_program, CompiledRunner
  share = share or {}
  for it in items:
    ubufs = tuple(share.get(b, b) for b in it.bufs)
    bufs = [get_buffer(b) for b in ubufs]
    for b in bufs:
      if not b.is_allocated(): b.allocate()
    if it.ast is None:
      bufs[0].copy_from(bufs[1])
      if capturing is not None: capturing.append((None, ubufs))
      continue
    key = (it.ast, it.device)
    if (runner := _runners.get(key)) is None:
      runner = _runners[key] = CompiledRunner(it.device, get_program(it.ast, Device[it.device].renderer, None, it.device))
    # a buffer whose loads folded away during lowering is no longer a parameter of the compiled kernel
    runner([bufs[i] for i in runner.spec.globals], wait=DEBUG >= 2)
    kernel_count += 1
    if capturing is not None: capturing.append((runner, tuple(ubufs[i] for i in runner.spec.globals)))

def realize(*uops: UOp, default_device: str | None = None) -> list[UOp]:
  """Compute `uops`; returns for each an equivalent UOp that is a BUFFER (behind a RESHAPE to its shape) holding the data.
  `default_device` (else `Device.DEFAULT`) holds values that read no buffer (constants materialized on their own)."""
  from tg_uop.device import Device
  items, realized = schedule_cached(list(uops), default_device or Device.DEFAULT)
  keep = {b for u in uops for b in ([realized[u]] if u in realized else [])} | {b for u in uops if (b := _base(u)) is not None}
  keep |= {b for u in UOp.sink(*uops).toposort() if u.op is Ops.BUFFER for b in (u,)}  # inputs and assign targets
  run_schedule(items, plan_memory(items, keep).share)
  for u in UOp.sink(*uops).toposort():
    if u.op is Ops.ASSIGN: done_assigns[u] = u.src[0]
  out = []
  for u in uops:
    b = realized[u] if u in realized else _base(u)
    out.append(b if b.shape == u.shape else b.reshape(u.shape))
  return out
