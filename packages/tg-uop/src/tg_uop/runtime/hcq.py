"""Bases for hardware-command-queue (HCQ) drivers: signals in memory, recorded command queues, timeline-ordered devices.

A driver (NV, AMD) subclasses `HCQSignal` over its signal memory, `HWQueue` with an encoder for its queue format, `HCQProgram`
with its kernel-argument layout, and `HCQCompiled`. Every wait here is bounded (design point 8): it raises `TimeoutError`
naming the device, what was waited on, the value wanted and the last value seen. The bound is `TG_HCQ_TIMEOUT_MS` (30000).
"""
from __future__ import annotations
import abc, time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple
from tg_uop.helpers import getenv
from tg_uop.runtime.allocator import Allocator, LRUAllocator
from tg_uop.runtime.compiled import Compiled
from tg_uop.runtime.compiler import Compiler
from tg_uop.runtime.program import Program, check_launch_dims
from tg_uop.runtime.renderer import Renderer

def hcq_timeout_ms() -> int:
  """The default bound on any HCQ wait, in ms: `TG_HCQ_TIMEOUT_MS`, default 30000."""
  return getenv("TG_HCQ_TIMEOUT_MS", 30000)

def backoff(spins: int) -> None:
  """Pause between polls: spin hot at first (signals usually land within microseconds), then yield, then sleep briefly."""
  if spins > 2000: time.sleep(0.0001)
  elif spins > 100: time.sleep(0)

def wait_until(read: Callable[[], int], target: int, *, device: str, what: str, timeout_ms: int | None = None,
               sleep: Callable[[int], None] = backoff) -> int:
  """Poll `read()` until it is >= `target` and return it; after `timeout_ms` (default `TG_HCQ_TIMEOUT_MS`) raise TimeoutError."""
  if timeout_ms is None: timeout_ms = hcq_timeout_ms()
  deadline, spins = time.monotonic() + timeout_ms / 1000, 0
  while (last := read()) < target:
    if time.monotonic() >= deadline:
      raise TimeoutError(f"{device}: timed out after {timeout_ms} ms waiting for {what} to reach {target}, last value seen {last}. "
                         "The device may be hung or the work that sets it was never submitted; if it is just slow, raise TG_HCQ_TIMEOUT_MS.")
    spins += 1
    sleep(spins)
  return last

class HCQSignal(abc.ABC):
  """A monotonically increasing 64-bit value (and a timestamp) in memory both the host and the device can reach.

  Subclasses set up their memory slot, then call `super().__init__`, and implement `_read_value`, `_write_value` and
  `_read_timestamp` (raw ticks; `timestamp_divider` ticks make one microsecond).
  """
  timestamp_divider: float = 1.0

  def __init__(self, device: str, value: int | None = 0, name: str = "signal"):
    self.device, self.name = device, name
    if value is not None: self._write_value(value)

  @abc.abstractmethod
  def _read_value(self) -> int:
    """The current value in the slot."""
  @abc.abstractmethod
  def _write_value(self, value: int) -> None:
    """Store `value` in the slot (from the host)."""
  @abc.abstractmethod
  def _read_timestamp(self) -> int:
    """The raw timestamp the device last wrote into the slot."""

  @property
  def value(self) -> int: return self._read_value()
  @value.setter
  def value(self, v: int) -> None: self._write_value(v)
  @property
  def timestamp(self) -> float:
    """The timestamp the device wrote, in microseconds."""
    return self._read_timestamp() / self.timestamp_divider

  def _sleep(self, spins: int) -> None:
    """Pause between polls (drivers with an interrupt-backed event wait override this)."""
    backoff(spins)

  def wait(self, value: int, timeout_ms: int | None = None, queue: str | None = None) -> None:
    """Block until this signal is >= `value`; TimeoutError after `timeout_ms` (default `TG_HCQ_TIMEOUT_MS`). `queue` names who signals it."""
    what = f"signal {self.name!r}" + (f" (signaled by queue {queue!r})" if queue else "")
    wait_until(self._read_value, value, device=self.device, what=what, timeout_ms=timeout_ms, sleep=self._sleep)

  def __repr__(self) -> str: return f"<{type(self).__name__} {self.device} {self.name!r} value={self.value}>"

class HWCommand(NamedTuple):
  """One recorded queue command: `op` is "wait", "signal", "timestamp", "exec", "copy" or "memory_barrier"."""
  op: str
  args: tuple

