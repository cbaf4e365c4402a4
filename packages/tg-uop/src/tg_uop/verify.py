"""`python -m tg_uop.verify`: check every symbolic rule one by one.

Each rule's pattern is instantiated into concrete UOp graphs (variables over several bounds and dtypes, representative constants,
every op of an op set); where the rule rewrites an instance, z3 proves `before == after` over fixed-width bit-vectors
(wrap-around, C truncating division) and IEEE floats, for every value of the variables where `before` is defined. Instances
z3 can't model (transcendentals, fp8, ...) or can't decide in time are fuzzed through `tg_uop.alu.exec_alu` instead.
A rule is `proven` (every instance proven), `unprovable` (some fuzzed, all fine), `refuted` (a counterexample) or
`not exercised` (no instance rewrote). z3 is optional for the core: this module imports it only when checking."""
from __future__ import annotations
import argparse, inspect, itertools, json, math, random, struct, sys, time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from tg_uop.alu import exec_alu
from tg_uop.dtype import DType, dtypes, truncate_int, truncate_float, FLOAT_BITS
from tg_uop.ops import Ops, GroupOp
from tg_uop.rewrite import UPat
from tg_uop.uop import UOp

Rule = tuple[str, UPat, Callable]

# ---------------------------------------------------------------------------------------------------------------------------
# configuration: which dtypes, bounds and constants instances are built from

@dataclass(frozen=True)
class Config:
  """How many and which instances to build and check."""
  ints: tuple[DType, ...]
  floats: tuple[DType, ...]
  bounds: tuple[tuple[str, int, int], ...]  # (kind, lo, hi); kind "abs" is taken as is, "full"/"top"/"bottom" follow the dtype
  consts: tuple[int, ...]
  scales: tuple[int, ...]      # var leaves also become `v*scale`, so "multiple of c" conditions can hold
  cap: int                     # instances per pattern skeleton (sampled from the product of leaf choices beyond that)
  max_fired: int               # checked instances per rule
  fuzz: int                    # random cases per fuzzed instance
  timeout_ms: int = 2000
  seed: int = 0

_BOUNDS_FULL = (("full", 0, 0), ("abs", 0, 100), ("abs", -50, 50), ("abs", 0, 1 << 20), ("abs", 0, 7), ("abs", 16, 23),
                ("abs", -8, -1), ("abs", 5, 5), ("top", 0, 0), ("bottom", 0, 0))
FULL = Config(ints=(dtypes.int32, dtypes.int64, dtypes.uint32, dtypes.index, dtypes.int8, dtypes.uint8, dtypes.uint64),
              floats=(dtypes.float32, dtypes.float16, dtypes.float64, dtypes.bfloat16, dtypes.fp8e4m3),
              bounds=_BOUNDS_FULL, consts=(0, 1, -1, 2, 3, 4, 7, 8, 16, -3, -4, -8, 100), scales=(4, 16, 3),
              cap=400, max_fired=1500, fuzz=200)
QUICK = Config(ints=(dtypes.int32, dtypes.index, dtypes.uint32, dtypes.int8), floats=(dtypes.float32, dtypes.float16),
               bounds=(("full", 0, 0), ("abs", 0, 100), ("abs", -50, 50), ("abs", 0, 7), ("abs", 16, 23), ("abs", 5, 5)),
               consts=(0, 1, -1, 2, 3, 4, 8, -3), scales=(4,), cap=60, max_fired=200, fuzz=40)

INT_ONLY = {Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR}
FLOAT_ONLY = {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT, Ops.RECIP, Ops.FDIV, Ops.POW, Ops.TRUNC}
BOOL_OK = {Ops.AND, Ops.OR, Ops.XOR, Ops.ADD, Ops.MUL, Ops.MAX, Ops.WHERE, Ops.CMPNE, Ops.CMPEQ, Ops.CMPLT}

def _is_bool(dt: DType) -> bool: return dt.scalar() == dtypes.bool

def _op_ok(op: Ops, dt: DType) -> bool:
  """Whether ALU `op` is meaningful on operands of dtype `dt` (the instances stay well-typed)."""
  if op is Ops.THREEFRY: return False  # never folded, and a hash has no algebra to check
  if _is_bool(dt): return op in BOOL_OK
  if dtypes.is_float(dt): return op not in INT_ONLY
  return op not in FLOAT_ONLY

