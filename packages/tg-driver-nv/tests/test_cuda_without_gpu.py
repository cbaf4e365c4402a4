"""The CUDA device on a machine without an NVIDIA GPU (CI): a cheap probe that says what is missing, one clear error from
`Device["CUDA"]`, CPU/NULL stays the default, and the generated bindings import without loading libcuda or libnvrtc."""
from __future__ import annotations
import importlib.util, os, pathlib, re, subprocess, sys, types
import pytest
from tg_uop.device import DeviceRegistry
from tg_uop.plugins import hookimpl, RendererSpec
from tg_uop.plugins.manager import PluginManager
from tg_uop.runtime.renderer import Renderer
from tg_uop.testing.conformance import ImportCostConformance
import tg_driver_nv.plugin as nv_plugin
from tg_driver_nv.libs import cuda_probe, load_library

PKG = pathlib.Path(__file__).resolve().parents[1]
HAS_GPU_NODE = os.path.exists("/dev/nvidiactl")
no_gpu_here = pytest.mark.skipif(HAS_GPU_NODE, reason="this machine has /dev/nvidiactl: the no-GPU behaviour can't be observed")

class _FakeCUDARenderer(Renderer):
  device, suffix = "CUDA", "CUDA"
  def render(self, name, uops): return ""

def _manager() -> PluginManager:
  # tg-driver-nv plus a stand-in for tg-codegen's renderers (this package's tests run without tg-codegen installed)
  rend = types.ModuleType("fake_codegen")
  rend.TG_API_VERSION = (1, 0)
  rend.tg_renderers = hookimpl(lambda: [RendererSpec("CUDA", lambda: _FakeCUDARenderer, devices=("CUDA", "NV")),
                                        RendererSpec("PTX", lambda: _FakeCUDARenderer, devices=("NV", "CUDA"))])
  pm = PluginManager()
  pm.load_module("tg_uop.null", name="null", dist="tg-uop")
  pm.load_module(rend, name="fake_codegen", dist="fake-codegen", version="1")
  assert pm.load_module("tg_driver_nv.plugin", name="nv", dist="tg-driver-nv").state == "loaded"
  return pm

def _maps_after(code: str) -> str:
  """Run `code` in a fresh interpreter and return which of libcuda/libnvrtc its process mapped."""
  script = code + "\nimport re\nprint(sorted(set(re.findall(r'lib(?:cuda|nvrtc)[\\w.]*', open('/proc/self/maps').read()))))"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
  res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
  assert res.returncode == 0, res.stderr
  return res.stdout.strip().splitlines()[-1]

# ---- plugin spec and probe ----
def test_plugin_registers_cuda_with_its_renderers_by_name():
  spec = {d.name: d for d in nv_plugin.tg_devices()}["CUDA"]
  assert spec.name == "CUDA" and spec.priority == 100 and spec.renderers == ("CUDA", "PTX")

@no_gpu_here
def test_probe_names_the_missing_driver_node():
  why = cuda_probe()
  assert why is not None and "/dev/nvidiactl" in why

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_probe_loads_no_library():
  assert _maps_after("import tg_driver_nv.plugin as p; p._probe_cuda()") == "[]"

# ---- the registry without a GPU ----
@no_gpu_here
@pytest.mark.parametrize("name", ["CUDA", "CUDA:PTX", "CUDA:1"])
def test_opening_cuda_fails_with_one_clear_message(name):
  reg = DeviceRegistry(_manager)
  with pytest.raises(RuntimeError) as e: reg[name]
  msg = str(e.value)
  assert msg.startswith(f"device {name} is not usable here") and "/dev/nvidiactl" in msg and "\n" not in msg

@no_gpu_here
def test_default_device_falls_back_when_no_gpu(monkeypatch):
  monkeypatch.delenv("DEV", raising=False)
  pm = _manager()
  reg = DeviceRegistry(lambda: pm)
  assert "CUDA" not in reg.get_available_devices() and reg.DEFAULT == "NULL"

