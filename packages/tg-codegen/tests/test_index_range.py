"""Kernels whose addresses leave the int32 range: refused with a clear error where the renderer computes addresses in 32 bits
(instead of wrapping around silently), rendered where it computes them in 64 bits."""
import pytest
from tg_codegen.examples import add
from tg_codegen.program import get_program
from tg_codegen.renderer.cuda import CUDARenderer
from tg_codegen.renderer.ptx import PTXRenderer
from tg_codegen.renderer.cstyle import ClangRenderer

BIG = 2**31 + 64

@pytest.mark.parametrize("ren", [CUDARenderer("sm_90"), PTXRenderer("sm_90"), ClangRenderer()], ids=["cuda", "ptx", "c"])
def test_addresses_beyond_int32_are_refused(ren):
  with pytest.raises(ValueError, match=r"beyond the int32 range .* split the tensor"): get_program(add(BIG).ast, ren)

def test_just_below_the_limit_renders():
  get_program(add(2**31 - 64).ast, CUDARenderer("sm_90"))

def test_llvm_scalar_addresses_are_64_bit():
  llvmir = pytest.importorskip("llvmlite")  # noqa: F841
  from tg_codegen.renderer.llvmir import LLVMRenderer
  from tg_codegen.kernel import Opt, OptOps
  # no vector lanes (NOOPT-like: no opts): scalar addresses, computed in i64 by this renderer
  spec = get_program(add(BIG).ast, LLVMRenderer(), [Opt(OptOps.NOLOCALS)] if LLVMRenderer().has_local else [])
  assert "i64" in spec.src
