"""Model state: finding parameters (`get_parameters`, `get_state_dict`), loading them (`load_state_dict`), and weight files:
safetensors (lazy `safe_load`, `safe_save`), PyTorch zip checkpoints (`torch_load`, without torch) and GGUF (`gguf_load`).

A file that is truncated or corrupt raises `WeightFileError` naming the file and what is wrong, before any tensor is handed out."""
from __future__ import annotations
import io, json, os, pickle, struct, zipfile
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping
import numpy as np
from tg_uop.dtype import DType, dtypes
from tg_tensor.tensor import Tensor

__all__ = ["get_state_dict", "get_parameters", "load_state_dict", "StateDictError", "WeightFileError", "safe_load", "safe_load_metadata",
           "safe_save", "torch_load", "gguf_load", "SafetensorsFile"]

class StateDictError(KeyError):
  """A state dict that doesn't fit the model: lists the missing, unexpected and mis-shaped keys."""
  def __str__(self) -> str: return str(self.args[0])

class WeightFileError(ValueError):
  """A weight file that can't be read: truncated, corrupt, or of an unsupported kind."""

# ---- state dicts ----

def get_state_dict(obj: Any, prefix: str = "", tensor_type: type = Tensor) -> dict[str, Tensor]:
  """Every Tensor reachable from `obj` through attributes, lists, tuples and dicts, keyed by its dotted path ("l1.weight")."""
  if isinstance(obj, tensor_type): return {prefix.strip("."): obj}
  if hasattr(obj, "_asdict"): return get_state_dict(obj._asdict(), prefix, tensor_type)  # namedtuples
  if isinstance(obj, OrderedDict) or isinstance(obj, dict):
    return {k: v for key, x in obj.items() for k, v in get_state_dict(x, f"{prefix}{key}.", tensor_type).items()}
  if isinstance(obj, (list, tuple)):
    return {k: v for i, x in enumerate(obj) for k, v in get_state_dict(x, f"{prefix}{i}.", tensor_type).items()}
  if hasattr(obj, "__dict__") and not isinstance(obj, type):
    return {k: v for key, x in vars(obj).items() for k, v in get_state_dict(x, f"{prefix}{key}.", tensor_type).items()}
  return {}

def get_parameters(obj: Any) -> list[Tensor]:
  """The Tensors of `obj` (see get_state_dict), each once."""
  seen: dict[int, Tensor] = {}
  for t in get_state_dict(obj).values(): seen.setdefault(id(t), t)
  return list(seen.values())

def _shape_of(sd: Mapping[str, Any], k: str) -> tuple[int, ...]:
  # lazy files know their shapes without reading the data
  return tuple(sd.shape_of(k)) if isinstance(sd, SafetensorsFile) else tuple(sd[k].shape)

def load_state_dict(model: Any, state_dict: Mapping[str, Tensor], strict: bool = True, verbose: bool = False, consume: bool = False,
                    realize: bool = True) -> None:
  """Copy `state_dict` into the model's tensors (cast to each tensor's dtype and moved to its device), all realized together.
  Mis-shaped keys always raise; with strict=True missing and unexpected keys raise too, all listed in one StateDictError."""
  model_sd = get_state_dict(model)
  missing = [k for k in model_sd if k not in state_dict]
  unexpected = [k for k in state_dict if k not in model_sd]
  misshaped = [(k, _shape_of(state_dict, k), v.shape) for k, v in model_sd.items() if k in state_dict and _shape_of(state_dict, k) != v.shape]
  if misshaped or (strict and (missing or unexpected)):
    lines = []
    if missing: lines.append(f"missing keys (in the model, not in the state dict): {', '.join(missing)}")
    if unexpected: lines.append(f"unexpected keys (in the state dict, not in the model): {', '.join(unexpected)}")
    if misshaped: lines.append("mis-shaped keys: " + ", ".join(f"{k} (state dict {s}, model {m})" for k, s, m in misshaped))
    hint = "" if misshaped else "; pass strict=False to load the keys that match"
    raise StateDictError(f"state dict doesn't fit {type(model).__name__}:\n  " + "\n  ".join(lines) + hint)
  if verbose and (missing or unexpected): print(f"load_state_dict: skipped {len(missing)} missing and {len(unexpected)} unexpected keys")
  todo = []
  for k, v in model_sd.items():
    if k not in state_dict: continue
    src = state_dict[k]
    if not isinstance(src, Tensor): src = Tensor(np.asarray(src), device=v.device)
    v.assign(src.to(v.device).cast(v.dtype))
    todo.append(v)
    if consume and isinstance(state_dict, dict): del state_dict[k]
  if realize and todo: Tensor.realize(*todo)

