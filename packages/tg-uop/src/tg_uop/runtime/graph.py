"""`GraphRunner`: a device capability to launch a fixed sequence of kernels as one unit (a CUDA graph, say), built once and replayed.

A device that has one sets `graph` on its `Compiled` class to a `GraphRunner` subclass (the default, None, means the device launches
kernels one by one). `TinyJit` builds one runner per run of consecutive kernels on such a device and replays it on every call with
the call's buffers: the programs and launch dimensions stay fixed, the buffers and variable values may change between calls."""
from __future__ import annotations
import abc
from typing import Any, NamedTuple
from tg_uop.runtime.program import Program

class Launch(NamedTuple):
  """One kernel launch: the loaded program, its opaque device buffers and int32 variable values, and its launch dimensions."""
  prg: Program
  bufs: tuple[Any, ...]
  global_size: tuple[int, int, int]
  local_size: tuple[int, int, int]
  vals: tuple[int, ...] = ()

class GraphRunner(abc.ABC):
  """The launches `launches` on `device`, built once into the device's graph form; calling it runs them in order, after the
  earlier work on the device and before the later, like the same launches issued one by one."""
  def __init__(self, device: Any, launches: list[Launch]):
    if not launches: raise ValueError(f"a graph on {getattr(device, 'device', device)} needs at least one launch")
    self.device, self.launches = device, list(launches)

  def check(self, launches: list[Launch]) -> None:
    """Raise a ValueError when `launches` is not the captured sequence with only buffers and variable values changed."""
    if len(launches) != len(self.launches): raise ValueError(f"graph captured {len(self.launches)} launches, replayed with {len(launches)}")
    for i, (a, b) in enumerate(zip(launches, self.launches)):
      if a.prg is not b.prg or a.global_size != b.global_size or a.local_size != b.local_size or len(a.bufs) != len(b.bufs):
        raise ValueError(f"launch {i} of the graph changed its program, launch dims or buffer count: only buffers and values may change")

  @abc.abstractmethod
  def __call__(self, launches: list[Launch]) -> None:
    """Run the captured sequence with the buffers and variable values of `launches` (same programs and dims, in the same order)."""
