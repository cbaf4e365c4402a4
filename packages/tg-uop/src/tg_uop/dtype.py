"""Data types: scalar, vector and pointer dtypes, their limits, and PyTorch-compatible promotion."""
from __future__ import annotations
import math, struct
from dataclasses import dataclass, fields as dc_fields
from typing import Final

class _Interned(type):
  # every distinct dtype exists once, so comparing and hashing dtypes is by identity (fast: UOps hash their dtype)
  cache: dict = {}
  def __call__(cls, *args):
    key = (cls, args)
    if (ret := _Interned.cache.get(key)) is None: ret = _Interned.cache[key] = super().__call__(*args)
    return ret

@dataclass(frozen=True, eq=False)
class DType(metaclass=_Interned):
  """A scalar (count == 1) or vector dtype. `priority` orders dtypes inside one kind (int / float)."""
  priority: int
  itemsize: int
  name: str
  fmt: str | None  # struct/numpy-style format char, None where Python has none (bf16, fp8)
  count: int = 1
  _scalar: DType | None = None

  def __repr__(self) -> str:
    return f"dtypes.{INVERSE_NAMES.get(self, self.name)}" if self.count == 1 else f"{self._scalar!r}.vec({self.count})"
  def __reduce__(self): return type(self), tuple(getattr(self, f.name) for f in dc_fields(self))
  def __lt__(self, o: DType) -> bool: return (self.priority, self.itemsize, self.name, self.count) < (o.priority, o.itemsize, o.name, o.count)
  @property
  def base(self) -> DType: return self
  @property
  def vcount(self) -> int: return self.count
  def vec(self, sz: int) -> DType:
    """The vector of `sz` lanes of this scalar dtype."""
    if self.count != 1: raise ValueError(f"can't vectorize {self}: it is already a vector")
    if sz < 1: raise ValueError(f"vector size must be >= 1, got {sz}")
    if sz == 1 or self == dtypes.void: return self
    return DType(self.priority, self.itemsize*sz, f"{INVERSE_NAMES.get(self, self.name)}{sz}", None, sz, self)
  def scalar(self) -> DType: return self._scalar if self._scalar is not None else self
  def ptr(self, size: int = -1, addrspace: str = "global") -> PtrDType:
    """A pointer to `size` elements of this dtype in `addrspace` ("global", "local" or "reg")."""
    return PtrDType(self.priority, self.itemsize, self.name, self.fmt, self.count, None, self, addrspace, 1, size)
  @property
  def nbytes_per_elem(self) -> int: return self.itemsize

@dataclass(frozen=True, eq=False)
class PtrDType(DType):
  _base: DType | None = None
  addrspace: str = "global"
  v: int = 1
  size: int = -1
  @property
  def base(self) -> DType: return self._base  # type: ignore
  def __repr__(self) -> str:
    space = f", {self.addrspace!r}" if self.addrspace != "global" else ""
    return f"{self.base!r}.ptr({self.size}{space})" + (f".vec({self.v})" if self.v != 1 else "")
  def vec(self, sz: int) -> PtrDType:
    if self.v != 1: raise ValueError(f"can't vectorize {self}: it is already a vector")
    if sz == 1: return self
    return PtrDType(self.priority, self.itemsize, self.name, self.fmt, self.count, None, self._base, self.addrspace, sz, self.size)
  def scalar(self) -> PtrDType:
    return PtrDType(self.priority, self.itemsize, self.name, self.fmt, self.count, None, self._base, self.addrspace, 1, self.size)
  @property
  def vcount(self) -> int: return self.v

def _new(priority: int, itemsize: int, name: str, fmt: str | None) -> DType: return DType(priority, itemsize, name, fmt, 1, None)