# ---- safetensors ----

# name -> (tg dtype, numpy dtype the bytes are read as); bf16 and fp8 have no numpy dtype: read as ints, bitcast on the device
_ST_DTYPES: dict[str, tuple[DType, str]] = {
  "F64": (dtypes.float64, "<f8"), "F32": (dtypes.float32, "<f4"), "F16": (dtypes.float16, "<f2"), "BF16": (dtypes.bfloat16, "<u2"),
  "F8_E4M3": (dtypes.fp8e4m3, "u1"), "F8_E5M2": (dtypes.fp8e5m2, "u1"), "I64": (dtypes.int64, "<i8"), "I32": (dtypes.int32, "<i4"),
  "I16": (dtypes.int16, "<i2"), "I8": (dtypes.int8, "i1"), "U64": (dtypes.uint64, "<u8"), "U32": (dtypes.uint32, "<u4"),
  "U16": (dtypes.uint16, "<u2"), "U8": (dtypes.uint8, "u1"), "BOOL": (dtypes.bool, "?")}
_ST_NAMES = {dt: name for name, (dt, _) in _ST_DTYPES.items()}

def _from_storage(arr: np.ndarray, dt: DType, device: str | None) -> Tensor:
  """A Tensor of dtype `dt` holding the bytes of numpy array `arr` (read in its storage dtype), copied in without a kernel: bf16
  and fp8, which numpy lacks, never need a conversion kernel (some renderers can't compute in fp8)."""
  from tg_tensor.buffers import from_bytes
  shape = arr.shape
  return Tensor(from_bytes(np.ascontiguousarray(arr).tobytes(), dt, device).reshape(shape), device=device)

def _to_storage(t: Tensor) -> bytes:
  """The exact bytes of `t`'s data, in row-major order (bf16 and fp8 are read as raw bytes, no conversion kernel)."""
  from tg_tensor.buffers import get_buffer
  if t.numel() == 0: return b""
  if not t._is_realized(): t = t.contiguous().realize()
  return bytes(get_buffer(t.uop).as_buffer())[:t.nbytes()]

