"""`UOp`: the immutable, hash-consed node every graph in tg is made of (tensor graphs, kernels, linearized programs)."""
from __future__ import annotations
import functools, math, struct, weakref
from typing import Any, Callable
from tg_uop.dtype import DType, PtrDType, dtypes, least_upper_dtype
from tg_uop.helpers import prod, all_int
from tg_uop.ops import Ops, GroupOp

def _argkey(arg: Any) -> Any:
  # floats compare by bits so that -0.0 and 0.0 stay distinct and nan dedups
  if type(arg) is float: return (float, struct.pack("<d", arg))
  if type(arg) is tuple:
    for a in arg:  # a plain loop, not any(<generator>): this runs for every UOp built, and the generator cost more than the test
      if type(a) is float or type(a) is tuple: return (tuple, tuple(_argkey(a) for a in arg))
  return arg

# The hash-consing table: key -> weak reference to the live UOp, and back from each reference to its key, so that a UOp's death
# removes its entry. Plain dicts and plain references: a WeakValueDictionary (or its KeyedRef) does the same through Python-level
# wrappers that cost more than the rest of building a UOp. The callback binds both dicts, so it still works while the interpreter
# tears the module down.
_ucache: dict[tuple, weakref.ref] = {}
_ucache_keys: dict[weakref.ref, tuple] = {}
def _uncache(ref: weakref.ref, cache: dict = _ucache, keys: dict = _ucache_keys) -> None:
  # unless the key already holds a newer UOp's reference
  if (key := keys.pop(ref, None)) is not None and cache.get(key) is ref: del cache[key]

class UOpMetaClass(type):
  ucache = _ucache
  def __call__(cls, op: Ops, dtype: DType = dtypes.void, src: tuple[UOp, ...] = (), arg: Any = None):
    key = (op, dtype, src, _argkey(arg))
    if (ref := _ucache.get(key)) is not None and (ret := ref()) is not None: return ret
    ret = super().__call__(op, dtype, src, arg)
    _ucache[key] = ref = weakref.ref(ret, _uncache)
    _ucache_keys[ref] = key
    return ret

