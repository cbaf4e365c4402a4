"""Elementwise Tensor math: broadcasting, PyTorch dtype promotion, arithmetic, comparisons and transcendental functions.

Every function is built from the ALU ops the renderers must support (plus EXP2/LOG2/SIN/POW, which the lowering decomposes
where a target lacks them), so the same formula runs on every device."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING, Any
from tg_uop.dtype import DType, dtypes, least_upper_dtype, least_upper_float
from tg_uop.ops import Ops
if TYPE_CHECKING: from tg_tensor.tensor import Tensor

Scalar = bool | int | float

def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
  """The shape `shapes` broadcast to, aligned on the right (NumPy/PyTorch rules), with a clear error when they don't fit."""
  n = max(len(s) for s in shapes)
  padded = [(1,) * (n - len(s)) + tuple(s) for s in shapes]
  out = []
  for ax, dims in enumerate(zip(*padded)):
    big = {d for d in dims if d != 1}
    if len(big) > 1:
      raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} can't broadcast: sizes {sorted(big)} at axis {ax - n}; "
                       f"each axis must match or be 1 (reshape or expand one operand)")
    out.append(big.pop() if big else 1)
  return tuple(out)

def _scalar_dtype(dt: DType, y: Scalar) -> DType:
  """The dtype a Python scalar takes next to a tensor of `dt`, as PyTorch: it never widens the tensor's kind."""
  if isinstance(y, bool): return dt
  if isinstance(y, int): return dtypes.default_int if dt == dtypes.bool else dt
  return dt if dtypes.is_float(dt) else dtypes.default_float

_LOG2_E, _LN_2 = 1 / math.log(2), math.log(2)

