"""The tg frontend: `Tensor`, autograd, the scheduler, the realize engine and memory planner, `TinyJit`, multi-device sharding,
`nn`, optimizers, state loading and the ONNX runner."""

__version__ = "0.1.0"
__all__ = ["Tensor", "dtypes", "Device", "TinyJit"]

def __getattr__(name: str):
  # lazy, so that `import tg_tensor.plugin` (run whenever plugins are listed) doesn't pull in numpy and the whole frontend
  if name == "Tensor":
    from tg_tensor.tensor import Tensor
    return Tensor
  if name == "dtypes":
    from tg_uop.dtype import dtypes
    return dtypes
  if name == "Device":
    from tg_uop.device import Device
    return Device
  if name == "TinyJit":
    from tg_tensor.jit import TinyJit
    return TinyJit
  raise AttributeError(f"module 'tg_tensor' has no attribute {name!r}")