class dtypes:
  """Namespace of all dtypes, plus predicates and limits."""
  void: Final = _new(-1, 0, "void", None)
  bool: Final = _new(0, 1, "bool", "?")
  int8: Final = _new(1, 1, "signed char", "b")
  uint8: Final = _new(2, 1, "unsigned char", "B")
  int16: Final = _new(3, 2, "short", "h")
  uint16: Final = _new(4, 2, "unsigned short", "H")
  int32: Final = _new(5, 4, "int", "i")
  uint32: Final = _new(6, 4, "unsigned int", "I")
  int64: Final = _new(7, 8, "long", "q")
  uint64: Final = _new(8, 8, "unsigned long", "Q")
  fp8e4m3: Final = _new(9, 1, "float8_e4m3", None)
  fp8e5m2: Final = _new(10, 1, "float8_e5m2", None)
  float16: Final = _new(11, 2, "half", "e")
  bfloat16: Final = _new(12, 2, "__bf16", None)
  float32: Final = _new(13, 4, "float", "f")
  float64: Final = _new(14, 8, "double", "d")
  # aliases, as tinygrad and PyTorch spell them
  half = float16; float = float32; double = float64
  uchar = uint8; ushort = uint16; uint = uint32; ulong = uint64
  char = int8; short = int16; int = int32; long = int64
  default_float: DType = float32
  default_int: DType = int32
  index: Final = _new(7, 8, "index", None)  # symbolic index arithmetic; rendered as the device's index type

  @staticmethod
  def is_float(x: DType) -> bool: return x.scalar() in _FLOAT_SET
  @staticmethod
  def is_int(x: DType) -> bool: return x.scalar() in _INT_SET
  @staticmethod
  def is_unsigned(x: DType) -> bool: return x.scalar() in _UINT_SET
  @staticmethod
  def is_bool(x: DType) -> bool: return x.scalar() == dtypes.bool
  @staticmethod
  def is_fp8(x: DType) -> bool: return x.scalar() in (dtypes.fp8e4m3, dtypes.fp8e5m2)
  @staticmethod
  def from_py(x) -> DType:
    """The dtype a Python scalar (or nested list of them) gets by default."""
    if isinstance(x, float): return dtypes.default_float
    if isinstance(x, bool): return dtypes.bool
    if isinstance(x, int): return dtypes.default_int
    if isinstance(x, (list, tuple)): return least_upper_dtype(*(dtypes.from_py(e) for e in x)) if x else dtypes.default_float
    raise TypeError(f"can't infer a dtype from {type(x).__name__} {x!r}: pass a bool, int, float or a list of them")
  @staticmethod
  def as_const(val, dtype: DType):
    """`val` coerced to what a constant of `dtype` holds: wrapped ints, rounded floats, bools."""
    if isinstance(val, tuple): return tuple(dtypes.as_const(v, dtype) for v in val)
    if dtypes.is_int(dtype):
      if isinstance(val, float) and not math.isfinite(val): return 0
      return truncate_int(int(val), dtype.scalar())
    if dtypes.is_float(dtype): return int_to_float(val, dtype.scalar()) if isinstance(val, int) else truncate_float(float(val), dtype.scalar())
    return bool(val)
  @staticmethod
  def min(dtype: DType):
    """The smallest finite value of `dtype` (-inf for floats, as tinygrad)."""
    d = dtype.scalar()
    if d == dtypes.bool: return False
    if d in UINTS: return 0
    if d in SINTS or d == dtypes.index: return -2**(8*d.itemsize-1)
    return -math.inf
  @staticmethod
  def max(dtype: DType):
    """The largest finite value of `dtype` (inf for floats)."""
    d = dtype.scalar()
    if d == dtypes.bool: return True
    if d in UINTS: return 2**(8*d.itemsize)-1
    if d in SINTS or d == dtypes.index: return 2**(8*d.itemsize-1)-1
    return math.inf
  @staticmethod
  def finfo(dtype: DType) -> tuple[int, int]:
    """(exponent bits, mantissa bits) of a float dtype."""
    if not dtypes.is_float(dtype): raise TypeError(f"finfo needs a float dtype, got {dtype}")
    return FLOAT_BITS[dtype.scalar()]
  @staticmethod
  def fields() -> dict[str, DType]: return dict(DTYPES_BY_NAME)

