"""The NV device against a mock of the kernel driver and GPU (tg_driver_nv.nv.mock): structure sizes against the ioctl
numbers, the RM object tree, GPFIFO contents, QMDs, semaphores and copies, and the bounded waits. Runs without a GPU."""
from __future__ import annotations
import ctypes, os, struct
import pytest
from tg_uop.runtime.renderer import Renderer
from tg_driver_nv.nv import ioctl as I
from tg_driver_nv.nv import qmd as QM
from tg_driver_nv.nv import queue as Q
from tg_driver_nv.nv.mock import PARENTS, MockError, MockKernel
from tg_driver_nv.nv.rm import RMClient, RMError

class PTXNamed(Renderer):
  """A renderer that only carries the name the NV device pairs with (the real ones live in tg-codegen)."""
  suffix, device = "PTX", "NV"
  def render(self, name, uops): raise RuntimeError("not used by these tests")

@pytest.fixture(scope="module")
def mock_dev():
  from tg_driver_nv.nv.device import NVDevice
  k = MockKernel()
  return k, NVDevice("NV", renderer=PTXNamed("sm_90"), kernel=k)

def fake_cubin(name: str = "k", regs: int = 12, param_size: int = 12, shared: int = 0) -> bytes:
  """A minimal cubin ELF: the kernel's .text, its register count (.nv.info) and parameter bank (.nv.info.<name>)."""
  code = bytes(range(256)) * 2
  strtab = b"\0" + name.encode() + b"\0"
  symtab = bytes(24) + struct.pack("<IBBHQQ", 1, 0x12, 0, 4, 0, len(code))
  ginfo = struct.pack("<BBHII", QM.EIFMT_SVAL, QM.EIATTR_REGCOUNT, 8, 1, regs)
  kinfo = struct.pack("<BBHIHH", QM.EIFMT_SVAL, QM.EIATTR_PARAM_CBANK, 8, 1, 0x210, param_size)
  secs = [(".strtab", 3, strtab), (".symtab", 2, symtab), (f".text.{name}", 1, code), (".nv.info", 0x70000000, ginfo),
          (f".nv.info.{name}", 0x70000000, kinfo)] + ([(f".nv.shared.{name}", 8, bytes(0))] if shared else [])
  shstr = b"\0" + b"".join(n.encode() + b"\0" for n, _, _ in secs) + b".shstrtab\0"
  body, offs = b"", []
  for _, _, data in secs:
    offs.append(64 + len(body))
    body += data + bytes(-len(data) % 8)
  shstr_off = 64 + len(body)
  body += shstr + bytes(-len(shstr) % 8)
  shoff = 64 + len(body)
  hdr = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHIQQQIHHHHHH", 2, 190, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(secs) + 2, len(secs) + 1)
  sh, pos = [bytes(64)], 1
  for (n, t, data), off in zip(secs, offs):
    size = shared if n.startswith(".nv.shared") else len(data)
    sh.append(struct.pack("<IIQQQQIIQQ", shstr.index(n.encode() + b"\0"), t, 0, 0, off, size, 0, 0, 8, 0))
    pos += len(n) + 1
  sh.append(struct.pack("<IIQQQQIIQQ", shstr.index(b".shstrtab\0"), 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0))
  return hdr + body + b"".join(sh)

# ---------------- structures and encodings ----------------

def test_every_escape_request_number_carries_its_structure_size():
  for nr, st in I.ESCAPE_STRUCTS.items():
    req = I.nv_ioc(nr, ctypes.sizeof(st))
    assert I.ioc_size(req) == ctypes.sizeof(st) and req & 0xFF == nr and (req >> 30) == 3

def test_structure_sizes_match_the_driver_headers():
  expected = {I.NVOS21_PARAMETERS: 32, I.NVOS54_PARAMETERS: 32, I.NVOS00_PARAMETERS: 16, I.nv_ioctl_nvos33_parameters_with_fd: 56,
              I.nv_ioctl_nvos02_parameters_with_fd: 56, I.NV_CHANNEL_ALLOC_PARAMS: 368, I.NV_MEMORY_ALLOCATION_PARAMS: 128,
              I.UVM_MAP_EXTERNAL_ALLOCATION_PARAMS: 9264, I.nv_ioctl_card_info_t: 72}
  assert {k: ctypes.sizeof(k) for k in expected} == expected

