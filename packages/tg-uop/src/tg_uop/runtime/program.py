"""`Program`: a compiled kernel loaded on a device, called with buffers and launch dimensions."""
from __future__ import annotations
import abc
from typing import Any, Callable

def check_launch_dims(global_size: tuple[int, ...], local_size: tuple[int, ...]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
  """`global_size` and `local_size` padded to 3 dimensions, with a clear error when one is not positive ints."""
  out = []
  for what, dims in (("global_size", global_size), ("local_size", local_size)):
    dims = tuple(dims)
    if len(dims) > 3 or not all(isinstance(d, int) and d >= 1 for d in dims):
      raise ValueError(f"{what} must be up to 3 positive ints, got {dims!r}")
    out.append(dims + (1,) * (3 - len(dims)))
  return out[0], out[1]

class Program(abc.ABC):
  """A kernel binary `lib` named `name`, loaded on `device` (the `Compiled` device that runs it)."""
  def __init__(self, device: Any, name: str, lib: bytes):
    self.device, self.name, self.lib = device, name, lib

  @abc.abstractmethod
  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    """Launch on the device's opaque buffers `bufs` with integer variables `vals`; with `wait`, block and return seconds taken."""

  def launcher(self, global_size: tuple[int, ...], local_size: tuple[int, ...]) -> Callable[..., None]:
    """A callable `launch(*bufs)` that runs this program on opaque buffers with these launch dims, no variables and no timing:
    what a TinyJit replay calls for each captured kernel. The dims are checked here, once; devices override it to move more
    per-launch work out of the call."""
    gs, ls = check_launch_dims(global_size, local_size)
    def launch(*bufs: Any) -> None: self(*bufs, global_size=gs, local_size=ls)
    return launch

  def __repr__(self) -> str: return f"<{type(self).__name__} {self.name!r} on {getattr(self.device, 'device', self.device)}>"
