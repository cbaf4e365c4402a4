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

def _load_nv() -> type:
  from tg_driver_nv.nv.device import NVDevice
  return NVDevice

def _probe_nv() -> str | None:
  # cheap: looks at device nodes and /proc only; the RM's own version string is checked again when the device opens
  import os
  if not os.path.exists("/dev/nvidiactl"): return "/dev/nvidiactl does not exist: no NVIDIA kernel driver is loaded, so there is no NVIDIA GPU to use"
  if not os.path.exists("/dev/nvidia-uvm"): return "/dev/nvidia-uvm does not exist: load the nvidia-uvm kernel module (modprobe nvidia-uvm)"
  from tg_driver_nv.nv.ioctl import driver_version_file, version_refusal
  if (version := driver_version_file()) is None: return "can't read the NVIDIA driver version from /proc/driver/nvidia/version"
  return version_refusal(version)

@hookimpl
def tg_devices() -> list[DeviceSpec]:
  """CUDA: NVIDIA GPUs through libcuda (driver API); NV: the same GPUs driven directly through the kernel module's ioctls."""
  return [DeviceSpec("CUDA", _load_cuda, _probe_cuda, priority=100, renderers=("CUDA", "PTX"),
                     description="NVIDIA GPU through the CUDA driver API (libcuda); CUDA C via NVRTC, PTX via the driver JIT"),
          DeviceSpec("NV", _load_nv, _probe_nv, priority=110, renderers=("PTX", "CUDA"),
                     description="NVIDIA GPU through the open kernel module's RM/UVM ioctls and GPFIFO queues (Ampere, Ada, Hopper)")]
