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
      from tg_tensor import engine, buffers
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
    from tg_tensor.buffers import new_buffer, get_buffer
    from tg_tensor import engine
    m: dict[UOp, UOp] = {old: _base(t.uop) for old, t in zip(c.inputs, ins)}
    m.update({o: new_buffer(o.src[0].arg, o.arg[0], o.dtype) for o in c.outputs if o not in m and o in c.fresh})
    from tg_tensor.jit_graph import GraphBatch, batch_steps
    if c.batched is None: c.batched = batch_steps(c.steps)
    def buf(u: UOp):
      if not (b := get_buffer(m.get(u, u))).is_allocated(): b.allocate()
      return b
    for step in c.batched:
      if isinstance(step, GraphBatch):
        step(buf)
        engine.kernel_count += len(step.steps)
        continue
      runner, bufs = step
      real = [get_buffer(m.get(b, b)) for b in bufs]
      for b in real:
        if not b.is_allocated(): b.allocate()
      if runner is None: real[0].copy_from(real[1])
      else:
        runner(real)
        engine.kernel_count += 1
    return _rebuild(c.structure, [m.get(o, o) for o in c.outputs])

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
