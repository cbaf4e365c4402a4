"""Decompositions of the transcendental ALU ops (EXP2, LOG2, SIN, POW and SQRT) for renderers that lack them.

Every decomposition is branch free and uses only ops every renderer has: ADD, MUL, NEG, FDIV, CMPLT, CMPNE, WHERE, MAX, CAST,
BITCAST and AND/OR/SHL/SHR on integers. float32 and float64 have their own constants and polynomial degrees; float16 and
bfloat16 compute in float32 and cast back. Vectors work lane-wise (constants broadcast).

Accuracy comes from exact range reduction and double-word arithmetic (a value carried as hi + lo):
- exp2: x = n + f with n integer and |f| <= 1/2 (exact), a Taylor polynomial for 2**f, and 2**n built from exponent bits in two
  steps so that results in the subnormal range are rounded once.
- log2: subnormals are scaled into the normal range, the exponent and mantissa m come from the bits, m is matched to the nearest
  center c = 2**(k/4) and log2(m) = log2(c) + (2/ln 2)*atanh(s), s = (m-c)/(m+c), with s, log2(c) and the product by 2/ln 2
  kept as hi + lo words (c = 1 around m = 1, so logs near 0 keep their relative accuracy).
- sin: Payne-Hanek reduction with integer arithmetic on limbs: the mantissa times a window of the bits of 2/pi chosen by the
  exponent gives the quadrant and the reduced argument to ~2**-70 relative, for every finite input.
- pow: exp2(y*log2|x|) with the log and the product kept as hi + lo words, plus C99's rules for signs, zeros, infinities and nans.
The splits into hi/lo parts use bit masks, not Veltkamp splitting, so a compiler that fuses a*b+c into an FMA can't break them.
"""
from __future__ import annotations
import functools, math, struct
from dataclasses import dataclass
from decimal import Decimal, localcontext
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.rewrite import UPat, PatternMatcher
from tg_uop.uop import UOp

@dataclass(frozen=True)
class _Fmt:
  """What the decompositions need to know about one IEEE float format."""
  fdt: DType    # the float dtype
  idt: DType    # signed int of the same size (for bitcasts)
  udt: DType    # unsigned int of the same size (Payne-Hanek limbs)
  mant: int     # stored mantissa bits
  bias: int     # exponent bias
  split: int    # mantissa bits `_hi` clears: products of two such halves (or a half and the rest) are exact
  limb: int     # Payne-Hanek limb width in bits: the product of two limbs fits udt
  pack: str     # struct format

_F32 = _Fmt(dtypes.float32, dtypes.int32, dtypes.uint32, 23, 127, 12, 16, "f")
_F64 = _Fmt(dtypes.float64, dtypes.int64, dtypes.uint64, 52, 1023, 27, 32, "d")
_FMTS = {dtypes.float32: _F32, dtypes.float64: _F64}
_FLOATS = (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)

# ---- Python-side constants (computed once, exactly, from integer arithmetic) ----

def _atan_inv(n: int, one: int) -> int:
  """atan(1/n) in fixed point with `one` as 1.0."""
  total, k, term = 0, 0, one // n
  while term:
    total += term // (2 * k + 1) if k % 2 == 0 else -(term // (2 * k + 1))
    term //= n * n
    k += 1
  return total

@functools.cache
def _pi_fixed(bits: int) -> int:
  """floor-ish(pi * 2**bits) (accurate to a few units in the last place), by Machin's formula."""
  guard = 32
  one = 1 << (bits + guard)
  return (16 * _atan_inv(5, one) - 4 * _atan_inv(239, one)) >> guard

def _dec(num: int, shift: int) -> Decimal:
  with localcontext() as ctx:
    ctx.prec = 120
    return Decimal(num) / Decimal(2) ** shift

@functools.cache
def _two_over_ln2_dec() -> Decimal:
  with localcontext() as ctx:
    ctx.prec = 120
    return 2 / Decimal(2).ln()

def _to_fmt(v: float, F: _Fmt) -> float: return struct.unpack(F.pack, struct.pack(F.pack, v))[0]
def _fbits(v: float, F: _Fmt) -> int: return int.from_bytes(struct.pack("<" + F.pack, v), "little")
def _from_fbits(b: int, F: _Fmt) -> float: return struct.unpack("<" + F.pack, b.to_bytes(F.idt.itemsize, "little"))[0]

