"""`UPat`, `PatternMatcher` and `graph_rewrite`: the one mechanism every transformation in tg is written in."""
from __future__ import annotations
import contextlib, inspect, itertools, math
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from tg_uop.dtype import DType
from tg_uop.helpers import TRACK_MATCH_STATS
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp, _argkey

class UPat:
  """A pattern over UOps. `src` as a tuple matches in order, as a list in any order, as one UPat matches every source."""
  __slots__ = ("op", "dtype", "src", "arg", "name", "allow_any_len", "_argk", "_ops", "_dtypes", "_orders")
  def __init__(self, op: Ops | tuple[Ops, ...] | set[Ops] | None = None, dtype: DType | tuple[DType, ...] | None = None,
               src: tuple[UPat, ...] | list[UPat] | UPat | None = None, arg: Any = None, name: str | None = None,
               allow_any_len: bool = False):
    self.op = None if op is None else (op,) if isinstance(op, Ops) else tuple(op)
    self.dtype = None if dtype is None else (dtype,) if isinstance(dtype, DType) else tuple(dtype)
    self.src, self.arg, self.name, self.allow_any_len = src, arg, name, allow_any_len
    self._argk = _argkey(arg)
    # precomputed for match(), the hottest function of every rewrite: set membership and the source orders to try
    self._ops = frozenset(self.op) if self.op is not None else None
    self._dtypes = frozenset(self.dtype) if self.dtype is not None else None
    self._orders = tuple(itertools.permutations(src)) if isinstance(src, list) else (src,) if isinstance(src, tuple) else ()

  @staticmethod
  def var(name: str | None = None, dtype: DType | tuple[DType, ...] | None = None) -> UPat:
    """Any UOp, bound to `name`."""
    return UPat(dtype=dtype, name=name)
  @staticmethod
  def cvar(name: str | None = None, dtype: DType | tuple[DType, ...] | None = None, vec: bool = True) -> UPat:
    """A constant (or, with `vec`, a vector constant), bound to `name`."""
    return UPat((Ops.CONST, Ops.VCONST) if vec else Ops.CONST, dtype, name=name)
  @staticmethod
  def const(dtype: DType | tuple[DType, ...] | None, b: Any) -> UPat:
    """The constant `b` exactly (0 matches 0 and 0.0 but not -0.0)."""
    return UPat(Ops.CONST, dtype, arg=b)

  # building patterns with operators mirrors building UOps
  def alu(self, op: Ops, *src: UPat) -> UPat:
    srcs = (self, *src)
    return UPat(op, None, list(srcs) if op in GroupOp.Commutative else srcs)
  def __add__(self, x: UPat) -> UPat: return self.alu(Ops.ADD, x)
  def __mul__(self, x: UPat) -> UPat: return self.alu(Ops.MUL, x)
  def __floordiv__(self, x: UPat) -> UPat: return self.alu(Ops.IDIV, x)
  def __mod__(self, x: UPat) -> UPat: return self.alu(Ops.MOD, x)
  def __truediv__(self, x: UPat) -> UPat: return self.alu(Ops.FDIV, x)
  def __and__(self, x: UPat) -> UPat: return self.alu(Ops.AND, x)
  def __or__(self, x: UPat) -> UPat: return self.alu(Ops.OR, x)
  def __xor__(self, x: UPat) -> UPat: return self.alu(Ops.XOR, x)
  def __lt__(self, x: UPat) -> UPat: return self.alu(Ops.CMPLT, x)
  def __neg__(self) -> UPat: return self.alu(Ops.NEG)
  def ne(self, x: UPat) -> UPat: return self.alu(Ops.CMPNE, x)
  def eq(self, x: UPat) -> UPat: return self.alu(Ops.CMPEQ, x)
  def maximum(self, x: UPat) -> UPat: return self.alu(Ops.MAX, x)
  def where(self, x: UPat, y: UPat) -> UPat: return self.alu(Ops.WHERE, x, y)
  def cast(self, dtype: DType | None = None, name: str | None = None) -> UPat: return UPat(Ops.CAST, dtype, (self,), name=name)
  def named(self, name: str) -> UPat:
    p = UPat(self.op, self.dtype, self.src, self.arg, name, self.allow_any_len)
    return p

  def __repr__(self) -> str:
    ops = "|".join(o.name for o in self.op) if self.op else "any"
    return f"UPat({ops}" + (f", name={self.name!r}" if self.name else "") + (f", arg={self.arg!r}" if self.arg is not None else "") + \
           (f", src={self.src!r}" if self.src is not None else "") + ")"

  def match(self, u: UOp, store: dict[str, UOp]) -> list[dict[str, UOp]]:
    """Every way `u` matches this pattern, each a dict of names to UOps (empty if none)."""
    if self._ops is not None and u.op not in self._ops: return []
    if self._dtypes is not None and u.dtype not in self._dtypes and u.dtype.scalar() not in self._dtypes: return []
    if self.arg is not None and (u.arg != self.arg or _argkey(u.arg) != self._argk and type(u.arg) is type(self.arg) or
                                 type(u.arg) is float and type(self.arg) is int and math.copysign(1.0, u.arg) < 0): return []  # 0 is not -0.0
    if self.name is not None:
      if (prev := store.get(self.name)) is not None:
        if prev is not u: return []
      else: store = {**store, self.name: u}
    if self.src is None: return [store]
    if isinstance(self.src, UPat):
      stores = [store]
      for s in u.src:
        stores = [r for st in stores for r in self.src.match(s, st)]
        if not stores: return []
      return stores
    n = len(self.src)
    if len(u.src) != n and not (self.allow_any_len and len(u.src) >= n): return []
    out: list[dict[str, UOp]] = []
    for order in self._orders:
      stores = [store]
      for p, s in zip(order, u.src):
        stores = [r for st in stores for r in p.match(s, st)]
        if not stores: break
      out.extend(stores)
    return out

