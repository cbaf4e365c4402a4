"""The NULL device plugin: compiles for any renderer and runs nothing, to test and time the compiler stack without hardware.

NULL keeps no memory: `copyin` discards the bytes and `copyout` leaves the destination untouched, so values read back from it
are whatever the destination held before. Its own "NULL" renderer prints the linearized UOps, one line each.
"""
from __future__ import annotations
from typing import Any
from tg_uop.plugins import hookimpl, DeviceSpec, RendererSpec
from tg_uop.runtime.allocator import Allocator, BufferSpec
from tg_uop.runtime.compiled import Compiled
from tg_uop.runtime.compiler import Compiler
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.renderer import Renderer

TG_API_VERSION = (1, 0)

def _fmt_uop(i: int, u: Any, index: dict[int, int]) -> str:
  # never fail on a malformed UOp: this renderer is how people look at programs that are wrong
  op = getattr(getattr(u, "op", None), "name", repr(getattr(u, "op", None)))
  srcs = ",".join(str(index.get(id(s), "?")) for s in getattr(u, "src", ()) or ())
  try: arg = repr(getattr(u, "arg", None))
  except Exception as e: arg = f"<unprintable arg: {type(e).__name__}>"
  try: dt = repr(getattr(u, "dtype", None))
  except Exception as e: dt = f"<unprintable dtype: {type(e).__name__}>"
  return f"{i:4d} {op:<14} {dt:<28} [{srcs}] {arg}"

class NullRenderer(Renderer):
  """Renders a linearized program as text: `index op dtype [source indices] arg` per UOp (a source not in the list shows `?`)."""
  device, suffix = "NULL", "NULL"
  has_local, has_shared, supports_float4 = True, True, True

  def render(self, name: str, uops: list) -> str:
    index = {id(u): i for i, u in enumerate(uops)}
    return "\n".join([f"// {name}: {len(uops)} uops"] + [_fmt_uop(i, u, index) for i, u in enumerate(uops)]) + "\n"

class NullCompiler(Compiler):
  """'Compiles' by returning the rendered source as UTF-8 bytes (nothing is cached: there is no work to save)."""
  def __init__(self): super().__init__(cachekey=None)
  def compile(self, src: str) -> bytes: return src.encode()

class NullProgram(Program):
  """A program that runs nothing: calls return at once (0.0 seconds when `wait`)."""
  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    check_launch_dims(global_size, local_size)
    return 0.0 if wait else None

class NullBuffer:
  """The placeholder NULL hands out instead of memory: just a size (and an offset for views)."""
  __slots__ = ("size", "offset")
  def __init__(self, size: int, offset: int = 0): self.size, self.offset = size, offset
  def __repr__(self) -> str: return f"<NullBuffer {self.size}B at {self.offset}>"

class NullAllocator(Allocator):
  """Allocates placeholders. `_copyin` discards data and `_copyout` writes nothing: NULL never holds values."""
  def _alloc(self, size: int, options: BufferSpec | None) -> NullBuffer: return NullBuffer(size)
  def _copyin(self, dest: NullBuffer, src: memoryview) -> None: pass
  def _copyout(self, dest: memoryview, src: NullBuffer) -> None: pass
  def _offset(self, buf: NullBuffer, size: int, offset: int) -> NullBuffer: return NullBuffer(size, buf.offset + offset)
  def _transfer(self, dest: NullBuffer, src: NullBuffer, nbytes: int) -> None: pass

class NullDevice(Compiled):
  """The NULL device: any renderer (its own by default), compiles to the source text, executes nothing."""
  def __init__(self, device: str = "NULL", renderer: Renderer | None = None, interface: Any = None):
    super().__init__(device, NullAllocator(device), renderer if renderer is not None else NullRenderer(), NullCompiler(), NullProgram,
                     executes=False)
    self.interface = interface

@hookimpl
def tg_devices() -> list[DeviceSpec]:
  return [DeviceSpec("NULL", loader=lambda: NullDevice, priority=-100, renderers=(),
                     description="compiles for any renderer and runs nothing (for tests and compile-only timing)")]

@hookimpl
def tg_renderers() -> list[RendererSpec]:
  return [RendererSpec("NULL", loader=lambda: NullRenderer, devices=("NULL",), description="linearized UOps as readable text")]
