"""The `tg.plugins` entry point of tg-driver-nv: the module tg imports to collect this package's hook implementations.

It is imported whenever plugins are listed or a device is first used, so it must stay cheap: heavy code loads lazily, from the
loaders in the specs its hooks return. The CUDA device pairs with tg-codegen's "CUDA" and "PTX" renderers by name (this package
never imports tg_codegen)."""
from tg_uop.plugins import hookimpl, DeviceSpec

# the plugin API version this package is written against; the core refuses a different major or a newer minor
TG_API_VERSION = (1, 0)

def _load_cuda() -> type:
  from tg_driver_nv.cuda_device import CUDADevice
  return CUDADevice

def _probe_cuda() -> str | None:
  from tg_driver_nv.libs import cuda_probe
  return cuda_probe()

@hookimpl
def tg_devices() -> list[DeviceSpec]:
  """CUDA: NVIDIA GPUs through libcuda (driver API), CUDA C through NVRTC or PTX through the driver's JIT."""
  return [DeviceSpec("CUDA", _load_cuda, _probe_cuda, priority=100, renderers=("CUDA", "PTX"),
                     description="NVIDIA GPU through the CUDA driver API (libcuda); CUDA C via NVRTC, PTX via the driver JIT")]
