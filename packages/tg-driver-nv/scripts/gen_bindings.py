#!/usr/bin/env python3
"""Generate tg_driver_nv/autogen/cuda.py and autogen/nvrtc.py from the CUDA toolkit headers with ctypesgen.

ctypesgen parses the header (`--output-language=json`); this script keeps only the functions the CUDA device calls, plus every
type, enum and constant they need, and writes a small module whose functions resolve on first use: importing a generated module
never loads libcuda or libnvrtc. Rerun it after a toolkit upgrade:

    pip install ctypesgen
    python packages/tg-driver-nv/scripts/gen_bindings.py                      # headers from /usr/local/cuda and the nvrtc wheel
    python packages/tg-driver-nv/scripts/gen_bindings.py --nvrtc-header /path/to/nvrtc.h
"""
from __future__ import annotations
import argparse, importlib.util, json, os, pathlib, re, shutil, subprocess, sys, tempfile

OUT_DIR = pathlib.Path(__file__).resolve().parents[1] / "src" / "tg_driver_nv" / "autogen"

# the driver API functions the CUDA device calls (a macro alias such as cuMemAlloc -> cuMemAlloc_v2 is followed automatically)
CUDA_FUNCTIONS = (
  "cuInit", "cuDriverGetVersion", "cuGetErrorString", "cuGetErrorName", "cuDeviceGet", "cuDeviceGetCount", "cuDeviceGetName",
  "cuDeviceGetAttribute", "cuDeviceTotalMem", "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease", "cuCtxSetCurrent",
  "cuCtxGetCurrent", "cuCtxSynchronize", "cuMemGetInfo", "cuMemAlloc", "cuMemFree", "cuMemAllocHost", "cuMemFreeHost",
  "cuMemcpyHtoD", "cuMemcpyDtoH", "cuMemcpyDtoD", "cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuMemcpyDtoDAsync",
  "cuMemcpyPeer", "cuMemsetD8", "cuModuleLoadData", "cuModuleLoadDataEx", "cuModuleUnload", "cuModuleGetFunction",
  "cuModuleGetGlobal",  # a kernel's dynamic shared memory size, from a symbol the CUDA renderer emits
  "cuFuncGetAttribute", "cuFuncSetAttribute", "cuLaunchKernel", "cuEventCreate", "cuEventRecord", "cuEventSynchronize",
  "cuEventElapsedTime", "cuEventDestroy", "cuStreamCreate", "cuStreamSynchronize", "cuStreamDestroy",
  # CUDA graphs (TinyJit replay): one kernel node per captured kernel, parameters updated in place on the instantiated graph
  "cuGraphCreate", "cuGraphDestroy", "cuGraphAddKernelNode", "cuGraphInstantiate", "cuGraphExecDestroy", "cuGraphLaunch",
  "cuGraphExecKernelNodeSetParams",
  "cuTensorMapEncodeTiled")  # TMA: a kernel's bulk tensor copies read a 128-byte tensor map built here per buffer address
NVRTC_FUNCTIONS = (
  "nvrtcGetErrorString", "nvrtcVersion", "nvrtcGetNumSupportedArchs", "nvrtcGetSupportedArchs", "nvrtcCreateProgram",
  "nvrtcDestroyProgram", "nvrtcCompileProgram", "nvrtcGetPTXSize", "nvrtcGetPTX", "nvrtcGetCUBINSize", "nvrtcGetCUBIN",
  "nvrtcGetProgramLogSize", "nvrtcGetProgramLog")

_SIMPLE = {("void", 0): "None", ("char", 0): "ctypes.c_char", ("int", 0): "ctypes.c_int", ("short", 0): "ctypes.c_short",
           ("float", 0): "ctypes.c_float", ("double", 0): "ctypes.c_double", ("int", 1): "ctypes.c_long",
           ("int", 2): "ctypes.c_longlong", ("size_t", 0): "ctypes.c_size_t", ("_Bool", 0): "ctypes.c_bool"}
_UNSIGNED = {"ctypes.c_char": "ctypes.c_ubyte", "ctypes.c_int": "ctypes.c_uint", "ctypes.c_short": "ctypes.c_ushort",
             "ctypes.c_long": "ctypes.c_ulong", "ctypes.c_longlong": "ctypes.c_ulonglong", "ctypes.c_size_t": "ctypes.c_size_t"}
_FIXED = {"int8_t": "ctypes.c_int8", "uint8_t": "ctypes.c_uint8", "int16_t": "ctypes.c_int16", "uint16_t": "ctypes.c_uint16",
          "int32_t": "ctypes.c_int32", "uint32_t": "ctypes.c_uint32", "int64_t": "ctypes.c_int64", "uint64_t": "ctypes.c_uint64",
          "size_t": "ctypes.c_size_t", "uintptr_t": "ctypes.c_size_t"}

