"""Code generation for tg: opt ops and `KernelInfo`, heuristic and BEAM search, lowering passes, the linearizer, the renderers
(C, LLVM IR, CUDA C, PTX, AMDGPU) and the host devices CPU and PYTHON."""

__version__ = "0.1.0"
