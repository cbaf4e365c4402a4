"""The CPU device, with the C and the LLVM renderer, passes the tg_uop.testing conformance suite through the real registry."""
import importlib.util
import pytest
from tg_uop.testing.conformance import AllocatorConformance, ProgramConformance, ImportCostConformance

class TestCPUAllocator(AllocatorConformance): device = "CPU"
class TestCPUPrograms(ProgramConformance): device = "CPU"
class TestCPUImportCost(ImportCostConformance): device, entry_module = "CPU", "tg_codegen.plugin"

@pytest.mark.skipif(importlib.util.find_spec("llvmlite") is None, reason="llvmlite is not installed (pip install tg-codegen[llvm])")
class TestCPULLVMPrograms(ProgramConformance): device = "CPU:LLVM"
