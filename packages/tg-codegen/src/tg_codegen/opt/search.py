"""BEAM search over opt ops: candidates are lowered and compiled in parallel processes, timed on the device, and the best
`width` kept each round. Results are cached in a sqlite file under the tg cache dir (`IGNORE_BEAM_CACHE=1` skips reading it,
`CACHELEVEL=0` turns it off)."""
from __future__ import annotations
import hashlib, json, os, sqlite3, time
import multiprocessing
from tg_uop.helpers import DEBUG, CACHELEVEL, IGNORE_BEAM_CACHE, cache_dir, getenv
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.kernel import Opt, OptOps, KernelOptError, KernelInfo, apply_opts

ACTIONS: list[Opt] = [Opt(OptOps.UPCAST, ax, amt) for amt in (0, 2, 3, 4, 5, 7, 8, 16) for ax in range(6)] + \
  [Opt(OptOps.UNROLL, ax, amt) for amt in (0, 2, 3, 4, 8) for ax in range(6)] + \
  [Opt(OptOps.LOCAL, ax, amt) for amt in (2, 4, 8, 16, 32) for ax in range(4)] + \
  [Opt(OptOps.GROUPTOP, ax, amt) for amt in (8, 16, 32, 64, 256) for ax in range(4)] + \
  [Opt(OptOps.PADTO, ax, amt) for amt in (16, 32) for ax in range(4)] + [Opt(OptOps.SWAP, ax, o) for ax in range(3) for o in range(1, 4)] + \
  [Opt(OptOps.TC, ax, 0) for ax in range(4)]  # only fits as the first opt, on renderers with tensor cores

def ast_key(ast: UOp) -> str:
  """A stable hash of a kernel's structure (ignoring its KernelInfo)."""
  idx: dict[UOp, int] = {}
  parts = []
  for u in ast.toposort():
    idx[u] = len(idx)
    arg = None if isinstance(u.arg, KernelInfo) else u.arg
    parts.append(f"{u.op.name}|{u.dtype!r}|{[idx[s] for s in u.src]}|{arg!r}")
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()

def _db() -> sqlite3.Connection | None:
  if CACHELEVEL.value == 0: return None
  path = cache_dir() / "beam.db"
  path.parent.mkdir(parents=True, exist_ok=True)
  con = sqlite3.connect(path, timeout=30)
  con.execute("CREATE TABLE IF NOT EXISTS beam (key TEXT PRIMARY KEY, opts TEXT)")
  return con

def _opts_to_json(opts: list[Opt]) -> str: return json.dumps([[o.op.value, o.axis, o.arg] for o in opts])
def _opts_from_json(s: str) -> list[Opt]: return [Opt(OptOps(op), ax, arg) for op, ax, arg in json.loads(s)]

def _build(args):
  # runs in a worker process: lower, render and compile one candidate
  ast, opts, device = args
  from tg_uop.device import Device
  from tg_codegen.program import get_program
  try:
    dev = Device[device]
    spec = get_program(ast, dev.renderer, opts)
    return opts, spec, dev.compiler.compile_cached(spec.src)
  except Exception as e:  # a candidate that fails to lower or compile is dropped, with the reason under DEBUG
    return opts, None, repr(e)

def make_pool(workers: int):
  """The worker processes that lower and compile candidates (forked, so they see this process's settings)."""
  return multiprocessing.get_context("fork").Pool(workers)

def _time(device: str, spec, lib: bytes, bufs: list, runs: int = 3) -> float:
  from tg_uop.device import Device
  dev = Device[device]
  prg = dev.runtime(dev, spec.name, lib)
  from tg_uop.uop import sym_infer
  var_vals = {v.arg[0]: v.arg[2] for v in spec.vars}  # time at the largest size the variables allow
  vals = tuple(var_vals[v.arg[0]] for v in spec.vars)
  gs = tuple(sym_infer(g, var_vals) for g in spec.global_size)
  best = float("inf")
  for _ in range(runs):
    st = time.perf_counter()
    et = prg(*[bufs[i]._buf for i in spec.globals], global_size=gs, local_size=spec.local_size, vals=vals, wait=True)
    best = min(best, et if isinstance(et, float) and et > 0 else time.perf_counter() - st)
  return best