# ---- bindings ----
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_bindings_and_device_module_import_without_loading_libraries():
  code = "import tg_driver_nv.autogen.cuda as c, tg_driver_nv.autogen.nvrtc as n, tg_driver_nv.cuda_device as d\n" \
         "assert c.CUDA_SUCCESS == 0 and n.NVRTC_SUCCESS == 0 and c.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR == 75"
  assert _maps_after(code) == "[]"

def test_generated_bindings_stay_small():
  for f in ("cuda.py", "nvrtc.py"):
    assert (PKG / "src" / "tg_driver_nv" / "autogen" / f).read_text().count("\n") < 3000, f"{f} grew past 3000 lines"

def test_every_driver_function_the_device_calls_is_bound():
  import tg_driver_nv.autogen.cuda as cu, tg_driver_nv.autogen.nvrtc as nv
  src = (PKG / "src" / "tg_driver_nv" / "cuda_device.py").read_text()
  for mod, prefix in ((cu, "cuda"), (nv, "nvrtc")):
    used = set(re.findall(rf"\b{prefix}\.({'cu' if prefix == 'cuda' else 'nvrtc'}[A-Z]\w*)\(", src))
    assert used, f"no {prefix} calls found"
    missing = [f for f in used if f not in vars(mod) and mod._ALIASES.get(f, f) not in mod._FUNCTIONS]
    assert not missing, f"cuda_device.py calls {missing}, which scripts/gen_bindings.py doesn't bind"

def test_unknown_binding_is_an_attribute_error():
  import tg_driver_nv.autogen.cuda as cu
  with pytest.raises(AttributeError, match="cuNoSuchFunction"): cu.cuNoSuchFunction

def test_missing_library_error_says_how_to_fix(monkeypatch):
  monkeypatch.setattr("tg_driver_nv.libs.libcuda_candidates", lambda: ["/nonexistent/libcuda.so.1"])
  load_library.cache_clear()
  try:
    with pytest.raises(RuntimeError, match="TG_LIBCUDA"): load_library("cuda")
  finally: load_library.cache_clear()

def test_gen_bindings_script_has_help_and_knows_its_functions():
  script = PKG / "scripts" / "gen_bindings.py"
  res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
  assert res.returncode == 0 and "--cuda-header" in res.stdout and "--nvrtc-header" in res.stdout
  spec = importlib.util.spec_from_file_location("gen_bindings", script)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  assert "cuLaunchKernel" in mod.CUDA_FUNCTIONS and "nvrtcCompileProgram" in mod.NVRTC_FUNCTIONS and callable(mod.main)

# ---- NVRTC without a GPU (runs where libnvrtc is installed, e.g. the toolkit or the nvidia-cuda-nvrtc wheel) ----
def _nvrtc_or_skip():
  try: load_library("nvrtc")
  except RuntimeError as e: pytest.skip(str(e))
  from tg_driver_nv.cuda_device import NVRTCCompiler
  return NVRTCCompiler

def test_nvrtc_compiles_cuda_c_to_a_cubin():
  cubin = _nvrtc_or_skip()("sm_90").compile('extern "C" __global__ void k(float* a) { a[threadIdx.x] *= 2.0f; }')
  assert cubin[:4] == b"\x7fELF"

def test_nvrtc_compile_error_carries_the_log():
  from tg_uop.runtime.compiler import CompileError
  with pytest.raises(CompileError, match="undefined"): _nvrtc_or_skip()("sm_90").compile('extern "C" __global__ void k() { oops; }')

class TestCUDAPluginImportCost(ImportCostConformance):
  device, entry_module = "CUDA", "tg_driver_nv.plugin"
  heavy_modules = ImportCostConformance.heavy_modules + ("tg_codegen", "tg_driver_nv.cuda_device", "tg_driver_nv.autogen.cuda")