def _split_const(v: Decimal, F: _Fmt) -> tuple[float, float]:
  """`v` as hi + lo: hi has the low `F.split` mantissa bits clear (so hi times a `_hi` half is exact), lo is the rest, rounded."""
  with localcontext() as ctx:
    ctx.prec = 120
    hi = _from_fbits(_fbits(_to_fmt(float(v), F), F) & ~((1 << F.split) - 1), F)
    return hi, _to_fmt(float(v - Decimal(hi)), F)

@functools.cache
def _two_over_pi_limbs(F: _Fmt, zeros: int, nlimbs: int) -> tuple[int, ...]:
  """The bits of 2/pi after the binary point, preceded by `zeros` zero bits, cut into `nlimbs` limbs of F.limb bits."""
  nbits = nlimbs * F.limb - zeros
  val = (1 << (nbits + 1 + nbits + 64)) // _pi_fixed(nbits + 64)  # floor(2/pi * 2**nbits)
  return tuple((val >> (F.limb * (nlimbs - 1 - i))) & ((1 << F.limb) - 1) for i in range(nlimbs))

def _taylor_exp2(deg: int) -> list[float]: return [math.log(2) ** k / math.factorial(k) for k in range(deg + 1)]

# ---- UOp helpers ----

def _vdt(dt: DType, like: UOp) -> DType: return dt.vec(like.dtype.count)
def _bits(x: UOp, F: _Fmt) -> UOp: return x.bitcast(_vdt(F.idt, x))
def _float(b: UOp, F: _Fmt) -> UOp: return b.bitcast(_vdt(F.fdt, b))
def _eq(a: UOp, b) -> UOp: return a.ne(b).logical_not()
def _isnan(x: UOp) -> UOp: return x.ne(x)
def _abs(x: UOp, F: _Fmt) -> UOp: return _float(_bits(x, F) & ((1 << (F.idt.itemsize * 8 - 1)) - 1), F)
def _hi(x: UOp, F: _Fmt) -> UOp: return _float(_bits(x, F) & ~((1 << F.split) - 1), F)
def _fast2sum(a: UOp, b: UOp) -> tuple[UOp, UOp]:
  """s + e == a + b exactly, s = fl(a + b); needs |a| >= |b| or a == 0."""
  s = a + b
  return s, b - (s - a)
def _two_prod(a: UOp, b: UOp, F: _Fmt) -> tuple[UOp, UOp]:
  """p + e == a * b (exactly for float32; to ~2**-104 relative for float64), p = fl(a * b). Finite a*b only."""
  p = a * b
  a1, b1 = _hi(a, F), _hi(b, F)
  a2, b2 = a - a1, b - b1
  return p, (((a1 * b1 - p) + a1 * b2) + a2 * b1) + a2 * b2
def _poly(x: UOp, coeffs: list[float]) -> UOp:
  """coeffs[0] + coeffs[1]*x + ... by Horner's rule."""
  acc = x.const_like(coeffs[-1])
  for c in reversed(coeffs[:-1]): acc = acc * x + c
  return acc
def _pow2i(n: UOp, F: _Fmt) -> UOp:
  """2.0**n for an integer n in the normal exponent range."""
  return _float((n + F.bias) << F.mant, F)
def _round_int(x: UOp, F: _Fmt) -> UOp:
  """x rounded to the nearest integer (ties either way), for finite |x| < 2**30, without TRUNC."""
  t = x.cast(_vdt(F.idt, x))
  d = x - t.cast(x.dtype)  # exact, in (-1, 1)
  one, zero = t.const_like(1), t.const_like(0)
  return t + (x.const_like(0.5) < d).where(one, zero) - (d < -0.5).where(one, zero)
def _clamp(x: UOp, lo, hi) -> UOp: return x.maximum(lo).minimum(hi)

# ---- exp2 ----

def _exp2_core(xh: UOp, xl: UOp, F: _Fmt) -> UOp:
  """2**(xh + xl) for a small finite xl (0 where xh is not finite); nan, +-inf, overflow and underflow as IEEE."""
  nan = _isnan(xh)
  # beyond these, 2**x is certainly inf / 0; n then still fits the two-step scaling below
  xs = _clamp(nan.where(0.0, xh), -(F.bias + F.mant + 4), F.bias + 2)
  n = _round_int(xs, F)
  f = (xs - n.cast(xs.dtype)) + xl
  p = _poly(f, _taylor_exp2(7 if F is _F32 else 13))
  # 2**n as 2**n1 * 2**n2, both normal: p*2**n1 is exact, the second product rounds once (also into subnormals or inf)
  n1 = ((n + 2048) >> 1) - 1024
  return nan.where(xh, p * _pow2i(n1, F) * _pow2i(n - n1, F))

def _exp2(x: UOp, F: _Fmt) -> UOp: return _exp2_core(x, x.const_like(0.0), F)