class SafetensorsFile(Mapping):
  """A safetensors file opened lazily: the header is read and checked at once; a tensor's bytes are read (through a memory map)
  only when that key is looked up. Shapes and dtypes are known without reading any data (`shape_of`, `dtype_of`)."""
  def __init__(self, fn: str | os.PathLike, device: str | None = None):
    self.fn, self.device = os.fspath(fn), device
    size = os.path.getsize(self.fn)
    with open(self.fn, "rb") as f: head = f.read(8)
    if len(head) < 8: raise WeightFileError(f"{self.fn}: not a safetensors file: {size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8: raise WeightFileError(f"{self.fn}: header length {n} runs past the end of the file ({size} bytes): truncated or not safetensors")
    with open(self.fn, "rb") as f:
      f.seek(8)
      raw = f.read(n)
    try: header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e: raise WeightFileError(f"{self.fn}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict): raise WeightFileError(f"{self.fn}: the header must be a JSON object, got {type(header).__name__}")
    self.metadata: dict = header.pop("__metadata__", None) or {}
    self.data_start, data_len = 8 + n, size - 8 - n
    self.entries: dict[str, tuple[DType, str, tuple[int, ...], int, int]] = {}
    for k, v in header.items():
      try: dt_name, shape, (b, e) = v["dtype"], tuple(int(s) for s in v["shape"]), v["data_offsets"]
      except (KeyError, TypeError, ValueError): raise WeightFileError(f"{self.fn}: tensor {k!r} has a malformed header entry {v!r}") from None
      if dt_name not in _ST_DTYPES: raise WeightFileError(f"{self.fn}: tensor {k!r} has unknown dtype {dt_name!r} (known: {', '.join(_ST_DTYPES)})")
      dt, npdt = _ST_DTYPES[dt_name]
      want = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
      if not 0 <= b <= e or e - b != want:
        raise WeightFileError(f"{self.fn}: tensor {k!r} ({dt_name} {list(shape)}) needs {want} bytes but its data_offsets are [{b}, {e}]")
      if e > data_len:
        raise WeightFileError(f"{self.fn}: tensor {k!r} ends at byte {e} of the data, but the file holds only {data_len} data bytes: truncated")
      self.entries[k] = (dt, npdt, shape, b, e)
  def __getitem__(self, k: str) -> Tensor:
    if k not in self.entries: raise KeyError(f"{self.fn} has no tensor {k!r} ({len(self.entries)} tensors; see .keys())")
    dt, npdt, shape, b, e = self.entries[k]
    if e == b: return Tensor.zeros(*shape, dtype=dt, device=self.device).contiguous()
    mm = np.memmap(self.fn, dtype=np.uint8, mode="r", offset=self.data_start + b, shape=(e - b,))
    return _from_storage(mm.view(npdt).reshape(shape), dt, self.device)
  def __iter__(self) -> Iterator[str]: return iter(self.entries)
  def __len__(self) -> int: return len(self.entries)
  def shape_of(self, k: str) -> tuple[int, ...]: return self.entries[k][2]
  def dtype_of(self, k: str) -> DType: return self.entries[k][0]

def safe_load(fn: str | os.PathLike, device: str | None = None) -> SafetensorsFile:
  """Open a safetensors file lazily: a mapping name -> Tensor whose data is read from disk only for the keys looked up."""
  return SafetensorsFile(fn, device)

def safe_load_metadata(fn: str | os.PathLike) -> dict:
  """The free-form `__metadata__` of a safetensors file (reads only the header)."""
  return SafetensorsFile(fn).metadata

def safe_save(tensors: Mapping[str, Tensor], fn: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
  """Write `tensors` to a safetensors file (written to a temporary name, then renamed, so a crash leaves no half file)."""
  header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
  blobs, off = [], 0
  for k, t in tensors.items():
    if not isinstance(t, Tensor): raise TypeError(f"safe_save: {k!r} is a {type(t).__name__}, not a Tensor")
    if t.dtype not in _ST_NAMES: raise TypeError(f"safe_save: {k!r} has dtype {t.dtype}, which safetensors can't store")
    data = _to_storage(t)
    header[k] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
    blobs.append(data)
    off += len(data)
  raw = json.dumps(header, separators=(",", ":")).encode()
  raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
  tmp = os.fspath(fn) + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw)
    for b in blobs: f.write(b)
  os.replace(tmp, fn)

# ---- PyTorch checkpoints (zip format), without torch ----

_TORCH_STORAGES: dict[str, tuple[DType, str]] = {
  "DoubleStorage": (dtypes.float64, "<f8"), "FloatStorage": (dtypes.float32, "<f4"), "HalfStorage": (dtypes.float16, "<f2"),
  "BFloat16Storage": (dtypes.bfloat16, "<u2"), "LongStorage": (dtypes.int64, "<i8"), "IntStorage": (dtypes.int32, "<i4"),
  "ShortStorage": (dtypes.int16, "<i2"), "CharStorage": (dtypes.int8, "i1"), "ByteStorage": (dtypes.uint8, "u1"),
  "BoolStorage": (dtypes.bool, "?"), "Float8_e4m3fnStorage": (dtypes.fp8e4m3, "u1"), "Float8_e5m2Storage": (dtypes.fp8e5m2, "u1")}

class _StorageType:
  """What the unpickler hands back for `torch.FloatStorage` and friends: just the element type."""
  def __init__(self, name: str): self.name, (self.dtype, self.npdt) = name, _TORCH_STORAGES[name]

class _Storage:
  def __init__(self, arr: np.ndarray, st: _StorageType): self.arr, self.st = arr, st

def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_args) -> np.ndarray | Tensor:
  arr, n = storage.arr, int(np.prod(size, dtype=np.int64))
  if n and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= len(arr):
    raise WeightFileError(f"a tensor of size {tuple(size)} at offset {offset} reads past its storage of {len(arr)} elements")
  view = np.lib.stride_tricks.as_strided(arr[offset:], shape=tuple(size), strides=tuple(s * arr.itemsize for s in stride)) if n else \
    np.zeros(tuple(size), arr.dtype)
  return _from_storage(view, storage.st.dtype, None)

def _rebuild_parameter(data: Tensor, *_args) -> Tensor: return data

class _TorchUnpickler(pickle.Unpickler):
  """Unpickles only what a state dict holds: tensors, storages, OrderedDict and plain Python data. Anything else is refused, so a
  checkpoint can't run code."""
  _allowed: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor, ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter, ("collections", "OrderedDict"): OrderedDict,
    ("torch", "Size"): tuple, ("builtins", "set"): set, ("builtins", "frozenset"): frozenset}
  def __init__(self, f, load_storage: Callable[[str, _StorageType, int], _Storage]):
    super().__init__(f)
    self.load_storage = load_storage
  def find_class(self, module: str, name: str) -> Any:
    if module == "torch" and name in _TORCH_STORAGES: return _StorageType(name)
    if (module, name) in self._allowed: return self._allowed[(module, name)]
    raise pickle.UnpicklingError(f"the checkpoint refers to {module}.{name}, which a weights file shouldn't need (refused for safety)")
  def persistent_load(self, pid: Any) -> _Storage:
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage": raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
    st, key, numel = pid[1], str(pid[2]), int(pid[4])
    if isinstance(st, str) or not isinstance(st, _StorageType):  # torch.UntypedStorage: bytes, typed by the tensor's metadata
      st = _StorageType("ByteStorage")
    return self.load_storage(key, st, numel)

