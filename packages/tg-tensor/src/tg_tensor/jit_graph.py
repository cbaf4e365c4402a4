"""Graph batching for `TinyJit` replay: runs of consecutive captured kernels on a device with a `graph` capability (a CUDA graph,
say; see `tg_uop.runtime.graph`) are launched as one unit, built on the first replay and updated with each call's buffers.

`JIT=2` turns batching off (every kernel launches on its own, as tinygrad's JIT=2 does)."""
from __future__ import annotations
from typing import Any
from tg_uop.helpers import JIT
from tg_uop.runtime.graph import Launch
from tg_uop.runtime.program import check_launch_dims
from tg_uop.uop import UOp

GRAPH_MIN_KERNELS = 2  # a single kernel gains nothing from a graph: it launches directly

def _graph_device(runner: Any) -> Any:
  """The device of a captured kernel step when it can join a graph (a fixed launch on a device with `graph`), else None."""
  dev = getattr(runner, "dev", None)
  if dev is None or getattr(dev, "graph", None) is None or getattr(runner, "prg", None) is None: return None
  spec = runner.spec
  if spec.vars or not all(isinstance(d, int) for d in (*spec.global_size, *spec.local_size)): return None
  return dev

class GraphBatch:
  """Captured kernel steps `steps` ((runner, buffer UOps) pairs, in order) on `dev`, launched through `dev.graph` as one unit."""
  def __init__(self, dev: Any, steps: list[tuple[Any, tuple[UOp, ...]]]):
    self.dev, self.steps, self.graph = dev, steps, None
    self.dims = [check_launch_dims(r.spec.global_size, r.spec.local_size) for r, _ in steps]

  def launches(self, bufs: list[list[Any]]) -> list[Launch]:
    """The batch's launches on allocated Buffers `bufs` (`bufs[i]` for the i-th kernel, in the order of its captured buffers):
    a replay whose buffers did not change since the last call keeps these and skips building them."""
    return [Launch(r.prg, tuple(b._buf for b in bs), gs, ls) for (r, _), bs, (gs, ls) in zip(self.steps, bufs, self.dims)]

  def replay(self, launches: list[Launch]) -> None:
    """Run `launches` (from `launches()`) as the device graph, built on the first call."""
    if self.graph is None: self.graph = self.dev.graph(self.dev, launches)
    self.graph(launches)

  def __call__(self, bufs: list[list[Any]]) -> None:
    """Launch the batch on this call's allocated Buffers: `bufs[i]` for the i-th kernel, in the order of its captured buffers."""
    self.replay(self.launches(bufs))

def batch_steps(steps: list[tuple[Any, tuple[UOp, ...]]]) -> list[Any]:
  """`steps` with every run of at least GRAPH_MIN_KERNELS consecutive kernels on one graph-capable device replaced by a
  `GraphBatch`; copies (runner None), kernels of other devices and kernels that can't join a graph stay single steps."""
  if JIT >= 2: return list(steps)
  out: list[Any] = []
  run: list = []
  def flush():
    if len(run) >= GRAPH_MIN_KERNELS: out.append(GraphBatch(_graph_device(run[0][0]), list(run)))
    else: out.extend(run)
    run.clear()
  for step in steps:
    dev = _graph_device(step[0]) if step[0] is not None else None
    if run and dev is not _graph_device(run[0][0]): flush()
    if dev is not None: run.append(step)
    else: out.append(step)
  flush()
  return out