def _float_specials(dt: DType) -> list[float]:
  e, m = FLOAT_BITS[dt.scalar()]
  bias = (1 << (e - 1)) - 1
  tiny = 2.0 ** (1 - bias - m)
  big = 448.0 if dt == dtypes.fp8e4m3 else 57344.0 if dt == dtypes.fp8e5m2 else (2 - 2.0 ** -m) * 2.0 ** bias
  return [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -0.5, 1.5, 2.5, 3.0, math.inf, -math.inf, math.nan, tiny, -tiny, big, -big, 1e-3]

def _dedup_floats(vals: list[float], dt: DType) -> list[float]:
  out: dict[bytes, float] = {}
  for v in vals:
    r = truncate_float(v, dt)
    out.setdefault(struct.pack("<d", r), r)
  return list(out.values())

def int_consts(dt: DType, cfg: Config) -> list[int]:
  """Representative constants of an int dtype: small values, the extremes and their neighbours."""
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  vals = list(cfg.consts) + [lo, hi, lo + 1, hi - 1]
  if dt.itemsize == 8: vals.append((1 << 60) + (1 << 36) + 1)  # rounds differently through a double when cast to float32
  return list(dict.fromkeys(v for v in vals if lo <= v <= hi))

def const_values(dt: DType, cfg: Config) -> list:
  if _is_bool(dt): return [False, True]
  if dtypes.is_float(dt): return _dedup_floats(_float_specials(dt), dt)
  return int_consts(dt, cfg)

def int_bounds(dt: DType, cfg: Config) -> list[tuple[int, int]]:
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  out = []
  for kind, a, b in cfg.bounds:
    a, b = {"full": (lo, hi), "top": (hi - 10, hi), "bottom": (lo, lo + 10)}.get(kind, (a, b))
    if lo <= a <= b <= hi: out.append((a, b))
  return list(dict.fromkeys(out))

# ---------------------------------------------------------------------------------------------------------------------------
# pattern skeletons: the pattern's structure with dtypes chosen, its leaves still open

@dataclass(frozen=True)
class Leaf:
  name: str
  kind: str  # "var" (any UOp), "const" (a CONST), "op" (a UOp of one of `ops` with sources of its own)
  dtype: DType
  arg: Any = None
  ops: tuple[Ops, ...] = ()

@dataclass(frozen=True)
class Node:
  op: Ops
  dtype: DType
  src: tuple
  arg: Any = None

class _Names:
  def __init__(self): self.n = 0
  def fresh(self) -> str:
    self.n += 1
    return f"_{self.n}"

def _value_dtypes(cfg: Config) -> list[DType]: return [*cfg.ints, dtypes.bool, *cfg.floats]

def _src_dtypes(op: Ops, dt: DType, cfg: Config) -> list[tuple[DType, ...]]:
  """The source dtypes ALU/CAST `op` producing `dt` takes."""
  if op in GroupOp.Comparison:
    if not _is_bool(dt): return []
    return [(t, t) for t in _value_dtypes(cfg) if _op_ok(op, t)]
  if op is Ops.WHERE: return [(dtypes.bool, dt, dt)]
  if op is Ops.CAST: return [(t,) for t in _value_dtypes(cfg)]
  if op not in GroupOp.ALU or not _op_ok(op, dt): return []
  return [(dt,) * (3 if op in GroupOp.Ternary else 2 if op in GroupOp.Binary else 1)]

def _dtype_ok(p: UPat, dt: DType) -> bool: return p.dtype is None or dt in p.dtype or dt.scalar() in p.dtype

def skeletons(p: UPat, dt: DType, cfg: Config, names: _Names) -> list:
  """Every way to build pattern `p` as a UOp of dtype `dt`, as trees of Node and Leaf."""
  if not _dtype_ok(p, dt): return []
  if p.src is None:
    if p.op is None: return [Leaf(p.name or names.fresh(), "var", dt)]
    if set(p.op) <= {Ops.CONST, Ops.VCONST}: return [Leaf(p.name or names.fresh(), "const", dt, p.arg)]
    return [Leaf(p.name or names.fresh(), "op", dt, p.arg, tuple(sorted(p.op)))]
  out: list = []
  for op in sorted(p.op or ()):
    if op is Ops.END:
      out += [Node(Ops.END, dtypes.void, (v, *extra)) for v in skeletons(p.src[0], dtypes.void, cfg, names)
              for extra in _end_extras(names)]
      continue
    for sdts in _src_dtypes(op, dt, cfg):
      if isinstance(p.src, UPat): pats: tuple = (p.src,) * len(sdts)
      elif len(p.src) == len(sdts): pats = tuple(p.src)
      else: continue
      kids = [skeletons(sp, sd, cfg, names) for sp, sd in zip(pats, sdts)]
      out += [Node(op, dt, combo, p.arg) for combo in itertools.product(*kids)]
  return out