SINTS = (dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64)
UINTS = (dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64)
INTS = SINTS + UINTS
FLOATS = (dtypes.fp8e4m3, dtypes.fp8e5m2, dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)
_FLOAT_SET, _INT_SET, _UINT_SET = frozenset(FLOATS), frozenset(INTS) | {dtypes.index}, frozenset(UINTS)  # dtypes hash by identity
FLOAT_BITS = {dtypes.fp8e4m3: (4, 3), dtypes.fp8e5m2: (5, 2), dtypes.float16: (5, 10), dtypes.bfloat16: (8, 7),
              dtypes.float32: (8, 23), dtypes.float64: (11, 52)}
DTYPES_BY_NAME: dict[str, DType] = {k: v for k, v in dtypes.__dict__.items() if isinstance(v, DType) and not k.startswith("default")}
INVERSE_NAMES = {v: k for k, v in DTYPES_BY_NAME.items() if k not in ("half", "float", "double", "uchar", "ushort", "uint", "ulong",
                                                                         "char", "short", "int", "long")}

def to_dtype(x: DType | str) -> DType:
  """A dtype from itself or its name ("float32", "half", ...), with a clear error for unknown names."""
  if isinstance(x, DType): return x
  if isinstance(x, str) and x in DTYPES_BY_NAME: return DTYPES_BY_NAME[x]
  raise TypeError(f"unknown dtype {x!r}: use one of {', '.join(sorted(INVERSE_NAMES.values()))}")

def truncate_int(v: int, d: DType) -> int:
  """Wrap an int to the range of `d`, as C's fixed-width arithmetic does."""
  if d == dtypes.bool: return bool(v)
  bits = 8*d.itemsize
  v &= (1 << bits) - 1
  if (d in SINTS or d == dtypes.index) and v >= 1 << (bits-1): return v - (1 << bits)
  return v

def _round_float(v: float, ebits: int, mbits: int, sat: bool = False) -> float:
  """Round-to-nearest-even of a Python float to a float format with `ebits`/`mbits`."""
  if not math.isfinite(v) or v == 0: return v
  bias = (1 << (ebits-1)) - 1
  m, e = math.frexp(abs(v))  # v = m * 2**e, 0.5 <= m < 1
  e -= 1  # now v = (2m) * 2**e with 1 <= 2m < 2
  e = max(e, 1 - bias)  # subnormals share the smallest exponent
  q = 2.0 ** (e - mbits)
  r = round(abs(v) / q) * q
  fmax = FMAX.get((ebits, mbits), (2 - 2.0**-mbits) * 2.0**bias)
  if r > fmax: r = fmax if sat else math.inf
  return math.copysign(r, v)

FMAX = {(4, 3): 448.0, (5, 2): 57344.0}

def int_to_float(v: int, d: DType) -> float:
  """The int `v` rounded once (to nearest even) to float dtype `d`, as C converts; `float(v)` alone would round twice."""
  if abs(v) <= 1 << 53: return truncate_float(float(v), d)
  p = FLOAT_BITS[d][1] + 1
  shift = abs(v).bit_length() - p
  q, r = divmod(abs(v), 1 << shift)
  half = 1 << (shift - 1)
  if r > half or (r == half and q & 1): q += 1
  try: return truncate_float(math.copysign(float(q << shift), v), d)
  except OverflowError: return math.copysign(math.inf, v)

def truncate_float(v: float, d: DType) -> float:
  """Round a Python float to what `d` can hold (float32 via struct, others by rounding)."""
  if d == dtypes.float64: return v
  if d == dtypes.float32:
    try: return struct.unpack("f", struct.pack("f", v))[0]
    except OverflowError: return math.copysign(math.inf, v)
  if d == dtypes.float16:
    try: return struct.unpack("e", struct.pack("e", v))[0]
    except OverflowError: return math.copysign(math.inf, v)
  if d == dtypes.fp8e4m3:  # e4m3fn has no inf: out-of-range values saturate to +-448 (as torch's conversion), nan stays nan
    return v if math.isnan(v) else _round_float(max(-448.0, min(448.0, v)), 4, 3, sat=True)
  return _round_float(v, *FLOAT_BITS[d])

