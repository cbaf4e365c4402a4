"""TinyJit graph batching: runs of kernels on a device with a `graph` capability replay through one GraphRunner, built once and
fed each call's buffers; copies, other devices and single kernels launch on their own. The CPU device stands in for a GPU here,
with a recording GraphRunner that launches the kernels one by one."""
from types import SimpleNamespace
import numpy as np
import pytest
from tg_uop.device import Device
from tg_uop.helpers import Context
from tg_uop.runtime.graph import GraphRunner, Launch
from tg_tensor.tensor import Tensor
from tg_tensor.jit import TinyJit
from tg_tensor.jit_graph import GraphBatch, batch_steps
from tg_tensor import engine

class RecordingGraph(GraphRunner):
  """Runs the launches in order with each program (what a device graph must be equivalent to), recording builds and calls."""
  built: list = []
  def __init__(self, device, launches):
    super().__init__(device, launches)
    RecordingGraph.built.append(self)
    self.calls: list[list[Launch]] = []
  def __call__(self, launches):
    assert [lc.prg for lc in launches] == [lc.prg for lc in self.launches]
    self.calls.append(launches)
    for lc in launches: lc.prg(*lc.bufs, global_size=lc.global_size, local_size=lc.local_size, vals=lc.vals)

@pytest.fixture
def cpu_graph(monkeypatch):
  RecordingGraph.built = []
  monkeypatch.setattr(type(Device["CPU"]), "graph", RecordingGraph, raising=False)
  return RecordingGraph

def _kernel(dev, name="k", vars=(), gs=(4, 1, 1)):
  return SimpleNamespace(dev=dev, prg=SimpleNamespace(name=name), spec=SimpleNamespace(vars=list(vars), global_size=gs, local_size=(1, 1, 1)))

def test_batch_steps_groups_consecutive_kernels_of_one_graph_device():
  a, b = SimpleNamespace(graph=RecordingGraph), SimpleNamespace(graph=None)
  ka = [(_kernel(a, f"a{i}"), ()) for i in range(6)]
  kb, copy = (_kernel(b), ()), (None, ())
  kvar = (_kernel(a, "sym", vars=["n"]), ())
  out = batch_steps([ka[0], ka[1], copy, ka[2], kb, ka[3], ka[4], ka[5], kvar])
  kinds = [("G", [s[0].prg.name for s in x.steps]) if isinstance(x, GraphBatch) else x for x in out]
  assert kinds == [("G", ["a0", "a1"]), copy, ka[2], kb, ("G", ["a3", "a4", "a5"]), kvar]
  assert all(x.dev is a for x in out if isinstance(x, GraphBatch))

def test_batch_steps_splits_runs_by_device_and_is_off_with_jit_2():
  a1, a2 = SimpleNamespace(graph=RecordingGraph), SimpleNamespace(graph=RecordingGraph)
  steps = [(_kernel(a1), ()), (_kernel(a1), ()), (_kernel(a2), ()), (_kernel(a2), ())]
  out = batch_steps(steps)
  assert [x.dev for x in out] == [a1, a2] and all(isinstance(x, GraphBatch) for x in out)
  with Context(JIT=2): assert batch_steps(steps) == steps

def test_jit_replays_kernel_runs_through_one_graph_with_fresh_buffers(cpu_graph):
  @TinyJit
  def f(x, y): return ((x * y + 1).exp() * 2).sum(1).contiguous() + 1, x - y
  rng = np.random.default_rng(0)
  results = []
  for i in range(5):
    a, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)
    k0 = engine.kernel_count
    s, d = f(Tensor(a), Tensor(b))
    np.testing.assert_allclose(s.numpy(), (np.exp(a * b + 1) * 2).sum(1) + 1, rtol=1e-5)
    np.testing.assert_allclose(d.numpy(), a - b)
    results.append((d, a - b))
    if i >= 2: assert engine.kernel_count - k0 == len([st for st in f.captured.steps if st[0] is not None])
  for d, ref in results: np.testing.assert_allclose(d.numpy(), ref)  # replays wrote fresh outputs, never an earlier result
  kernels = [st for st in f.captured.steps if st[0] is not None]
  assert len(kernels) >= 2 and len(cpu_graph.built) == 1, "one graph, built on the first replay and reused"
  g = cpu_graph.built[0]
  assert len(g.launches) == len(kernels) and len(g.calls) == 3
  assert g.calls[0][0].bufs != g.calls[1][0].bufs, "each replay launches on that call's buffers"

def test_jit_without_a_graph_device_launches_kernels_one_by_one():
  @TinyJit
  def f(x): return (x * 2).sum(1) + 1
  for i in range(4): f(Tensor(np.full((4, 8), i, np.float32)))
  assert not any(isinstance(s, GraphBatch) for s in f.captured.batched)
  np.testing.assert_allclose(f(Tensor(np.ones((4, 8), np.float32))).numpy(), np.full(4, 17.0))

def test_graph_replays_on_the_same_buffers_reuse_their_launches_and_never_write_a_held_result(cpu_graph):
  @TinyJit
  def f(x, y): return ((x * y + 1).exp() * 2).sum(1).contiguous() + 1, x - y
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((4, 8)).astype(np.float32)
  x, y = Tensor(a), Tensor(b)
  for _ in range(3): f(x, y)
  held, _ = f(x, y)  # kept: later calls must write elsewhere
  for _ in range(4): f(x, y)  # results dropped, same inputs: the same buffers every call
  s, d = f(x, y)
  ref = (np.exp(a * b + 1) * 2).sum(1) + 1
  for t in (held, s): np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5)
  np.testing.assert_allclose(d.numpy(), a - b)
  calls = cpu_graph.built[0].calls  # [first replay (dropped), held, 4 dropped, s/d]
  assert len(cpu_graph.built) == 1 and len(calls) == 7
  assert calls[1] is calls[0], "the first replay's result was dropped: the held call wrote into its buffers, with its launches"
  assert all(c is calls[2] for c in calls[3:]), "while `held` lives, the calls use other buffers, and keep reusing those"
  assert [lc.bufs for lc in calls[2]] != [lc.bufs for lc in calls[1]]
