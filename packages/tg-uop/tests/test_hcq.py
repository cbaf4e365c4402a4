"""HCQ bases: bounded signal waits with clear timeouts, recorded queues, the device timeline, HCQProgram launches."""
import itertools, struct, threading
import pytest
from tg_uop.helpers import getenv
from tg_uop.runtime.hcq import HCQSignal, HWQueue, HWCommand, HCQCompiled, HCQProgram, HCQBuffer, HCQAllocator, wait_until

class FakeSignal(HCQSignal):
  """A signal in a 16-byte host slot: u64 value, u64 timestamp (ticks of 1 us)."""
  def __init__(self, device, value=0, name="signal"):
    self.slot = bytearray(16)
    super().__init__(device, value, name)
  def _read_value(self): return struct.unpack_from("<Q", self.slot, 0)[0]
  def _write_value(self, value): struct.pack_into("<Q", self.slot, 0, value)
  def _read_timestamp(self): return struct.unpack_from("<Q", self.slot, 8)[0]

class FakeQueue(HWQueue):
  """Executes its commands at submit, in order, like an idle device would."""
  name = "compute"
  def _submit(self, dev):
    self.dev = dev
    self.dispatch()
  def _wait(self, signal, value):
    if signal.value < value: raise RuntimeError(f"fake device would hang: {signal.name} is {signal.value}, needs {value}")
  def _signal(self, signal, value): signal.value = value
  def _timestamp(self, signal):
    self.dev.clock += 250
    struct.pack_into("<Q", signal.slot, 8, self.dev.clock)
  def _exec(self, program, args, global_size, local_size): self.dev.launches.append((program.name, args, global_size, local_size))
  def _copy(self, dest, src, nbytes): dest[:nbytes] = src[:nbytes]
  def _memory_barrier(self): self.dev.barriers += 1

class HungQueue(HWQueue):
  """A queue whose device never runs anything."""
  name = "hung-sdma"
  def _submit(self, dev): pass

class FakeProgram(HCQProgram):
  def fill_kernargs(self, bufs, vals): return ("args", bufs, vals)

class FakeAllocator(HCQAllocator):
  def _alloc(self, size, options): return HCQBuffer(0x1000, size, bytearray(size))
  def _copyin(self, dest, src): pass
  def _copyout(self, dest, src): pass

class FakeHCQ(HCQCompiled):
  def __init__(self, device="FAKEHCQ", queue_t=FakeQueue):
    super().__init__(device, FakeAllocator(), None, None, FakeProgram, FakeSignal, queue_t, copy_queue_t=FakeQueue)
    self.clock, self.launches, self.barriers = 0, [], 0

@pytest.fixture
def fresh_timeout_env(monkeypatch):
  """Lets a test set TG_HCQ_TIMEOUT_MS: getenv caches, so clear it before and after."""
  getenv.cache_clear()
  yield monkeypatch
  monkeypatch.undo()
  getenv.cache_clear()

# ---- signals
def test_signal_reached_returns():
  s = FakeSignal("FAKEHCQ", value=5)
  s.wait(5, timeout_ms=50)
  s.wait(3, timeout_ms=0)
  assert s.value == 5

def test_signal_set_by_another_thread_releases_wait():
  s = FakeSignal("FAKEHCQ")
  t = threading.Timer(0.01, lambda: setattr(s, "value", 7))
  t.start()
  s.wait(7, timeout_ms=60000)  # generous bound: this only checks that the wait returns once the value lands
  t.join()
  assert s.value == 7

def test_unreached_signal_raises_timeout_naming_device_signal_and_values():
  s = FakeSignal("NV:1", value=3, name="timeline")
  with pytest.raises(TimeoutError) as e: s.wait(4, timeout_ms=50, queue="compute")
  msg = str(e.value)
  for part in ("NV:1", "'timeline'", "'compute'", "reach 4", "last value seen 3", "50 ms", "TG_HCQ_TIMEOUT_MS"): assert part in msg

def test_wait_until_bounds_any_poll():
  free_space = itertools.count()
  with pytest.raises(TimeoutError, match=r"AMD: .*queue 'pm4' space to reach 1000000000, last value seen \d+"):
    wait_until(lambda: next(free_space), 10**9, device="AMD", what="queue 'pm4' space", timeout_ms=20)
  assert wait_until(lambda: 12, 10, device="AMD", what="x", timeout_ms=0) == 12

def test_signal_timestamp_uses_divider():
  class TicksSignal(FakeSignal): timestamp_divider = 100.0  # 100 MHz clock
  s = TicksSignal("D")
  struct.pack_into("<Q", s.slot, 8, 12345)
  assert s.timestamp == 123.45