class UOp(metaclass=UOpMetaClass):
  """One node: an op, its dtype, its sources and an argument. Building the same UOp twice returns the same object."""
  __slots__ = ("op", "dtype", "src", "arg", "__weakref__", "__dict__")
  op: Ops
  dtype: DType
  src: tuple[UOp, ...]
  arg: Any

  def __init__(self, op: Ops, dtype: DType = dtypes.void, src: tuple[UOp, ...] = (), arg: Any = None):
    object.__setattr__(self, "op", op)
    object.__setattr__(self, "dtype", dtype)
    object.__setattr__(self, "src", src)
    object.__setattr__(self, "arg", arg)
  def __setattr__(self, name, value): raise AttributeError(f"UOp is immutable: can't set {name}; build a new one with .replace()")
  def __reduce__(self): return UOp, (self.op, self.dtype, self.src, self.arg)
  def replace(self, **kwargs) -> UOp:
    """This UOp with some of op, dtype, src, arg changed."""
    new = (kwargs.pop("op", self.op), kwargs.pop("dtype", self.dtype), tuple(kwargs.pop("src", self.src)), kwargs.pop("arg", self.arg))
    if kwargs: raise TypeError(f"UOp.replace got unknown fields {list(kwargs)}: use op, dtype, src or arg")
    return self if new == (self.op, self.dtype, self.src, self.arg) and _argkey(new[3]) == _argkey(self.arg) else UOp(*new)

  # ---- graph walks ----
  def toposort(self, gate: Callable[[UOp], bool] | None = None) -> dict[UOp, None]:
    """Every UOp this one depends on, sources before users (an ordered dict used as a set). Iterative, so deep graphs are fine."""
    visited: dict[UOp, None] = {}
    stack: list[tuple[UOp, bool]] = [(self, False)]
    while stack:
      node, expanded = stack.pop()
      if node in visited: continue
      if expanded: visited[node] = None
      else:
        if gate is not None and not gate(node): continue
        stack.append((node, True))
        for s in reversed(node.src):
          if s not in visited: stack.append((s, False))
    return visited
  def substitute(self, mapping: dict[UOp, UOp]) -> UOp:
    """This graph with each key of `mapping` replaced by its value (rebuilding only what changed)."""
    if not mapping: return self
    new: dict[UOp, UOp] = {}
    for u in self.toposort():
      if u in mapping: new[u] = mapping[u]; continue
      src = tuple(new[s] for s in u.src)
      new[u] = u if all(a is b for a, b in zip(src, u.src)) else UOp(u.op, u.dtype, src, u.arg)
    return new[self]
  @property
  def sparents(self) -> dict[UOp, None]: return self.toposort()

  # ---- readable repr: shared nodes are printed once and referenced by name ----
  def __repr__(self) -> str:
    topo = list(self.toposort())
    if len(topo) > 200: return f"<UOp {self.op.name} {self.dtype!r} arg={self.arg!r}, {len(topo)} nodes>"
    users: dict[UOp, int] = {}
    for u in topo:
      for s in u.src: users[s] = users.get(s, 0) + 1
    names: dict[UOp, str] = {}
    lines: list[str] = []
    def fmt(u: UOp, depth: int) -> str:
      if u in names: return names[u]
      srcs = "".join("\n" + "  " * (depth + 1) + fmt(s, depth + 1) + "," for s in u.src)
      body = f"UOp({u.op!r}, {u.dtype!r}, arg={u.arg!r}" + (f", src=({srcs})" if u.src else "") + ")"
      if users.get(u, 0) > 1 and u.src:
        names[u] = f"x{len(names)}"
        lines.append(f"{names[u]} = {body}")
        return names[u]
      return body
    root = fmt(self, 0)
    return "\n".join(lines + [root]) if lines else root

  def render(self) -> str:
    """A short infix rendering for symbolic (index) expressions, e.g. `((gidx0*4)+ridx1)`."""
    from tg_uop.symbolic import render_expr
    return render_expr(self)

  # ---- construction helpers ----
  @staticmethod
  def const(dtype: DType, b: Any) -> UOp:
    """A constant of `dtype` (a tuple `b` makes a VCONST of a vector dtype)."""
    if isinstance(b, UOp): return b
    if isinstance(b, tuple):
      if len(b) != dtype.count: raise ValueError(f"a vector constant of {dtype} needs {dtype.count} values, got {len(b)}")
      return UOp(Ops.VCONST, dtype, arg=dtypes.as_const(b, dtype.scalar()))
    if dtype.count > 1: return UOp.const(dtype.scalar(), b).broadcast(dtype.count)
    return UOp(Ops.CONST, dtype, arg=dtypes.as_const(b, dtype))
  def const_like(self, b: Any) -> UOp: return UOp.const(self.dtype, b)
  @staticmethod
  def variable(name: str, min_val: int, max_val: int, dtype: DType = dtypes.index) -> UOp:
    """A symbolic integer variable with inclusive bounds."""
    if min_val > max_val: raise ValueError(f"variable {name!r} has min {min_val} > max {max_val}")
    return UOp(Ops.DEFINE_VAR, dtype, arg=(name, min_val, max_val))
  @staticmethod
  def range(end: int | UOp, axis: Any, dtype: DType = dtypes.index) -> UOp:
    """A loop index running 0..end-1; `axis` identifies the range."""
    return UOp(Ops.RANGE, dtype, (UOp.const(dtype, end) if not isinstance(end, UOp) else end,), axis)
  @staticmethod
  def special(end: int | UOp, name: str, dtype: DType = dtypes.index) -> UOp:
    """A GPU thread/block index (`gidx0`, `lidx1`, ...) running 0..end-1."""
    return UOp(Ops.SPECIAL, dtype, (UOp.const(dtype, end) if not isinstance(end, UOp) else end,), name)
  @staticmethod
  def sink(*srcs: UOp, arg: Any = None) -> UOp: return UOp(Ops.SINK, dtypes.void, tuple(srcs), arg)
  def ufix(self, x: Any) -> UOp:
    return x if isinstance(x, UOp) else self.const_like(x if dtypes.is_float(self.dtype) or not isinstance(x, float) else x)
  def alu(self, op: Ops, *src: UOp | int | float | bool) -> UOp:
    """This UOp combined with `src` by ALU `op`; checks that the dtypes agree."""
    srcs = (self, *(self.ufix(s) for s in src))
    check = srcs[1:] if op is Ops.WHERE else srcs
    if op not in (Ops.SHL, Ops.SHR) and len({s.dtype for s in check}) > 1:
      raise TypeError(f"{op.name} needs operands of one dtype, got {[s.dtype for s in check]}: cast them first")
    if op is Ops.WHERE and self.dtype.scalar() != dtypes.bool: raise TypeError(f"WHERE needs a bool condition, got {self.dtype}")
    out = dtypes.bool.vec(self.dtype.count) if op in GroupOp.Comparison else srcs[-1].dtype if op is Ops.WHERE else self.dtype
    return UOp(op, out, srcs)
  def __add__(self, x): return self.alu(Ops.ADD, x)
  def __radd__(self, x): return self.ufix(x).alu(Ops.ADD, self)
  def __sub__(self, x): return self.alu(Ops.ADD, self.ufix(x).neg())
  def __rsub__(self, x): return self.ufix(x).alu(Ops.ADD, self.neg())
  def __mul__(self, x): return self.alu(Ops.MUL, x)
  def __rmul__(self, x): return self.ufix(x).alu(Ops.MUL, self)
  def __floordiv__(self, x): return self.alu(Ops.IDIV, x)  # C semantics: truncates toward zero
  def __rfloordiv__(self, x): return self.ufix(x).alu(Ops.IDIV, self)
  def __truediv__(self, x): return self.alu(Ops.FDIV, x)
  def __mod__(self, x): return self.alu(Ops.MOD, x)  # C semantics: sign follows the dividend
  def __rmod__(self, x): return self.ufix(x).alu(Ops.MOD, self)
  def __neg__(self): return self.neg()
  def __and__(self, x): return self.alu(Ops.AND, x)
  def __or__(self, x): return self.alu(Ops.OR, x)
  def __xor__(self, x): return self.alu(Ops.XOR, x)
  def __lshift__(self, x): return self.alu(Ops.SHL, x)
  def __rshift__(self, x): return self.alu(Ops.SHR, x)
  def __lt__(self, x): return self.alu(Ops.CMPLT, x)
  def __gt__(self, x): return self.ufix(x).alu(Ops.CMPLT, self)
  def __ge__(self, x): return (self < x).logical_not()
  def __le__(self, x): return (self > x).logical_not()
  __hash__ = object.__hash__
  def __eq__(self, x): return self is x
  def __bool__(self): raise TypeError("a UOp has no truth value: compare with .eq()/.ne() to build a comparison, or `is` for identity")
  def neg(self) -> UOp:
    if self.dtype.scalar() == dtypes.bool: return self.logical_not()
    return self.alu(Ops.NEG) if dtypes.is_float(self.dtype) else self * -1
  def logical_not(self) -> UOp: return self.ne(True)
  def ne(self, x) -> UOp: return self.alu(Ops.CMPNE, x)
  def eq(self, x) -> UOp: return self.alu(Ops.CMPEQ, x)
  def maximum(self, x) -> UOp: return self.alu(Ops.MAX, x)
  def minimum(self, x) -> UOp: return -(-self).maximum(-self.ufix(x))
  def where(self, x, y) -> UOp:
    x = x if isinstance(x, UOp) else (y.const_like(x) if isinstance(y, UOp) else UOp.const(dtypes.from_py(x), x))
    return self.alu(Ops.WHERE, x, x.ufix(y))
  def cast(self, dtype: DType) -> UOp: return self if self.dtype == dtype else UOp(Ops.CAST, dtype, (self,))
  def bitcast(self, dtype: DType) -> UOp: return self if self.dtype == dtype else UOp(Ops.BITCAST, dtype, (self,))
  def index(self, *idx: UOp, gate: UOp | None = None) -> UOp:
    """Address `self` (a pointer) at `idx`, optionally gated (a gated load gives the alt value where the gate is false)."""
    if not isinstance(self.dtype, PtrDType): raise TypeError(f"INDEX needs a pointer source, got {self.dtype}")
    return UOp(Ops.INDEX, self.dtype, (self, *idx) + ((gate,) if gate is not None else ()))
  def load(self, *src: UOp, dtype: DType | None = None) -> UOp:
    base = self.dtype.base if isinstance(self.dtype, PtrDType) else self.dtype
    return UOp(Ops.LOAD, dtype or base, (self, *src))
  def store(self, val: UOp, *src: UOp) -> UOp: return UOp(Ops.STORE, dtypes.void, (self, val, *src))
  def end(self, *ranges: UOp) -> UOp: return UOp(Ops.END, dtypes.void, (self, *ranges))
  def gep(self, i: int | tuple[int, ...]) -> UOp:
    idx = (i,) if isinstance(i, int) else tuple(i)
    if any(not 0 <= j < self.dtype.count for j in idx): raise IndexError(f"GEP {idx} out of range for {self.dtype}")
    if self.dtype.count == 1 and idx == (0,): return self
    return UOp(Ops.GEP, self.dtype.scalar().vec(len(idx)), (self,), idx)
  def broadcast(self, n: int) -> UOp: return self if n == 1 else UOp(Ops.VECTORIZE, self.dtype.vec(n), (self,) * n)
  @staticmethod
  def vectorize(*srcs: UOp) -> UOp:
    if len({s.dtype for s in srcs}) != 1: raise TypeError(f"VECTORIZE needs sources of one dtype, got {[s.dtype for s in srcs]}")
    return srcs[0] if len(srcs) == 1 else UOp(Ops.VECTORIZE, srcs[0].dtype.vec(len(srcs)), srcs)

  # ---- tensor-level construction (movement, reduce, materialization); shapes are checked when `.shape` is read ----
  def _mop(self, op: Ops, arg) -> UOp:
    out = UOp(op, self.dtype, (self,), arg)
    _ = out.shape  # raises a clear error now, not when the graph is scheduled
    return out
  def reshape(self, shape: tuple) -> UOp: return self if tuple(shape) == self.shape else self._mop(Ops.RESHAPE, tuple(shape))
  def permute(self, order: tuple) -> UOp: return self if tuple(order) == tuple(range(len(order))) else self._mop(Ops.PERMUTE, tuple(order))
  def expand(self, shape: tuple) -> UOp: return self if tuple(shape) == self.shape else self._mop(Ops.EXPAND, tuple(shape))
  def pad(self, padding: tuple) -> UOp:
    return self if all(b == 0 and e == 0 for b, e in padding) else self._mop(Ops.PAD, tuple(tuple(p) for p in padding))
  def shrink(self, arg: tuple) -> UOp:
    return self if all(b == 0 and e == d for (b, e), d in zip(arg, self.shape)) else self._mop(Ops.SHRINK, tuple(tuple(a) for a in arg))
  def flip(self, axes: tuple) -> UOp: return self if not any(axes) else self._mop(Ops.FLIP, tuple(bool(a) for a in axes))
  def reduce_axis(self, op: Ops, axes: tuple) -> UOp:
    """Reduce `axes` away with `op` (ADD, MUL or MAX); the result has no size-1 placeholder axes (DESIGN.md point 2)."""
    if op not in (Ops.ADD, Ops.MUL, Ops.MAX): raise ValueError(f"reduce op must be ADD, MUL or MAX, got {op}")
    return self if not axes else self._mop(Ops.REDUCE_AXIS, (op, tuple(sorted(axes))))
  def contiguous(self, arg=None) -> UOp: return UOp(Ops.CONTIGUOUS, self.dtype, (self,), arg)

  # ---- symbolic helpers ----
  def simplify(self) -> UOp:
    """This expression after the symbolic rules."""
    from tg_uop.rewrite import graph_rewrite
    from tg_uop.symbolic import symbolic
    return graph_rewrite(self, symbolic)
  def ssimplify(self) -> UOp | int: return s.arg if (s := self.simplify()).op is Ops.CONST else s
  def const_factor(self) -> int:
    """The largest known integer factor of this expression (1 if none is known)."""
    if self.op is Ops.CONST: return self.arg
    if self.op is Ops.ADD: return math.gcd(self.src[0].const_factor(), self.src[1].const_factor())
    if self.op is Ops.MUL: return self.src[0].arg if self.src[0].op is Ops.CONST else self.src[1].arg if self.src[1].op is Ops.CONST else 1
    return 1
  def divides(self, v: int) -> UOp | None:
    """This expression divided exactly by `v`, or None where that isn't provably exact."""
    if v == 1: return self
    if self.op is Ops.CONST: return self.const_like(self.arg // v) if self.arg % v == 0 else None
    if self.op is Ops.ADD: return d0 + d1 if (d0 := self.src[0].divides(v)) is not None and (d1 := self.src[1].divides(v)) is not None else None
    if self.op is Ops.MUL:
      if (d0 := self.src[0].divides(v)) is not None: return d0 * self.src[1]
      if (d1 := self.src[1].divides(v)) is not None: return self.src[0] * d1
    return None

  # ---- bounds ----
  @property
  def vmin(self): return self._min_max[0]
  @property
  def vmax(self): return self._min_max[1]
  @functools.cached_property
  def _min_max(self) -> tuple:
    from tg_uop.bounds import min_max
    return min_max(self)

  # ---- tensor-level shape ----
  @functools.cached_property
  def shape(self) -> tuple[int | UOp, ...] | None:
    """The shape of a tensor-level UOp (None for kernel-level ones); raises a clear error on inconsistent graphs."""
    from tg_uop.shape import infer_shape
    return infer_shape(self)
  @property
  def size(self) -> int: return prod(self.shape) if self.shape is not None and all_int(self.shape) else -1

def ssimplify(x: UOp | int) -> UOp | int: return x.ssimplify() if isinstance(x, UOp) else x
def sym_infer(x: UOp | int, var_vals: dict[str, int]) -> int:
  """The value of an integer expression given values for its variables."""
  if isinstance(x, int): return x
  from tg_uop.alu import exec_alu
  vals: dict[UOp, Any] = {}
  for u in x.toposort():
    if u.op is Ops.CONST: vals[u] = u.arg
    elif u.op is Ops.DEFINE_VAR:
      if u.arg[0] not in var_vals: raise KeyError(f"no value given for variable {u.arg[0]!r}: pass it in var_vals")
      vals[u] = var_vals[u.arg[0]]
    elif u.op is Ops.BIND: vals[u] = vals[u.src[1]]
    elif u.op is Ops.CAST: vals[u] = dtypes.as_const(vals[u.src[0]], u.dtype)
    else: vals[u] = exec_alu(u.op, u.dtype, tuple(vals[s] for s in u.src))
  return vals[x]

def least_upper(*xs: UOp) -> DType: return least_upper_dtype(*(x.dtype for x in xs))
