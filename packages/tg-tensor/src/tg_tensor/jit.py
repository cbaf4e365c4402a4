"""`TinyJit`: run a function once normally, capture the kernels its second call runs, and replay them from then on.

Replay skips building graphs, scheduling and lowering: it runs the captured compiled kernels on the new inputs' buffers. Inputs
must keep their shape, dtype and device (a clear error says which one changed); outputs get fresh buffers on every call, so a
result from one call is never overwritten by the next. On a device with a graph capability (CUDA), runs of captured kernels replay
as one device graph (`jit_graph`).

A replay of a tiny kernel is all Python overhead, so `_ReplayPlan` resolves everything it can once: which buffers are fixed and
which are filled per call, each kernel's `Program.launcher` (launch dims checked once, device work hoisted), whether an output
needs a reshape. A call then checks the inputs, makes the fresh outputs, launches and wraps the results."""
from __future__ import annotations
import functools
from dataclasses import dataclass
from typing import Any, Callable
from tg_uop.helpers import DEBUG, JIT
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor import buffers, engine
from tg_tensor.buffers import _buffers, fresh_buffer, get_buffer
from tg_tensor.tensor import Tensor

class JitError(RuntimeError): pass

def _tensors(args: tuple, kwargs: dict) -> list:
  ins = [a for a in args if isinstance(a, Tensor)]
  return ins + [v for _, v in sorted(kwargs.items()) if isinstance(v, Tensor)] if kwargs else ins

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
    outs = [t for t in _flatten(ret) if isinstance(t, Tensor)]
    if outs: outs[0].realize(*outs[1:])
    return ret

  def __call__(self, *args, **kwargs):
    if (c := self.captured) is not None and c.plan is not None and JIT.value: return c.plan(_tensors(args, kwargs))  # a replay
    if self.captured is not None and JIT.value: return self._replay(_tensors(args, kwargs))  # the first replay makes the plan
    ins = _tensors(args, kwargs)
    if ins: ins[0].realize(*ins[1:])
    if not JIT or self.cnt == 0:
      self.cnt += 1
      return self._run(args, kwargs)
    start = next(buffers._uid)  # buffers numbered from here on are created by the call; older ones (weights) stay in place
    engine.capturing = steps = []
    try: ret = self._run(args, kwargs)
    finally: engine.capturing = None
    self.captured = _capture(steps, ins, ret, start)
    return ret

  def _replay(self, ins: list) -> Any:
    """Run the captured kernels on the tensors `ins` (the call's tensor arguments, in order)."""
    c = self.captured
    if c.plan is None: c.plan = _ReplayPlan(c)
    return c.plan(ins)

_KERNEL, _RUNNER, _COPY, _GRAPH = "kernel", "runner", "copy", "graph"

def _real(refs: tuple, dyn: list) -> list:
  return [dyn[x] if type(x) is int else x for x in refs]

