"""GPFIFO channels and the command encoding of the NV device: method headers, host semaphores for signals, compute launches
through QMDs, copy-engine transfers. Every wait for ring space is bounded and names the channel and the values."""
from __future__ import annotations
import ctypes, functools
from typing import TYPE_CHECKING, Any
from tg_uop.runtime.hcq import HCQSignal, HWQueue, wait_until
from tg_driver_nv.nv import ioctl as I

if TYPE_CHECKING: from tg_driver_nv.nv.device import NVDevice

# ---------------- method encoding (the host class's pushbuffer format) ----------------
SEC_OP_INC_METHOD = 1
SUBC_COMPUTE, SUBC_COPY = 1, 4

@functools.cache  # a launch writes the same few headers every time: checked and encoded once each
def method_header(subc: int, method: int, count: int) -> int:
  """The header word of `count` data words for incrementing methods starting at byte offset `method` on subchannel `subc`."""
  if not (0 <= subc < 8 and 0 <= method < 0x4000 and method % 4 == 0 and 0 < count < 0x2000):
    raise ValueError(f"bad method header: subchannel {subc}, method {method:#x}, count {count}")
  return (SEC_OP_INC_METHOD << 29) | (count << 16) | (subc << 13) | (method >> 2)

def parse_header(word: int) -> tuple[int, int, int, int]:
  """(sec_op, subchannel, method byte offset, count) of a method header."""
  return word >> 29, (word >> 13) & 7, (word & 0xFFF) << 2, (word >> 16) & 0x1FFF

def gpfifo_entry(addr: int, nwords: int) -> int:
  """A GPFIFO entry pointing at `nwords` command words at GPU address `addr` (40-bit, 4-byte aligned)."""
  if addr % 4 or addr >> 40 or not 0 < nwords < (1 << 21): raise ValueError(f"bad GPFIFO entry: {nwords} words at {addr:#x}")
  return (addr & 0xFFFFFFFC) | ((addr >> 32) << 32) | (nwords << 42)

def parse_gpfifo_entry(entry: int) -> tuple[int, int]:
  """(address, word count) of a GPFIFO entry."""
  return (entry & 0xFFFFFFFC) | (((entry >> 32) & 0xFF) << 32), (entry >> 42) & 0x1FFFFF

# host class (GPFIFO) methods, clc56f.h / clc86f.h
NVC56F_SEM_ADDR_LO, NVC56F_SEM_EXECUTE = 0x5C, 0x6C
SEM_OP_ACQ_CIRC_GEQ, SEM_OP_RELEASE = 3, 1
SEM_ACQUIRE_SWITCH_TSG, SEM_RELEASE_WFI, SEM_PAYLOAD_64BIT, SEM_RELEASE_TIMESTAMP = 1 << 12, 1 << 20, 1 << 24, 1 << 25
# compute class methods (clcbc0.h; the same offsets in clc6c0/clc7c0/clc9c0)
NVC6C0_SET_OBJECT, NVC6C0_SET_SHADER_SHARED_MEMORY_WINDOW_A, NVC6C0_SEND_PCAS_A, NVC6C0_SEND_SIGNALING_PCAS2_B = 0x0, 0x2A0, 0x2B4, 0x2C0
NVC6C0_SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A, NVC6C0_SET_SHADER_LOCAL_MEMORY_A, NVC6C0_SET_SHADER_LOCAL_MEMORY_WINDOW_A = 0x2E4, 0x790, 0x7B0
NVC6C0_INVALIDATE_SHADER_CACHES_NO_WFI = 0x1698
PCAS_ACTION_PREFETCH_SCHEDULE = 9
INVALIDATE_INSTRUCTION, INVALIDATE_GLOBAL_DATA, INVALIDATE_CONSTANT = 1 << 0, 1 << 4, 1 << 12
# copy class methods (clc8b5.h; the same in clc6b5/clc7b5)
NVC8B5_LAUNCH_DMA, NVC8B5_OFFSET_IN_UPPER, NVC8B5_LINE_LENGTH_IN = 0x300, 0x400, 0x418
DMA_NON_PIPELINED, DMA_FLUSH, DMA_SRC_PITCH, DMA_DST_PITCH = 2, 1 << 2, 1 << 7, 1 << 8
COPY_CHUNK = 1 << 30

# USERD (the channel's control page): GP_GET and GP_PUT words
USERD_GP_GET, USERD_GP_PUT = 0x88, 0x8C
DOORBELL_OFFSET = 0x90  # NOTIFY_CHANNEL_PENDING in the usermode class's MMIO page

def hi_lo(v: int) -> tuple[int, int]: return (v >> 32) & 0xFFFFFFFF, v & 0xFFFFFFFF

