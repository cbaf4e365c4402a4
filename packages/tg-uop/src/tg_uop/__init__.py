"""tg-uop: the minimal core of tg — dtypes, the UOp graph, the rewrite engine, symbolic rules, settings, the plugin
system and the runtime interfaces. Importing it loads no plugin: plugins load on first device use or listing."""
from tg_uop.dtype import DType, PtrDType, dtypes, least_upper_dtype, to_dtype
from tg_uop.helpers import Context, ContextVar, getenv, DEBUG, BEAM, NOOPT, JIT, VIZ, CACHELEVEL
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp, sym_infer
from tg_uop.rewrite import UPat, PatternMatcher, graph_rewrite, track_rewrites

__version__ = "0.1.0"
__all__ = ["DType", "PtrDType", "dtypes", "least_upper_dtype", "to_dtype", "Context", "ContextVar", "getenv", "DEBUG", "BEAM",
           "NOOPT", "JIT", "VIZ", "CACHELEVEL", "Ops", "GroupOp", "UOp", "sym_infer", "UPat", "PatternMatcher", "graph_rewrite",
           "track_rewrites", "Device"]

def __getattr__(name: str):
  # Device pulls in the plugin manager (and pluggy): only on first use
  if name == "Device":
    from tg_uop.device import Device
    return Device
  raise AttributeError(f"module 'tg_uop' has no attribute {name!r}")