class _ReplayPlan:
  """The captured steps resolved once: each buffer is either fixed (a weight, an intermediate: its Buffer is kept) or a slot
  filled per call (an input, a fresh output); each kernel keeps its program's launcher, so a replay only launches. Runs of
  kernels on a device with a `graph` capability replay as one graph (`jit_graph`)."""
  def __init__(self, c: _Captured):
    from tg_tensor.jit_graph import GraphBatch, batch_steps
    self.signature, self.structure = c.signature, c.structure
    slot = {u: i for i, u in enumerate(c.inputs)}
    fresh_uops = list(dict.fromkeys(o for o in c.outputs if o not in slot and o in c.fresh))
    self.fresh = [(o.src[0], o.arg[0], o.dtype) for o in fresh_uops]  # (DEVICE UOp, size, dtype) of each fresh output
    for o in fresh_uops: slot[o] = len(slot)
    self.outs = [slot.get(o, o) for o in c.outputs]  # each output: a slot number (an input's base, a fresh buffer) or a fixed BUFFER
    def refs(bufs): return tuple(slot[b] if b in slot else get_buffer(b) for b in bufs)
    self.steps: list[tuple] = []
    if c.batched is None: c.batched = batch_steps(c.steps)
    for step in c.batched:
      if isinstance(step, GraphBatch): self.steps.append((_GRAPH, step, tuple(refs(b) for _, b in step.steps), None))
      elif step[0] is None: self.steps.append((_COPY, None, refs(step[1]), None))
      else:  # a kernel with fixed launch dims launches through its program's launcher; one with variables through its runner
        r, spec = step[0], step[0].spec
        if getattr(r, "prg", None) is not None and not spec.vars and all(isinstance(d, int) for d in (*spec.global_size, *spec.local_size)):
          self.steps.append((_KERNEL, r, refs(step[1]), r.prg.launcher(spec.global_size, spec.local_size)))
        else: self.steps.append((_RUNNER, r, refs(step[1]), None))
    self.nkernels = sum(len(r.steps) if kind is _GRAPH else kind is not _COPY for kind, r, _, _ in self.steps)

  def __call__(self, ins: list) -> Any:
    """One replay on the input tensors `ins`: returns the function's result over this call's fresh output buffers."""
    if len(ins) != len(self.signature): raise JitError(f"the jitted function was captured with {len(self.signature)} tensor inputs, got {len(ins)}")
    uops, lazy = [], False
    for i, (t, sig) in enumerate(zip(ins, self.signature)):
      u = t.uop
      if (u.shape, u.dtype, t.device) != sig: _changed(i, t, sig)
      while u.op is Ops.RESHAPE: u = u.src[0]
      lazy |= u.op is not Ops.BUFFER
      uops.append(u)
    if lazy:
      ins[0].realize(*ins[1:])  # realize() leaves the realized ones alone
      uops = [_base(t.uop) for t in ins]
      for u in uops: get_buffer(u)  # a clear error for an input that is still no buffer
    dyn = [_buffers[u] for u in uops]  # every base is a BUFFER now (get_buffer's check, done above)
    for b in dyn:
      if not b.is_allocated(): b.allocate()
    for dev, size, dt in self.fresh:  # this call's outputs: new buffers every call
      u, b = fresh_buffer(dev, size, dt, allocate=True)
      uops.append(u)
      dyn.append(b)
    engine.kernel_count += self.run(dyn)
    return _rebuild(self.structure, [uops[x] if type(x) is int else x for x in self.outs])

  def run(self, dyn: list) -> int:
    """Run every step with `dyn` as this call's slot buffers; returns the number of kernels launched."""
    debug = DEBUG.value >= 2  # kernels then go through their runner, which times and prints each
    for kind, r, refs, launch in self.steps:
      if kind is _KERNEL and not debug: launch(*[(dyn[x] if type(x) is int else x)._buf for x in refs])
      elif kind is _KERNEL or kind is _RUNNER: r(_real(refs, dyn))
      elif kind is _COPY:
        dst, src = _real(refs, dyn)
        dst.copy_from(src)
      else: r([_real(rs, dyn) for rs in refs])
    return self.nkernels

def _changed(i: int, t: Tensor, sig: tuple) -> None:
  what = [n for n, a, b in zip(("shape", "dtype", "device"), (t.shape, t.dtype, t.device), sig) if a != b]
  raise JitError(f"input {i} changed {', '.join(what)}: captured with shape={sig[0]} dtype={sig[1]!r} device={sig[2]!r}, got "
                 f"shape={t.shape} dtype={t.dtype!r} device={t.device!r}; call .reset() on the jit to capture again")

def _flatten(ret: Any) -> list:
  if isinstance(ret, (tuple, list)): return [x for r in ret for x in _flatten(r)]
  if isinstance(ret, dict): return [x for k in sorted(ret) for x in _flatten(ret[k])]
  return [ret]

def _capture(steps: list, ins: list, ret: Any, start: int) -> _Captured:
  outs: list[UOp] = []
  def struct(r):
    if isinstance(r, Tensor):
      outs.append(b := _base(r.uop))
      # a replay's output has the shape of this base (a buffer of the same size): whether it needs a reshape is fixed here
      return ("T", len(outs) - 1, r.shape if b.shape != r.shape else None, r.device)
    if isinstance(r, (tuple, list)): return (type(r), [struct(x) for x in r])
    if isinstance(r, dict): return (dict, {k: struct(v) for k, v in r.items()})
    return ("C", r)
  s = struct(ret)
  inputs = [_base(t.uop) for t in ins]
  fresh = {o for o in outs if o.op is Ops.BUFFER and o.arg[1] >= start}
  return _Captured(list(steps), [(t.shape, t.dtype, t.device) for t in ins], inputs, outs, fresh, s)

def _rebuild(s: Any, outs: list[UOp]) -> Any:
  if s[0] == "T": return Tensor._of(outs[s[1]] if s[2] is None else outs[s[1]].reshape(s[2]), s[3])
  if s[0] == "C": return s[1]
  if s[0] is dict: return {k: _rebuild(v, outs) for k, v in s[1].items()}
  return s[0](_rebuild(x, outs) for x in s[1])
