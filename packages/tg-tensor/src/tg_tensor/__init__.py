"""The tg frontend: `Tensor`, autograd, the scheduler, the realize engine and memory planner, `TinyJit`, multi-device sharding,
`nn`, optimizers, state loading and the ONNX runner."""

__version__ = "0.1.0"
