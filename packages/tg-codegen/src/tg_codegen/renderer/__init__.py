"""Renderers: linearized UOp programs to source text (C, CUDA C, PTX, LLVM IR, AMDGPU). Each module imports only what it needs."""
