"""Finding and loading libcuda and libnvrtc, lazily: nothing here runs at import time, so the plugin module stays cheap."""
from __future__ import annotations
import ctypes, ctypes.util, functools, glob, importlib.util, os, pathlib, sys
from typing import Any

_SYSTEM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64",
                "/usr/local/nvidia/lib", "/usr/lib/wsl/lib")

def cuda_home() -> pathlib.Path:
  """The CUDA toolkit root: $CUDA_HOME, $CUDA_PATH or /usr/local/cuda."""
  return pathlib.Path(os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda")

def _ld_dirs() -> list[str]: return [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]

def _nvidia_wheel_dirs(sub: str) -> list[pathlib.Path]:
  # NVIDIA's PyPI wheels install under the `nvidia` namespace package: nvidia/cu13/<sub>, nvidia/cuda_nvrtc/<sub>, ...
  try: spec = importlib.util.find_spec("nvidia")
  except (ImportError, ValueError): spec = None
  if spec is None: return []
  return [d for root in (spec.submodule_search_locations or []) for d in sorted(pathlib.Path(root).glob(f"*/{sub}")) if d.is_dir()]

def find_libcuda_file() -> str | None:
  """A path to libcuda.so.1 found without loading it (LD_LIBRARY_PATH, the usual system dirs), else None."""
  for d in _ld_dirs() + list(_SYSTEM_DIRS):
    for name in ("libcuda.so.1", "libcuda.so"):
      if os.path.exists(p := os.path.join(d, name)): return p
  return None

def libcuda_candidates() -> list[str]:
  """Names and paths to try, in order, when loading the CUDA driver library."""
  return [c for c in (os.environ.get("TG_LIBCUDA"), "libcuda.so.1", find_libcuda_file(), ctypes.util.find_library("cuda")) if c]

def libnvrtc_candidates() -> list[str]:
  """Names and paths to try, in order, when loading NVRTC: $TG_LIBNVRTC, the toolkit, the nvidia-cuda-nvrtc wheel, the system."""
  out = [os.environ.get("TG_LIBNVRTC")] + [str(p) for d in (cuda_home() / "lib64", cuda_home() / "lib") for p in
                                           sorted(d.glob("libnvrtc.so*"), reverse=True)]
  out += [p for d in _nvidia_wheel_dirs("lib") for p in sorted(glob.glob(str(d / "libnvrtc.so*")), reverse=True) if "builtins" not in p]
  out += [p for d in _ld_dirs() for p in sorted(glob.glob(os.path.join(d, "libnvrtc.so*")), reverse=True) if "builtins" not in p]
  return [c for c in out + [ctypes.util.find_library("nvrtc"), "libnvrtc.so"] if c]

_HOW_TO_FIX = {"cuda": "install the NVIDIA driver (it provides libcuda.so.1), or set TG_LIBCUDA to its path",
               "nvrtc": "install the CUDA toolkit or `pip install nvidia-cuda-nvrtc`, or set TG_LIBNVRTC to libnvrtc.so's path"}

@functools.cache
def load_library(key: str) -> ctypes.CDLL:
  """The loaded library "cuda" or "nvrtc" (once per process), or a RuntimeError listing what was tried and how to fix it."""
  if key not in _HOW_TO_FIX: raise ValueError(f"unknown library {key!r}: expected 'cuda' or 'nvrtc'")
  cands = libcuda_candidates() if key == "cuda" else libnvrtc_candidates()
  errors = []
  for c in dict.fromkeys(cands):
    try: return ctypes.CDLL(c)
    except OSError as e: errors.append(f"{c}: {e}")
  raise RuntimeError(f"can't load lib{key} ({'; '.join(errors) or 'no candidate found'}): {_HOW_TO_FIX[key]}")

def bind_function(key: str, name: str, argtypes: list, restype: Any, fallback: str | None = None) -> Any:
  """The C function `name` of library `key` with its prototype set; `fallback` is tried when an older library lacks `name`."""
  lib = load_library(key)
  try: fn = getattr(lib, name)
  except AttributeError:
    if fallback is None: raise RuntimeError(f"lib{key} ({lib._name}) has no function {name}: upgrade the NVIDIA driver / CUDA toolkit") from None
    return bind_function(key, fallback, argtypes, restype)
  fn.argtypes, fn.restype = argtypes, restype
  return fn

def cuda_probe() -> str | None:
  """None when a CUDA device may be usable here, else a sentence saying what is missing. Cheap: loads and initializes nothing."""
  if not sys.platform.startswith("linux"): return f"the CUDA device supports Linux only (this is {sys.platform})"
  if os.environ.get("TG_LIBCUDA") is None:
    if not os.path.exists("/dev/nvidiactl"):
      return "/dev/nvidiactl does not exist: no NVIDIA kernel driver is loaded, so there is no NVIDIA GPU to use"
    if not glob.glob("/dev/nvidia[0-9]*"): return "no NVIDIA GPU device node (/dev/nvidia0, ...) exists"
    if find_libcuda_file() is None and ctypes.util.find_library("cuda") is None:
      return "libcuda.so.1 (the NVIDIA driver's user-space library) was not found: install the NVIDIA driver or set TG_LIBCUDA"
  return None

@functools.cache
def cuda_unusable(name: str = "CUDA") -> str | None:
  """None when `Device[name]` opens, else why not (the probe's sentence, or the error raised while opening): what GPU tests skip on."""
  if (why := cuda_probe()) is not None: return why
  try:
    from tg_uop.device import Device
    Device[name]
  except Exception as e: return f"{type(e).__name__}: {e}"
  return None