@dataclass(frozen=True)
class RewriteStep:
  """One applied rewrite: which matcher and rule, and the UOp before and after."""
  matcher: str
  rule: str
  before: UOp
  after: UOp

_rewrite_hooks: list[Callable[[RewriteStep], None]] = []
match_stats: dict[str, list[int]] = {}  # rule location -> [matches tried, rewrites applied]; filled when TRACK_MATCH_STATS is set

def add_rewrite_hook(fn: Callable[[RewriteStep], None]) -> Callable[[], None]:
  """Call `fn` with each `RewriteStep` from now on (for the visualizer); returns a function that removes the hook."""
  _rewrite_hooks.append(fn)
  return lambda: _rewrite_hooks.remove(fn)

@contextlib.contextmanager
def track_rewrites() -> Iterator[list[RewriteStep]]:
  """Record every rewrite step made inside the block: `with track_rewrites() as steps: ...`."""
  steps: list[RewriteStep] = []
  remove = add_rewrite_hook(steps.append)
  try: yield steps
  finally: remove()

def _location(fxn: Callable) -> str:
  code = getattr(fxn, "__code__", None)
  return f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}" if code is not None else repr(fxn)

# ops whose sources (all of them, or those at the listed positions) have the op's own dtype: a dtype a source pattern demands is
# then one the op itself has, so a rule can be skipped by the op's dtype alone
_SAME_DTYPE_SRCS: dict[Ops, tuple[int, ...] | None] = {**{op: None for op in (Ops.ADD, Ops.MUL, Ops.SUB, Ops.FDIV, Ops.IDIV, Ops.MOD,
                                                       Ops.MAX, Ops.AND, Ops.OR, Ops.XOR, Ops.NEG, Ops.RECIP)},
                                                    Ops.SHL: (0,), Ops.SHR: (0,), Ops.WHERE: (1, 2)}

def _dtypes_of(p: UPat) -> frozenset | None:
  """The dtypes (scalar or vector) a UOp matching `p` can have, or None when any can match."""
  if p._dtypes is not None: return p._dtypes
  if p.op is None or not isinstance(p.src, (tuple, list)) or any(op not in _SAME_DTYPE_SRCS for op in p.op): return None
  out: frozenset | None = None
  for op in p.op:
    pos = _SAME_DTYPE_SRCS[op]
    if pos is not None and isinstance(p.src, list): return None  # positions of a commutative pattern are not fixed
    ds = [d for i, sp in enumerate(p.src) if (pos is None or i in pos) and (d := _dtypes_of(sp)) is not None]
    if not ds: return None
    mine = frozenset.intersection(*ds)
    out = mine if out is None else out | mine
  return out

