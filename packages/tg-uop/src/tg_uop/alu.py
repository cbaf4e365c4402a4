"""`exec_alu`: the reference semantics of every ALU op on Python scalars (C-like ints, IEEE floats).

Constant folding and the PYTHON device both use this, so folding a constant never disagrees with running it."""
from __future__ import annotations
import math, struct
from typing import Any, Callable
from tg_uop.dtype import DType, dtypes, truncate_int, truncate_float
from tg_uop.helpers import cdiv, cmod
from tg_uop.ops import Ops

def _fdiv(x, y):
  if y == 0: return math.nan if x == 0 or math.isnan(x) else math.copysign(math.inf, x) * math.copysign(1.0, y)
  return x / y
def _log2(x):
  if math.isnan(x) or x < 0: return math.nan
  if x == 0: return -math.inf
  return math.inf if math.isinf(x) else math.log2(x)
def _exp2(x):
  try: return 2.0 ** x
  except OverflowError: return math.inf
def _sqrt(x): return math.nan if math.isnan(x) or x < 0 else math.sqrt(x)
def _sin(x): return math.nan if math.isinf(x) or math.isnan(x) else math.sin(x)
def _recip(x): return _fdiv(1.0, x)
def _trunc(x): return x if not isinstance(x, float) or not math.isfinite(x) else math.copysign(float(math.trunc(x)), x)  # keeps -0.0
def _max(x, y):
  if (isinstance(x, float) or isinstance(y, float)) and (math.isnan(x) or math.isnan(y)): return math.nan  # nan propagates, as PyTorch
  return max(x, y)
def _pow(x, y):
  if isinstance(x, int) and isinstance(y, int) and not isinstance(x, bool):
    return pow(x, y, 1 << 64) if y >= 0 else (0 if abs(x) != 1 else x ** (y % 2))  # exact, then wrapped by exec_alu
  odd = float(y).is_integer() and abs(y) < 2**63 and int(y) % 2 == 1
  try: return math.pow(x, y)
  except (ValueError, ZeroDivisionError):
    if x == 0: return math.copysign(math.inf, x) if odd else math.inf  # pow(-0.0, -1) is -inf, as C99
    return math.nan
  except OverflowError: return math.inf if x > 0 or float(y).is_integer() and int(y) % 2 == 0 else -math.inf
def _idiv(x, y): return cdiv(x, y) if y != 0 else 0  # integer division by zero is undefined in C; folding rules never fold it
def _mod(x, y): return cmod(x, y) if y != 0 else 0
def _threefry(x: int, key: int) -> int:
  # threefry2x32 with 20 rounds, over the two 32-bit halves of x and key
  rot = [13, 15, 26, 6, 17, 29, 16, 24]
  m = 0xffffffff
  ks = [key & m, (key >> 32) & m, 0]
  ks[2] = ks[0] ^ ks[1] ^ 0x1BD11BDA
  x0, x1 = (x & m) + ks[0] & m, ((x >> 32) & m) + ks[1] & m
  for i in range(5):
    for r in rot[(i % 2) * 4:(i % 2) * 4 + 4]:
      x0 = (x0 + x1) & m
      x1 = ((x1 << r) | (x1 >> (32 - r))) & m
      x1 ^= x0
    x0 = (x0 + ks[(i + 1) % 3]) & m
    x1 = (x1 + ks[(i + 2) % 3] + i + 1) & m
  return (x1 << 32) | x0

python_alu: dict[Ops, Callable[..., Any]] = {
  Ops.LOG2: _log2, Ops.EXP2: _exp2, Ops.SQRT: _sqrt, Ops.RECIP: _recip, Ops.SIN: _sin, Ops.TRUNC: _trunc, Ops.NEG: lambda x: -x,
  Ops.ADD: lambda x, y: x + y, Ops.SUB: lambda x, y: x - y, Ops.MUL: lambda x, y: x * y, Ops.FDIV: _fdiv, Ops.IDIV: _idiv,
  Ops.MOD: _mod, Ops.MAX: _max, Ops.POW: _pow, Ops.SHL: lambda x, y: x << y if 0 <= y < 128 else 0, Ops.SHR: lambda x, y: x >> y if 0 <= y else 0,
  Ops.AND: lambda x, y: x & y, Ops.OR: lambda x, y: x | y, Ops.XOR: lambda x, y: x ^ y,
  Ops.CMPLT: lambda x, y: x < y, Ops.CMPNE: lambda x, y: x != y, Ops.CMPEQ: lambda x, y: x == y,
  Ops.THREEFRY: _threefry, Ops.WHERE: lambda c, x, y: x if c else y, Ops.MULACC: lambda x, y, z: x * y + z,
}

def _as_unsigned(v: int, dt: DType) -> int: return v & ((1 << (8 * dt.itemsize)) - 1)

def exec_alu(op: Ops, dtype: DType, operands: tuple) -> Any:
  """Run `op` on Python scalars and return the result as a value of `dtype` (wrapped ints, rounded floats)."""
  if op not in python_alu: raise ValueError(f"{op} is not an ALU op: exec_alu runs only {sorted(o.name for o in python_alu)}")
  if op is Ops.SHR and operands and isinstance(operands[0], int) and dtypes.is_unsigned(dtype):
    operands = (_as_unsigned(operands[0], dtype), *operands[1:])  # logical shift for unsigned
  ret = python_alu[op](*operands)
  if dtype == dtypes.bool or op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ): return bool(ret)
  if dtypes.is_int(dtype): return truncate_int(int(ret), dtype.scalar())
  if dtypes.is_float(dtype): return truncate_float(float(ret), dtype.scalar())
  return ret

def bitcast_value(v: Any, src: DType, dst: DType) -> Any:
  """Reinterpret the bits of scalar `v` of dtype `src` as dtype `dst` (same itemsize, struct-representable)."""
  if src.itemsize != dst.itemsize: raise ValueError(f"can't bitcast {src} to {dst}: sizes differ ({src.itemsize} vs {dst.itemsize} bytes)")
  if src.fmt is None or dst.fmt is None: raise ValueError(f"bitcast between {src} and {dst} needs struct formats; bf16/fp8 have none")
  return struct.unpack(dst.fmt, struct.pack(src.fmt, v))[0]
