"""`Program.launcher` on CUDA, the launch a TinyJit replay calls: the same launch as a plain call with the per-launch work done once,
against a stand-in for cuLaunchKernel (no GPU needed); and the NV launch path's word-level encodings against the field writers."""
from __future__ import annotations
import ctypes, random
from types import SimpleNamespace
import pytest
from tg_driver_nv import cuda_device
from tg_driver_nv.nv import qmd as QM
from tg_driver_nv.nv import queue as Q

# ---------------- CUDA ----------------

class _Ctx:
  """What CUDAProgram's launcher needs of its device: a name and activate()."""
  device = "CUDA"
  def __init__(self): self.activations = 0
  def activate(self): self.activations += 1

@pytest.fixture
def cuda_launches(monkeypatch):
  """CUDA launches recorded in `.seen` as (grid, block, the device pointers the driver read through kernelParams) instead of run;
  each returns `.status`."""
  rec = SimpleNamespace(seen=[], status=0, shared=[])
  def launch(fn, g0, g1, g2, l0, l1, l2, shared, stream, params, extra):
    n = 0 if params is None else len(params)
    rec.shared.append(shared)
    rec.seen.append(((g0, g1, g2), (l0, l1, l2), [ctypes.c_uint64.from_address(params[i]).value for i in range(n)]))
    return rec.status
  monkeypatch.setitem(vars(cuda_device.cuda), "cuLaunchKernel", launch)  # (getattr would bind the real one, loading libcuda)
  monkeypatch.setattr(cuda_device, "cu_error", lambda status: f"CUDA_ERROR_FAKE ({status})")
  return rec

def _cuda_program() -> cuda_device.CUDAProgram:
  prg = object.__new__(cuda_device.CUDAProgram)  # no module to load: the launch goes to the stand-in
  prg.device, prg.name, prg.fn, prg.smem, prg.tmaps = _Ctx(), "k", None, 0, None
  return prg

def test_cuda_launcher_passes_each_launchs_device_pointers(cuda_launches):
  prg = _cuda_program()
  launch = prg.launcher((4, 2), (32,))
  a, b = ctypes.c_uint64(0x1000), ctypes.c_uint64(0x2000)
  launch(a, b)
  a.value = 0x3000  # the same ctypes object holding a new pointer (kept kernelParams must read it at the launch)
  launch(a, b)
  c = ctypes.c_uint64(0x4000)
  launch(c, a)  # other objects: other addresses
  dims = ((4, 2, 1), (32, 1, 1))
  assert cuda_launches.seen == [(*dims, [0x1000, 0x2000]), (*dims, [0x3000, 0x2000]), (*dims, [0x4000, 0x3000])]
  assert prg.device.activations == 0, "a launch that succeeds doesn't ask which context is current"

def test_cuda_launcher_makes_its_context_current_when_another_is(cuda_launches, monkeypatch):
  # with no context (or another library's) current, the launch fails on the function's handle: the launcher activates its device
  # and launches again, once; a launch that fails for another reason is not retried
  statuses = iter([cuda_device.cuda.CUDA_ERROR_INVALID_CONTEXT, 0, 700])
  real = cuda_device.cuda.cuLaunchKernel
  monkeypatch.setitem(vars(cuda_device.cuda), "cuLaunchKernel", lambda *a: (real(*a), next(statuses))[1])
  prg = _cuda_program()
  launch = prg.launcher((1,), (32,))
  launch(ctypes.c_uint64(0x1000))
  assert prg.device.activations == 1 and len(cuda_launches.seen) == 2
  with pytest.raises(RuntimeError, match="CUDA_ERROR_FAKE"): launch(ctypes.c_uint64(0x1000))
  assert prg.device.activations == 1 and len(cuda_launches.seen) == 3

def test_cuda_launches_carry_the_kernels_dynamic_shared_memory(cuda_launches):
  # a kernel over 48 KB of shared memory launches with its size (read from the module at load): both launch paths pass it
  prg = _cuda_program()
  prg.smem = 98304
  prg.launcher((1,), (128,))(ctypes.c_uint64(0x1000))
  prg(ctypes.c_uint64(0x1000), global_size=(1,), local_size=(128,))
  assert cuda_launches.shared == [98304, 98304]