# ---- promotion (tensor-tensor ops), matching torch.promote_types ----
def _promote2(a: DType, b: DType) -> DType:
  a, b = a.scalar(), b.scalar()
  if a == b: return a
  if a == dtypes.bool: return b
  if b == dtypes.bool: return a
  af, bf = dtypes.is_float(a), dtypes.is_float(b)
  if af and not bf: return a
  if bf and not af: return b
  if af and bf:
    if dtypes.is_fp8(a) and dtypes.is_fp8(b): return dtypes.float16  # e4m3 vs e5m2: the smallest float holding both
    if {a, b} == {dtypes.float16, dtypes.bfloat16}: return dtypes.float32
    return max(a, b, key=lambda d: (d.itemsize, d.priority))
  # both ints
  if (a in UINTS) == (b in UINTS): return max(a, b, key=lambda d: d.itemsize)
  u, s = (a, b) if a in UINTS else (b, a)
  if s.itemsize > u.itemsize: return s
  bigger = {1: dtypes.int16, 2: dtypes.int32, 4: dtypes.int64}.get(u.itemsize)
  if bigger is None: raise TypeError(f"no integer dtype holds both {a} and {b}: cast one of them explicitly")
  return bigger

def least_upper_dtype(*ds: DType) -> DType:
  """The dtype a tensor-tensor op on these dtypes computes in (torch.promote_types for two; any order gives the same result)."""
  if not ds: raise ValueError("least_upper_dtype needs at least one dtype")
  s = {d.scalar() for d in ds}
  floats = [d for d in s if dtypes.is_float(d)]
  if floats:  # ints and bools don't matter once a float is present
    if len(floats) == 1: return floats[0]
    if {dtypes.float16, dtypes.bfloat16} <= set(floats): return max(dtypes.float32, *floats, key=lambda d: (d.itemsize, d.priority))
    if all(dtypes.is_fp8(d) for d in floats): return dtypes.float16
    return max((d for d in floats if not dtypes.is_fp8(d)), key=lambda d: (d.itemsize, d.priority))
  out = sorted(s, key=lambda d: d.priority)[0]
  for d in sorted(s, key=lambda d: d.priority)[1:]: out = _promote2(out, d)
  return out

def least_upper_float(dt: DType) -> DType:
  """`dt` if it is a float, else the default float (for ops such as exp or division on ints)."""
  return dt if dtypes.is_float(dt) else dtypes.default_float

def sum_acc_dtype(dt: DType) -> DType:
  """Dtype of sum/prod over `dt`, as PyTorch: bool and ints accumulate in int64/uint64, floats in themselves."""
  if dtypes.is_unsigned(dt): return dtypes.uint64 if dt == dtypes.uint64 else dtypes.int64
  if dtypes.is_int(dt) or dt == dtypes.bool: return dtypes.int64
  return dt

_np_names = {dtypes.bool: "bool", dtypes.int8: "int8", dtypes.uint8: "uint8", dtypes.int16: "int16", dtypes.uint16: "uint16",
             dtypes.int32: "int32", dtypes.uint32: "uint32", dtypes.int64: "int64", dtypes.uint64: "uint64",
             dtypes.float16: "float16", dtypes.float32: "float32", dtypes.float64: "float64"}
def to_np_name(dt: DType) -> str | None:
  """numpy's name for `dt` (None for bfloat16 and fp8, which numpy lacks)."""
  return _np_names.get(dt.scalar())
def from_np_name(name: str) -> DType:
  """The dtype for a numpy dtype name, with a clear error for ones tg lacks."""
  for k, v in _np_names.items():
    if v == name: return k
  raise TypeError(f"numpy dtype {name!r} has no tg equivalent: cast the array to one of {sorted(_np_names.values())}")