def torch_load(fn: str | os.PathLike) -> Any:
  """Load a checkpoint written by `torch.save` (the zip format, PyTorch >= 1.6) without torch: tensors become tg Tensors, the
  rest (dicts, lists, numbers) stays as it was pickled."""
  fn = os.fspath(fn)
  if not zipfile.is_zipfile(fn):
    with open(fn, "rb") as f: head = f.read(4)
    what = "it looks like a truncated zip" if head[:2] == b"PK" else "the legacy (pre-1.6) format is not supported: re-save it with torch.save" \
      if head[:1] == b"\x80" else "it is not a zip archive"
    raise WeightFileError(f"{fn}: not a PyTorch zip checkpoint ({what})")
  try:
    with zipfile.ZipFile(fn) as zf:
      pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
      if not pkls: raise WeightFileError(f"{fn}: the zip holds no data.pkl: not a torch.save checkpoint")
      prefix = pkls[0][:-len("data.pkl")]
      cache: dict[str, _Storage] = {}
      def load_storage(key: str, st: _StorageType, numel: int) -> _Storage:
        if key not in cache:
          name = f"{prefix}data/{key}"
          try: raw = zf.read(name)
          except KeyError: raise WeightFileError(f"{fn}: storage {name} is missing from the archive") from None
          itemsize = np.dtype(st.npdt).itemsize
          if len(raw) < numel * itemsize:
            raise WeightFileError(f"{fn}: storage {name} holds {len(raw)} bytes, {numel} {st.name} elements need {numel * itemsize}")
          cache[key] = _Storage(np.frombuffer(raw, dtype=st.npdt, count=numel), st)
        return cache[key]
      return _TorchUnpickler(io.BytesIO(zf.read(pkls[0])), load_storage).load()
  except WeightFileError: raise
  except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError, struct.error) as e:
    raise WeightFileError(f"{fn}: corrupt PyTorch checkpoint ({type(e).__name__}: {e})") from None

# ---- GGUF ----

_GGUF_SCALARS = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}
# ggml type -> (elements per block, bytes per block, dequantizer or numpy dtype of plain types)
_F16 = np.dtype("<f2")

def _d(b: np.ndarray, at: int) -> np.ndarray:
  """The float16 scale at byte `at` of every block, as a float32 column."""
  return b[:, at:at + 2].copy().view(_F16).astype(np.float32)

def _nibbles(q: np.ndarray) -> np.ndarray:
  """Low nibbles then high nibbles of each byte row (the order ggml packs 4-bit values in)."""
  return np.concatenate([q & 0xF, q >> 4], axis=1).astype(np.float32)