class MathMixin:
  __slots__ = ()
  # ---- operands: broadcasting and promotion ----
  def _operand(self: Tensor, y: Any) -> Tensor:
    from tg_tensor.tensor import Tensor
    if isinstance(y, Tensor):
      if y.device != self.device:
        raise ValueError(f"tensors on different devices ({self.device} and {y.device}): move one with .to({self.device!r}) first")
      return y
    if not isinstance(y, (bool, int, float)):
      raise TypeError(f"can't combine a Tensor with {type(y).__name__}: use a Tensor or a Python bool, int or float")
    return Tensor._const(y, _scalar_dtype(self.dtype, y), (), self.device)
  def _broadcast_to(self: Tensor, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape: return self
    return self._wrap(self.uop.reshape((1,) * (len(shape) - self.ndim) + self.shape).expand(shape))
  def _broadcasted(self: Tensor, y: Any, reverse: bool = False, dtype: DType | None = None) -> tuple[Tensor, Tensor]:
    """Both operands cast to their common dtype (or `dtype`) and broadcast to their common shape."""
    x, y = self, self._operand(y)
    if reverse: x, y = y, x
    dt = dtype or least_upper_dtype(x.dtype, y.dtype)
    shape = broadcast_shape(x.shape, y.shape)
    return x.cast(dt)._broadcast_to(shape), y.cast(dt)._broadcast_to(shape)
  def _binop(self: Tensor, op: Ops, y: Any, reverse: bool = False, dtype: DType | None = None) -> Tensor:
    a, b = self._broadcasted(y, reverse, dtype)
    return a._wrap(a.uop.alu(op, b.uop))
  def _float(self: Tensor) -> Tensor:
    """This tensor in a float dtype (ints and bools go to the default float, as PyTorch's exp, sqrt, ...)."""
    return self.cast(least_upper_float(self.dtype))
  def _check_int(self: Tensor, what: str) -> None:
    if dtypes.is_float(self.dtype): raise TypeError(f"{what} needs bool or integer tensors, got {self.dtype}: cast to an integer dtype first")

  # ---- arithmetic ----
  def add(self, x: Any, reverse: bool = False) -> Tensor:
    """self + x with broadcasting."""
    a, b = self._broadcasted(x, reverse)
    if a.dtype == dtypes.bool: return a._wrap(a.uop | b.uop)
    return a._wrap(a.uop + b.uop)
  def sub(self, x: Any, reverse: bool = False) -> Tensor:
    """self - x with broadcasting."""
    a, b = self._broadcasted(x, reverse)
    if a.dtype == dtypes.bool: raise TypeError("subtracting bool tensors is not supported: use logical_xor, or cast to an int dtype first")
    return a._wrap(a.uop - b.uop)
  def mul(self, x: Any, reverse: bool = False) -> Tensor:
    """self * x with broadcasting."""
    a, b = self._broadcasted(x, reverse)
    if a.dtype == dtypes.bool: return a._wrap(a.uop & b.uop)
    return a._wrap(a.uop * b.uop)
  def div(self, x: Any, reverse: bool = False, rounding_mode: str | None = None) -> Tensor:
    """self / x: true division (ints promote to float, as PyTorch); rounding_mode "trunc" or "floor" rounds the quotient."""
    if rounding_mode == "floor": return self.floordiv(x, reverse)
    a, b = self._broadcasted(x, reverse)
    if rounding_mode == "trunc":
      if dtypes.is_int(a.dtype) or a.dtype == dtypes.bool: return a._wrap(a.uop // b.uop)
      return a.div(b).trunc()
    if rounding_mode is not None: raise ValueError(f"rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    a, b = a._float(), b._float()
    return a._wrap(a.uop / b.uop)
  def floordiv(self, x: Any, reverse: bool = False) -> Tensor:
    """self // x rounded toward -inf, as Python and PyTorch."""
    a, b = self._broadcasted(x, reverse)
    if dtypes.is_float(a.dtype): return a.div(b).floor()
    if a.dtype == dtypes.bool: a, b = a.cast(dtypes.default_int), b.cast(dtypes.default_int)
    q, r = a.uop // b.uop, a.uop % b.uop
    if dtypes.is_unsigned(a.dtype): return a._wrap(q)
    # C division truncates: step down where the remainder is nonzero and the signs differ
    fix = r.ne(0) & (r < 0).ne(b.uop < 0)
    return a._wrap(fix.where(q - 1, q))
  def mod(self, x: Any, reverse: bool = False) -> Tensor:
    """self % x with the sign of the divisor, as Python and PyTorch's remainder."""
    a, b = self._broadcasted(x, reverse)
    if dtypes.is_float(a.dtype): return a - a.div(b).floor() * b
    if a.dtype == dtypes.bool: a, b = a.cast(dtypes.default_int), b.cast(dtypes.default_int)
    r = a.uop % b.uop
    if dtypes.is_unsigned(a.dtype): return a._wrap(r)
    fix = r.ne(0) & (r < 0).ne(b.uop < 0)
    return a._wrap(fix.where(r + b.uop, r))
  def pow(self, x: Any, reverse: bool = False) -> Tensor:
    """self ** x; integer powers of integer tensors are exact (repeated multiplication, wrapping as C)."""
    if not reverse and isinstance(x, int) and not isinstance(x, bool) and not dtypes.is_float(self.dtype):
      if x < 0: raise ValueError("integers to negative integer powers are not allowed: cast the base to a float dtype first")
      return self._int_pow(x)
    if not reverse and isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) <= 4 and float(x).is_integer() \
       and dtypes.is_float(self.dtype):
      # small integer exponents of floats: exact multiplications, and correct for negative bases
      r = self._int_pow(abs(int(x)))
      return r.reciprocal() if x < 0 else r
    a, b = self._broadcasted(x, reverse)
    if a.dtype == dtypes.bool: a, b = a.cast(dtypes.default_int), b.cast(dtypes.default_int)
    return a._wrap(a.uop.alu(Ops.POW, b.uop))
  def _int_pow(self: Tensor, n: int) -> Tensor:
    out, base = self.ones_like(), self
    while n:
      if n & 1: out = out * base
      base, n = base * base, n >> 1
    return out
  def neg(self: Tensor) -> Tensor:
    """-self (logical not for bools is not negation: PyTorch refuses it, and so do we)."""
    if self.dtype == dtypes.bool: raise TypeError("negating a bool tensor is not supported: use logical_not() (or ~) instead")
    return self._wrap(-self.uop)
  def reciprocal(self: Tensor) -> Tensor:
    """1 / self."""
    x = self._float()
    return x._wrap(x.uop.alu(Ops.RECIP))
  def square(self: Tensor) -> Tensor: return self * self
  def maximum(self, x: Any) -> Tensor:
    """Elementwise max; nan wins, as PyTorch."""
    a, b = self._broadcasted(x)
    if a.dtype == dtypes.bool: return a._wrap(a.uop | b.uop)
    return a._wrap(a.uop.maximum(b.uop))
  def minimum(self, x: Any) -> Tensor:
    """Elementwise min; nan wins, as PyTorch."""
    a, b = self._broadcasted(x)
    if a.dtype == dtypes.bool: return a._wrap(a.uop & b.uop)
    if dtypes.is_float(a.dtype): return a._wrap(-((-a.uop).maximum(-b.uop)))  # negation is exact for floats and keeps nan
    return a._wrap((a.uop < b.uop).where(a.uop, b.uop))
  def clip(self: Tensor, min_: Any = None, max_: Any = None) -> Tensor:
    """self limited to [min_, max_] (either may be None); nan stays nan."""
    if min_ is None and max_ is None: raise ValueError("clip needs at least one of min_ and max_")
    out = self
    if min_ is not None: out = out.maximum(min_)
    if max_ is not None: out = out.minimum(max_)
    return out
  clamp = clip
  def where(self: Tensor, x: Any, y: Any) -> Tensor:
    """x where self (as bool) is true, else y; broadcasts all three and promotes x and y."""
    from tg_tensor.tensor import Tensor
    cond = self.cast(dtypes.bool)
    if isinstance(x, Tensor): xt = x
    elif isinstance(y, Tensor): xt = y._operand(x)
    else: xt = Tensor._const(x, dtypes.from_py(x) if not isinstance(y, float) or isinstance(x, float) else dtypes.default_float, (), self.device)
    a, b = xt._broadcasted(y)
    shape = broadcast_shape(cond.shape, a.shape)
    cond, a, b = cond._broadcast_to(shape), a._broadcast_to(shape), b._broadcast_to(shape)
    return a._wrap(cond.uop.where(a.uop, b.uop))
  def masked_fill(self: Tensor, mask: Tensor, value: Any) -> Tensor:
    """self with `value` where mask is true."""
    return mask.where(value, self)
  def lerp(self: Tensor, end: Tensor, weight: Any) -> Tensor: return self + (end - self) * weight

  # ---- comparisons (bool results) ----
  def _cmp(self, op: Ops, x: Any, reverse: bool = False) -> Tensor: return self._binop(op, x, reverse)
  def __lt__(self, x: Any) -> Tensor: return self._cmp(Ops.CMPLT, x)
  def __gt__(self, x: Any) -> Tensor: return self._cmp(Ops.CMPLT, x, reverse=True)
  def __le__(self, x: Any) -> Tensor: return self._le(x, False)
  def __ge__(self, x: Any) -> Tensor: return self._le(x, True)
  def _le(self, x: Any, reverse: bool) -> Tensor:
    a, b = self._broadcasted(x, reverse)
    # not(b < a) would be true for nan; floats need the explicit (a < b) or (a == b)
    if dtypes.is_float(a.dtype): return a._wrap((a.uop < b.uop) | a.uop.eq(b.uop))
    return a._wrap((b.uop < a.uop).logical_not())
  def __eq__(self, x: Any) -> Tensor: return self._cmp(Ops.CMPEQ, x)  # type: ignore[override]
  def __ne__(self, x: Any) -> Tensor: return self._cmp(Ops.CMPNE, x)  # type: ignore[override]
  def eq(self, x: Any) -> Tensor: return self == x
  def ne(self, x: Any) -> Tensor: return self != x
  def lt(self, x: Any) -> Tensor: return self < x
  def gt(self, x: Any) -> Tensor: return self > x
  def le(self, x: Any) -> Tensor: return self <= x
  def ge(self, x: Any) -> Tensor: return self >= x
  def isnan(self: Tensor) -> Tensor:
    """True where the value is nan."""
    return self != self
  def isinf(self: Tensor) -> Tensor:
    """True where the value is +inf or -inf."""
    if not dtypes.is_float(self.dtype): return self._const(False, dtypes.bool, self.shape, self.device)
    return (self == math.inf) | (self == -math.inf)
  def isfinite(self: Tensor) -> Tensor: return (self.isinf() | self.isnan()).logical_not()

  # ---- logical and bitwise ----
  def logical_not(self: Tensor) -> Tensor:
    b = self.cast(dtypes.bool)
    return b._wrap(b.uop.logical_not())
  def logical_and(self: Tensor, x: Any) -> Tensor: return self.cast(dtypes.bool).bitwise_and(self._operand(x).cast(dtypes.bool))
  def logical_or(self: Tensor, x: Any) -> Tensor: return self.cast(dtypes.bool).bitwise_or(self._operand(x).cast(dtypes.bool))
  def logical_xor(self: Tensor, x: Any) -> Tensor: return self.cast(dtypes.bool).bitwise_xor(self._operand(x).cast(dtypes.bool))
  def bitwise_and(self: Tensor, x: Any, reverse: bool = False) -> Tensor:
    self._check_int("&")
    return self._binop(Ops.AND, x, reverse)
  def bitwise_or(self: Tensor, x: Any, reverse: bool = False) -> Tensor:
    self._check_int("|")
    return self._binop(Ops.OR, x, reverse)
  def bitwise_xor(self: Tensor, x: Any, reverse: bool = False) -> Tensor:
    self._check_int("^")
    return self._binop(Ops.XOR, x, reverse)
  def bitwise_not(self: Tensor) -> Tensor:
    """~self: logical not for bools, all bits flipped for ints."""
    self._check_int("~")
    if self.dtype == dtypes.bool: return self.logical_not()
    return self._wrap(self.uop ^ self.uop.const_like(-1))
  def lshift(self: Tensor, x: int) -> Tensor:
    self._check_int("<<")
    return self._wrap(self.uop << self.uop.const_like(x)) if isinstance(x, int) else self._binop(Ops.SHL, x)
  def rshift(self: Tensor, x: int) -> Tensor:
    self._check_int(">>")
    return self._wrap(self.uop >> self.uop.const_like(x)) if isinstance(x, int) else self._binop(Ops.SHR, x)

  # ---- rounding (exact for every float: TRUNC plus comparisons, no casts through ints that could overflow) ----
  def trunc(self: Tensor) -> Tensor:
    return self._wrap(self.uop.alu(Ops.TRUNC)) if dtypes.is_float(self.dtype) else self
  def floor(self: Tensor) -> Tensor:
    if not dtypes.is_float(self.dtype): return self
    t = self.trunc()
    return (t > self).where(t - 1, t)
  def ceil(self: Tensor) -> Tensor:
    if not dtypes.is_float(self.dtype): return self
    t = self.trunc()
    return (t < self).where(t + 1, t)
  def round(self: Tensor) -> Tensor:
    """Round half to even, as PyTorch."""
    if not dtypes.is_float(self.dtype): return self
    f = self.floor()
    diff = self - f
    f_odd = (f - (f * 0.5).floor() * 2) != 0
    r = (diff > 0.5).where(f + 1, (diff < 0.5).where(f, f_odd.where(f + 1, f)))
    return (r == 0).where(self * 0, r)  # keeps the sign of zero: round(-0.4) is -0.0
  def frac(self: Tensor) -> Tensor: return self - self.trunc()

  # ---- unary math ----
  def abs(self: Tensor) -> Tensor:
    """|self|; abs(-0.0) is 0.0 (adding +0.0 clears the sign of a zero) and nan stays nan."""
    if self.dtype == dtypes.bool or dtypes.is_unsigned(self.dtype): return self
    if dtypes.is_float(self.dtype): return (self < 0).where(-self, self) + 0.0
    return (self < 0).where(-self, self)
  def sign(self: Tensor) -> Tensor:
    """-1, 0 or 1 (0 for nan, as PyTorch)."""
    if self.dtype == dtypes.bool: return self
    one, zero = self.uop.const_like(1), self.uop.const_like(0)
    return self._wrap((self.uop > 0).where(one, zero)) - self._wrap((self.uop < 0).where(one, zero))
  def exp2(self: Tensor) -> Tensor:
    x = self._float()
    return x._wrap(x.uop.alu(Ops.EXP2))
  def exp(self: Tensor) -> Tensor:
    """e ** self."""
    return (self._float() * _LOG2_E).exp2()
  def expm1(self: Tensor) -> Tensor: return self.exp() - 1
  def log2(self: Tensor) -> Tensor:
    x = self._float()
    return x._wrap(x.uop.alu(Ops.LOG2))
  def log(self: Tensor) -> Tensor:
    """Natural logarithm (nan below 0, -inf at 0)."""
    return self.log2() * _LN_2
  def log1p(self: Tensor) -> Tensor: return (self._float() + 1).log()
  def sqrt(self: Tensor) -> Tensor:
    x = self._float()
    return x._wrap(x.uop.alu(Ops.SQRT))
  def rsqrt(self: Tensor) -> Tensor: return self.sqrt().reciprocal()
  def sin(self: Tensor) -> Tensor:
    x = self._float()
    return x._wrap(x.uop.alu(Ops.SIN))
  def cos(self: Tensor) -> Tensor:
    """cos(x) = 1 - 2 sin(x/2)^2: halving is exact, so this stays accurate for large x (sin(x + pi/2) would not)."""
    s = (self._float() * 0.5).sin()
    return 1 - 2 * s * s
  def tan(self: Tensor) -> Tensor: return self.sin() / self.cos()
  def sigmoid(self: Tensor) -> Tensor:
    """1 / (1 + e^-x); saturates to 0 and 1 without nan."""
    return (1 + (-self._float()).exp()).reciprocal()
  def tanh(self: Tensor) -> Tensor: return 2 * (2 * self._float()).sigmoid() - 1
  def relu(self: Tensor) -> Tensor:
    """max(x, 0); nan stays nan and the gradient at 0 is 0, as PyTorch."""
    if not dtypes.is_float(self.dtype): return self.maximum(0)
    return ((self > 0) | self.isnan()).where(self, 0.0)
  def relu6(self: Tensor) -> Tensor: return self.relu().minimum(6)
  def leaky_relu(self: Tensor, neg_slope: float = 0.01) -> Tensor: return (self < 0).where(self * neg_slope, self)
  def elu(self: Tensor, alpha: float = 1.0) -> Tensor: return (self > 0).where(self, alpha * (self.exp() - 1))
  def celu(self: Tensor, alpha: float = 1.0) -> Tensor: return self.maximum(0) + (alpha * ((self / alpha).exp() - 1)).minimum(0)
  def selu(self: Tensor, alpha: float = 1.67326, gamma: float = 1.0507) -> Tensor: return gamma * self.elu(alpha)
  def silu(self: Tensor) -> Tensor: return self * self.sigmoid()
  swish = silu
  def hardsigmoid(self: Tensor) -> Tensor: return (self / 6 + 0.5).clip(0, 1)
  def hardswish(self: Tensor) -> Tensor: return self * self.hardsigmoid()
  def hardtanh(self: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor: return self.clip(min_val, max_val)
  def softplus(self: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^(beta x)) / beta, computed without overflow; linear above `threshold`, as PyTorch."""
    bx = self._float() * beta
    soft = (bx.maximum(0) + (1 + (-bx.abs()).exp()).log()) / beta
    return (bx > threshold).where(self._float(), soft)
  def mish(self: Tensor) -> Tensor: return self * self.softplus().tanh()
  def erf(self: Tensor) -> Tensor:
    """The error function, by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7: fine for float32, approximate for float64)."""
    x = self._float()
    t = (1 + 0.3275911 * x.abs()).reciprocal()
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return x.sign() * (1 - poly * (-x * x).exp())
  def gelu(self: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x): the erf form by default, the tanh form with approximate="tanh" (as PyTorch)."""
    x = self._float()
    if approximate == "tanh": return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())
    if approximate != "none": raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    return 0.5 * x * (1 + (x * (1 / math.sqrt(2))).erf())
  def quick_gelu(self: Tensor) -> Tensor: return self * (self * 1.702).sigmoid()

  # ---- operators ----
  def __neg__(self) -> Tensor: return self.neg()
  def __abs__(self) -> Tensor: return self.abs()
  def __invert__(self) -> Tensor: return self.bitwise_not()
  def __add__(self, x: Any) -> Tensor: return self.add(x)
  def __radd__(self, x: Any) -> Tensor: return self.add(x, True)
  def __sub__(self, x: Any) -> Tensor: return self.sub(x)
  def __rsub__(self, x: Any) -> Tensor: return self.sub(x, True)
  def __mul__(self, x: Any) -> Tensor: return self.mul(x)
  def __rmul__(self, x: Any) -> Tensor: return self.mul(x, True)
  def __truediv__(self, x: Any) -> Tensor: return self.div(x)
  def __rtruediv__(self, x: Any) -> Tensor: return self.div(x, True)
  def __floordiv__(self, x: Any) -> Tensor: return self.floordiv(x)
  def __rfloordiv__(self, x: Any) -> Tensor: return self.floordiv(x, True)
  def __mod__(self, x: Any) -> Tensor: return self.mod(x)
  def __rmod__(self, x: Any) -> Tensor: return self.mod(x, True)
  def __pow__(self, x: Any) -> Tensor: return self.pow(x)
  def __rpow__(self, x: Any) -> Tensor: return self.pow(x, True)
  def __and__(self, x: Any) -> Tensor: return self.bitwise_and(x)
  def __rand__(self, x: Any) -> Tensor: return self.bitwise_and(x, True)
  def __or__(self, x: Any) -> Tensor: return self.bitwise_or(x)
  def __ror__(self, x: Any) -> Tensor: return self.bitwise_or(x, True)
  def __xor__(self, x: Any) -> Tensor: return self.bitwise_xor(x)
  def __rxor__(self, x: Any) -> Tensor: return self.bitwise_xor(x, True)
  def __lshift__(self, x: int) -> Tensor: return self.lshift(x)
  def __rshift__(self, x: int) -> Tensor: return self.rshift(x)
  def __matmul__(self, x: Tensor) -> Tensor: return self.matmul(x)
  def __rmatmul__(self, x: Tensor) -> Tensor: return self._operand(x).matmul(self)

  # ---- in-place operators: the result is assigned into this tensor's buffer (cast back to its dtype) ----
  # (self is realized first: a value built on a pending ASSIGN would replay that assign when it runs)
  def _inplace(self: Tensor, fn: str, x: Any) -> Tensor:
    self.realize()
    return self.assign(getattr(self, fn)(x).cast(self.dtype))
  def __iadd__(self, x: Any) -> Tensor: return self._inplace("add", x)
  def __isub__(self, x: Any) -> Tensor: return self._inplace("sub", x)
  def __imul__(self, x: Any) -> Tensor: return self._inplace("mul", x)
  def __itruediv__(self, x: Any) -> Tensor: return self._inplace("div", x)
  def __ifloordiv__(self, x: Any) -> Tensor: return self._inplace("floordiv", x)
  def __imod__(self, x: Any) -> Tensor: return self._inplace("mod", x)
  def __ipow__(self, x: Any) -> Tensor: return self._inplace("pow", x)
  def __iand__(self, x: Any) -> Tensor: return self._inplace("bitwise_and", x)
  def __ior__(self, x: Any) -> Tensor: return self._inplace("bitwise_or", x)
  def __ixor__(self, x: Any) -> Tensor: return self._inplace("bitwise_xor", x)
  def __ilshift__(self, x: int) -> Tensor: return self._inplace("lshift", x)
  def __irshift__(self, x: int) -> Tensor: return self._inplace("rshift", x)
  def __imatmul__(self, x: Tensor) -> Tensor: return self._inplace("matmul", x)