def test_method_header_round_trips():
  for subc, method, count in ((0, 0x5C, 5), (1, 0x2B4, 1), (4, 0x400, 4), (7, 0x3FFC, 0x1FFF)):
    assert Q.parse_header(Q.method_header(subc, method, count)) == (Q.SEC_OP_INC_METHOD, subc, method, count)
  with pytest.raises(ValueError): Q.method_header(0, 0x5D, 1)

def test_gpfifo_entry_round_trips_and_refuses_addresses_beyond_40_bits():
  assert Q.parse_gpfifo_entry(Q.gpfifo_entry(0xAB_1234_5670, 300)) == (0xAB_1234_5670, 300)
  with pytest.raises(ValueError): Q.gpfifo_entry(1 << 40, 4)

@pytest.mark.parametrize("version", [3, 4])
def test_qmd_fields_round_trip_and_overflow_is_an_error(version):
  q = QM.encode_qmd(program=0x12_3456_7800, registers=40, shared=4096, local_per_thread=0, grid=(70000, 3, 2), block=(256, 2, 1),
                    cbufs={0: (0x10_0000_0100, 0x230)}, arch="sm_90", version=version)
  assert QM.qmd_version_of(q) == version and len(q) == QM.QMD_SIZES[version]
  assert [QM.qmd_get(q, f) for f in ("cta_raster_width", "cta_raster_height", "cta_raster_depth")] == [70000, 3, 2]
  assert QM.qmd_get(q, "register_count_v") == 40 and QM.qmd_get(q, "constant_buffer_size_shifted4_0") == 0x23
  with pytest.raises(ValueError, match="bits wide"): QM.qmd_set(q, "cta_raster_height", 1 << 16)

def test_parse_cubin_reads_registers_and_parameter_bank():
  k = QM.parse_cubin(fake_cubin(regs=33, param_size=20, shared=512), "k")
  assert (k.registers, k.param_base, k.param_size, k.shared, len(k.code)) == (33, 0x210, 20, 512, 512)
  with pytest.raises(ValueError, match="no kernel 'nope'"): QM.parse_cubin(fake_cubin(), "nope")

# ---------------- driver version and the RM object tree ----------------

def test_unverified_driver_version_is_refused_naming_it():
  with pytest.raises(RMError, match="575.64.05.*580"): RMClient(MockKernel(version="575.64.05"))
  assert I.version_refusal("580.159.04") is None

def test_objects_hang_off_the_right_parents(mock_dev):
  k, dev = mock_dev
  cls_of = {h: o.cls for h, o in k.objects.items()}
  for o in k.objects.values():
    if o.cls != I.NV01_ROOT_CLIENT: assert cls_of[o.parent] in PARENTS[o.cls]
  classes = sorted(cls_of.values())
  for c in (I.NV01_DEVICE_0, I.NV20_SUBDEVICE_0, I.FERMI_VASPACE_A, I.HOPPER_CHANNEL_GPFIFO_A, I.HOPPER_COMPUTE_A, I.HOPPER_DMA_COPY_A):
    assert c in classes
  assert dev.name.startswith("NVIDIA H100") and dev.arch == "sm_90" and dev.qmd_version == 4

def test_mock_rejects_a_wrong_parent_and_wrong_parameter_size(mock_dev):
  _, dev = mock_dev
  with pytest.raises(RMError, match="INVALID_OBJECT_PARENT"): dev.rm.alloc(dev.rm.root, 0, I.NV20_SUBDEVICE_0, I.NV2080_ALLOC_PARAMETERS())
  with pytest.raises(RMError, match="INVALID_PARAM_STRUCT"): dev.rm.alloc(dev.hdevice, 0, I.NV20_SUBDEVICE_0, I.NV0080_ALLOC_PARAMETERS())

# ---------------- queues, semaphores, copies, launches ----------------

def test_signals_released_by_both_channels_in_order(mock_dev):
  k, dev = mock_dev
  s = dev.new_signal(name="t")
  Q.NVComputeQueue("c").signal(s, 3).submit(dev)
  Q.NVCopyQueue("d").wait(s, 3).signal(s, 4).submit(dev)
  assert s.value == 4 and k.released[s.addr] == 4 and s.timestamp > 0

