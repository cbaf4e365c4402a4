"""Host devices of tg-codegen: CPU (compiled C / LLVM IR) and PYTHON (an interpreter of linearized UOps)."""
