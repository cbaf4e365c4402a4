"""`TinyJit`: run a function once normally, capture the kernels its second call runs, and replay them from then on.

Replay skips building graphs, scheduling and lowering: it runs the captured compiled kernels on the new inputs' buffers. Inputs
must keep their shape, dtype and device (a clear error says which one changed); outputs get fresh buffers on every call, so a
result from one call is never overwritten by the next. On a device with a graph capability (CUDA), runs of captured kernels replay
as one device graph (`jit_graph`)."""
from __future__ import annotations
import functools
from dataclasses import dataclass
from typing import Any, Callable
from tg_uop.helpers import JIT
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor import engine
from tg_tensor.buffers import new_buffer, get_buffer

class JitError(RuntimeError): pass

def _tensors(args: tuple, kwargs: dict) -> list:
  from tg_tensor.tensor import Tensor
  return [a for a in args if isinstance(a, Tensor)] + [v for _, v in sorted(kwargs.items()) if isinstance(v, Tensor)]

def _base(u: UOp) -> UOp:
  while u.op is Ops.RESHAPE: u = u.src[0]
  return u

@dataclass
class _Captured:
  steps: list[tuple[Any, tuple[UOp, ...]]]
  signature: list[tuple]
  inputs: list[UOp]
  outputs: list[UOp]            # base buffers of the returned tensors, in return order
  fresh: set[UOp]               # the outputs created by the call: they get new buffers on every replay
  structure: Any                # how to rebuild the return value: a Tensor index, or a tuple/list/dict of them, or a constant
  batched: list | None = None   # `steps` with runs of kernels grouped into device graphs (jit_graph), made on the first replay
  plan: Any = None              # the `_ReplayPlan`, made on the first replay

class TinyJit:
  """Decorate a function of Tensors: `@TinyJit def step(x, y): ...`. Set `JIT=0` to run it normally every time."""
  def __init__(self, fxn: Callable):
    self.fxn, self.cnt, self.captured = fxn, 0, None
    functools.update_wrapper(self, fxn)
  def reset(self) -> None:
    """Forget the capture: the next two calls run normally and capture again."""
    self.cnt, self.captured = 0, None

  def _run(self, args, kwargs):
    ret = self.fxn(*args, **kwargs)
    from tg_tensor.tensor import Tensor
    outs = [t for t in _flatten(ret) if isinstance(t, Tensor)]
    if outs: outs[0].realize(*outs[1:])
    return ret

  def __call__(self, *args, **kwargs):
    ins = _tensors(args, kwargs)
    if ins: ins[0].realize(*ins[1:])
    if not JIT or self.cnt == 0:
      self.cnt += 1
      return self._run(args, kwargs)
    if self.captured is None:
      from tg_tensor import buffers
      start = next(buffers._uid)  # buffers numbered from here on are created by the call; older ones (weights) stay in place
      engine.capturing = steps = []
      try: ret = self._run(args, kwargs)
      finally: engine.capturing = None
      self.captured = _capture(steps, ins, ret, start)
      return ret
    return self._replay(ins)

  def _replay(self, ins: list):
    c = self.captured
    if len(ins) != len(c.inputs): raise JitError(f"the jitted function was captured with {len(c.inputs)} tensor inputs, got {len(ins)}")
    for i, (t, sig) in enumerate(zip(ins, c.signature)):
      if (t.shape, t.dtype, t.device) != sig:
        what = [n for n, a, b in zip(("shape", "dtype", "device"), (t.shape, t.dtype, t.device), sig) if a != b]
        raise JitError(f"input {i} changed {', '.join(what)}: captured with shape={sig[0]} dtype={sig[1]!r} device={sig[2]!r}, got "
                       f"shape={t.shape} dtype={t.dtype!r} device={t.device!r}; call .reset() on the jit to capture again")
    if c.plan is None: c.plan = _ReplayPlan(c)
    # this call's buffers: the inputs', then fresh ones for the outputs the function created
    fresh = [new_buffer(dev, size, dt) for dev, size, dt in c.plan.fresh_specs]
    dyn = [get_buffer(_base(t.uop)) for t in ins] + [get_buffer(u) for u in fresh]
    for b in dyn:
      if not b.is_allocated(): b.allocate()
    engine.kernel_count += c.plan.run(dyn)
    m = dict(zip(c.plan.fresh_uops, fresh))
    m.update({old: _base(t.uop) for old, t in zip(c.inputs, ins)})
    return _rebuild(c.structure, [m.get(o, o) for o in c.outputs])

