"""Settings (`getenv`, `Context`, `DEBUG` and friends) and small pure helpers shared by every package."""
from __future__ import annotations
import contextlib, functools, os, pathlib, time
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

@functools.cache
def getenv(key: str, default: Any = 0) -> Any:
  """The environment variable `key`, converted to the type of `default` (cached: read once per process)."""
  v = os.getenv(key)
  if v is None: return default
  if isinstance(default, bool): return v.strip().lower() not in ("", "0", "false", "no", "off")
  try: return type(default)(v)
  except ValueError: raise ValueError(f"environment variable {key}={v!r} is not a valid {type(default).__name__}") from None

class ContextVar:
  """A setting read from the environment once, overridable in code and by `Context(...)`."""
  _cache: dict[str, ContextVar] = {}
  def __init__(self, key: str, default: Any):
    if key in ContextVar._cache: raise RuntimeError(f"setting {key} is defined twice")
    self.key, self.value = key, getenv(key, default)
    ContextVar._cache[key] = self
  def __bool__(self) -> bool: return bool(self.value)
  def __ge__(self, x) -> bool: return self.value >= x
  def __gt__(self, x) -> bool: return self.value > x
  def __lt__(self, x) -> bool: return self.value < x
  def __le__(self, x) -> bool: return self.value <= x
  def __eq__(self, x) -> bool: return self.value == x
  def __hash__(self) -> int: return hash(self.key)
  def __int__(self) -> int: return int(self.value)
  def __repr__(self) -> str: return f"{self.key}={self.value!r}"

class Context(contextlib.ContextDecorator):
  """Temporarily override settings: `with Context(DEBUG=2, BEAM=4): ...`."""
  def __init__(self, **kwargs: Any):
    unknown = [k for k in kwargs if k not in ContextVar._cache]
    if unknown: raise ValueError(f"unknown setting(s) {unknown}: known settings are {sorted(ContextVar._cache)}")
    self.kwargs = kwargs
  def __enter__(self):
    self.old = {k: ContextVar._cache[k].value for k in self.kwargs}
    for k, v in self.kwargs.items(): ContextVar._cache[k].value = v
    return self
  def __exit__(self, *exc):
    for k, v in self.old.items(): ContextVar._cache[k].value = v
    return False

DEBUG, BEAM, NOOPT, JIT, VIZ = ContextVar("DEBUG", 0), ContextVar("BEAM", 0), ContextVar("NOOPT", 0), ContextVar("JIT", 1), ContextVar("VIZ", 0)
CACHELEVEL, IGNORE_BEAM_CACHE = ContextVar("CACHELEVEL", 2), ContextVar("IGNORE_BEAM_CACHE", 0)
TRACK_MATCH_STATS = ContextVar("TRACK_MATCH_STATS", 0)

def cache_dir() -> pathlib.Path:
  """Where tg keeps its on-disk caches: `$XDG_CACHE_HOME/tg` (default `~/.cache/tg`)."""
  base = os.getenv("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "tg"

# ---- small pure helpers ----
def prod(x: Iterable[T], start: Any = 1) -> Any:
  """The product of `x` (works on ints, floats and UOps)."""
  for v in x: start = start * v
  return start
def dedup(x: Iterable[T]) -> list[T]: return list(dict.fromkeys(x))
def all_same(x: list) -> bool: return all(v == x[0] for v in x)
def all_int(x: Iterable) -> bool: return all(isinstance(v, int) for v in x)
def flatten(x: Iterable[Iterable[T]]) -> list[T]: return [v for sub in x for v in sub]
def argsort(x: list) -> list[int]: return sorted(range(len(x)), key=x.__getitem__)
def round_up(n: int, amt: int) -> int: return (n + amt - 1) // amt * amt
def ceildiv(a: int, b: int) -> int: return -(-a // b)
def partition(x: Iterable[T], fn: Callable[[T], bool]) -> tuple[list[T], list[T]]:
  a: list[T] = []; b: list[T] = []
  for v in x: (a if fn(v) else b).append(v)
  return a, b
def cdiv(a: int, b: int) -> int:
  """C-style truncating division (rounds toward zero)."""
  return abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1) if b != 0 else 0
def cmod(a: int, b: int) -> int:
  """C-style remainder (sign follows the dividend)."""
  return a - cdiv(a, b) * b if b != 0 else 0

@contextlib.contextmanager
def Timing(prefix: str = "", enabled: bool = True) -> Iterator[None]:
  """Print how long the block took, in ms."""
  st = time.perf_counter()
  try: yield
  finally:
    if enabled: print(f"{prefix}{(time.perf_counter()-st)*1e3:.2f} ms")

def colored(s: str, color: str | None = None) -> str:
  cols = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "magenta": 35, "cyan": 36, "white": 37}
  return f"\u001b[{cols[color]}m{s}\u001b[0m" if color and os.isatty(1) else s