# ---- log2 ----

@functools.cache
def _log2_centers(F: _Fmt) -> list[tuple[float, float, float, float]]:
  """(upper bound of the interval, center c, log2(c) hi, lo) splitting [2**-1/8, 2**7/8) into 4 intervals around 2**(k/4)."""
  out = []
  for k in range(4):
    c = _to_fmt(2.0 ** (k / 4), F)
    with localcontext() as ctx:
      ctx.prec = 120
      lc = Decimal(c).ln() / Decimal(2).ln()
      hi = _to_fmt(float(lc), F)
      out.append((_to_fmt(2.0 ** ((2 * k + 1) / 8), F), c, hi, _to_fmt(float(lc - Decimal(hi)), F)))
  return out

def _two_sum(a: UOp, b: UOp) -> tuple[UOp, UOp]:
  """s + e == a + b exactly, s = fl(a + b), for any magnitudes."""
  s = a + b
  bb = s - a
  return s, (a - (s - bb)) + (b - bb)

def _log2_core(x: UOp, F: _Fmt) -> tuple[UOp, UOp]:
  """log2(x) as hi + lo (to ~2**-34 relative for float32, ~2**-63 for float64) for finite x > 0 (garbage elsewhere: the callers
  select the special values)."""
  tiny = x < 2.0 ** (1 - F.bias)
  xs = tiny.where(x * 2.0 ** (F.mant + 1), x)
  b = _bits(xs, F)
  e = ((b >> F.mant) & ((1 << (F.idt.itemsize * 8 - 1 - F.mant)) - 1)) - F.bias - tiny.where(b.const_like(F.mant + 1), b.const_like(0))
  m = _float((b & ((1 << F.mant) - 1)) | (F.bias << F.mant), F)
  big = x.const_like(2.0 ** (7 / 8)) < m
  m, e = big.where(m * 0.5, m), big.where(e + 1, e)
  # m/c is within 2**(+-1/8) of one of 4 centers c = 2**(k/4) (c = 1 around m = 1, so small logs keep their relative accuracy)
  cs = _log2_centers(F)
  c, lch, lcl = (m.const_like(cs[-1][i]) for i in (1, 2, 3))
  for bound, *vals in reversed(cs[:-1]):
    lt = m < bound
    c, lch, lcl = (lt.where(v, old) for v, old in zip(vals, (c, lch, lcl)))
  # log2(m/c) = (2/ln2) * atanh(s), s = (m-c)/(m+c), f = m-c exact; s is carried as sh + sl
  f = m - c
  uh, ul = _two_sum(m, c)
  sh = f / uh
  sh1, uh1 = _hi(sh, F), _hi(uh, F)
  sh2, uh2 = sh - sh1, uh - uh1
  sl = (((((f - sh1 * uh1) - sh1 * uh2) - sh2 * uh1) - sh2 * uh2) - sh * ul) / uh
  z = sh * sh
  tail = sh * z * _poly(z, [1 / (2 * k + 3) for k in range(3 if F is _F32 else 6)])
  kh, kl = _split_const(_two_over_ln2_dec(), F)
  # (kh + kl) * (sh1 + sh2 + sl + tail): kh*sh1 and kh*sh2 are exact
  a, bb, cc = sh1 * kh, sh2 * kh, sh * kl + (sl + tail) * (kh + kl)
  w0, e0 = _fast2sum(e.cast(x.dtype), lch)
  w1, e1 = _fast2sum(w0, a)
  w2, e2 = _fast2sum(w1, bb)
  return _fast2sum(w2, ((e0 + e1) + e2) + (cc + lcl))

def _log2(x: UOp, F: _Fmt) -> UOp:
  hi, lo = _log2_core(x, F)
  r = _eq(x, math.inf).where(math.inf, hi + lo)
  r = _eq(x, 0.0).where(-math.inf, r)
  return (x < 0.0).where(math.nan, _isnan(x).where(x, r))

# ---- pow ----