def test_semaphore_going_backwards_is_caught():
  from tg_driver_nv.nv.device import NVDevice
  dev = NVDevice("NV", renderer=PTXNamed("sm_90"), kernel=MockKernel())  # its own: the failed entry stays in the channel
  s = dev.new_signal(name="back")
  Q.NVComputeQueue("c").signal(s, 10).submit(dev)
  with pytest.raises(MockError, match="went backwards"): Q.NVComputeQueue("c").signal(s, 9).submit(dev)

def test_copy_engine_round_trip_through_host_staging(mock_dev):
  k, dev = mock_dev
  data = os.urandom(3 << 20)
  buf = dev.allocator.alloc(len(data))
  dev.allocator._copyin(buf, memoryview(data))
  out = bytearray(len(data))
  dev.allocator._copyout(memoryview(out), buf)
  assert bytes(out) == data and any(d == buf.va_addr for d, _, _ in k.copies)

def test_large_buffers_get_2mb_pages(mock_dev):
  _, dev = mock_dev
  buf = dev.allocator.alloc(5 << 20)
  assert buf.va_addr % (2 << 20) == 0 and buf.meta.size == 6 << 20

def test_launch_writes_a_qmd_with_sizes_and_parameters(mock_dev):
  k, dev = mock_dev
  from tg_driver_nv.nv.device import NVProgram
  prg = NVProgram(dev, "k", fake_cubin(regs=24, param_size=12))
  buf = dev.allocator.alloc(1024)
  prg(buf, global_size=(5, 2, 1), local_size=(64, 2, 1), vals=(7,))
  dev.synchronize()
  launch = k.launches[-1]
  assert (launch.grid, launch.block, launch.registers, launch.program) == ((5, 2, 1), (64, 2, 1), 24, prg.code_addr)
  assert struct.unpack_from("<3I3I", launch.cbuf0, 0) == (64, 2, 1, 5, 2, 1)
  assert struct.unpack_from("<Qi", launch.cbuf0, 0x210) == (buf.va_addr, 7)

def test_wrong_parameter_count_is_a_clear_error(mock_dev):
  _, dev = mock_dev
  from tg_driver_nv.nv.device import NVProgram
  prg = NVProgram(dev, "k", fake_cubin(param_size=12))
  with pytest.raises(ValueError, match="takes 12 bytes of parameters"): prg(global_size=(1, 1, 1), local_size=(1, 1, 1))

def test_launcher_launch_equals_a_plain_call(mock_dev):
  # Program.launcher, what a TinyJit replay calls: the queue's encoders called straight, the parameter block kept per buffers
  k, dev = mock_dev
  from tg_driver_nv.nv.device import NVProgram
  prg = NVProgram(dev, "k", fake_cubin(regs=24, param_size=16))
  a, b = dev.allocator.alloc(256), dev.allocator.alloc(256)
  prg(a, b, global_size=(3, 2, 1), local_size=(64, 1, 1))
  dev.synchronize()
  call = k.launches[-1]
  launch = prg.launcher((3, 2), (64,))
  launch(a, b)
  dev.synchronize()  # returns only if the launch signaled the timeline value it was handed
  got = k.launches[-1]
  assert (got.grid, got.block, got.registers, got.program, got.cbuf0) == (call.grid, call.block, call.registers, call.program, call.cbuf0)
  assert struct.unpack_from("<QQ", got.cbuf0, 0x210) == (a.va_addr, b.va_addr)
  launch(b, a)  # other buffers: a new parameter block
  dev.synchronize()
  assert struct.unpack_from("<QQ", k.launches[-1].cbuf0, 0x210) == (b.va_addr, a.va_addr)
  assert dev.timeline_signal.value == dev.timeline_value - 1

def test_launcher_refuses_a_wrong_buffer_count_before_taking_a_timeline_value(mock_dev):
  _, dev = mock_dev
  from tg_driver_nv.nv.device import NVProgram
  prg = NVProgram(dev, "k", fake_cubin(param_size=16))
  before = dev.timeline_value
  with pytest.raises(ValueError, match="takes 16 bytes of parameters"): prg.launcher((1,), (1,))(dev.allocator.alloc(64))
  assert dev.timeline_value == before
  dev.synchronize()  # no timeline value was handed out that nothing will signal

def test_compiling_ptx_without_ptxas_says_what_is_missing():
  from tg_uop.runtime.compiler import CompileError
  from tg_driver_nv.nv.device import PtxasMissing
  with pytest.raises(CompileError, match="needs ptxas"): PtxasMissing("sm_90").compile(".version 8.0")

