"""`Renderer`: turns a linearized UOp program into source text for one device family."""
from __future__ import annotations
import abc
from typing import TYPE_CHECKING, Any
if TYPE_CHECKING:
  from tg_uop.dtype import DType
  from tg_uop.ops import Ops
  from tg_uop.uop import UOp

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
  # ALU ops rendered natively on at least one dtype (None: every ALU op); the lowering rewrites the others into these
  supported_ops: frozenset[Ops] | None = None
  # ops of `supported_ops` native only on some scalar dtypes (e.g. PTX has ex2 for f32 but none for f64); others are native on all
  native_dtypes: dict[Ops, frozenset[DType]] = {}

  def __init__(self, arch: str | None = None):
    self.arch: str | None = arch if arch is not None else self.default_arch

  @abc.abstractmethod
  def render(self, name: str, uops: list[UOp]) -> str:
    """Source text for the kernel `name` from `uops`, a linearized program (execution order, ending with SINK)."""

  def supports(self, op: Ops, dtype: DType) -> bool:
    """Whether ALU `op` computing on `dtype` (its operands' dtype: the compared values for a comparison, the selected values for
    WHERE; vectors count as their scalar) renders natively. Where it does not, the lowering rewrites `op` into ops that do."""
    if self.supported_ops is not None and op not in self.supported_ops: return False
    return (dts := self.native_dtypes.get(op)) is None or dtype.scalar() in dts

  def __repr__(self) -> str: return f"{type(self).__name__}(arch={self.arch!r})"

def load_alt(u):
  """The value a gated LOAD gives where its gate is false: its first non-void source after the INDEX (void sources only order
  memory accesses), or None."""
  from tg_uop.dtype import dtypes
  return next((s for s in u.src[1:] if s.dtype != dtypes.void), None)

def alu_dtype(u) -> DType:
  """The scalar dtype ALU `u` computes on, the one `Renderer.supports` is asked about: its selected values' for WHERE, its first
  operand's otherwise (a comparison's result is bool, its operands are not)."""
  from tg_uop.ops import Ops
  return (u.src[-1] if u.op is Ops.WHERE else u.src[0]).dtype.scalar()