def _pow(x: UOp, y: UOp, F: _Fmt) -> UOp:
  ax = _abs(x, F)
  zero_or_inf = _eq(ax, 0.0).where(True, _eq(ax, math.inf))
  lh, ll = _log2_core(ax, F)
  lh = _eq(ax, 0.0).where(-math.inf, _eq(ax, math.inf).where(math.inf, _isnan(ax).where(ax, lh)))
  ll = zero_or_inf.where(0.0, ll)
  # t = y*log2|x| as th + tl; tl only matters (and is only finite) where th is small
  th = y * lh
  safe = th.maximum(-th) < 4.0 * F.bias
  l1, y1 = _hi(safe.where(lh, 0.0), F), _hi(safe.where(y, 0.0), F)
  l2, y2 = safe.where(lh, 0.0) - l1, safe.where(y, 0.0) - y1
  tl = safe.where((((y1 * l1 - th) + y1 * l2) + y2 * l1) + y2 * l2 + y * ll, 0.0)
  mag = _exp2_core(th, tl, F)
  # integer and odd exponents: floats beyond 2**(mant+1) are even integers (inf counts as one, nan doesn't matter: mag is nan)
  small = y.maximum(-y) < 2.0 ** (F.mant + 1)
  yi = small.where(y, 0.0).cast(_vdt(F.idt, y))
  is_int = small.where(_eq(yi.cast(y.dtype), y), True)
  odd = small.where(_eq(yi & 1, 1), False)
  r = (_bits(x, F) < 0).where(odd.where(-mag, mag), mag)
  # a finite negative base with a non-integer exponent has no real power
  r = (x < 0.0).where((x.const_like(-math.inf) < x).where(is_int.where(r, math.nan), r), r)
  r = _eq(ax, 1.0).where(_eq(y.maximum(-y), math.inf).where(1.0, r), r)  # (+-1)**(+-inf) = 1
  return _eq(x, 1.0).where(1.0, _eq(y, 0.0).where(1.0, r))  # 1**y = 1 and x**0 = 1, even for nan

# ---- sin ----