# ---- queues
def test_queue_records_commands_in_order():
  s = FakeSignal("D")
  q = HungQueue().wait(s, 1).timestamp(s).exec("prg", "args", (4,), (2, 2)).copy("d", "s", 16).memory_barrier().signal(s, 2)
  assert q.cmds == [HWCommand("wait", (s, 1)), HWCommand("timestamp", (s,)), HWCommand("exec", ("prg", "args", (4, 1, 1), (2, 2, 1))),
                    HWCommand("copy", ("d", "s", 16)), HWCommand("memory_barrier", ()), HWCommand("signal", (s, 2))]

def test_queue_validates_arguments():
  with pytest.raises(ValueError, match="positive ints"): HungQueue().exec("prg", None, (0,), (1,))
  with pytest.raises(ValueError, match="copy size"): HungQueue().copy("d", "s", -1)

def test_dispatch_names_queue_and_missing_encoder():
  class NoCopy(HWQueue):
    name = "sdma0"
    def _submit(self, dev): self.dispatch()
  with pytest.raises(RuntimeError, match="queue 'sdma0'.*'copy'"): NoCopy().copy(bytearray(1), b"x", 1).submit(FakeHCQ())

def test_fake_queue_executes_copy_and_barrier():
  dev = FakeHCQ()
  dest, src = bytearray(4), b"abcd"
  dev.copy_queue_t().copy(dest, src, 3).memory_barrier().submit(dev)
  assert dest == b"abc\x00" and dev.barriers == 1

# ---- device timeline
def test_timeline_increments_per_submit():
  dev = FakeHCQ()
  assert dev.timeline_value == 1 and dev.timeline_signal.value == 0
  for expected in (1, 2, 3):
    dev.compute_queue_t().signal(dev.timeline_signal, dev.next_timeline()).submit(dev)
    assert dev.timeline_signal.value == expected and dev.timeline_value == expected + 1
  dev.synchronize(timeout_ms=50)

def test_synchronize_with_nothing_submitted_returns():
  FakeHCQ().synchronize(timeout_ms=0)

def test_synchronize_on_hung_device_times_out_naming_queue(fresh_timeout_env):
  fresh_timeout_env.setenv("TG_HCQ_TIMEOUT_MS", "50")
  dev = FakeHCQ("AMD:2", queue_t=HungQueue)
  dev.compute_queue_t().signal(dev.timeline_signal, dev.next_timeline()).submit(dev)
  with pytest.raises(TimeoutError) as e: dev.synchronize()
  msg = str(e.value)
  for part in ("AMD:2", "'timeline'", "'hung-sdma'", "reach 1", "last value seen 0", "50 ms"): assert part in msg

def test_default_timeout_is_30000_ms(fresh_timeout_env):
  fresh_timeout_env.delenv("TG_HCQ_TIMEOUT_MS", raising=False)
  from tg_uop.runtime.hcq import hcq_timeout_ms
  assert hcq_timeout_ms() == 30000

# ---- programs
def test_program_call_waits_on_timeline_then_signals_next():
  dev = FakeHCQ()
  prg = dev.program("k0", b"")
  assert prg(b"buf0", b"buf1", global_size=(8, 2), local_size=(4,), vals=(3,)) is None
  prg(global_size=(1,), local_size=(1,))
  assert dev.launches == [("k0", ("args", (b"buf0", b"buf1"), (3,)), (8, 2, 1), (4, 1, 1)), ("k0", ("args", (), ()), (1, 1, 1), (1, 1, 1))]
  assert dev.timeline_value == 3 and dev.timeline_signal.value == 2

def test_program_call_with_wait_returns_seconds_between_timestamps():
  dev = FakeHCQ()
  # the fake clock advances 250 us per timestamp command: start and end are one step apart
  assert dev.program("k", b"")(wait=True) == pytest.approx(250e-6)

def test_program_call_records_wait_on_previous_timeline_value():
  recorded = []
  class Recording(FakeQueue):
    def _submit(self, dev):
      recorded.append([(c.op, c.args[1]) for c in self.cmds if c.op in ("wait", "signal")])
      super()._submit(dev)
  dev = FakeHCQ(queue_t=Recording)
  prg = dev.program("k", b"")
  prg(); prg()
  assert recorded == [[("wait", 0), ("signal", 1)], [("wait", 1), ("signal", 2)]]

# ---- buffers
def test_hcq_buffer_views_are_address_offsets():
  b = HCQBuffer(0x10000, 256, meta="mem")
  v = FakeAllocator()._offset(b, 64, 128)
  assert (v.va_addr, v.size, v.meta) == (0x10000 + 128, 64, "mem")
  with pytest.raises(ValueError, match="out of range"): b.offset(200, 64)