def test_cuda_launches_pass_tensor_maps_encoded_per_buffer_address(cuda_launches, monkeypatch):
  # a kernel with TMA copies takes its tensor maps after the buffers: each holds its buffer's address, so a launch whose buffers
  # moved gets maps encoded for the new addresses, and one whose buffers stayed reuses them (both launch paths)
  encoded = []
  def encode(m, dt, rank, addr, dims, strides, box, elem_strides, interleave, swizzle, l2, oob):
    assert ctypes.addressof(m._obj) % 64 == 0, "the driver wants 64-byte aligned maps"
    encoded.append((dt, rank, addr.value, dims[0], dims[1], strides[0], box[0], box[1], elem_strides[0], swizzle))
    m._obj.opaque[0] = addr.value + 7  # what the stand-in launch reads back from the parameter
    return 0
  monkeypatch.setitem(vars(cuda_device.cuda), "cuTensorMapEncodeTiled", encode)
  prg = _cuda_program()
  prg.tmaps = cuda_device.TensorMaps(prg, [2, 1, 6, 512, 256, 1024, 64, 128, 3, 2, 9, 256, 512, 512, 64, 64, 3])
  launch = prg.launcher((2,), (128,))
  a, b, c = ctypes.c_uint64(0x1000), ctypes.c_uint64(0x2000), ctypes.c_uint64(0x3000)
  launch(a, b, c)
  launch(a, b, c)
  b.value = 0x5000
  launch(a, b, c)
  prg(a, b, c, global_size=(2,), local_size=(128,))
  maps = lambda x: [(6, 2, x, 512, 256, 1024, 64, 128, 1, 3), (9, 2, 0x3000, 256, 512, 512, 64, 64, 1, 3)]  # noqa: E731
  assert encoded == maps(0x2000) + maps(0x5000)
  assert [s[2] for s in cuda_launches.seen] == [[0x1000, 0x2000, 0x3000, 0x2007, 0x3007]] * 2 + [[0x1000, 0x5000, 0x3000, 0x5007, 0x3007]] * 2

def test_cuda_launcher_checks_dims_once_and_reports_a_failed_launch(cuda_launches):
  prg = _cuda_program()
  with pytest.raises(ValueError, match="global_size"): prg.launcher((0,), (1,))
  launch = prg.launcher((1,), (1,))
  cuda_launches.status = 700
  with pytest.raises(RuntimeError, match=r"cuLaunchKernel\('k', grid=\(1, 1, 1\), block=\(1, 1, 1\)\) on CUDA failed: CUDA_ERROR_FAKE \(700\)"):
    launch(ctypes.c_uint64(1))

# ---------------- NV encodings (the mock GPU runs NV launchers in test_nv_mock.py) ----------------

@pytest.mark.parametrize("version", sorted(QM.QMD_FIELDS))
def test_cbuf0_address_written_as_words_equals_the_field_writes(version):
  rng = random.Random(version)
  shift = 0 if version == 3 else 6
  for _ in range(500):
    base = bytes(rng.getrandbits(8) for _ in range(QM.QMD_SIZES[version]))
    addr = rng.getrandbits(49 + shift) & ~((1 << shift) - 1)
    want = bytearray(base)
    QM.qmd_set(want, "constant_buffer_addr_lower0", (addr >> shift) & 0xFFFFFFFF, version)
    QM.qmd_set(want, "constant_buffer_addr_upper0", addr >> (32 + shift), version)
    assert QM.set_cbuf0_address(base, version, addr) == want
  with pytest.raises(ValueError, match="constant_buffer_addr_upper0"): QM.set_cbuf0_address(bytes(QM.QMD_SIZES[version]), version, 1 << 62)

def test_cached_method_headers_still_refuse_bad_packets():
  assert Q.method_header(1, 0x2B4, 1) == Q.method_header(1, 0x2B4, 1)
  for _ in range(2):
    with pytest.raises(ValueError, match="bad method header"): Q.method_header(0, 0x5D, 1)