def _payne_hanek(ax: UOp, F: _Fmt) -> tuple[UOp, UOp, UOp]:
  """(quadrant, rh, rl): ax - quadrant*pi/2 == (rh + rl) mod 2pi, |rh| <= pi/4 (about), for finite ax >= pi/4."""
  L, nl = F.limb, 6  # a window of 6 limbs of 2/pi: 96 bits for float32, 192 for float64
  ud, idt = _vdt(F.udt, ax), _vdt(F.idt, ax)
  b = _bits(ax, F)
  emin, emax = F.bias - 1, 2 * F.bias  # exponent fields of pi/4 and of the largest finite value
  ef = _clamp(b >> F.mant, emin, emax)
  mant = ((b & ((1 << F.mant) - 1)) | (1 << F.mant)).cast(ud)
  # x = M * 2**E; bits of 2/pi worth more than 2**2 (times M) only add multiples of 4 quadrants: skip them
  zeros = -(-(F.bias + F.mant - emin + 2) // L) * L  # zero bits put in front of 2/pi so the window start q is never negative
  q = ef - (F.bias + F.mant) + zeros - 2
  k, s = q >> (L.bit_length() - 1), (q & (L - 1)).cast(ud)
  kmin, kmax = (emin - F.bias - F.mant + zeros - 2) // L, (emax - F.bias - F.mant + zeros - 2) // L
  tab = _two_over_pi_limbs(F, zeros, kmax + nl + 1)
  hits = [_eq(k, kk) for kk in range(kmin, kmax + 1)]
  def limb(j: int) -> UOp:
    v = UOp.const(ud, tab[kmin + j])
    for kk, h in zip(range(kmin + 1, kmax + 1), hits[1:]): v = h.where(UOp.const(ud, tab[kk + j]), v)
    return v
  t = [limb(j) for j in range(nl + 1)]
  mask = (1 << L) - 1
  w = [((t[j] << s) | (t[j + 1] >> (s.const_like(L) - s))) & mask for j in range(nl)]  # most significant first
  v = w[::-1]  # least significant first
  u = [mant & mask, mant >> L]
  # the low nl limbs of M * window: the fraction of x*2/pi/4, i.e. x*2/pi mod 4
  cols: list[list[UOp]] = [[] for _ in range(nl)]
  for i, ui in enumerate(u):
    for j, vj in enumerate(v):
      p = ui * vj
      if i + j < nl: cols[i + j].append(p & mask)
      if i + j + 1 < nl: cols[i + j + 1].append(p >> L)
  digits, carry = [], None
  for col in cols:
    acc = functools.reduce(lambda a, c: a + c, col if carry is None else [*col, carry])
    digits.append(acc & mask)
    carry = acc >> L
  # round to the nearest quadrant: add half a quadrant, the top 2 bits are the quadrant, the rest (minus the half) is r
  g = (digits[-1] + (1 << (L - 3))) & mask
  quad = g >> (L - 2)
  rem = (g & ((1 << (L - 2)) - 1)).cast(idt) - (1 << (L - 3))
  terms = [d.cast(ax.dtype) * 2.0 ** (-L * (i + 1)) for i, d in enumerate(reversed(digits[:-1]))]
  sh, sl = _fast2sum(rem.cast(ax.dtype), terms[0])
  sl = sl + functools.reduce(lambda a, c: c + a, reversed(terms[1:]))
  rh, rl = _fast2sum(sh, sl)
  # times pi/2 (per unit of 2**(L-2)): rh1*ch is exact
  ch, cl = _split_const(_dec(_pi_fixed(400), 400 + L - 1), F)
  rh1 = _hi(rh, F)
  big, small = _fast2sum(rh1 * ch, (rh - rh1) * ch + (rh * cl + rl * (ch + cl)))
  return quad, big, small

def _sin(x: UOp, F: _Fmt) -> UOp:
  ax = _abs(x, F)
  quad, yh, yl = _payne_hanek(ax, F)
  near = ax < math.pi / 4
  rh, rl, quad = near.where(ax, yh), near.where(0.0, yl), near.where(0, quad)
  z = rh * rh
  sdeg, cdeg = (4, 4) if F is _F32 else (8, 7)
  sin_p = _poly(z, [(-1) ** k / math.factorial(2 * k + 1) for k in range(1, sdeg + 1)])
  cos_p = _poly(z, [(-1) ** k / math.factorial(2 * k) for k in range(2, cdeg + 2)])
  s = rh + (rh * z * sin_p + rl * (1.0 - 0.5 * z))
  hz = 0.5 * z
  w = 1.0 - hz
  c = w + (((1.0 - w) - hz) + (z * z * cos_p - rh * rl))
  v = _eq(quad & 1, 1).where(c, s)
  v = _eq(quad & 2, 2).where(-v, v)
  return (ax < math.inf).where((_bits(x, F) < 0).where(-v, v), math.nan)

# ---- sqrt ----

def _sqrt(x: UOp, F: _Fmt) -> UOp:
  scale = (F.mant + 2) & ~1  # an even power of two brings subnormals into the normal range
  tiny = x < 2.0 ** (1 - F.bias)
  xs = tiny.where(x * 2.0 ** scale, x)
  magic = 0x5f3759df if F is _F32 else 0x5fe6eb50c7b537a9  # initial 1/sqrt guess from the bits (about 3.5% off)
  y = _float(_bits(xs, F).const_like(magic) - (_bits(xs, F) >> 1), F)
  for _ in range(3 if F is _F32 else 4): y = y * (1.5 - 0.5 * xs * y * y)
  s = xs * y
  # one correction with the exact residual xs - s*s: within 1 ulp, nearly always correctly rounded
  s1 = _hi(s, F)
  s2 = s - s1
  res = ((xs - s1 * s1) - 2.0 * s1 * s2) - s2 * s2
  s = s + res * (0.5 * y)
  s = tiny.where(s * 2.0 ** (-scale // 2), s)
  s = _eq(x, math.inf).where(x, s)
  return (x < 0.0).where(math.nan, _eq(x, 0.0).where(x, _isnan(x).where(x, s)))

# ---- rules ----

_IMPLS = {Ops.EXP2: _exp2, Ops.LOG2: _log2, Ops.SIN: _sin, Ops.SQRT: _sqrt, Ops.POW: _pow}

def _lower(u: UOp) -> UOp:
  sdt = u.dtype.scalar()
  if sdt in (dtypes.float16, dtypes.bfloat16):  # too few bits to compute in: go through float32 and round once at the end
    wide = dtypes.float32.vec(u.dtype.count)
    return _IMPLS[u.op](*(s.cast(wide) for s in u.src), _F32).cast(u.dtype)
  return _IMPLS[u.op](*u.src, _FMTS[sdt])

TRANSCENDENTAL = (Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW, Ops.SQRT)

def transcendental_rules(supported_ops: set[Ops] | frozenset[Ops], native_dtypes: dict[Ops, frozenset[DType]] | None = None) -> PatternMatcher:
  """Rules rewriting each of EXP2, LOG2, SIN, POW, SQRT on float16/bfloat16/float32/float64 (scalars and vectors) that is NOT
  in `supported_ops`, or is but on a dtype outside its entry in `native_dtypes`, into basic ALU ops (see the module docstring for
  the ops used and the accuracy)."""
  only = native_dtypes or {}
  rules = []
  for op in TRANSCENDENTAL:
    dts = _FLOATS if op not in supported_ops else tuple(d for d in _FLOATS if d not in only.get(op, _FLOATS))
    if dts: rules.append((UPat(op, dtype=dts, name="u"), _lower))
  return PatternMatcher(rules, name="transcendental")
