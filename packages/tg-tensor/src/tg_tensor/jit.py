"""`TinyJit`: run a function once normally, capture the kernels its second call runs, and replay them from then on.

Replay skips building graphs, scheduling and lowering: it runs the captured compiled kernels on the new inputs' buffers. Inputs
must keep their shape, dtype and device (a clear error says which one changed). A result is never overwritten by a later call
while anything can still see it: each call writes its outputs into buffers that no tensor, graph, Buffer reference or weak table
holds (one a dropped earlier result left, or a new one). On a device with a graph capability (CUDA), runs of captured kernels
replay as one device graph (`jit_graph`).

A replay of a tiny kernel is all Python overhead, so `_ReplayPlan` resolves everything it can once: which buffers are fixed and
which are filled per call, each kernel's `Program.launcher` (launch dims checked once, device work hoisted), how to build the
return value. A call then checks the inputs (a cheap identity test when they are the last call's), picks the outputs, launches
with the arguments it kept for those buffers and wraps the results."""
from __future__ import annotations
import functools
from dataclasses import dataclass
from operator import attrgetter
from sys import getrefcount
from typing import Any, Callable
from weakref import getweakrefcount
from tg_uop.dtype import dtypes
from tg_uop.helpers import DEBUG, JIT
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_tensor import buffers, engine
from tg_tensor.buffers import _BUF, fresh_buffer, get_buffer
from tg_tensor.tensor import Tensor

class JitError(RuntimeError): pass

def _tensors(args: tuple, kwargs: dict) -> list:
  ins = [a for a in args if isinstance(a, Tensor)]
  return ins + [v for _, v in sorted(kwargs.items()) if isinstance(v, Tensor)] if kwargs else ins

_uop_dev = attrgetter("uop", "device")

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
    if (c := self.captured) is not None and JIT.value:  # a replay (the first one makes the plan)
      return (c.plan if c.plan is not None else self._plan())(args, kwargs)
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

  def _plan(self) -> _ReplayPlan:
    c = self.captured
    c.plan = _ReplayPlan(c)
    return c.plan

_KERNEL, _RUNNER, _COPY, _GRAPH = "kernel", "runner", "copy", "graph"
POOL = 2  # output pairs kept per fresh output for reuse: 2 covers `x = f(x)`, which reads the last result and has dropped the one before

def _real(refs: tuple, dyn: list) -> list:
  return [dyn[x] if type(x) is int else x for x in refs]

def _holds(e: tuple) -> tuple[int, int, int]:
  """Who holds a pooled output, a (BUFFER UOp, Buffer) pair: (references to the UOp, to the Buffer, weak references to the UOp)."""
  return getrefcount(e[0]), getrefcount(e[1]), getweakrefcount(e[0])

# `_holds` of a pair that only its pool tuple (and the UOp's own __dict__, the Buffer's home, and the hash-consing cache's weak
# reference) know of: measured, not assumed, so it is right on any Python whose reference counts differ. A pooled pair reads
# exactly this once the caller and every tensor, graph, view, Buffer reference and weak table dropped it: nothing can observe its
# memory any more, and a replay may write its next result there. Anything more (a held result, `y = out * 2` not yet run, a
# `get_buffer` kept, a remembered graph) and it stays untouched.
_FREE = _FREE_U, _FREE_B, _FREE_W = _holds(fresh_buffer(UOp(Ops.DEVICE, arg="NULL"), 1, dtypes.uint8))

def _uop_of(ib: list, ch: list, x: Any) -> UOp:
  return (ib[x] if x >= 0 else ch[~x][0]) if type(x) is int else x

def _builder(s: Any, outs: list) -> Callable[[list, list], Any]:
  """The return value's constructor from this call's input bases `ib` and chosen output pairs `ch` (`s` as `_capture` made it;
  `outs[i]`: an input number, ~k for the k-th fresh output, or a fixed BUFFER UOp), resolved once so a replay only calls it."""
  if s[0] == "T":
    x, shape, dev, of = outs[s[1]], s[2], s[3], Tensor._of
    if shape is None and type(x) is int and x < 0:
      k = ~x
      return lambda ib, ch: of(ch[k][0], dev)
    return lambda ib, ch: of(_uop_of(ib, ch, x) if shape is None else _uop_of(ib, ch, x).reshape(shape), dev)
  if s[0] == "C": return lambda ib, ch, c=s[1]: c
  if s[0] is dict:
    items = [(k, _builder(v, outs)) for k, v in s[1].items()]
    return lambda ib, ch: {k: b(ib, ch) for k, b in items}
  typ, parts = s[0], [_builder(x, outs) for x in s[1]]
  return lambda ib, ch: typ(b(ib, ch) for b in parts)

def _step(kind: str, r: Any, refs: tuple, ib: list, ch: list) -> None:
  """A runner or copy step of a replay on the input Buffers `ib` and output pairs `ch`."""
  real = _real(refs, ib + [e[1] for e in ch])
  if kind is _RUNNER: r(real)
  else: real[0].copy_from(real[1])