class GPFifo:
  """One GPFIFO channel: a ring of `entries` 8-byte entries at `ring_va`, its USERD at `userd_va`, rung through `doorbell`."""
  def __init__(self, name: str, kernel: I.Kernel, ring_va: int, entries: int, userd_va: int, token: int, doorbell: int, handle: int):
    self.name, self.kernel, self.entries, self.token, self.doorbell, self.handle = name, kernel, entries, token, doorbell, handle
    self.ring = (ctypes.c_uint64 * entries).from_address(ring_va)
    self.gp_get = ctypes.c_uint32.from_address(userd_va + USERD_GP_GET)
    self.gp_put = ctypes.c_uint32.from_address(userd_va + USERD_GP_PUT)
    self.put = 0

  def push(self, addr: int, nwords: int, device: str, timeout_ms: int | None = None) -> None:
    """Append an entry for `nwords` words at `addr` and ring the doorbell; waits (bounded) while the ring is full."""
    nxt = (self.put + 1) % self.entries
    # full when advancing put would meet get: wait for the GPU to consume entries (checked first: the wait's message costs more
    # than the rest of a push)
    if self.gp_get.value == nxt:
      wait_until(lambda: 0 if self.gp_get.value == nxt else 1, 1, device=device,
                 what=f"GPFIFO channel {self.name!r} space (put {self.put}, get {self.gp_get.value}, {self.entries} entries)",
                 timeout_ms=timeout_ms)
    self.ring[self.put] = gpfifo_entry(addr, nwords)
    self.put = nxt
    self.kernel.memory_fence()
    self.gp_put.value = self.put
    self.kernel.memory_fence()
    self.kernel.mmio_write32(self.doorbell, self.token)

class NVSignal(HCQSignal):
  """A 16-byte semaphore slot (64-bit value, 64-bit nanosecond timestamp) in host-visible memory from the device's pool."""
  timestamp_divider = 1000.0  # the host semaphore writes nanoseconds

  def __init__(self, device: str, value: int | None = 0, name: str = "signal", addr: int | None = None, owner: Any = None):
    if addr is None: raise ValueError("NVSignal needs a slot: create signals with NVDevice.new_signal()")
    self.addr, self.owner = addr, owner
    self._slot = (ctypes.c_uint64 * 2).from_address(addr)
    super().__init__(device, value, name)

  def _read_value(self) -> int: return self._slot[0]
  def _write_value(self, value: int) -> None: self._slot[0] = value
  def _read_timestamp(self) -> int: return self._slot[1]
  def __del__(self):
    if getattr(self, "owner", None) is not None: self.owner.free_signal(self.addr)

class NVQueue(HWQueue):
  """Encodes recorded commands into method words for one GPFIFO channel of an NVDevice."""
  channel: str = "compute"

  def __init__(self, name: str | None = None):
    super().__init__(name)
    self.words: list[int] = []

  def method(self, subc: int, method: int, *data: int) -> None:
    """Append one incrementing-method packet."""
    self.words += [method_header(subc, method, len(data)), *data]

  def _sem(self, addr: int, value: int, op: int) -> None:
    self.method(0, NVC56F_SEM_ADDR_LO, addr & 0xFFFFFFFC, (addr >> 32) & 0xFF, *reversed(hi_lo(value)), op | SEM_PAYLOAD_64BIT)

  def _wait(self, signal: NVSignal, value: int) -> None: self._sem(signal.addr, value, SEM_OP_ACQ_CIRC_GEQ | SEM_ACQUIRE_SWITCH_TSG)
  def _signal(self, signal: NVSignal, value: int) -> None: self._sem(signal.addr, value, SEM_OP_RELEASE | SEM_RELEASE_WFI | SEM_RELEASE_TIMESTAMP)
  def _timestamp(self, signal: NVSignal) -> None: self._signal(signal, signal.value)
  def _memory_barrier(self) -> None:
    if self.channel == "compute":
      self.method(SUBC_COMPUTE, NVC6C0_INVALIDATE_SHADER_CACHES_NO_WFI, INVALIDATE_INSTRUCTION | INVALIDATE_GLOBAL_DATA | INVALIDATE_CONSTANT)

  def timeline_value(self, dev: NVDevice) -> int | None:
    """The highest value this queue signals on `dev`'s timeline, None if it signals none."""
    return max((c.args[1] for c in self.cmds if c.op == "signal" and c.args[0] is dev.timeline_signal), default=None)

  def _submit(self, dev: NVDevice) -> None:
    self.words, self._dev = [], dev
    self.dispatch()
    dev.submit_words(self.channel, self.words, self.timeline_value(dev))

class NVComputeQueue(NVQueue):
  """The compute channel: host semaphores plus QMD launches."""
  channel = "compute"
  def _exec(self, program: Any, args: Any, global_size: tuple[int, int, int], local_size: tuple[int, int, int]) -> None:
    qmd_addr = self._dev.build_launch(program, args, global_size, local_size)
    self._memory_barrier()
    self.method(SUBC_COMPUTE, NVC6C0_SEND_PCAS_A, qmd_addr >> 8)
    self.method(SUBC_COMPUTE, NVC6C0_SEND_SIGNALING_PCAS2_B, PCAS_ACTION_PREFETCH_SCHEDULE)

class NVCopyQueue(NVQueue):
  """The copy channel: host semaphores plus copy-engine transfers."""
  channel = "copy"
  def _copy(self, dest: Any, src: Any, nbytes: int) -> None:
    d, s = getattr(dest, "va_addr", dest), getattr(src, "va_addr", src)
    for off in range(0, nbytes, COPY_CHUNK):
      n = min(COPY_CHUNK, nbytes - off)
      self.method(SUBC_COPY, NVC8B5_OFFSET_IN_UPPER, *hi_lo(s + off), *hi_lo(d + off))
      self.method(SUBC_COPY, NVC8B5_LINE_LENGTH_IN, n)
      self.method(SUBC_COPY, NVC8B5_LAUNCH_DMA, DMA_NON_PIPELINED | DMA_FLUSH | DMA_SRC_PITCH | DMA_DST_PITCH)