def _end_extras(names: _Names) -> list[tuple]:
  # what an END holds after its first value: more values (stores), live ranges, ranges already folded to a constant
  r = Node(Ops.RANGE, dtypes.index, (Leaf(names.fresh(), "const", dtypes.index, 4),), 0)
  r2 = Node(Ops.RANGE, dtypes.index, (Leaf(names.fresh(), "const", dtypes.index, 8),), 1)
  c, v = Leaf(names.fresh(), "const", dtypes.index, 0), Leaf(names.fresh(), "var", dtypes.void)
  return [(), (r,), (c,), (r, c), (c, r), (r, r2), (v, r), (v, c), (v, r, c)]

def store_choices(name: str) -> list[UOp]:
  """Effects (void UOps) for patterns that take any UOp where a void one belongs, e.g. the values an END closes."""
  buf = UOp(Ops.DEFINE_GLOBAL, dtypes.int32.ptr(64), arg=0)
  idx = _var(name, dtypes.index, 0, 63)
  return [buf.index(idx).store(UOp.const(dtypes.int32, 1)), buf.index(UOp.const(dtypes.index, 3)).store(UOp.const(dtypes.int32, 2))]

def root_dtypes(p: UPat, cfg: Config) -> list[DType]:
  if p.op is not None and set(p.op) <= GroupOp.Comparison: return [dtypes.bool]
  if p.op is not None and set(p.op) <= {Ops.END}: return [dtypes.void]
  return [d for d in _value_dtypes(cfg) if _dtype_ok(p, d)]

def _leaves(tree, acc: dict[str, Leaf]) -> bool:
  """Collect the leaves by name; False where one name would need two different leaves."""
  if isinstance(tree, Leaf):
    return acc.setdefault(tree.name, tree) == tree
  return all(_leaves(s, acc) for s in tree.src)

# ---------------------------------------------------------------------------------------------------------------------------
# leaf choices

def _var(name: str, dt: DType, lo, hi) -> UOp: return UOp(Ops.DEFINE_VAR, dt, arg=(name, lo, hi))

def var_choices(name: str, dt: DType, cfg: Config) -> list[UOp]:
  """Variables over several bounds; for ints also `v*scale` terms."""
  if dt == dtypes.void: return store_choices(name)
  if _is_bool(dt): return [_var(name, dt, False, True)]
  if dtypes.is_float(dt): return [_var(name, dt, -math.inf, math.inf)]
  if not dtypes.is_int(dt): return []
  out = [_var(name, dt, lo, hi) for lo, hi in int_bounds(dt, cfg)]
  for k in cfg.scales:
    for lo, hi in ((0, 100), (-50, 50)):
      if dtypes.min(dt) <= lo and k <= dtypes.max(dt):
        out.append(UOp(Ops.MUL, dt, (_var(name + "v", dt, lo, min(hi, dtypes.max(dt))), UOp.const(dt, k))))
  return out

def const_choices(dt: DType, arg: Any, cfg: Config) -> list[UOp]:
  if dt.count != 1 or dt == dtypes.void: return []
  if arg is not None:
    if isinstance(arg, float) and not dtypes.is_float(dt) and not arg.is_integer(): return []
    return [UOp.const(dt, arg)]
  return [UOp.const(dt, v) for v in const_values(dt, cfg)]

def _small_pool(name: str, dt: DType, cfg: Config) -> list[UOp]:
  """Sources for generated ALU nodes: narrow variables (so bounds can decide a result) and a few constants."""
  if _is_bool(dt): return [_var(name, dt, False, True), UOp.const(dt, True), UOp.const(dt, False)]
  if dtypes.is_float(dt): return [_var(name, dt, -math.inf, math.inf), UOp.const(dt, 1.0), UOp.const(dt, math.nan)]
  vs = [_var(name, dt, lo, hi) for lo, hi in int_bounds(dt, cfg) if (lo, hi) in ((0, 7), (5, 5), (-50, 50), (dtypes.min(dt), dtypes.max(dt)))]
  return vs + [UOp.const(dt, v) for v in (0, 1, 8, -1) if dtypes.min(dt) <= v <= dtypes.max(dt)]