class HWQueue(abc.ABC):
  """A list of recorded commands; `submit(dev)` hands them to the driver's encoder `_submit`.

  Recording is pure Python, so tests can check a queue's commands, and a fake queue can "execute" them. An encoder may use
  `dispatch()`, which calls `self._<op>(*args)` for each command. A queue can be submitted more than once (replay).
  """
  name: str = "queue"

  def __init__(self, name: str | None = None):
    self.cmds: list[HWCommand] = []
    if name is not None: self.name = name

  def _add(self, op: str, *args: Any) -> HWQueue:
    self.cmds.append(HWCommand(op, args))
    return self

  def wait(self, signal: HCQSignal, value: int) -> HWQueue:
    """Stall the queue until `signal` >= `value`."""
    return self._add("wait", signal, value)
  def signal(self, signal: HCQSignal, value: int) -> HWQueue:
    """Set `signal` to `value` once all earlier commands are done."""
    return self._add("signal", signal, value)
  def timestamp(self, signal: HCQSignal) -> HWQueue:
    """Write the device clock into `signal`'s timestamp."""
    return self._add("timestamp", signal)
  def exec(self, program: Any, args: Any, global_size: tuple[int, ...], local_size: tuple[int, ...]) -> HWQueue:
    """Launch `program` with its argument block `args` on a grid of `global_size` workgroups of `local_size` threads."""
    gs, ls = check_launch_dims(global_size, local_size)
    return self._add("exec", program, args, gs, ls)
  def copy(self, dest: Any, src: Any, nbytes: int) -> HWQueue:
    """Copy `nbytes` from device address/buffer `src` to `dest`."""
    if not isinstance(nbytes, int) or nbytes < 0: raise ValueError(f"copy size must be an int >= 0 bytes, got {nbytes!r}")
    return self._add("copy", dest, src, nbytes)
  def memory_barrier(self) -> HWQueue:
    """Make writes before this point visible to commands after it."""
    return self._add("memory_barrier")

  def dispatch(self) -> None:
    """Call `self._<op>(*args)` for every recorded command, in order (a helper for encoders)."""
    for cmd in self.cmds:
      fn = getattr(self, f"_{cmd.op}", None)
      if fn is None: raise RuntimeError(f"queue {self.name!r} ({type(self).__name__}) can't encode {cmd.op!r} commands")
      fn(*cmd.args)

  def submit(self, dev: HCQCompiled) -> HWQueue:
    """Hand the recorded commands to `dev`'s hardware."""
    self._submit(dev)
    dev.last_queue = self.name
    return self

  @abc.abstractmethod
  def _submit(self, dev: HCQCompiled) -> None:
    """Encode `self.cmds` in the hardware's format and make the device run them."""

  def __repr__(self) -> str: return f"<{type(self).__name__} {self.name!r} {[c.op for c in self.cmds]}>"

@dataclass(frozen=True)
class HCQBuffer:
  """Device memory at virtual address `va_addr` of `size` bytes; `meta` is the driver's handle (kept alive by views too)."""
  va_addr: int
  size: int
  meta: Any = None
  def offset(self, offset: int, size: int) -> HCQBuffer:
    """The `size` bytes at `offset` into this buffer."""
    if offset < 0 or offset + size > self.size: raise ValueError(f"sub-buffer of {size} bytes at {offset} is out of range of {self.size} bytes")
    return HCQBuffer(self.va_addr + offset, size, self.meta)

class HCQAllocator(LRUAllocator):
  """An LRU allocator whose buffers are `HCQBuffer`s, so views are address offsets."""
  def _offset(self, buf: HCQBuffer, size: int, offset: int) -> HCQBuffer: return buf.offset(offset, size)

class HCQCompiled(Compiled):
  """A device driven by hardware queues. Work is ordered by a timeline: each submission signals `timeline_signal` with the
  next `timeline_value`, so `synchronize()` waits for the last value handed out."""
  def __init__(self, device: str, allocator: Allocator, renderer: Renderer | None, compiler: Compiler | None, runtime: type[Program] | None,
               signal_t: type[HCQSignal], compute_queue_t: type[HWQueue], copy_queue_t: type[HWQueue] | None = None, executes: bool = True):
    super().__init__(device, allocator, renderer, compiler, runtime, executes)
    self.signal_t, self.compute_queue_t, self.copy_queue_t = signal_t, compute_queue_t, copy_queue_t
    self.last_queue: str | None = None
    self.timeline_signal: HCQSignal = self.new_signal(value=0, name="timeline")
    self.timeline_value: int = 1  # the value the next submission will signal

  def new_signal(self, value: int = 0, name: str = "signal") -> HCQSignal:
    """A fresh signal on this device (drivers that allocate signals from a pool override this)."""
    return self.signal_t(self.device, value=value, name=name)

  def next_timeline(self) -> int:
    """The timeline value for the submission being recorded now; advances the timeline."""
    self.timeline_value += 1
    return self.timeline_value - 1

  def synchronize(self, timeout_ms: int | None = None) -> None:
    """Wait until every submission so far is done; TimeoutError after `timeout_ms` (default `TG_HCQ_TIMEOUT_MS`)."""
    self.timeline_signal.wait(self.timeline_value - 1, timeout_ms, queue=self.last_queue)

class HCQProgram(Program):
  """A program on an `HCQCompiled` device. A call records: wait for the timeline, exec, signal the next timeline value."""
  @abc.abstractmethod
  def fill_kernargs(self, bufs: tuple[Any, ...], vals: tuple[int, ...]) -> Any:
    """The driver's kernel-argument block holding `bufs` (opaque buffers) and `vals` (ints), as passed to `HWQueue.exec`."""

  def __call__(self, *bufs: Any, global_size: tuple[int, ...] = (1, 1, 1), local_size: tuple[int, ...] = (1, 1, 1),
               vals: tuple[int, ...] = (), wait: bool = False) -> float | None:
    dev: HCQCompiled = self.device
    q = dev.compute_queue_t().wait(dev.timeline_signal, dev.timeline_value - 1)
    st, en = (dev.new_signal(name=f"{self.name} start"), dev.new_signal(name=f"{self.name} end")) if wait else (None, None)
    if st is not None: q.timestamp(st)
    q.exec(self, self.fill_kernargs(bufs, tuple(vals)), global_size, local_size)
    if en is not None: q.timestamp(en)
    q.signal(dev.timeline_signal, dev.next_timeline()).submit(dev)
    if st is None or en is None: return None
    dev.synchronize()
    return (en.timestamp - st.timestamp) / 1e6