# ---------------- bounded waits ----------------

def test_wait_for_a_signal_never_released_times_out_naming_the_values(mock_dev):
  _, dev = mock_dev
  s = dev.new_signal(value=1, name="never")
  with pytest.raises(TimeoutError, match=r"never.*reach 5, last value seen 1"): s.wait(5, timeout_ms=20)

def test_full_gpfifo_times_out_naming_the_channel():
  ring = (ctypes.c_uint64 * 4)()
  userd = (ctypes.c_uint32 * 64)()
  mmio = (ctypes.c_uint32 * 64)()
  fifo = Q.GPFifo("NV stalled", I.Kernel.__new__(type("K", (), {"memory_fence": lambda s: None,
                  "mmio_write32": lambda s, a, v: None})), ctypes.addressof(ring), 4, ctypes.addressof(userd), 1, ctypes.addressof(mmio), 0)
  for _ in range(3): fifo.push(0x1000, 4, "NV")
  with pytest.raises(TimeoutError, match=r"GPFIFO channel 'NV stalled' space \(put 3, get 0, 4 entries\)"): fifo.push(0x1000, 4, "NV", timeout_ms=20)

def test_stalled_gpu_makes_synchronize_time_out_naming_the_queue():
  from tg_driver_nv.nv.device import NVDevice
  k = MockKernel()
  dev = NVDevice("NV", renderer=PTXNamed("sm_90"), kernel=k)
  k.stall = True
  Q.NVComputeQueue("stuck").signal(dev.timeline_signal, dev.next_timeline()).submit(dev)
  with pytest.raises(TimeoutError, match="timeline.*stuck"): dev.synchronize(timeout_ms=20)

# ---------------- registration ----------------

def test_nv_probe_names_what_is_missing_without_a_driver(monkeypatch):
  from tg_driver_nv import plugin
  monkeypatch.setattr(os.path, "exists", lambda p: False)
  assert "/dev/nvidiactl" in plugin._probe_nv()
  spec = {d.name: d for d in plugin.tg_devices()}["NV"]
  assert spec.priority == 110 and spec.renderers == ("PTX", "CUDA")

def test_second_device_on_the_same_gpu_shares_its_channels_and_timeline(mock_dev):
  from tg_driver_nv.nv.device import NVDevice
  k, dev = mock_dev
  other = NVDevice("NV:CUDA", renderer=PTXNamed("sm_90"), kernel=k)
  before = dev.timeline_value
  Q.NVComputeQueue("o").signal(other.timeline_signal, other.next_timeline()).submit(other)
  other.synchronize()
  assert other.channels is dev.channels and dev.timeline_value == before + 1 and dev.timeline_signal.value == before

def test_launch_and_command_rings_wrap_many_times_without_waiting_on_themselves(monkeypatch):
  # a ring wraps while a launch is being encoded; its drain must wait only for submissions that reached a channel
  from tg_uop.runtime import hcq
  from tg_driver_nv.nv import device as D
  monkeypatch.setattr(hcq, "hcq_timeout_ms", lambda: 2000)
  monkeypatch.setattr(D, "RING_SIZE", 0x4000)  # 16 KiB rings: ~20 launches per wrap of the launch ring
  k = MockKernel()
  dev = D.NVDevice("NV", renderer=PTXNamed("sm_90"), kernel=k)
  prg = D.NVProgram(dev, "k", fake_cubin(param_size=12))
  buf = dev.allocator.alloc(1024)
  n0 = len(k.launches)
  for i in range(200): prg(buf, global_size=(i + 1, 1, 1), local_size=(32, 1, 1), vals=(i,))
  dev.synchronize()
  got = k.launches[n0:]
  assert [la.grid[0] for la in got] == list(range(1, 201)) and dev.submitted_value == dev.timeline_value - 1
  assert [struct.unpack_from("<i", la.cbuf0, 0x218)[0] for la in got[-3:]] == [197, 198, 199]
  for v in (5, 6): prg(buf, global_size=(3, 1, 1), local_size=(32, 1, 1), vals=(v,))  # one cached QMD, each launch its own bank 0
  dev.synchronize()
  assert [(la.grid, struct.unpack_from("<i", la.cbuf0, 0x218)[0]) for la in k.launches[-2:]] == [((3, 1, 1), 5), ((3, 1, 1), 6)]
