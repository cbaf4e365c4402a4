"""The `tg.plugins` entry point of tg-codegen: the CPU and PYTHON devices and the C, LLVM, CUDA, PTX, AMDGPU and PYTHON renderers.

It is imported whenever plugins are listed or a device is first used, so it stays cheap: every class loads lazily, from the
loaders in the specs its hooks return."""
from __future__ import annotations
import importlib.util, os, shutil
from tg_uop.plugins import hookimpl, DeviceSpec, RendererSpec

# the plugin API version this package is written against; the core refuses a different major or a newer minor
TG_API_VERSION = (1, 0)

def _has_llvmlite() -> bool: return importlib.util.find_spec("llvmlite") is not None
def _cc() -> str | None: return os.environ.get("CC") or shutil.which("clang") or shutil.which("gcc") or shutil.which("cc")

def _cpu_probe() -> str | None:
  if _has_llvmlite() or _cc(): return None
  return "no C compiler found and llvmlite is not installed: install gcc or clang, or `pip install tg-codegen[llvm]`"

def _load(module: str, name: str):
  def loader():
    import importlib
    return getattr(importlib.import_module(module), name)
  return loader

@hookimpl
def tg_devices() -> list[DeviceSpec]:
  """CPU (the embedded default: C compiler or llvmlite, all cores) and PYTHON (a slow, exact interpreter of UOps)."""
  # llvmlite compiles in-process, several times faster than a C compiler subprocess: preferred when installed
  cpu_renderers = ("LLVM", "C") if _has_llvmlite() else ("C", "LLVM")
  return [DeviceSpec("CPU", _load("tg_codegen.devices.cpu", "CPUDevice"), _cpu_probe, priority=0, renderers=cpu_renderers,
                     description="host CPU: C compiled by gcc/clang (or LLVM IR through llvmlite), run across all cores"),
          DeviceSpec("PYTHON", _load("tg_codegen.devices.python", "PythonDevice"), priority=-50, renderers=("PYTHON",),
                     description="interpreter of linearized UOps: slow, exact, the reference semantics")]

@hookimpl
def tg_renderers() -> list[RendererSpec]:
  """Renderers turn linearized UOps into source; they need no hardware, so all of them live here."""
  return [RendererSpec("C", _load("tg_codegen.renderer.cstyle", "CRenderer"), devices=("CPU",), description="C99 for gcc and clang"),
          RendererSpec("LLVM", _load("tg_codegen.renderer.llvmir", "LLVMRenderer"), devices=("CPU",), description="LLVM IR (llvmlite)"),
          RendererSpec("CUDA", _load("tg_codegen.renderer.cuda", "CUDARenderer"), devices=("CUDA", "NV"),
                       archs=("sm_80", "sm_86", "sm_89", "sm_90"), description="CUDA C for NVRTC/nvcc"),
          RendererSpec("PTX", _load("tg_codegen.renderer.ptx", "PTXRenderer"), devices=("NV", "CUDA"),
                       archs=("sm_80", "sm_86", "sm_89", "sm_90"), description="PTX written directly"),
          RendererSpec("AMDGPU", _load("tg_codegen.renderer.amdgpu", "AMDGPURenderer"), devices=("AMD",), archs=("gfx942",),
                       description="LLVM IR for AMD GPUs (gfx942, MI300X)"),
          RendererSpec("PYTHON", _load("tg_codegen.devices.python", "PythonRenderer"), devices=("PYTHON",),
                       description="serialized UOps for the PYTHON device")]
