"""`tg_uop.testing`: the conformance suite for backend authors (hand-written programs, pytest conformance classes, a pytest plugin).

Import cost matters (the pytest plugin is loaded in every pytest run): submodules load on first use of their names.
"""
from __future__ import annotations
import importlib
from typing import Any

_LAZY = {
  "ConformanceProgram": "programs", "PROGRAMS": "programs", "all_programs": "programs", "get_program": "programs",
  "run_program": "programs", "compile_program": "programs", "check_results": "programs", "probe_device": "programs",
  "validate_linear": "programs", "linearize_steps": "programs", "unsupported": "programs",
  "AllocatorConformance": "conformance", "ProgramConformance": "conformance", "ImportCostConformance": "conformance",
}
__all__ = sorted(_LAZY)

def __getattr__(name: str) -> Any:
  if name in _LAZY: return getattr(importlib.import_module(f"tg_uop.testing.{_LAZY[name]}"), name)
  raise AttributeError(f"module 'tg_uop.testing' has no attribute {name!r}")