class _ReplayPlan:
  """The captured steps resolved once: each buffer is either fixed (a weight, an intermediate: its Buffer is kept) or a slot
  filled per call (an input, a fresh output); each kernel keeps its program and launch dims, so a replay only launches. Runs of
  kernels on a device with a `graph` capability replay as one graph (`jit_graph`)."""
  def __init__(self, c: _Captured):
    from tg_tensor.jit_graph import GraphBatch, batch_steps
    from tg_uop.runtime.program import check_launch_dims
    slot = {u: i for i, u in enumerate(c.inputs)}
    self.fresh_uops = [o for o in c.outputs if o not in slot and o in c.fresh]
    self.fresh_specs = [(o.src[0].arg, o.arg[0], o.dtype) for o in self.fresh_uops]
    for o in self.fresh_uops: slot[o] = len(slot)
    self.slot = slot
    def refs(bufs): return tuple(slot[b] if b in slot else get_buffer(b) for b in bufs)
    self.steps: list[tuple] = []
    if c.batched is None: c.batched = batch_steps(c.steps)
    for step in c.batched:
      if isinstance(step, GraphBatch): self.steps.append(("graph", step, None, None))
      elif step[0] is None: self.steps.append(("copy", None, refs(step[1]), None))
      else:
        r = step[0]
        fast = getattr(r, "prg", None) is not None and not r.spec.vars and all(isinstance(d, int) for d in (*r.spec.global_size, *r.spec.local_size))
        dims = check_launch_dims(r.spec.global_size, r.spec.local_size) if fast else None
        self.steps.append(("kernel" if fast else "runner", r, refs(step[1]), dims))
    self.nkernels = sum(len(r.steps) if kind == "graph" else kind != "copy" for kind, r, _, _ in self.steps)

  def run(self, dyn: list) -> int:
    """Run every step with `dyn` as this call's slot buffers; returns the number of kernels launched."""
    from tg_uop.helpers import DEBUG
    def real(refs): return [dyn[x] if type(x) is int else x for x in refs]
    for kind, r, refs, dims in self.steps:
      if kind == "kernel" and DEBUG < 2:
        r.prg(*[b._buf for b in real(refs)], global_size=dims[0], local_size=dims[1], vals=(), wait=False)
      elif kind in ("kernel", "runner"): r(real(refs))
      elif kind == "copy":
        dst, src = real(refs)
        dst.copy_from(src)
      else:
        r(lambda u: dyn[self.slot[u]] if u in self.slot else get_buffer(u))
    return self.nkernels

def _flatten(ret: Any) -> list:
  if isinstance(ret, (tuple, list)): return [x for r in ret for x in _flatten(r)]
  if isinstance(ret, dict): return [x for k in sorted(ret) for x in _flatten(ret[k])]
  return [ret]

def _capture(steps: list, ins: list, ret: Any, start: int) -> _Captured:
  from tg_tensor.tensor import Tensor
  outs: list[UOp] = []
  def struct(r):
    if isinstance(r, Tensor):
      outs.append(_base(r.uop))
      return ("T", len(outs) - 1, r.shape, r.device)
    if isinstance(r, (tuple, list)): return (type(r), [struct(x) for x in r])
    if isinstance(r, dict): return (dict, {k: struct(v) for k, v in r.items()})
    return ("C", r)
  s = struct(ret)
  inputs = [_base(t.uop) for t in ins]
  fresh = {o for o in outs if o.op is Ops.BUFFER and o.arg[1] >= start}
  return _Captured(list(steps), [(t.shape, t.dtype, t.device) for t in ins], inputs, outs, fresh, s)

def _rebuild(s: Any, outs: list[UOp]) -> Any:
  from tg_tensor.tensor import Tensor
  if s[0] == "T": return Tensor(outs[s[1]].reshape(s[2]) if outs[s[1]].shape != s[2] else outs[s[1]], device=s[3])
  if s[0] == "C": return s[1]
  if s[0] is dict: return {k: _rebuild(v, outs) for k, v in s[1].items()}
  return s[0](_rebuild(x, outs) for x in s[1])
