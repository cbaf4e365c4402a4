"""`Compiler`: source text → binary, with an on-disk cache under `cache_dir()/"compile"`."""
from __future__ import annotations
import abc, hashlib, os, pathlib, re, tempfile
from tg_uop.helpers import CACHELEVEL, cache_dir

class CompileError(RuntimeError):
  """A compiler rejected the source; the message carries the compiler's own output."""

def _safe_dirname(key: str) -> str:
  # cache keys may hold "/" or ":" (e.g. "ptx_sm_90"): keep one flat, portable directory name per key
  return re.sub(r"[^A-Za-z0-9_.+-]", "_", key)

class Compiler(abc.ABC):
  """Base of every compiler. `cachekey` names its disk cache (None: never cached); `flags` become part of the cache key."""
  def __init__(self, cachekey: str | None = None, flags: tuple[str, ...] = ()):
    self.cachekey, self.flags = cachekey, tuple(flags)

  @abc.abstractmethod
  def compile(self, src: str) -> bytes:
    """The binary for `src`; raises `CompileError` with the compiler's message when it fails."""

  def cache_path(self, src: str) -> pathlib.Path | None:
    """Where the binary for `src` is cached, or None when this compiler does not cache."""
    if self.cachekey is None: return None
    h = hashlib.sha256(src.encode())
    # flags change the binary, so they are part of the key; without flags the name is the plain sha256 of the source
    if self.flags: h.update(b"\0" + "\0".join(self.flags).encode())
    return cache_dir() / "compile" / _safe_dirname(self.cachekey) / h.hexdigest()

  def compile_cached(self, src: str) -> bytes:
    """`compile(src)`, reusing an earlier result from disk unless `CACHELEVEL=0`."""
    path = self.cache_path(src) if CACHELEVEL.value > 0 else None
    if path is not None and path.is_file(): return path.read_bytes()
    lib = self.compile(src)
    if not isinstance(lib, (bytes, bytearray)): raise TypeError(f"{type(self).__name__}.compile must return bytes, got {type(lib).__name__}")
    if path is not None: _atomic_write(path, bytes(lib))
    return bytes(lib)

  def disassemble(self, lib: bytes) -> str:
    """Human-readable form of `lib` (the default shows its size; compilers with a disassembler override this)."""
    return f"<{len(lib)} bytes of {type(self).__name__} output>"

def _atomic_write(path: pathlib.Path, data: bytes) -> None:
  # write to a temp file in the same directory, then rename: a concurrent reader sees the old file or the whole new one
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f: f.write(data)
    os.replace(tmp, path)
  except BaseException:
    try: os.unlink(tmp)
    except FileNotFoundError: pass
    raise
