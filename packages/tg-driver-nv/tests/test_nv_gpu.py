"""The NV device on an NVIDIA GPU: tg_uop's conformance suite through the PTX renderer (ptxas) and the CUDA renderer (NVRTC),
plus signals, copies and errors. Marked `gpu`; skipped where `Device["NV"]` doesn't open (no /dev/nvidiactl, other driver).

Run on the GPU machine from the repository root:
  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-driver-nv/src python -m pytest packages/tg-driver-nv/tests/test_nv_gpu.py -m gpu
"""
from __future__ import annotations
import functools, os
import pytest
from tg_uop.testing.conformance import AllocatorConformance, ProgramConformance

@functools.cache
def nv_unusable(name: str) -> str | None:
  """None when `Device[name]` opens, else why not."""
  if not os.path.exists("/dev/nvidiactl"): return "no /dev/nvidiactl"
  try:
    from tg_uop.device import Device
    Device[name]
  except Exception as e: return f"{type(e).__name__}: {e}"
  return None

def needs_nv(name: str) -> list:
  """`gpu`, plus a skip naming what is missing when the device `name` doesn't open."""
  return [pytest.mark.gpu, pytest.mark.skipif(nv_unusable(name) is not None, reason=f"{name} is not usable here: {nv_unusable(name)}")]

class TestNVAllocator(AllocatorConformance):
  device, pytestmark = "NV", needs_nv("NV")
class TestNVPrograms(ProgramConformance):
  device, pytestmark = "NV", needs_nv("NV")
class TestNVCUDAPrograms(ProgramConformance):
  device, pytestmark = "NV:CUDA", needs_nv("NV:CUDA")

pytestmark = needs_nv("NV")

@pytest.fixture
def dev():
  from tg_uop.device import Device
  return Device["NV"]

def test_signal_released_by_each_channel_is_seen_by_the_host(dev):
  from tg_driver_nv.nv.queue import NVComputeQueue, NVCopyQueue
  s = dev.new_signal(name="test")
  NVComputeQueue("t").signal(s, 7).submit(dev)
  s.wait(7, 5000)
  NVCopyQueue("t copy").wait(s, 7).signal(s, 9).submit(dev)
  s.wait(9, 5000)
  assert s.value == 9

def test_wait_on_a_signal_never_released_times_out_naming_the_values(dev):
  s = dev.new_signal(name="never")
  with pytest.raises(TimeoutError, match="never.*reach 5"):
    s.wait(5, timeout_ms=50)

def test_large_copy_round_trip_uses_2mb_pages(dev):
  data = os.urandom(9 << 20)
  buf = dev.allocator.alloc(len(data))
  assert buf.meta.size % (2 << 20) == 0 and buf.va_addr % (2 << 20) == 0
  dev.allocator._copyin(buf, memoryview(data))
  out = bytearray(len(data))
  dev.allocator._copyout(memoryview(out), buf)
  assert bytes(out) == data

LOCAL_PTX = """.version 8.0
.target {arch}
.address_size 64
.visible .entry loc(.param .u64 out) {{
  .local .align 4 .b8 arr[256];
  .reg .b32 %r<12>; .reg .b64 %rd<4>; .reg .pred %p;
  mov.u32 %r1, %tid.x;
  mov.u32 %r5, arr;
  mov.u32 %r2, 0;
FILL:
  shl.b32 %r3, %r2, 2;
  mul.lo.u32 %r4, %r2, %r1;
  add.u32 %r6, %r5, %r3;
  st.local.u32 [%r6], %r4;
  add.u32 %r2, %r2, 1;
  setp.lt.u32 %p, %r2, 64;
  @%p bra FILL;
  mul.lo.u32 %r7, %r1, 7;
  and.b32 %r7, %r7, 63;
  shl.b32 %r8, %r7, 2;
  add.u32 %r9, %r5, %r8;
  ld.local.u32 %r10, [%r9];
  ld.param.u64 %rd1, [out];
  cvta.to.global.u64 %rd1, %rd1;
  mul.wide.u32 %rd2, %r1, 4;
  add.s64 %rd3, %rd1, %rd2;
  st.global.u32 [%rd3], %r10;
  ret;
}}
"""

def test_kernel_using_local_memory_gets_it(dev):
  import struct
  prg = dev.runtime(dev, "loc", dev.compiler.compile(LOCAL_PTX.format(arch=dev.arch)))
  assert prg.kernel.local_per_thread >= 256 and dev.local_per_thread >= 256
  out = dev.allocator.alloc(128 * 4)
  prg(out, global_size=(1, 1, 1), local_size=(128, 1, 1))
  res = bytearray(128 * 4)
  dev.allocator._copyout(memoryview(res), out)
  assert list(struct.unpack("<128I", res)) == [((t * 7) % 64) * t for t in range(128)]
