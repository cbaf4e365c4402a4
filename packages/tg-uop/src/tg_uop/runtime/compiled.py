"""`Compiled`: the base of every device: its allocator, renderer, compiler and program class."""
from __future__ import annotations
from tg_uop.runtime.allocator import Allocator
from tg_uop.runtime.compiler import Compiler
from tg_uop.runtime.graph import GraphRunner
from tg_uop.runtime.program import Program
from tg_uop.runtime.renderer import Renderer

class Compiled:
  """A device named `device` (canonical, e.g. "NV:1"). `runtime` is the `Program` subclass that loads its binaries.

  `executes=False` marks a device that compiles but never runs anything (NULL): results read back from it are meaningless.
  `graph` is the device's `GraphRunner` class when it can launch a fixed sequence of kernels as one unit (TinyJit replays with it),
  None when it launches kernels one by one.
  """
  graph: type[GraphRunner] | None = None
  def __init__(self, device: str, allocator: Allocator, renderer: Renderer | None, compiler: Compiler | None,
               runtime: type[Program] | None, executes: bool = True):
    self.device, self.allocator, self.renderer, self.compiler, self.runtime, self.executes = \
      device, allocator, renderer, compiler, runtime, executes
    if allocator.device is None: allocator.device = device

  def synchronize(self) -> None:
    """Block until all work submitted to this device is done (devices that run synchronously have nothing to wait for)."""

  def compile(self, src: str) -> bytes:
    """`src` compiled by this device's compiler (disk-cached)."""
    if self.compiler is None: raise RuntimeError(f"device {self.device} has no compiler: it can't build programs")
    return self.compiler.compile_cached(src)

  def program(self, name: str, lib: bytes) -> Program:
    """The binary `lib` loaded as a runnable `Program` named `name`."""
    if self.runtime is None: raise RuntimeError(f"device {self.device} has no program runtime: it can't load programs")
    return self.runtime(self, name, lib)

  def finalize(self) -> None:
    """Release device resources at shutdown (the default holds none)."""

  def __repr__(self) -> str: return f"<{type(self).__name__} {self.device} renderer={self.renderer!r}>"