def beam_search(ast: UOp, ren, width: int, device: str | None = None) -> list[Opt]:
  """The best opts found by a beam of `width` for `ast` on `device` (default: the device `ren` belongs to)."""
  from tg_uop.device import Device
  from tg_uop.runtime.buffer import Buffer
  device = device or getattr(ren, "device", None) or Device.DEFAULT
  key = f"{ast_key(ast)}|{device}|{type(ren).__name__}|{getattr(ren, 'arch', None)}|{width}"
  con = _db()
  if con is not None and not IGNORE_BEAM_CACHE:
    row = con.execute("SELECT opts FROM beam WHERE key=?", (key,)).fetchone()
    if row is not None: return _opts_from_json(row[0])
  gl = sorted((u for u in ast.toposort() if u.op is Ops.DEFINE_GLOBAL), key=lambda u: u.arg)
  bufs = {u.arg: Buffer(device, max(u.dtype.size, 1), u.dtype.base).allocate() for u in gl}
  beam: list[tuple[list[Opt], float]] = []
  workers = max(1, min(getenv("BEAM_WORKERS", os.cpu_count() or 1), 8))
  timeout = getenv("BEAM_TIMEOUT_S", 30.0)  # a candidate whose lowering + compile takes longer is dropped
  st = time.perf_counter()
  from tg_codegen.opt.heuristic import hand_coded_optimizations
  pool = make_pool(workers)
  try:
    # the heuristic's choice is a candidate from the start: the search never ends worse than the default
    frontier: list[list[Opt]] = [[], hand_coded_optimizations(ast, ren)]
    seen: set[str] = set()
    first = True
    while frontier:
      cands = [o for o in frontier if first]
      for base in frontier:
        for a in ACTIONS:
          opts = base + [a]
          try: apply_opts(ast, opts, ren)
          except KernelOptError: continue
          cands.append(opts)
      cands = [o for o in cands if (k := _opts_to_json(o)) not in seen and not seen.add(k)]  # type: ignore[func-returns-value]
      first = False
      jobs = [(o, pool.apply_async(_build, ((ast, o, device),))) for o in cands]
      timed = []
      for opts, job in jobs:
        try: _, spec, lib = job.get(timeout=timeout)
        except multiprocessing.TimeoutError:
          if DEBUG >= 2: print(f"BEAM: {opts} took over {timeout} s to build: dropped")
          continue
        if spec is None:
          if DEBUG >= 3: print(f"BEAM: {opts} failed: {lib}")
          continue
        timed.append((opts, _time(device, spec, lib, bufs)))
      timed.sort(key=lambda x: x[1])
      improved = [t for t in timed[:width] if not beam or t[1] < beam[0][1]]
      if not improved: break
      beam = sorted(beam + improved, key=lambda x: x[1])[:width]
      frontier = [o for o, _ in improved]
      if DEBUG >= 2: print(f"BEAM: {len(timed)} candidates, best {beam[0][1]*1e6:.1f} us with {beam[0][0]}")
  finally: pool.terminate()  # also stops builds still running past their timeout
  best = beam[0][0] if beam else []
  if DEBUG >= 1: print(f"BEAM {width} for {device}: {best} in {time.perf_counter() - st:.1f} s")
  if con is not None:
    con.execute("INSERT OR REPLACE INTO beam VALUES (?, ?)", (key, _opts_to_json(best)))
    con.commit()
  return best


def random_opts(ast: UOp, ren, rnd, n: int = 4) -> list[Opt]:
  """Up to `n` random opts that fit `ast` on `ren`, each kept only if it applies (for fuzzing: valid opts never change results)."""
  opts: list[Opt] = []
  # a tensor core, when the kernel and the renderer have one, half of the time (it must come first)
  if (mma := apply_opts(ast, [], ren).mma) and rnd.random() < 0.5:
    tc = Opt(OptOps.TC, rnd.randrange(len(mma)), 0)
    try: opts = list(apply_opts(ast, [tc], ren).opts)
    except KernelOptError: pass
  for _ in range(n * 3):
    if len(opts) >= n: break
    info = apply_opts(ast, opts, ren)
    op = rnd.choice([OptOps.UPCAST, OptOps.UNROLL, OptOps.LOCAL, OptOps.GROUP, OptOps.GROUPTOP, OptOps.PADTO, OptOps.SWAP, OptOps.NOLOCALS])
    axis = rnd.randrange(len(info.axes)) if info.axes else None
    arg = rnd.choice([0, 2, 3, 4, 8]) if op is not OptOps.SWAP else (rnd.randrange(len(info.axes)) if info.axes else 0)
    try: apply_opts(ast, opts + [Opt(op, axis, arg)], ren)
    except KernelOptError: continue
    opts.append(Opt(op, axis, arg))
  return opts