def default_cuda_header() -> pathlib.Path:
  """cuda.h of the toolkit: $CUDA_HOME or /usr/local/cuda."""
  return pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include" / "cuda.h"

def default_nvrtc_header() -> pathlib.Path | None:
  """nvrtc.h of the toolkit, else of NVIDIA's nvidia-cuda-nvrtc wheel (which ships it), else None."""
  cands = [pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include" / "nvrtc.h"]
  if (spec := importlib.util.find_spec("nvidia")) is not None:
    for root in spec.submodule_search_locations or []: cands += sorted(pathlib.Path(root).glob("*/include/nvrtc.h"))
  return next((p for p in cands if p.is_file()), None)

def run_ctypesgen(header: pathlib.Path, ctypesgen: str) -> list[dict]:
  """ctypesgen's JSON description of every symbol in `header`."""
  with tempfile.TemporaryDirectory() as d:
    out = pathlib.Path(d) / "out.json"
    # C11 _Alignas trips ctypesgen's C parser; it only affects struct alignment we never use from Python
    cmd = [ctypesgen, "--output-language=json", "-D_Alignas(x)=", "-I", str(header.parent), str(header), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not out.is_file(): raise RuntimeError(f"ctypesgen failed on {header}:\n{res.stderr[-4000:]}")
    return json.loads(out.read_text())

class Emitter:
  """Turns ctypesgen descriptions into Python source, emitting each needed typedef/struct/enum once, dependencies first."""
  def __init__(self, desc: list[dict]):
    self.by_name: dict[tuple[str, str], dict] = {(d["type"], d["name"]): d for d in desc}
    self.typedefs = {d["name"]: d for d in desc if d["type"] == "typedef"}
    self.macros = {d["name"]: d["value"] for d in desc if d["type"] == "macro"}
    self.functions = {d["name"]: d for d in desc if d["type"] == "function"}
    # ctypesgen folds enumerator expressions (`X = Y | 0x10`) into its "constant" entries
    self.constants = {d["name"]: d["value"] for d in desc if d["type"] == "constant"}
    self.lines: list[str] = []
    self.done: set[str] = set()

  def resolve_alias(self, name: str) -> str:
    """The real symbol behind a `#define cuX cuX_v2` (also through __CUDA_API_PTDS(...) wrappers)."""
    while name not in self.functions and name in self.macros:
      m = re.search(r"([A-Za-z_]\w*)\s*\)*\s*$", self.macros[name])
      if m is None or m.group(1) == name: break
      name = m.group(1)
    return name

  def ctype(self, t: dict) -> str:
    """A Python expression for the ctypes type described by `t`."""
    k = t["Klass"]
    if k == "CtypesSimple":
      base = _SIMPLE.get((t["name"], t.get("longs", 0)))
      if base is None: raise ValueError(f"unknown simple C type {t}")
      return _UNSIGNED.get(base, base) if not t.get("signed", True) else base
    if k == "CtypesTypedef":
      if t["name"] in _FIXED: return _FIXED[t["name"]]
      self.typedef(t["name"])
      return t["name"]
    if k == "CtypesPointer":
      dest = t["destination"]
      if dest["Klass"] == "CtypesSimple" and dest["name"] == "void": return "ctypes.c_void_p"
      if dest["Klass"] == "CtypesSimple" and dest["name"] == "char": return "ctypes.c_char_p"
      # handles (pointers to opaque structs) and function pointers travel as plain addresses
      if dest["Klass"] == "CtypesFunction" or (dest["Klass"] == "CtypesStruct" and dest.get("opaque")): return "ctypes.c_void_p"
      return f"ctypes.POINTER({self.ctype(dest)})"
    if k == "CtypesEnum":
      self.enum(t)
      return "ctypes.c_int"
    if k == "CtypesArray": return f"({self.ctype(t['base'])} * {t['count']['value']})"
    if k == "CtypesStruct": return self.struct(t)
    if k == "CtypesFunction": return "ctypes.c_void_p"
    if k == "CtypesSpecial": return "ctypes.c_char_p" if t["name"] == "String" else "ctypes.c_void_p"  # ctypesgen's char* / va_list
    raise ValueError(f"unsupported C type {k}")

  def enum(self, t: dict) -> None:
    key = f"enum {t.get('tag')}"
    if key in self.done: return
    self.done.add(key)
    self.lines.append(f"# enum {t.get('tag') or '(anonymous)'}")
    self.lines += [f"{n} = {self.constants.get(n, v.get('value'))}" for n, v in t["enumerators"]]

  def struct(self, t: dict) -> str:
    name = f"struct_{t['tag']}" if t["variety"] == "struct" else f"union_{t['tag']}"
    if name in self.done: return name
    self.done.add(name)
    base = "ctypes.Structure" if t["variety"] == "struct" else "ctypes.Union"
    full = self.by_name.get((t["variety"], t["tag"]))
    members = (full or t)["ctype"]["members"] if full and "ctype" in full else t.get("members")
    if not members:
      self.lines.append(f"class {name}({base}): pass")
      return name
    fields = [f"({m[0]!r}, {self.ctype(m[1])})" for m in members]
    self.lines.append(f"class {name}({base}): _fields_ = [{', '.join(fields)}]")
    return name

  def typedef(self, name: str) -> None:
    if name in self.done: return
    self.done.add(name)
    d = self.typedefs.get(name)
    if d is None: raise ValueError(f"typedef {name} is not in the header")
    self.lines.append(f"{name} = {self.ctype(d['ctype'])}")

  def function(self, name: str) -> str:
    """A `_FUNCTIONS` table entry for `name` (after emitting the types it needs)."""
    d = self.functions[name]
    args = [self.ctype(a) for a in d["args"]]
    if args == ["None"]: args = []  # f(void)
    return f"  {name!r}: ([{', '.join(args)}], {self.ctype(d['return'])}),"

_TEMPLATE = '''"""ctypes bindings for {lib} ({header}), generated by scripts/gen_bindings.py with ctypesgen {ctv}; do not edit.

Only the functions tg-driver-nv calls are here. They resolve on first attribute access: importing this module loads no library.
"""
# ruff: noqa
import ctypes
from typing import Any

{types}

# name -> (argtypes, restype)
_FUNCTIONS: dict[str, tuple[list, Any]] = {{
{functions}
}}
# the names the header #defines to a versioned symbol (cuMemAlloc -> cuMemAlloc_v2)
_ALIASES: dict[str, str] = {{{aliases}}}

def __getattr__(name: str) -> Any:
  real = _ALIASES.get(name, name)
  if real not in _FUNCTIONS: raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
  from tg_driver_nv.libs import bind_function
  fn = bind_function({libkey!r}, real, *_FUNCTIONS[real], fallback=name if name != real else None)
  globals()[name] = fn
  return fn
'''

def generate(header: pathlib.Path, functions: tuple[str, ...], lib: str, libkey: str, ctypesgen: str) -> str:
  """The Python source of one bindings module."""
  em = Emitter(run_ctypesgen(header, ctypesgen))
  entries, aliases = [], {}
  for name in functions:
    real = em.resolve_alias(name)
    if real not in em.functions: raise ValueError(f"{name} is not declared in {header}")
    if real != name: aliases[name] = real
    entries.append(em.function(real))
  ctv = subprocess.run([ctypesgen, "--version"], capture_output=True, text=True).stdout.strip()
  return _TEMPLATE.format(lib=lib, header=header.name, ctv=ctv, types="\n".join(em.lines), functions="\n".join(entries),
                          aliases="".join(f"\n  {k!r}: {v!r}," for k, v in aliases.items()) + ("\n" if aliases else ""), libkey=libkey)

def main(argv: list[str] | None = None) -> int:
  """Command line entry point."""
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--cuda-header", type=pathlib.Path, default=default_cuda_header(), help="path to cuda.h (default: %(default)s)")
  ap.add_argument("--nvrtc-header", type=pathlib.Path, default=None,
                  help="path to nvrtc.h (default: the toolkit's, else the nvidia-cuda-nvrtc wheel's)")
  ap.add_argument("--out-dir", type=pathlib.Path, default=OUT_DIR, help="where to write cuda.py and nvrtc.py (default: %(default)s)")
  ap.add_argument("--ctypesgen", default=shutil.which("ctypesgen"), help="the ctypesgen executable (default: on PATH)")
  args = ap.parse_args(argv)
  if args.ctypesgen is None: ap.error("ctypesgen is not installed: pip install ctypesgen")
  nvrtc_header = args.nvrtc_header or default_nvrtc_header()
  for what, h in (("cuda.h", args.cuda_header), ("nvrtc.h", nvrtc_header)):
    if h is None or not pathlib.Path(h).is_file():
      ap.error(f"{what} not found ({h}): install the CUDA toolkit, `pip install nvidia-cuda-nvrtc`, or pass --{what[:-2]}-header")
  args.out_dir.mkdir(parents=True, exist_ok=True)
  for fname, header, funcs, lib, key in (("cuda.py", args.cuda_header, CUDA_FUNCTIONS, "the CUDA driver API (libcuda)", "cuda"),
                                         ("nvrtc.py", nvrtc_header, NVRTC_FUNCTIONS, "NVRTC (libnvrtc)", "nvrtc")):
    src = generate(pathlib.Path(header), funcs, lib, key, args.ctypesgen)
    (args.out_dir / fname).write_text(src)
    print(f"wrote {args.out_dir / fname} ({src.count(chr(10))} lines) from {header}")
  return 0

if __name__ == "__main__": sys.exit(main())
