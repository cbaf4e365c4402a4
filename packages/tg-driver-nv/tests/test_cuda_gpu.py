"""The CUDA device on an NVIDIA GPU: tg_uop's conformance suite for both renderers (CUDA C through NVRTC, PTX through the
driver's JIT) plus timing, errors and memory limits. Marked `gpu`; skipped where `Device["CUDA"]` doesn't open.

Run on the GPU machine from the repository root:
  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-driver-nv/src python -m pytest packages/tg-driver-nv/tests -m gpu
"""
from __future__ import annotations
import pytest
from tg_uop.testing.conformance import AllocatorConformance, ProgramConformance
from tg_uop.testing import programs as P
from tg_driver_nv.libs import cuda_unusable

def needs_cuda(name: str) -> list:
  """`gpu`, plus a skip naming what is missing when the device `name` doesn't open."""
  return [pytest.mark.gpu, pytest.mark.skipif(cuda_unusable(name) is not None, reason=f"{name} is not usable here: {cuda_unusable(name)}")]

class TestCUDAAllocator(AllocatorConformance):
  device, pytestmark = "CUDA", needs_cuda("CUDA")
class TestCUDAPrograms(ProgramConformance):
  device, pytestmark = "CUDA", needs_cuda("CUDA")
class TestPTXAllocator(AllocatorConformance):
  device, pytestmark = "CUDA:PTX", needs_cuda("CUDA:PTX")
class TestPTXPrograms(ProgramConformance):
  device, pytestmark = "CUDA:PTX", needs_cuda("CUDA:PTX")

pytestmark = needs_cuda("CUDA")

@pytest.fixture
def dev():
  from tg_uop.device import Device
  return Device["CUDA"]

def test_device_reports_its_arch_and_renderer(dev):
  assert dev.arch.startswith("sm_") and dev.renderer.arch is not None and dev.name

def test_wait_returns_kernel_seconds(dev):
  prog = P.get_program("elementwise")
  _, _, fxn = P.compile_program(dev, prog)
  bufs = [dev.allocator.alloc(dt.itemsize * n) for dt, n in prog.bufs]
  t = fxn(*bufs, global_size=prog.global_size, local_size=prog.local_size, wait=True)
  assert isinstance(t, float) and 0 < t < 10
  assert fxn(*bufs, global_size=prog.global_size, local_size=prog.local_size) is None
  dev.synchronize()

def test_out_of_memory_is_a_memory_error(dev):
  with pytest.raises(MemoryError, match="cuMemAlloc"): dev.allocator.alloc(1 << 50)

def test_bad_binary_names_the_driver_call(dev):
  with pytest.raises(RuntimeError, match="cuModuleLoadDataEx.*CUDA_ERROR"): dev.runtime(dev, "k", b".version 8.0\n.target sm_90\nnonsense\0")

def test_missing_kernel_name_names_the_driver_call(dev):
  prog = P.get_program("elementwise")
  lib = dev.compiler.compile_cached(dev.renderer.render(prog.name, prog.uops))
  with pytest.raises(RuntimeError, match="cuModuleGetFunction.*CUDA_ERROR_NOT_FOUND"): dev.runtime(dev, "no_such_kernel", lib)

def test_bad_launch_names_the_driver_call(dev):
  prog = P.get_program("elementwise")
  _, _, fxn = P.compile_program(dev, prog)
  bufs = [dev.allocator.alloc(dt.itemsize * n) for dt, n in prog.bufs]
  with pytest.raises(RuntimeError, match="cuLaunchKernel.*CUDA_ERROR_INVALID_VALUE"): fxn(*bufs, local_size=(4096, 1, 1))

def test_nonexistent_index_is_a_clear_error():
  from tg_driver_nv.cuda_device import CUDADevice
  with pytest.raises(RuntimeError, match="CUDA device index 99 does not exist"): CUDADevice("CUDA:99")

def test_error_strings_come_from_the_driver():
  from tg_driver_nv.cuda_device import cu_error
  assert cu_error(2).startswith("CUDA_ERROR_OUT_OF_MEMORY (2)")

def _upload(dev, arr):
  buf = dev.allocator.alloc(arr.nbytes)
  dev.allocator._copyin(buf, memoryview(arr.tobytes()))
  return buf

def _download(dev, buf, n):
  import numpy as np
  host = bytearray(4 * n)
  dev.allocator._copyout(memoryview(host), buf)
  return np.frombuffer(host, np.float32).copy()

def test_cuda_graph_replays_a_chain_and_updates_changed_buffers_and_values(dev):
  import numpy as np
  from tg_driver_nv.cuda_device import CUDAGraph
  from tg_uop.runtime.graph import Launch
  ew, dv = P.get_program("elementwise"), P.define_var(n=16, used=10)  # c = a*b + a; out[i] = a[i] + 1 for i < vals[0]
  n = ew.bufs[0][1]
  (_, _, k_ew), (_, _, k_dv) = P.compile_program(dev, ew), P.compile_program(dev, dv)
  rng = np.random.default_rng(0)
  xs = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
  b = [_upload(dev, x) for x in xs] + [_upload(dev, np.full(n, np.nan, np.float32)) for _ in range(2)]
  def chain(a, used):  # b4 = xa*x1 + xa; b5 = b4 + 1 on the first `used` elements; then b5 = b5*x2 + b5
    return [Launch(k_ew, (b[4], b[a], b[1]), ew.global_size, ew.local_size), Launch(k_dv, (b[5], b[4]), dv.global_size, dv.local_size, (used,)),
            Launch(k_ew, (b[5], b[5], b[2]), ew.global_size, ew.local_size)]
  def ref(a, used):
    t = xs[a] * xs[1] + xs[a]
    out = np.full(n, np.nan, np.float32)
    out[:used] = t[:used] + 1
    return out * xs[2] + out
  g = CUDAGraph(dev, chain(0, 10))
  g(chain(0, 10))
  dev.synchronize()
  np.testing.assert_allclose(_download(dev, b[5], n), ref(0, 10), rtol=1e-5)
  dev.allocator._copyin(b[5], memoryview(np.full(n, np.nan, np.float32).tobytes()))
  g(chain(3, 16))  # a new input buffer for node 0 and a new value for node 1: both nodes are updated in place
  dev.synchronize()
  np.testing.assert_allclose(_download(dev, b[5], n), ref(3, 16), rtol=1e-5)
  with pytest.raises(ValueError, match="holds 3 kernels, replayed with 2"): g(chain(0, 10)[:2])