def _q4_0(b): return (_nibbles(b[:, 2:18]) - 8) * _d(b, 0)
def _q4_1(b): return _nibbles(b[:, 4:20]) * _d(b, 0) + _d(b, 2)
def _q8_0(b): return b[:, 2:34].copy().view(np.int8).astype(np.float32) * _d(b, 0)
def _q5_bits(b: np.ndarray, at: int) -> np.ndarray:
  qh = b[:, at:at + 4].copy().view("<u4")
  return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.float32) * 16
def _q5_0(b): return (_nibbles(b[:, 6:22]) + _q5_bits(b, 2) - 16) * _d(b, 0)
def _q5_1(b): return (_nibbles(b[:, 8:24]) + _q5_bits(b, 4)) * _d(b, 0) + _d(b, 2)

def _k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The 8 six-bit scales and 8 six-bit mins packed into 12 bytes (Q4_K, Q5_K)."""
  s = s.astype(np.uint8)
  sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
  mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
  return sc.astype(np.float32), mn.astype(np.float32)

def _kq(b: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Q4_K/Q5_K: 8 sub-blocks of 32 values q (n, 8, 32), each scaled d*sc and shifted by dmin*mn."""
  sc, mn = _k_scales(b[:, 4:16])
  return (_d(b, 0)[:, :, None] * sc[:, :, None] * q - _d(b, 2)[:, :, None] * mn[:, :, None]).reshape(len(b), 256)

def _q4_k(b):
  qs = b[:, 16:144].reshape(-1, 4, 32)
  return _kq(b, np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32))