class PatternMatcher:
  """An ordered list of (UPat, function) rules; the first rule whose function returns a UOp wins."""
  def __init__(self, patterns: list[tuple[UPat, Callable]], name: str | None = None):
    self.patterns, self.name = list(patterns), name or "matcher"
    self.pdict: dict[Ops, list[tuple[UPat, Callable, bool, str, frozenset, frozenset | None]]] = {}
    for p, fxn in self.patterns:
      if not isinstance(p, UPat): raise TypeError(f"a rule needs a UPat, got {type(p).__name__}: {p!r}")
      takes_ctx = "ctx" in inspect.signature(fxn).parameters
      # early reject: ops the direct sources must include for the pattern to have a chance
      early = frozenset(sp.op[0] for sp in p.src if sp.op is not None and len(sp.op) == 1) if isinstance(p.src, (tuple, list)) else frozenset()
      for op in (p.op if p.op is not None else tuple(Ops)):
        self.pdict.setdefault(op, []).append((p, fxn, takes_ctx, _location(fxn), early, _dtypes_of(p)))
    self._rules: dict[tuple[Ops, Any], list] = {}  # (op, dtype) -> the rules that can match it, built on first use
  def __add__(self, other: PatternMatcher) -> PatternMatcher: return PatternMatcher(self.patterns + other.patterns, f"{self.name}+{other.name}")
  def __len__(self) -> int: return len(self.patterns)

  def _rules_for(self, op: Ops, dtype: Any) -> list:
    rules = [r[:5] for r in self.pdict.get(op, ()) if r[5] is None or dtype in r[5] or dtype.scalar() in r[5]]
    self._rules[(op, dtype)] = rules
    return rules

  def rewrite(self, u: UOp, ctx: Any = None) -> UOp | None:
    """The first rule's result for `u`, or None if no rule applies."""
    src_ops = None
    if (rules := self._rules.get((u.op, u.dtype))) is None: rules = self._rules_for(u.op, u.dtype)
    for p, fxn, takes_ctx, loc, early in rules:
      if early:
        if src_ops is None: src_ops = {s.op for s in u.src}
        if not early <= src_ops: continue
      for store in p.match(u, {}):
        ret = fxn(ctx=ctx, **store) if takes_ctx else fxn(**store)
        if TRACK_MATCH_STATS.value: match_stats.setdefault(loc, [0, 0])[0] += 1
        if ret is not None and ret is not u:
          if TRACK_MATCH_STATS.value: match_stats[loc][1] += 1
          if _rewrite_hooks:
            for h in _rewrite_hooks: h(RewriteStep(self.name, loc, u, ret))
          return ret
    return None

class RewriteLoopError(RuntimeError): pass

def graph_rewrite(sink: UOp, pm: PatternMatcher, ctx: Any = None, bottom_up: bool = False, max_steps: int = 1_000_000) -> UOp:
  """Rewrite the graph under `sink` with `pm` until no rule applies anywhere.

  By default sources are rewritten before the UOps that use them (leaves first). With `bottom_up=True` each UOp is rewritten
  first, to a fixed point, before its sources (users first), and again if its sources changed. Every result a rule returns is
  itself rewritten, so the output is a fixed point either way."""
  replace: dict[UOp, UOp] = {}
  in_progress: set[UOp] = set()
  stack: list[tuple[UOp, int, UOp]] = [(sink, 0, sink)]  # (node, stage, key whose result this is)
  steps = 0
  while stack:
    n, stage, key = stack.pop()
    if stage == 0:
      if n in replace:
        replace[key] = replace[n]
        continue
      if n in in_progress:
        raise RewriteLoopError(f"rewrite rules of {pm.name} loop: {n.op.name} is rewritten back into itself; make the rules converge")
      in_progress.add(n)
      if bottom_up:
        seen = {n}
        while (r := pm.rewrite(n, ctx)) is not None:
          if r in seen: raise RewriteLoopError(f"rewrite rules of {pm.name} loop: {r.op.name} is rewritten back into itself; make the rules converge")
          seen.add(r)
          steps += 1
          if steps > max_steps: raise RewriteLoopError(f"{pm.name} made over {max_steps} rewrites: rules likely loop")
          if r in replace:
            n = replace[r]
            break
          n = r
      stack.append((n, 1, key))
      stack.extend((s, 0, s) for s in reversed(n.src) if s not in replace)
    elif stage == 1:
      src = tuple(map(replace.__getitem__, n.src))
      nn = n if src == n.src else UOp(n.op, n.dtype, src, n.arg)  # tuples compare by identity first: UOps are hash-consed
      if bottom_up and nn is not n:
        stack.append((nn, 2, key))
        stack.append((nn, 0, nn))
        continue
      r = None if bottom_up else pm.rewrite(nn, ctx)
      if r is None:
        replace[key] = replace[n] = replace[nn] = nn
        in_progress.discard(key); in_progress.discard(n)
        continue
      steps += 1
      if steps > max_steps: raise RewriteLoopError(f"{pm.name} made over {max_steps} rewrites: rules likely loop")
      stack.append((r, 2, key))
      stack.append((r, 0, r))
    else:
      replace[key] = replace[n]
      in_progress.discard(key)
  return replace[sink]