class _Pool(list):
  """The (BUFFER UOp, Buffer) pairs kept for one fresh output, oldest first; `spec` is its (DEVICE UOp, size, dtype)."""
  __slots__ = ("spec",)
  def __init__(self, spec: tuple):
    super().__init__()
    self.spec = spec

class _ReplayPlan:
  """The captured steps resolved once: each buffer is either fixed (a weight, an intermediate: its Buffer is kept) or a slot
  filled per call (an input, a fresh output); each kernel keeps its program's launcher, so a replay only launches. Runs of
  kernels on a device with a `graph` capability replay as one graph (`jit_graph`).

  A call's Python is what a replay of a tiny kernel costs, so the call does as little as it can: inputs that are the very UOps of
  the last call (on the same devices) skip the checks and buffer lookups; each fresh output is a pair from a small pool that no
  one else holds (`_FREE`: a result the caller still has, or anything built on it, is never written) or, when every pooled one
  is taken, a new one; and the launch arguments of the last combination of buffers are kept, so a call with the same buffers
  launches them as they are."""
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
    nin = len(c.inputs)
    self.build = _builder(c.structure, [x if type(x) is not int else x if x < nin else ~(x - nin) for x in self.outs])
    self.pools = [_Pool(spec) for spec in self.fresh]
    self._key: list | None = None   # [(uop, device)] of the last call's inputs, and what they resolved to:
    self._ib: list[UOp] = []        # their base BUFFER UOps
    self._ibufs: list = []          # their Buffers
    self._ch: list | None = None    # the output pairs the last call chose
    self._launches: list = []       # (function, args) of every step for the last call's buffers

  def __call__(self, args: tuple, kwargs: dict) -> Any:
    """One replay on the call's arguments (its Tensors are the inputs): returns the function's result over this call's outputs."""
    try: key = list(map(_uop_dev, args)) if not kwargs else None  # every argument a Tensor: they are the inputs, in order
    except AttributeError: key = None
    if key is None: key = list(map(_uop_dev, ins := _tensors(args, kwargs)))
    else: ins = args
    if new := key != self._key: self._inputs(ins, key)
    ch = []
    for pool in self.pools:  # each fresh output: a pooled pair no one holds (`_holds`, inline), else a new one
      for e in pool:
        if getrefcount(e[0]) == _FREE_U and getrefcount(e[1]) == _FREE_B and getweakrefcount(e[0]) == _FREE_W: break
      else: e = self._fresh(pool)
      ch.append(e)
    if new or ch != self._ch: self._prepare(ch)
    if DEBUG.value >= 2: self.run(self._ibufs + [e[1] for e in ch])
    else:
      for fn, a in self._launches: fn(*a)
    engine.kernel_count += self.nkernels
    return self.build(self._ib, ch)

  @staticmethod
  def _fresh(pool: _Pool) -> tuple[UOp, Any]:
    """A new output pair for `pool`, which keeps it in place of its oldest."""
    e = fresh_buffer(*pool.spec, allocate=True)
    if len(pool) >= POOL: del pool[0]
    pool.append(e)
    return e

  def _inputs(self, ins: list | tuple, key: list) -> None:
    """Check the call's inputs `ins` (`key`: their (uop, device)) against the signature, realize lazy ones, and resolve their
    buffers (allocated) for this call and the next ones on the same inputs."""
    if len(ins) != len(self.signature): raise JitError(f"the jitted function was captured with {len(self.signature)} tensor inputs, got {len(ins)}")
    ib, bufs, lazy = [], [], False
    for i, ((u, dev), sig) in enumerate(zip(key, self.signature)):
      if (u.shape, u.dtype, dev) != sig: _changed(i, ins[i], sig)
      while u.op is Ops.RESHAPE: u = u.src[0]
      ib.append(u)
      if (b := u.__dict__.get(_BUF)) is None: lazy = True  # not a BUFFER yet (get_buffer's lookup, inline)
      else: bufs.append(b)
    if lazy:  # realize them all (realize() leaves the realized ones alone), then resolve again
      ins[0].realize(*ins[1:])
      key, ib = list(map(_uop_dev, ins)), [_base(t.uop) for t in ins]
      bufs = [get_buffer(u) for u in ib]  # a clear error for an input that is still no buffer
    for b in bufs:
      if not b.is_allocated(): b.allocate()
    self._key, self._ib, self._ibufs = key, ib, bufs  # last: a call that raised leaves the previous inputs in place

  def _prepare(self, ch: list) -> None:
    """The arguments of every step for this call's inputs and output pairs `ch`: launchers get the raw device buffers, graphs
    their launches; runners and copies (rare) take Buffers, which `_step` resolves at call time: `_launches` must hold no output
    pair's UOp or Buffer, or a dropped result would never read as free."""
    ib = self._ibufs
    dyn, launches = ib + [e[1] for e in ch], []
    for kind, r, refs, launch in self.steps:
      if kind is _KERNEL: launches.append((launch, [(dyn[x] if type(x) is int else x)._buf for x in refs]))
      elif kind is _GRAPH: launches.append((r.replay, (r.launches([_real(rs, dyn) for rs in refs]),)))
      else: launches.append((_step, (kind, r, refs, ib, ch)))
    self._ch, self._launches = ch, launches

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
