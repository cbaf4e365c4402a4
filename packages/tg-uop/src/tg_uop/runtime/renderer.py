"""`Renderer`: turns a linearized UOp program into source text for one device family."""
from __future__ import annotations
import abc
from typing import TYPE_CHECKING, Any
if TYPE_CHECKING: from tg_uop.uop import UOp

class Renderer(abc.ABC):
  """Base of every renderer: device limits the lowering reads, and `render(name, uops)` producing source text."""
  device: str = ""                                  # device family this renderer targets by default ("CPU", "NV", ...)
  suffix: str = ""                                  # short tag for the rendered language ("C", "PTX", ...), used in names and caches
  default_arch: str | None = None                   # arch used when none is named
  has_local: bool = True                            # has a local (workgroup) launch dimension
  has_shared: bool = True                           # has on-chip memory shared by a workgroup
  global_max: tuple[int, int, int] | None = (0x8FFFFFFF, 0x8FFFFFFF, 0x8FFFFFFF)
  local_max: tuple[int, int, int] | None = (0x8FFFFFFF, 0x8FFFFFFF, 0x8FFFFFFF)
  shared_max: int = 32768                           # bytes of shared memory per workgroup
  supports_float4: bool = True
  tensor_cores: list[Any] = []

  def __init__(self, arch: str | None = None):
    self.arch: str | None = arch if arch is not None else self.default_arch

  @abc.abstractmethod
  def render(self, name: str, uops: list[UOp]) -> str:
    """Source text for the kernel `name` from `uops`, a linearized program (execution order, ending with SINK)."""

  def __repr__(self) -> str: return f"{type(self).__name__}(arch={self.arch!r})"

def load_alt(u):
  """The value a gated LOAD gives where its gate is false: its first non-void source after the INDEX (void sources only order
  memory accesses), or None."""
  from tg_uop.dtype import dtypes
  return next((s for s in u.src[1:] if s.dtype != dtypes.void), None)
