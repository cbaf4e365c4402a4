"""The `tg.plugins` entry point of tg-tensor: the module tg imports to collect this package's hook implementations.

It is imported whenever plugins are listed or a device is first used, so it must stay cheap: heavy code loads lazily, from the
loaders in the specs its hooks return (no numpy here)."""
from __future__ import annotations
from typing import Callable
from tg_uop.plugins import hookimpl, FrontendSpec

# the plugin API version this package is written against; the core refuses a different major or a newer minor
TG_API_VERSION = (1, 0)

def _state_fn(name: str) -> Callable[[], Callable]:
  """A loader returning `tg_tensor.nn.state.<name>`, imported only when called."""
  def loader() -> Callable:
    import importlib
    return getattr(importlib.import_module("tg_tensor.nn.state"), name)
  return loader

@hookimpl
def tg_frontends() -> list[FrontendSpec]:
  """Weight-file loaders: safetensors (lazy), PyTorch zip checkpoints (without torch) and GGUF (quantized types dequantized)."""
  return [FrontendSpec("SAFETENSORS", (".safetensors",), _state_fn("safe_load"), "safetensors files, read lazily (only the tensors used)"),
          FrontendSpec("TORCH", (".pt", ".pth"), _state_fn("torch_load"), "PyTorch zip checkpoints written by torch.save, read without torch"),
          FrontendSpec("GGUF", (".gguf",), _state_fn("gguf_load"), "GGUF files (llama.cpp); Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K dequantized")]