def _q5_k(b):
  qh, qs = b[:, 16:48], b[:, 48:176].reshape(-1, 4, 32)
  hi = ((qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1).reshape(-1, 4, 2, 32)  # bit 2c, 2c+1 for chunk c
  q = np.stack([qs & 0xF, qs >> 4], axis=2).astype(np.float32) + hi.astype(np.float32) * 16
  return _kq(b, q.reshape(-1, 8, 32))

def _q6_k(b):
  n = len(b)
  ql, qh = b[:, 0:128].reshape(n, 2, 64), b[:, 128:192].reshape(n, 2, 1, 32)
  sc = b[:, 192:208].copy().view(np.int8).astype(np.float32).reshape(n, 2, 4, 2, 1)
  low = np.stack([ql[:, :, :32] & 0xF, ql[:, :, 32:] & 0xF, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)  # (n, 2, 4, 32)
  high = (qh >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
  q = ((low | (high << 4)).astype(np.float32) - 32).reshape(n, 2, 4, 2, 16)
  return (_d(b, 208).reshape(n, 1, 1, 1, 1) * sc * q).reshape(n, 256)

_GGML_TYPES: dict[int, tuple[str, int, int, Any]] = {
  0: ("F32", 1, 4, "<f4"), 1: ("F16", 1, 2, "<f2"), 28: ("F64", 1, 8, "<f8"), 24: ("I8", 1, 1, "i1"), 25: ("I16", 1, 2, "<i2"),
  26: ("I32", 1, 4, "<i4"), 27: ("I64", 1, 8, "<i8"), 30: ("BF16", 1, 2, "<u2"),
  2: ("Q4_0", 32, 18, _q4_0), 3: ("Q4_1", 32, 20, _q4_1), 6: ("Q5_0", 32, 22, _q5_0), 7: ("Q5_1", 32, 24, _q5_1), 8: ("Q8_0", 32, 34, _q8_0),
  12: ("Q4_K", 256, 144, _q4_k), 13: ("Q5_K", 256, 176, _q5_k), 14: ("Q6_K", 256, 210, _q6_k)}

_NP_TO_TG = {"<f4": dtypes.float32, "<f2": dtypes.float16, "<f8": dtypes.float64, "i1": dtypes.int8, "<i2": dtypes.int16, "<i4": dtypes.int32,
             "<i8": dtypes.int64}

class _Reader:
  """A bounds-checked cursor over the bytes of a GGUF file."""
  def __init__(self, buf: np.ndarray, fn: str): self.buf, self.pos, self.fn = buf, 0, fn
  def take(self, n: int, what: str) -> bytes:
    if self.pos + n > len(self.buf):
      raise WeightFileError(f"{self.fn}: truncated: reading {what} needs bytes {self.pos}..{self.pos + n}, the file has {len(self.buf)}")
    out = self.buf[self.pos:self.pos + n].tobytes()
    self.pos += n
    return out
  def scalar(self, fmt: str, what: str) -> Any: return np.frombuffer(self.take(np.dtype(fmt).itemsize, what), fmt)[0].item()
  def string(self, what: str) -> str:
    n = self.scalar("<u8", what)
    try: return self.take(n, what).decode("utf-8")
    except UnicodeDecodeError: raise WeightFileError(f"{self.fn}: {what} at byte {self.pos - n} is not valid UTF-8: corrupt file") from None
  def value(self, vtype: int, what: str) -> Any:
    if vtype in _GGUF_SCALARS: return self.scalar(_GGUF_SCALARS[vtype], what)
    if vtype == 8: return self.string(what)
    if vtype == 9:
      itype, n = self.scalar("<u4", what), self.scalar("<u8", what)
      if itype in _GGUF_SCALARS and itype != 7:  # numeric arrays in one read
        return np.frombuffer(self.take(n * np.dtype(_GGUF_SCALARS[itype]).itemsize, what), _GGUF_SCALARS[itype]).tolist()
      return [self.value(itype, what) for _ in range(n)]
    raise WeightFileError(f"{self.fn}: {what} has unknown value type {vtype}: corrupt file or a newer GGUF version")

def gguf_load(fn: str | os.PathLike, device: str | None = None) -> tuple[dict[str, Any], dict[str, Tensor]]:
  """Read a GGUF file: (its key-value metadata, its tensors by name). Quantized tensors (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
  Q6_K) are dequantized to float32; the others keep their type. Shapes are in numpy order (GGUF lists the fastest axis first)."""
  fn = os.fspath(fn)
  buf = np.memmap(fn, dtype=np.uint8, mode="r") if os.path.getsize(fn) else np.zeros(0, np.uint8)
  r = _Reader(buf, fn)
  if r.take(4, "the magic") != b"GGUF": raise WeightFileError(f"{fn}: not a GGUF file (it doesn't start with 'GGUF')")
  version = r.scalar("<u4", "the version")
  if version not in (2, 3): raise WeightFileError(f"{fn}: GGUF version {version} is not supported (2 and 3 are)")
  n_tensors, n_kv = r.scalar("<u8", "the tensor count"), r.scalar("<u8", "the metadata count")
  kv: dict[str, Any] = {}
  for i in range(n_kv):
    key = r.string(f"metadata key {i}")
    kv[key] = r.value(r.scalar("<u4", f"the type of {key!r}"), f"metadata {key!r}")
  infos = []
  for i in range(n_tensors):
    name = r.string(f"tensor name {i}")
    nd = r.scalar("<u4", f"the rank of {name!r}")
    dims = [r.scalar("<u8", f"the shape of {name!r}") for _ in range(nd)]
    ttype, off = r.scalar("<u4", f"the type of {name!r}"), r.scalar("<u8", f"the offset of {name!r}")
    if ttype not in _GGML_TYPES:
      raise WeightFileError(f"{fn}: tensor {name!r} has ggml type {ttype}, which tg can't dequantize "
                            f"(supported: {', '.join(t[0] for t in _GGML_TYPES.values())})")
    infos.append((name, tuple(reversed(dims)), ttype, off))
  align = int(kv.get("general.alignment", 32))
  start = r.pos + (-r.pos % align)
  tensors: dict[str, Tensor] = {}
  for name, shape, ttype, off in infos:
    tname, bsz, bbytes, kind = _GGML_TYPES[ttype]
    n = int(np.prod(shape, dtype=np.int64))
    if n % bsz: raise WeightFileError(f"{fn}: tensor {name!r} has {n} elements, not a whole number of {tname} blocks of {bsz}")
    nbytes = n // bsz * bbytes
    if start + off + nbytes > len(buf):
      raise WeightFileError(f"{fn}: tensor {name!r} ({tname} {list(shape)}) needs bytes {start + off}..{start + off + nbytes}, "
                            f"but the file has {len(buf)}: truncated")
    raw = buf[start + off:start + off + nbytes]
    if isinstance(kind, str):
      tensors[name] = _from_storage(raw.view(kind).reshape(shape), dtypes.bfloat16 if tname == "BF16" else _NP_TO_TG[kind], device)
    else: tensors[name] = Tensor(kind(np.asarray(raw).reshape(-1, bbytes)).reshape(shape), device=device)
  return kv, tensors