def op_choices(leaf: Leaf, cfg: Config, rng: random.Random) -> list[UOp]:
  """UOps of one of `leaf.ops` and dtype `leaf.dtype`, with generated sources."""
  dt, out = leaf.dtype, []
  for op in leaf.ops:
    if op is Ops.DEFINE_VAR:
      if dtypes.is_int(dt): out += [_var(leaf.name, dt, lo, hi) for lo, hi in ((5, 5), (0, 0), (0, 7)) if dtypes.min(dt) <= lo]
      elif _is_bool(dt): out += [_var(leaf.name, dt, True, True), _var(leaf.name, dt, False, True)]
    elif op in (Ops.RANGE, Ops.SPECIAL) and dtypes.is_int(dt):
      for end in (1, 4):
        out.append(UOp.range(UOp.const(dt, end), 0, dt) if op is Ops.RANGE else UOp.special(UOp.const(dt, end), "gidx0", dt))
    elif op is Ops.CAST:
      for sdt in _value_dtypes(cfg):
        out += [UOp(Ops.CAST, dt, (s,)) for s in _small_pool(leaf.name + "c", sdt, cfg) if s.op is not Ops.CONST]
    elif op in GroupOp.ALU:
      for sdts in _src_dtypes(op, dt, cfg):
        pools = [_small_pool(f"{leaf.name}{i}", sd, cfg) for i, sd in enumerate(sdts)]
        out += [UOp(op, dt, combo) for combo in sample_product(pools, max(4, cfg.cap // 8), rng)]
  return out

def leaf_choices(leaf: Leaf, cfg: Config, rng: random.Random) -> list[UOp]:
  if leaf.kind == "var": return var_choices(leaf.name, leaf.dtype, cfg)
  if leaf.kind == "const": return const_choices(leaf.dtype, leaf.arg, cfg)
  return op_choices(leaf, cfg, rng)

def sample_product(lists: list[list], cap: int, rng: random.Random) -> list[tuple]:
  """The product of `lists` if it has at most `cap` elements, else `cap` distinct random picks from it."""
  total = math.prod(len(x) for x in lists)
  if total == 0: return []
  if total <= cap: return list(itertools.product(*lists))
  picks = rng.sample(range(total), cap)
  out = []
  for k in picks:
    combo = []
    for x in lists:
      k, i = divmod(k, len(x))
      combo.append(x[i])
    out.append(tuple(combo))
  return out

def build(tree, assign: dict[str, UOp]) -> UOp:
  if isinstance(tree, Leaf): return assign[tree.name]
  return UOp(tree.op, tree.dtype, tuple(build(s, assign) for s in tree.src), tree.arg)

def instances(p: UPat, cfg: Config, rng: random.Random) -> Iterator[UOp]:
  """Concrete UOp graphs built from pattern `p`, interleaving its skeletons so that a cap still sees every dtype."""
  gens = []
  for dt in root_dtypes(p, cfg):
    for tree in skeletons(p, dt, cfg, _Names()):
      leaves: dict[str, Leaf] = {}
      if not _leaves(tree, leaves): continue
      choices = [leaf_choices(lf, cfg, rng) for lf in leaves.values()]
      gens.append((tree, list(leaves), sample_product(choices, cfg.cap, rng)))
  seen: set[UOp] = set()
  for row in itertools.zip_longest(*[g[2] for g in gens]):
    for (tree, names, _), combo in zip(gens, row):
      if combo is None: continue
      u = build(tree, dict(zip(names, combo)))
      if u not in seen:
        seen.add(u)
        yield u

# ---------------------------------------------------------------------------------------------------------------------------
# concrete evaluation, for fuzzing and for showing counterexamples

class UndefinedBehaviour(Exception):
  """The expression divides by zero, overflows INT_MIN / -1, shifts out of range or converts an unrepresentable float."""

def _int_to_float(v: int, dt: DType) -> float:
  # one rounding, to nearest even, straight to the target format (going through a double would round twice)
  if abs(v) <= 1 << 53: return truncate_float(float(v), dt)
  p = FLOAT_BITS[dt.scalar()][1] + 1
  shift = abs(v).bit_length() - p
  q, r = divmod(abs(v), 1 << shift)
  half = 1 << (shift - 1)
  if r > half or (r == half and q & 1): q += 1
  return truncate_float(math.copysign(float(q << shift), v), dt)

def cast_value(v: Any, src: DType, dst: DType) -> Any:
  """C's conversion of scalar `v` from `src` to `dst`."""
  if _is_bool(dst): return bool(v)
  if dtypes.is_int(dst):
    if isinstance(v, float):
      if not math.isfinite(v) or not dtypes.min(dst) <= math.trunc(v) <= dtypes.max(dst): raise UndefinedBehaviour(f"{v} -> {dst.name}")
      return math.trunc(v)
    return truncate_int(int(v), dst.scalar())
  if isinstance(v, bool) or isinstance(v, int): return _int_to_float(int(v), dst)
  return truncate_float(float(v), dst.scalar())

def evaluate(root: UOp, leaf_value: Callable[[UOp, Any], Any], memo: dict[UOp, Any] | None = None) -> Any:
  """The value of `root`; `leaf_value(u, end)` gives each DEFINE_VAR (end None) and RANGE/SPECIAL (end = its bound)."""
  vals: dict[UOp, Any] = {} if memo is None else memo
  for u in root.toposort():
    if u in vals: continue
    s = [vals[x] for x in u.src]
    if u.op is Ops.CONST: v = u.arg
    elif u.op is Ops.DEFINE_VAR: v = leaf_value(u, None)
    elif u.op in (Ops.RANGE, Ops.SPECIAL): v = leaf_value(u, s[0])
    elif u.op is Ops.CAST: v = cast_value(s[0], u.src[0].dtype, u.dtype)
    elif u.op is Ops.END: v = s[0]
    elif u.op in GroupOp.ALU:
      if u.op in (Ops.IDIV, Ops.MOD) and dtypes.is_int(u.dtype):
        if s[1] == 0: raise UndefinedBehaviour("division by zero")
        if s[1] == -1 and s[0] == dtypes.min(u.dtype) and not dtypes.is_unsigned(u.dtype): raise UndefinedBehaviour("INT_MIN / -1")
      if u.op in (Ops.SHL, Ops.SHR) and not 0 <= s[1] < 8 * u.dtype.itemsize: raise UndefinedBehaviour("shift out of range")
      v = exec_alu(u.op, u.dtype, tuple(s))
    else: raise ValueError(f"can't evaluate {u.op.name}: the verifier evaluates ALU ops, CAST, CONST, variables and END")
    vals[u] = v
  return vals[root]

def same_value(a: Any, b: Any) -> bool:
  """Equal, floats bit for bit (-0.0 differs from 0.0) and any nan equal to any nan."""
  if isinstance(a, float) or isinstance(b, float):
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)
  return a == b

class Sampler:
  """Random values for the variables and ranges of an instance, edge values first."""
  def __init__(self, rng: random.Random): self.rng, self.vals = rng, {}
  def __call__(self, u: UOp, end: Any) -> Any:
    if u in self.vals: return self.vals[u]
    rng, dt = self.rng, u.dtype
    if end is not None:
      if end < 1: raise UndefinedBehaviour("an empty range has no value")
      v = rng.choice([0, end - 1, rng.randrange(end)])
    elif _is_bool(dt): v = rng.random() < 0.5
    elif dtypes.is_float(dt):
      if rng.random() < 0.4: v = rng.choice(_float_specials(dt))
      elif rng.random() < 0.5: v = rng.uniform(-100, 100)
      else: v = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
      v = truncate_float(v, dt.scalar())
    else:
      lo, hi = u.arg[1], u.arg[2]
      edges = [x for x in (lo, hi, lo + 1, hi - 1, 0, 1, -1, (lo + hi) // 2) if lo <= x <= hi]
      v = rng.choice(edges) if rng.random() < 0.4 else rng.randint(lo, hi)
    self.vals[u] = v
    return v

def fuzz(lhs: UOp, rhs: UOp, n: int, rng: random.Random) -> tuple[int, dict | None]:
  """(cases checked, counterexample or None): random values where `lhs` is defined must give `rhs` the same value."""
  has_vars = any(u.op in (Ops.DEFINE_VAR, Ops.RANGE, Ops.SPECIAL) for u in lhs.toposort()) or \
             any(u.op in (Ops.DEFINE_VAR, Ops.RANGE, Ops.SPECIAL) for u in rhs.toposort())
  ok = 0
  for _ in range(n if has_vars else 1):
    smp = Sampler(rng)
    try: a = evaluate(lhs, smp)
    except UndefinedBehaviour: continue
    try: b = evaluate(rhs, smp)
    except UndefinedBehaviour as e: b = f"undefined ({e})"
    if isinstance(b, str) or not same_value(a, b):
      return ok, {"values": {(u.arg[0] if u.op is Ops.DEFINE_VAR else str(u.arg)): v for u, v in smp.vals.items()}, "before": a, "after": b}
    ok += 1
  return ok, None

def fp8_values(dt: DType) -> list[float]:
  """Every value of an fp8 dtype (one nan), decoded from its 256 bit patterns."""
  e4m3 = dt.scalar() == dtypes.fp8e4m3
  ebits, mbits = (4, 3) if e4m3 else (5, 2)
  bias, out = (1 << (ebits - 1)) - 1, []
  for b in range(256):
    sign, e, m = -1.0 if b & 0x80 else 1.0, (b >> mbits) & ((1 << ebits) - 1), b & ((1 << mbits) - 1)
    if e4m3 and e == 15 and m == 7: v = math.nan
    elif not e4m3 and e == 31: v = math.inf * sign if m == 0 else math.nan
    elif e == 0: v = sign * m / (1 << mbits) * 2.0 ** (1 - bias)
    else: v = sign * (1 + m / (1 << mbits)) * 2.0 ** (e - bias)
    out.append(v)
  return _dedup_floats(out, dtypes.float64)

def _domain(u: UOp) -> list | None:
  """Every value leaf `u` can take, where that is a short list (8-bit and smaller dtypes, short ranges); else None."""
  dt = u.dtype.scalar()
  if u.op is Ops.DEFINE_VAR:
    if dt == dtypes.bool: return [False, True]
    if dtypes.is_int(dt) and dt.itemsize == 1: return list(range(u.arg[1], u.arg[2] + 1))
    if dt in (dtypes.fp8e4m3, dtypes.fp8e5m2): return fp8_values(dt)
  if u.op in (Ops.RANGE, Ops.SPECIAL) and u.src[0].op is Ops.CONST and u.src[0].arg <= 256: return list(range(u.src[0].arg))
  return None

def exhaust(lhs: UOp, rhs: UOp, limit: int = 1 << 17) -> tuple[int, dict | None] | None:
  """Evaluate both sides on every value of their variables, where there are at most `limit` combinations:
  (cases checked, counterexample or None), or None where the domain is too large."""
  leaves = [u for u in {**lhs.toposort(), **rhs.toposort()} if u.op in (Ops.DEFINE_VAR, Ops.RANGE, Ops.SPECIAL)]
  doms = [_domain(u) for u in leaves]
  if any(d is None for d in doms) or math.prod(len(d) for d in doms) > limit: return None  # type: ignore[arg-type]
  n = 0
  for combo in itertools.product(*doms):  # type: ignore[arg-type]
    env = dict(zip(leaves, combo))
    def leaf(u: UOp, end: Any) -> Any: return env[u]
    try: a = evaluate(lhs, leaf)
    except UndefinedBehaviour: continue
    try: b = evaluate(rhs, leaf)
    except UndefinedBehaviour as e: b = f"undefined ({e})"
    if isinstance(b, str) or not same_value(a, b):
      return n, {"values": {(u.arg[0] if u.op is Ops.DEFINE_VAR else str(u.arg)): v for u, v in env.items()}, "before": a, "after": b}
    n += 1
  return n, None

# ---------------------------------------------------------------------------------------------------------------------------
# checking rules

@dataclass
class RuleResult:
  """What checking one rule found."""
  name: str
  status: str = "not exercised"  # proven | unprovable | refuted | not exercised
  instances: int = 0             # instances the rule rewrote (each one checked)
  proven: int = 0                # of them, proven (by z3, or by evaluating every case of a small domain)
  exhaustive: int = 0            # of the proven, those proven by evaluating every case
  structural: int = 0            # of the proven, effects (void UOps) compared by what they run and in which ranges
  fuzzed: int = 0                # of them, fuzzed (no exact z3 model, or z3 gave up)
  fuzz_cases: int = 0
  why_fuzzed: dict[str, int] = field(default_factory=dict)
  counterexample: dict | None = None
  refuted_pair: tuple[UOp, UOp] | None = None  # the instance and what the rule rewrote it to, where refuted
  seconds: float = 0.0

  def detail(self) -> str:
    if self.status == "refuted": return _cex_text(self.counterexample or {})
    if self.status == "unprovable":
      why = ", ".join(f"{k}: {v}" for k, v in sorted(self.why_fuzzed.items(), key=lambda kv: -kv[1])[:3])
      return f"fuzzed {self.fuzz_cases} cases ok over {self.fuzzed} instances ({why}); {self.proven} instances proven"
    if self.status == "proven":
      how = [f"{n} {w}" for n, w in ((self.exhaustive, "by evaluating every case"), (self.structural, "structurally")) if n]
      return f"{self.proven} instances proven" + (f" ({', '.join(how)})" if how else "")
    return "no instance was rewritten: the instantiation misses this rule"

def _cex_text(c: dict) -> str:
  parts = [f"{c.get('instance')}  ->  {c.get('rewritten')}"]
  if "vars" in c: parts.append("vars " + ", ".join(f"{k}: {v}" for k, v in c["vars"].items()))
  if "values" in c: parts.append("with " + ", ".join(f"{k}={v}" for k, v in c["values"].items()))
  if "before" in c: parts.append(f"before={c['before']} after={c['after']}")
  if "reason" in c: parts.append(c["reason"])
  return "; ".join(parts)

def _describe_vars(u: UOp) -> dict[str, str]:
  return {x.arg[0]: f"{x.dtype.name} in [{x.arg[1]}, {x.arg[2]}]" for x in u.toposort() if x.op is Ops.DEFINE_VAR}

def effects(u: UOp) -> tuple[frozenset[UOp], frozenset[UOp]]:
  """(the effects, the live ranges) a void UOp stands for: an END closes its void sources over its RANGEs (sources that folded
  to constants loop once and close nothing), a SINK groups its sources, anything else is one effect."""
  if u.op is Ops.END:
    return frozenset(s for s in u.src if s.dtype == dtypes.void), frozenset(s for s in u.src if s.op is Ops.RANGE)
  if u.op is Ops.SINK: return frozenset(u.src), frozenset()
  return frozenset((u,)), frozenset()

def _refutation(lhs: UOp, rhs: UOp, **info) -> dict:
  return {"instance": lhs.render(), "rewritten": rhs.render(), "vars": _describe_vars(lhs), **info}

def check_instance(lhs: UOp, rhs: UOp, cfg: Config, rng: random.Random, res: RuleResult) -> bool:
  """Check one rewrite `lhs -> rhs`, recording the outcome in `res`; False if it is wrong."""
  from tg_uop import z3conv
  res.instances += 1
  if rhs.dtype != lhs.dtype:
    res.counterexample = _refutation(lhs, rhs, reason=f"dtype changed from {lhs.dtype.name} to {rhs.dtype.name}")
    return False
  if lhs.dtype == dtypes.void:  # effects have no value to compare: the rewrite must keep what runs, and in which loops
    if effects(lhs) != effects(rhs):
      res.counterexample = _refutation(lhs, rhs, reason="the effects or the ranges they run in changed")
      return False
    res.proven += 1
    res.structural += 1
    return True
  try:
    status, info = z3conv.check_equal(lhs, rhs, cfg.timeout_ms)
    why, exact_ops = (f"z3 {info}" if status == "unknown" else ""), True
  except z3conv.Unmodeled as e: status, why, exact_ops = "unmodeled", f"no exact z3 model: {e}", e.kind == "dtype"
  if status == "proven":
    res.proven += 1
    return True
  if status == "refuted":
    assert isinstance(info, dict)
    after = info["after"] if info["after_defined"] else f"undefined (was {info['after']})"
    res.counterexample = _refutation(lhs, rhs, values=info["values"], before=info["before"], after=after, reason="z3 counterexample")
    return False
  # small domains of exactly defined ops (fp8, int8): evaluating every case is a proof under exec_alu's semantics
  if exact_ops and (ex := exhaust(lhs, rhs)) is not None:
    if ex[1] is not None:
      res.counterexample = _refutation(lhs, rhs, **ex[1], reason="found by exhaustive evaluation")
      return False
    res.proven += 1
    res.exhaustive += 1
    return True
  res.fuzzed += 1
  res.why_fuzzed[why] = res.why_fuzzed.get(why, 0) + 1
  n, cex = fuzz(lhs, rhs, cfg.fuzz, rng)
  res.fuzz_cases += n
  if cex is not None:
    res.counterexample = _refutation(lhs, rhs, **cex, reason="found by fuzzing")
    return False
  return True

def _call(fn: Callable, store: dict[str, UOp]) -> Any:
  return fn(ctx=None, **store) if "ctx" in inspect.signature(fn).parameters else fn(**store)

def verify_rule(name: str, pat: UPat, fn: Callable, cfg: Config = FULL) -> RuleResult:
  """Check one rule over instances of its pattern."""
  res, rng, t0 = RuleResult(name), random.Random(f"{cfg.seed}:{name}"), time.perf_counter()
  for u in instances(pat, cfg, rng):
    done: set[UOp] = set()
    for store in pat.match(u, {}):
      try: rhs = _call(fn, store)
      except Exception as e:  # a rule that crashes on a well-typed graph is as broken as a wrong one
        res.status, res.counterexample = "refuted", _refutation(u, u, reason=f"the rule raised {type(e).__name__}: {e}")
        break
      if rhs is None or rhs is u or rhs in done: continue
      done.add(rhs)
      if not isinstance(rhs, UOp):
        res.status, res.counterexample = "refuted", _refutation(u, u, reason=f"the rule returned {type(rhs).__name__}, not a UOp")
        break
      if not check_instance(u, rhs, cfg, rng, res):
        res.status, res.refuted_pair = "refuted", (u, rhs)
        break
    if res.status == "refuted" or res.instances >= cfg.max_fired: break
  if res.status != "refuted" and res.instances: res.status = "unprovable" if res.fuzzed else "proven"
  res.seconds = time.perf_counter() - t0
  return res

def verify_rules(rules: list[Rule], cfg: Config = FULL, progress: Callable[[RuleResult], None] | None = None) -> list[RuleResult]:
  """Check each rule of `rules` (name, pattern, function) one by one."""
  out = []
  for name, pat, fn in rules:
    out.append(r := verify_rule(name, pat, fn, cfg))
    if progress is not None: progress(r)
  return out

# ---------------------------------------------------------------------------------------------------------------------------
# command line

def _row(r: RuleResult) -> str: return f"{r.name:<22} {r.status:<14} {r.instances:>6}  {r.seconds:6.2f}s  {r.detail()}"

def summary(results: list[RuleResult]) -> str:
  counts = {s: sum(r.status == s for r in results) for s in ("proven", "unprovable", "refuted", "not exercised")}
  return f"{len(results)} rules: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + \
         f"; {sum(r.instances for r in results)} instances, {sum(r.fuzz_cases for r in results)} fuzz cases"

def main(argv: list[str] | None = None) -> int:
  """Run the verifier from the command line; exit status 1 if any rule is refuted."""
  ap = argparse.ArgumentParser(prog="python -m tg_uop.verify", description="Check every symbolic rule with z3 (or fuzzing).")
  ap.add_argument("--json", action="store_true", help="print the results as JSON")
  ap.add_argument("--rule", action="append", default=[], metavar="NAME", help="check only this rule (repeatable)")
  ap.add_argument("--quick", action="store_true", help="fewer instances and fuzz cases")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  try: import z3  # noqa: F401
  except ImportError:
    print("python -m tg_uop.verify needs z3: pip install tg-uop[verify]  (or: pip install z3-solver)", file=sys.stderr)
    return 2
  from tg_uop.symbolic import symbolic_rules
  rules = symbolic_rules
  if args.rule:
    known = {n for n, _, _ in symbolic_rules}
    if unknown := [n for n in args.rule if n not in known]:
      print(f"unknown rule {', '.join(unknown)}; the rules are: {', '.join(n for n, _, _ in symbolic_rules)}", file=sys.stderr)
      return 2
    rules = [r for r in symbolic_rules if r[0] in args.rule]
  base = QUICK if args.quick else FULL
  cfg = Config(**{**base.__dict__, "seed": args.seed})
  t0 = time.perf_counter()
  if not args.json: print(f"{'rule':<22} {'status':<14} {'inst':>6}  {'time':>7}  detail")
  results = verify_rules(rules, cfg, None if args.json else lambda r: print(_row(r), flush=True))
  elapsed = time.perf_counter() - t0
  if args.json:
    rows = [{"name": r.name, "status": r.status, "instances": r.instances, "proven": r.proven, "exhaustive": r.exhaustive,
             "structural": r.structural, "fuzzed": r.fuzzed, "fuzz_cases": r.fuzz_cases, "detail": r.detail(),
             "counterexample": r.counterexample, "seconds": round(r.seconds, 3)} for r in results]
    print(json.dumps({"rules": rows, "summary": summary(results), "seconds": round(elapsed, 3)}, indent=1, default=str))
  else: print(f"{summary(results)} in {elapsed:.1f}s")
  return 1 if any(r.status == "refuted" for r in results) else 0

if __name__ == "__main__": sys.exit(main())
