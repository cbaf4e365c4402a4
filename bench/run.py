#!/usr/bin/env python3
"""Side-by-side benchmarks: tg against numpy, PyTorch and tinygrad, in one process, alternating, after warm-up.

  python bench/run.py [--quick] [--only NAME] [--beam N] [--device CPU|NV|CUDA] [--out bench/results/cpu]

Writes a table to the terminal, `results.json` (machine, versions, every sample's statistics) and `ratios.png` (tg speed over
each peer's speed) into --out. Peers that are not installed, or whose device does not open, are skipped with a visible note;
the run never crashes because of a peer. See bench/README.md for how the numbers are measured."""
from __future__ import annotations
import argparse, datetime, json, os, pathlib, platform, statistics, subprocess, sys, tempfile, time, traceback
from dataclasses import dataclass, field
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
# OpenMP threads that spin after each op (PyTorch's, OpenBLAS's) steal the 2 cores from whoever runs next when contenders
# alternate; passive waiting keeps the runs independent (set before numpy/torch load their thread pools)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
try: import tg_uop  # noqa: F401
except ImportError:  # running from a checkout without `pip install`: use the source tree
  for _p in ("tg-uop", "tg-codegen", "tg-tensor"): sys.path.insert(0, str(ROOT / "packages" / _p / "src"))
import numpy as np
from tg_uop.dtype import DType, dtypes, to_np_name
import kernels as K

NOTES: list[str] = []
def note(msg: str) -> None:
  """Record a visible note (a skipped peer, a failed workload); printed now and again under the table."""
  NOTES.append(msg)
  print(f"NOTE: {msg}", flush=True)

# ***** statistics *****

def stats(xs: list[float]) -> dict:
  """Median, quartiles, min and max of the samples (seconds)."""
  if not xs: return {}
  q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
  return {"median": statistics.median(xs), "p25": q[0], "p75": q[2], "min": min(xs), "max": max(xs), "n": len(xs)}

# ***** contenders *****

@dataclass
class Contender:
  """One implementation of a workload. `kernel()` runs once and returns its compute seconds (the device's own timer for tg and
  tinygrad; wall clock of the preallocated-output form for numpy/PyTorch) or None; `call()` runs the user-facing call once,
  synchronized, and is timed from outside. `result()` gives the output for the correctness check."""
  name: str
  kernel: Callable[[], float | None] | None
  call: Callable[[], object]
  result: Callable[[], np.ndarray] | None = None
  info: dict = field(default_factory=dict)

def measure(cs: list[Contender], warmup: int, min_reps: int, max_reps: int, budget_s: float) -> dict[str, dict]:
  """Warm each contender up, then run them all in turn (rotating the order each round) for as many rounds as fit the budget."""
  per_round = 0.0
  for c in cs:
    for _ in range(warmup):
      if c.kernel is not None: c.kernel()
      st = time.perf_counter(); c.call(); per_round += (time.perf_counter() - st) * (2 if c.kernel else 1) / warmup  # noqa: E702
  reps = max(min_reps, min(max_reps, int(budget_s / max(per_round, 1e-6))))
  ks: dict[str, list[float]] = {c.name: [] for c in cs}
  calls: dict[str, list[float]] = {c.name: [] for c in cs}
  for r in range(reps):
    for c in cs[r % len(cs):] + cs[:r % len(cs)]:
      if c.kernel is not None and (k := c.kernel()) is not None: ks[c.name].append(k)
      st = time.perf_counter()
      c.call()
      calls[c.name].append(time.perf_counter() - st)
  return {c.name: {"kernel": stats(ks[c.name]), "call": stats(calls[c.name]), **c.info} for c in cs}

# ***** tg *****

_BEAM_CHILD = """
import json, pickle, sys
ast, width, device = pickle.load(sys.stdin.buffer)
from tg_uop.device import Device
from tg_codegen.opt.search import beam_search
opts = beam_search(ast, Device[device].renderer, width, device)
print(json.dumps([[o.op.value, o.axis, o.arg] for o in opts]))
"""

class BeamBudget:
  """Wall-clock limits on BEAM: per kernel and for the whole run, so one candidate whose compile never ends can't eat the run."""
  def __init__(self, per_kernel_s: float, total_s: float): self.per_kernel_s, self.left_s = per_kernel_s, total_s

def beam_opts(ast, width: int, device: str, budget: BeamBudget) -> tuple[list | None, str]:
  """BEAM's opts for `ast`, searched in a child process group that is killed past the budget: (opts, "") or (None, why not).
  The search stores its result in tg's BEAM cache, so a later run gets it at once."""
  import pickle, signal
  from tg_codegen.kernel import Opt, OptOps
  limit = min(budget.per_kernel_s, budget.left_s)
  if limit <= 1: return None, "BEAM time budget of this run spent"
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
  st = time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-c", _BEAM_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True, env=env)
  try: out, err = proc.communicate(pickle.dumps((ast, width, device)), timeout=limit)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session: this stops its worker pool and compilers too
    proc.communicate()
    return None, f"BEAM search timed out after {limit:.0f} s"
  finally: budget.left_s -= time.perf_counter() - st
  if proc.returncode != 0:
    lines = err.decode(errors="replace").strip().splitlines()
    return None, f"BEAM search failed: {lines[-1] if lines else f'exit {proc.returncode}'}"
  return [Opt(OptOps(op), ax, arg) for op, ax, arg in json.loads(out.decode().strip().splitlines()[-1])], ""

class TGWorkload:
  """A chain of tg kernels over named buffers on one device, compiled with the heuristic's opts or BEAM's."""
  def __init__(self, device: str, kernels: list[K.BenchKernel], shapes: dict[str, tuple], inputs: dict[str, np.ndarray], out: str,
               dt: DType = dtypes.float32):
    from tg_uop.runtime.buffer import Buffer
    from tg_uop.device import Device
    self.device, self.dev, self.kernels, self.out, self.shapes, self.dt = device, Device[device], kernels, out, shapes, dt
    self.bufs = {n: Buffer(device, int(np.prod(s)), dt).allocate() for n, s in shapes.items()}
    npdt = np.dtype(to_np_name(dt))
    for n, a in inputs.items(): self.bufs[n].copyin(memoryview(np.ascontiguousarray(a, dtype=npdt)).cast("B"))

  def contender(self, name: str, beam: int = 0, budget: BeamBudget | None = None) -> Contender:
    """Compile every kernel (heuristic opts, or BEAM of width `beam`; a kernel whose search fails or runs out of budget keeps the
    heuristic's opts, with a note) and wrap them as a Contender."""
    from tg_codegen.program import get_program, CompiledRunner
    from tg_codegen.opt.heuristic import hand_coded_optimizations
    ren, runners, opts_used, fallbacks = self.dev.renderer, [], [], []
    st = time.perf_counter()
    for i, k in enumerate(self.kernels):
      opts = None
      if beam:
        opts, why = beam_opts(k.ast, beam, self.device, budget or BeamBudget(600, 600))
        if opts is None: fallbacks.append(f"kernel {i}: {why}; heuristic opts used")
      if opts is None: opts = hand_coded_optimizations(k.ast, ren)
      spec = get_program(k.ast, ren, opts, self.device)
      runners.append((CompiledRunner(self.device, spec), [self.bufs[b] for b in k.bufs]))
      opts_used.append(repr(list(spec.info.opts)))
    prep = time.perf_counter() - st
    def kernel() -> float: return sum(r(bs, wait=True) or 0.0 for r, bs in runners)
    def call() -> None:
      for r, bs in runners: r(bs)
      self.dev.synchronize()
    def result() -> np.ndarray:
      kernel()
      out = np.empty(self.shapes[self.out], dtype=np.dtype(to_np_name(self.dt)))
      self.bufs[self.out].copyout(memoryview(out).cast("B"))
      return out
    return Contender(name, kernel, call, result, {"opts": opts_used, "prepare_s": prep, "beam_fallbacks": fallbacks})

# ***** peers *****

def load_torch(gpu: bool):
  """PyTorch, with as many threads as the machine has cores, or None (with a note) when it is missing."""
  try: import torch
  except ImportError:
    note("PyTorch is not installed: its columns are empty (pip install torch)")
    return None
  torch.set_num_threads(os.cpu_count() or 1)
  if gpu and not torch.cuda.is_available():
    note(f"PyTorch {torch.__version__} has no CUDA device here: PyTorch skipped for the GPU run")
    return None
  return torch

def load_tinygrad(device: str):
  """tinygrad with a working `device` (CPU tries its clang, LLVM and x86 renderers in turn), or None with a note."""
  try:
    import tinygrad
    from tinygrad import Tensor
    from tinygrad.helpers import DEV
  except ImportError:
    note("tinygrad is not installed: its columns are empty (pip install tinygrad==0.14.0)")
    return None
  targets = ["CPU", "CPU:LLVM", "CPU:X86"] if device == "CPU" else [device]
  errs = []
  for t in targets:
    try:
      DEV.value = t  # tinygrad's own setting; the DEV environment variable is tg's too, so it is left alone
      got = (Tensor([1.0, 2.0], device=t.split(":")[0]) + 1).realize().numpy()
      if not np.allclose(got, [2.0, 3.0]): raise RuntimeError(f"wrong result {got}")
      return {"module": tinygrad, "device": t.split(":")[0], "target": t}
    except Exception as e:  # a missing compiler or library shows up here as any exception type
      errs.append(f"{t}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
  note(f"tinygrad {getattr(tinygrad, '__version__', '?')} could not run on {device} ({'; '.join(errs)}): tinygrad skipped")
  return None

def tinygrad_contender(tg_, fn: Callable, arrays: list[np.ndarray], name: str = "tinygrad") -> Contender:
  """tinygrad running `fn(*tensors)`: kernel time from replaying its scheduled kernels with the device timer, call time from
  `fn(...).realize()` and a synchronize."""
  from tinygrad import Tensor, Device, GlobalCounters
  from tinygrad.engine.realize import run_linear
  dev = tg_["device"]
  ts = [Tensor(a, device=dev).realize() for a in arrays]
  out = fn(*ts)
  linear, var_vals = Tensor.linear_with_vars(out)
  run_linear(linear, var_vals)
  def kernel() -> float:
    GlobalCounters.reset()
    run_linear(linear, var_vals, wait=True, update_stats=True)
    return GlobalCounters.time_sum_s
  def call() -> None:
    fn(*ts).realize()
    Device[dev].synchronize()
  return Contender(name, kernel, call, lambda: fn(*ts).numpy(), {"target": tg_["target"]})

def wall_contender(name: str, kernel_fn: Callable | None, call_fn: Callable, result: Callable, sync: Callable = lambda: None) -> Contender:
  """numpy/PyTorch: both times are wall clock; the kernel form writes into preallocated outputs where the API allows."""
  def kernel() -> float:
    st = time.perf_counter(); kernel_fn(); sync()  # noqa: E702
    return time.perf_counter() - st
  def call() -> None:
    call_fn(); sync()  # noqa: E702
  return Contender(name, kernel if kernel_fn else None, call, result)

# ***** workloads *****

@dataclass
class Workload:
  """A kernel-level workload: tg kernels plus the same math in each peer."""
  name: str
  label: str
  kernels: Callable[[], list[K.BenchKernel]]
  shapes: dict[str, tuple]
  inputs: dict[str, np.ndarray]
  out: str
  reference: Callable[..., np.ndarray]
  flops: float
  dt: DType = dtypes.float32
  numpy_kernel: Callable | None = None   # (arrays..., out) -> None, writes into out
  numpy_call: Callable | None = None     # arrays... -> array
  torch_kernel: Callable | None = None   # (torch, tensors..., out) -> None
  torch_call: Callable | None = None     # (torch, tensors...) -> tensor
  tinygrad_fn: Callable | None = None    # tensors... -> Tensor
  tol: float = 1e-3

def _gelu_np(y): return 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y ** 3)))
def _softmax_np(x):
  e = np.exp(x - x.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)
def _conv_np(x, w):
  from numpy.lib.stride_tricks import sliding_window_view
  b, _, h, wd = x.shape
  co, ci, kh, kw = w.shape
  oh, ow = h - kh + 1, wd - kw + 1
  cols = sliding_window_view(x, (kh, kw), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, ci * kh * kw)
  return (cols @ w.reshape(co, -1).T).reshape(b, oh, ow, co).transpose(0, 3, 1, 2).copy()

def workloads(quick: bool) -> list[Workload]:
  """Every kernel-level workload, at full or --quick sizes."""
  rng = np.random.default_rng(0)
  f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
  ws: list[Workload] = []
  n = (1 << 22) if quick else (1 << 24)
  a, b = f32(n), f32(n)
  ws.append(Workload("add", f"add {n >> 20}M f32", lambda n=n: K.add(n), {"out": (n,), "a": (n,), "b": (n,)}, {"a": a, "b": b}, "out",
                     lambda a, b: a + b, n, numpy_kernel=lambda a, b, o: np.add(a, b, out=o), numpy_call=lambda a, b: a + b,
                     torch_kernel=lambda t, a, b, o: t.add(a, b, out=o), torch_call=lambda t, a, b: a + b,
                     tinygrad_fn=lambda a, b: a + b))
  m = 2048 if quick else 4096
  x, w, bb = f32(m, m), f32(m), f32(m)
  ws.append(Workload("gelu", f"gelu(x*w+b) {m}x{m}", lambda m=m: K.gelu_affine(m, m), {"out": (m, m), "x": (m, m), "w": (m,), "b": (m,)},
                     {"x": x, "w": w, "b": bb}, "out", lambda x, w, b: _gelu_np(x * w + b), 20 * m * m,
                     numpy_call=lambda x, w, b: _gelu_np(x * w + b),
                     torch_call=lambda t, x, w, b: t.nn.functional.gelu(t.addcmul(b, x, w), approximate="tanh"),
                     tinygrad_fn=lambda x, w, b: (x * w + b).gelu()))
  ws.append(Workload("rowsum", f"row sum {m}x{m}", lambda m=m: K.row_sum(m, m), {"out": (m,), "x": (m, m)}, {"x": x}, "out",
                     lambda x: x.sum(1), m * m, numpy_kernel=lambda x, o: np.sum(x, axis=1, out=o), numpy_call=lambda x: x.sum(1),
                     torch_kernel=lambda t, x, o: t.sum(x, 1, out=o), torch_call=lambda t, x: x.sum(1), tinygrad_fn=lambda x: x.sum(1)))
  ws.append(Workload("softmax", f"softmax rows {m}x{m}", lambda m=m: K.softmax_rows(m, m), {"mx": (m,), "s": (m,), "out": (m, m), "x": (m, m)},
                     {"x": x}, "out", _softmax_np, 5 * m * m, numpy_call=_softmax_np,
                     torch_call=lambda t, x: t.softmax(x, 1), tinygrad_fn=lambda x: x.softmax(1), tol=1e-5))
  for s in (256, 512, 1024):
    a, b = f32(s, s), f32(s, s)
    ws.append(Workload(f"matmul{s}", f"matmul {s} f32", lambda s=s: K.matmul(s, s, s), {"c": (s, s), "a": (s, s), "b": (s, s)},
                       {"a": a, "b": b}, "c", lambda a, b: a @ b, 2 * s ** 3, numpy_kernel=lambda a, b, o: np.matmul(a, b, out=o),
                       numpy_call=lambda a, b: a @ b, torch_kernel=lambda t, a, b, o: t.matmul(a, b, out=o),
                       torch_call=lambda t, a, b: a @ b, tinygrad_fn=lambda a, b: a @ b, tol=1e-2))
  s = 256 if quick else 512
  a, b = f32(s, s).astype(np.float16), f32(s, s).astype(np.float16)
  ws.append(Workload(f"matmul{s}h", f"matmul {s} f16", lambda s=s: K.matmul(s, s, s, dtypes.float16), {"c": (s, s), "a": (s, s), "b": (s, s)},
                     {"a": a, "b": b}, "c", lambda a, b: (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16), 2 * s ** 3,
                     dt=dtypes.float16, numpy_kernel=lambda a, b, o: np.matmul(a, b, out=o), numpy_call=lambda a, b: a @ b,
                     torch_kernel=lambda t, a, b, o: t.matmul(a, b, out=o), torch_call=lambda t, a, b: a @ b,
                     tinygrad_fn=lambda a, b: a @ b, tol=0.5))
  bs, c, hw = (4, 32, 32) if quick else (8, 32, 32)
  xc, wc = f32(bs, c, hw, hw), f32(c, c, 3, 3)
  oshape = (bs, c, hw - 2, hw - 2)
  ws.append(Workload("conv2d", f"conv2d {bs}x{c}x{hw}x{hw} {c}x3x3", lambda: K.conv2d(bs, c, c, hw, hw, 3, 3),
                     {"out": oshape, "x": xc.shape, "wt": wc.shape}, {"x": xc, "wt": wc}, "out", _conv_np, 2 * np.prod(oshape) * c * 9,
                     numpy_call=_conv_np, torch_call=lambda t, x, w: t.nn.functional.conv2d(x, w),
                     tinygrad_fn=lambda x, w: x.conv2d(w), tol=1e-2))
  return ws

def gpu_workloads(quick: bool) -> list[Workload]:
  """The issue-6 sizes, for the GPU run only (too big for the CPU run): add over 64M floats, softmax over 4096x8192, float16 matmul
  4096 (tensor cores) and a 3x3 float16 conv2d. numpy's result is the reference (computed once; slow but exact)."""
  rng = np.random.default_rng(1)
  f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
  ws: list[Workload] = []
  n = (1 << 24) if quick else (1 << 26)
  a, b = f32(n), f32(n)
  ws.append(Workload("add64m", f"add {n >> 20}M f32", lambda n=n: K.add(n), {"out": (n,), "a": (n,), "b": (n,)}, {"a": a, "b": b}, "out",
                     lambda a, b: a + b, n, torch_kernel=lambda t, a, b, o: t.add(a, b, out=o), torch_call=lambda t, a, b: a + b,
                     tinygrad_fn=lambda a, b: a + b))
  m, k = (1024, 8192) if quick else (4096, 8192)
  x = f32(m, k)
  ws.append(Workload("softmax_big", f"softmax rows {m}x{k}", lambda: K.softmax_rows(m, k), {"mx": (m,), "s": (m,), "out": (m, k), "x": (m, k)},
                     {"x": x}, "out", _softmax_np, 5 * m * k, torch_call=lambda t, x: t.softmax(x, 1), tinygrad_fn=lambda x: x.softmax(1), tol=1e-5))
  s = 2048 if quick else 4096
  a, b = (f32(s, s) * 0.1).astype(np.float16), (f32(s, s) * 0.1).astype(np.float16)
  ws.append(Workload(f"matmul{s}h", f"matmul {s} f16", lambda s=s: K.matmul(s, s, s, dtypes.float16), {"c": (s, s), "a": (s, s), "b": (s, s)},
                     {"a": a, "b": b}, "c", lambda a, b: (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16), 2 * s ** 3,
                     dt=dtypes.float16, torch_kernel=lambda t, a, b, o: t.matmul(a, b, out=o), torch_call=lambda t, a, b: a @ b,
                     tinygrad_fn=lambda a, b: a @ b, tol=0.05))
  bs, c, hw = (8, 64, 34) if quick else (32, 64, 58)
  xc, wc = (f32(bs, c, hw, hw) * 0.3).astype(np.float16), (f32(c, c, 3, 3) * 0.1).astype(np.float16)
  oshape = (bs, c, hw - 2, hw - 2)
  ws.append(Workload("conv2d_h", f"conv2d f16 {bs}x{c}x{hw}x{hw} {c}x3x3", lambda: K.conv2d(bs, c, c, hw, hw, 3, 3, dtypes.float16),
                     {"out": oshape, "x": xc.shape, "wt": wc.shape}, {"x": xc, "wt": wc}, "out",
                     lambda x, w: _conv_np(x.astype(np.float32), w.astype(np.float32)).astype(np.float16), 2 * np.prod(oshape) * c * 9,
                     dt=dtypes.float16, torch_call=lambda t, x, w: t.nn.functional.conv2d(x, w), tinygrad_fn=lambda x, w: x.conv2d(w), tol=0.05))
  return ws

def _check(c: Contender, ref: np.ndarray, tol: float) -> str:
  """'ok', or what was wrong with this contender's output."""
  if c.result is None: return "-"
  try:
    got = np.asarray(c.result(), dtype=np.float32).reshape(ref.shape)
    err = float(np.max(np.abs(got - ref.astype(np.float32)) / (1 + np.abs(ref.astype(np.float32)))))
    return "ok" if err <= tol else f"MISMATCH (max rel err {err:.2g})"
  except Exception as e: return f"check failed: {type(e).__name__}: {e}"

def run_workload(w: Workload, args, torch_, tiny) -> dict:
  """Build tg (heuristic and BEAM) and every available peer for `w`, check them against numpy, and measure them."""
  print(f"\n== {w.label}", flush=True)
  cs: list[Contender] = []
  errors: dict[str, str] = {}
  ordered = [w.inputs[k] for k in w.inputs]
  try:
    tgw = TGWorkload(args.device, w.kernels(), w.shapes, w.inputs, w.out, w.dt)
    cs.append(tgw.contender("tg"))
    if args.beam:
      st = time.perf_counter()
      c = tgw.contender(f"tg BEAM={args.beam}", args.beam, args.beam_budget)
      cs.append(c)
      for fb in c.info["beam_fallbacks"]: note(f"{w.label}: {fb}")
      print(f"  BEAM={args.beam} ready in {time.perf_counter() - st:.1f} s", flush=True)
  except Exception as e:
    errors["tg"] = f"{type(e).__name__}: {e}"
    note(f"{w.label}: tg failed: {errors['tg']}")
    traceback.print_exc()
  gpu = args.device != "CPU"
  npdt = np.dtype(to_np_name(w.dt))
  if not gpu and w.numpy_call is not None:
    out = np.empty(w.shapes[w.out], dtype=npdt)
    kfn = (lambda: w.numpy_kernel(*ordered, out)) if w.numpy_kernel else None
    cs.append(wall_contender("numpy", kfn, lambda: w.numpy_call(*ordered), lambda: w.numpy_call(*ordered)))
  if torch_ is not None and w.torch_call is not None:
    try:
      tdev = "cuda" if gpu else "cpu"
      tt = [torch_.from_numpy(a).to(tdev) for a in ordered]
      tout = torch_.empty(w.shapes[w.out], dtype=tt[0].dtype, device=tdev)
      sync = torch_.cuda.synchronize if gpu else (lambda: None)
      kfn = (lambda: w.torch_kernel(torch_, *tt, tout)) if w.torch_kernel else None
      cs.append(wall_contender("torch", kfn, lambda: w.torch_call(torch_, *tt), lambda: w.torch_call(torch_, *tt).cpu().numpy(), sync))
    except Exception as e:
      errors["torch"] = f"{type(e).__name__}: {e}"
      note(f"{w.label}: PyTorch failed: {errors['torch']}")
  if tiny is not None and w.tinygrad_fn is not None:
    try: cs.append(tinygrad_contender(tiny, w.tinygrad_fn, ordered))
    except Exception as e:
      errors["tinygrad"] = f"{type(e).__name__}: {str(e)[:300]}"
      note(f"{w.label}: tinygrad failed: {errors['tinygrad']}")
  ref = w.reference(*[a.astype(np.float32) if a.dtype == np.float16 else a for a in ordered])
  checks = {c.name: _check(c, ref, w.tol) for c in cs}
  for name, chk in checks.items():
    if chk != "ok": note(f"{w.label}: {name} output check: {chk}")
  try: res = measure(cs, warmup=2, min_reps=5 if args.quick else 7, max_reps=50, budget_s=4.0 if args.quick else 8.0)
  except Exception as e:
    note(f"{w.label}: measuring failed: {type(e).__name__}: {e}")
    traceback.print_exc()
    res = {}
  for name in res: res[name]["check"] = checks.get(name, "-")
  return {"name": w.name, "label": w.label, "flops": float(w.flops), "dtype": w.dt.name, "contenders": res, "errors": errors}

# ***** model-level workloads (tg-tensor) *****

def tg_tensor_available() -> str | None:
  """None when `tg_tensor.Tensor` exists, else why not."""
  try:
    import tg_tensor
    tg_tensor.Tensor  # noqa: B018
    return None
  except Exception as e: return f"{type(e).__name__}: {e}"

MODEL_COLS = ["tg", "tg JIT", "torch", "tinygrad", "tinygrad JIT"]

def _sync_tg(device: str) -> Callable[[], None]:
  from tg_uop.device import Device
  return Device[device].synchronize

def _sync_tinygrad(device: str) -> Callable[[], None]:
  from tinygrad import Device
  return Device[device].synchronize

def _model_row(args, torch_, tiny, name: str, label: str, builder: str, torch_builder: str | None, tinygrad_nojit: bool,
               expected: np.ndarray | None = None, tol: float = 1e-3) -> dict:
  """Build every contender of one model workload, run each 4 times checking its results against PyTorch's (or `expected`), then
  measure them alternating like the kernel workloads (whole-call time only)."""
  import models as MD
  print(f"\n== {label}", flush=True)
  makers: dict[str, Callable[[], Callable]] = {}
  skipped: dict[str, str] = {}
  build = getattr(MD, builder)
  if (why := tg_tensor_available()) is None:
    makers["tg"] = lambda: build("tg", args.device, False)
    makers["tg JIT"] = lambda: build("tg", args.device, True)
  else: skipped["tg"] = skipped["tg JIT"] = f"tg-tensor missing: {why}"
  if torch_builder is not None and torch_ is not None and args.device == "CPU": makers["torch"] = lambda: getattr(MD, torch_builder)(torch_)
  else: skipped["torch"] = "PyTorch not measured here" if torch_builder else "-"
  if tiny is not None:
    if tinygrad_nojit: makers["tinygrad"] = lambda: build("tinygrad", tiny["device"], False)
    makers["tinygrad JIT"] = lambda: build("tinygrad", tiny["device"], True)
  else: skipped["tinygrad"] = skipped["tinygrad JIT"] = "tinygrad not available"
  syncs = {"tg": lambda: _sync_tg(args.device)(), "torch": lambda: None, "tinygrad": lambda: _sync_tinygrad(tiny["device"])()}
  cs, outs, first = [], {}, {}
  for cname, make in makers.items():
    try:
      st = time.perf_counter()
      step = make()
      sync = syncs[cname.split(" ")[0]]
      vals = []
      for i in range(4):  # the JITs capture on the second call and replay from the third: all of them are checked
        s1 = time.perf_counter()
        o = step(); sync()  # noqa: E702
        if i == 0: first[cname] = time.perf_counter() - s1
        vals.append(MD.to_numpy(o))
      outs[cname] = np.stack(vals)
      print(f"  {cname:12s} built and run 4x in {time.perf_counter() - st:.2f} s (first call {first[cname] * 1e3:.1f} ms)", flush=True)
      cs.append(Contender(cname, None, (lambda step=step, sync=sync: (step(), sync())), None, {}))
    except Exception as e:
      skipped[cname] = f"failed: {type(e).__name__}: {str(e)[:200]}"
      note(f"{label}: {cname} failed: {skipped[cname]}")
      traceback.print_exc()
  ref = outs.get("torch") if expected is None else np.stack([expected] * 4)
  checks = {}
  for cname, v in outs.items():
    if not np.all(np.isfinite(v)): checks[cname] = "NOT FINITE"
    elif ref is None or cname == "torch" and expected is None: checks[cname] = "finite"
    else:
      err = float(np.max(np.abs(v - ref) / (1 + np.abs(ref))))
      checks[cname] = "ok" if err <= tol else f"MISMATCH (max rel err {err:.2g})"
    if checks[cname] not in ("ok", "finite"): note(f"{label}: {cname} output check: {checks[cname]}")
  if ref is not None and "torch" in outs and expected is None: checks["torch"] = "reference"
  res = {}
  try: res = measure(cs, warmup=2, min_reps=5 if args.quick else 7, max_reps=200, budget_s=3.0 if args.quick else 6.0)
  except Exception as e:
    note(f"{label}: measuring failed: {type(e).__name__}: {e}")
    traceback.print_exc()
  for cname, r in res.items():
    r.update({"check": checks.get(cname, "-"), "first_call_s": first.get(cname)})
    r.pop("kernel", None)
    print(f"  {cname:12s} call {_ms(r['call']):28s} {r['check']}", flush=True)
  return {"name": name, "label": label, "contenders": res, "skipped": skipped}

_FIRST_STEP = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {bench!r})
import numpy as np, models
FW, TARGET = {fw!r}, {target!r}
if FW == "tinygrad":
  from tinygrad.helpers import DEV
  DEV.value = TARGET
  import tinygrad
else: import tg_tensor, tg_tensor.tensor
t_import = time.perf_counter() - t0
st = time.perf_counter()
step = models.build_mlp(FW, TARGET.split(":")[0], jit=True)
t_build = time.perf_counter() - st
ts, losses = [], []
for i in range({n}):
  st = time.perf_counter()
  loss = step()
  losses.append(float(loss.numpy()))
  ts.append(time.perf_counter() - st)
print(json.dumps({{"import_s": t_import, "build_s": t_build, "steps_s": ts, "losses": losses, "total_s": time.perf_counter() - t0}}))
"""

def _loss_check(losses: np.ndarray, ref: np.ndarray | None, tol: float = 1e-3) -> str:
  """'ok' when the losses match PyTorch's (relative), 'finite' when there is no reference, else what is wrong."""
  if not np.all(np.isfinite(losses)): return "NOT FINITE"
  if ref is None: return "finite"
  err = float(np.max(np.abs(losses - ref) / (1 + np.abs(ref))))
  return "ok" if err <= tol else f"MISMATCH vs PyTorch (max rel err {err:.2g})"

def _first_step(fw: str, target: str, cache: str, n: int, timeout: int = 300) -> dict | str:
  """A fresh process with its caches in `cache` (XDG_CACHE_HOME, and tinygrad's CACHEDB) builds the MLP Adam step (weights from
  numpy: no kernels run before the step) and times each of `n` jitted steps, each up to reading its loss back."""
  code = _FIRST_STEP.format(bench=str(ROOT / "bench"), fw=fw, target=target, n=n)
  env = {**os.environ, "XDG_CACHE_HOME": cache, "CACHEDB": os.path.join(cache, "tinygrad.db"),
         "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
  env.pop("DEV", None)
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0: raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])
  except Exception as e:
    note(f"{fw} first-step subprocess failed: {type(e).__name__}: {str(e)[:200]}")
    return f"failed: {type(e).__name__}: {str(e)[:120]}"

def _first_step_rows(args, torch_, tiny) -> list[dict]:
  """First MLP Adam step from a cold cache (empty cache dir, fresh process) and from the warm disk cache (a second fresh process,
  same cache dir), for tg and tinygrad; each with TinyJit, as their users would train."""
  print("\n== first MLP Adam step, cold and warm disk cache (fresh processes)", flush=True)
  import models as MD
  n = 5 if args.quick else 12
  ref = None
  if torch_ is not None:  # the same steps in PyTorch from the same weights: the losses must agree
    step = MD.torch_mlp(torch_)
    ref = np.array([float(step()) for _ in range(n)], dtype=np.float32)
  cold, warm = {}, {}
  fws = [("tg JIT", "tg", args.device)] if tg_tensor_available() is None else []
  if tiny is not None: fws.append(("tinygrad JIT", "tinygrad", tiny["target"]))
  with tempfile.TemporaryDirectory() as cache:
    for cname, fw, target in fws:
      # a one-shot figure swings with the OS file cache and the machine's load: the cold row is the median of `reps` fresh
      # processes, each with its own empty cache dir (all of them are in the JSON); the warm one reuses the last dir
      reps = 1 if args.quick else 3
      runs = [_first_step(fw, target, f"{cache}/{fw}{i}", n) for i in range(reps)]
      w = _first_step(fw, target, f"{cache}/{fw}{reps - 1}", n)
      ok = sorted((r for r in runs if isinstance(r, dict)), key=lambda r: r["steps_s"][0])
      c = {**ok[len(ok) // 2], "cold_first_steps_s": [r["steps_s"][0] for r in runs if isinstance(r, dict)]} if ok else runs[0]
      for d, r in ((cold, c), (warm, w)):
        if isinstance(r, dict):
          later = r["steps_s"][3:]
          d[cname] = {"call": {"median": r["steps_s"][0], "n": len(r.get("cold_first_steps_s", [0]))}, "import_s": r["import_s"],
                      "build_s": r["build_s"], "cold_first_steps_s": r.get("cold_first_steps_s"),
                      "steps_s": r["steps_s"], "later_step_median_s": statistics.median(later) if later else None,
                      "losses": r["losses"], "check": _loss_check(np.array(r["losses"], dtype=np.float32), ref)}
        else: d[cname] = r
      for what, d in (("cold", cold), ("warm", warm)):
        if isinstance(d[cname], dict):
          r = d[cname]
          runs_ms = f" (median of {', '.join(f'{x * 1e3:.0f}' for x in r['cold_first_steps_s'])})" if r.get("cold_first_steps_s") else ""
          print(f"  {cname:12s} {what}: import {r['import_s']:.2f} s, first step {r['steps_s'][0] * 1e3:.0f} ms{runs_ms}, second "
                f"{r['steps_s'][1] * 1e3:.0f} ms, later (JIT replay) {r['later_step_median_s'] * 1e3:.1f} ms", flush=True)
  def row(name, label, d):
    return {"name": name, "label": label, "contenders": {k: v for k, v in d.items() if isinstance(v, dict)},
            "skipped": {k: v for k, v in d.items() if isinstance(v, str)}}
  return [row("first_step_cold", "first MLP Adam step, cold cache (fresh process)", cold),
          row("first_step_warm", "first MLP Adam step, warm disk cache (fresh process)", warm)]

def _gpt2_row(args) -> dict:
  """Schedule and lower (no run) a GPT-2-size forward on NULL; --quick does 2 layers and extrapolates to 12."""
  import models as MD
  label = "schedule+lower GPT-2 124M forward (seq 1024) on NULL"
  print(f"\n== {label}", flush=True)
  try:
    if args.quick:
      r1, r2 = MD.gpt2_schedule(layers=1), MD.gpt2_schedule(layers=2)
      per = {k: r2[k] - r1[k] for k in ("schedule_s", "lower_s", "kernels")}
      r = {k: r2[k] + per[k] * 10 for k in per}
      r.update({"layers": 12, "extrapolated_from": [r1, r2], "build_s": r2["build_s"], "renderer": r2["renderer"]})
      note(f"{label}: --quick measured 1 and 2 layers and extrapolated linearly to 12")
    else: r = MD.gpt2_schedule(layers=12)
    total = r["schedule_s"] + r["lower_s"]
    print(f"  tg: build {r['build_s']:.2f} s, schedule {r['schedule_s']:.2f} s, lower {r['lower_s']:.2f} s, {r['kernels']} kernels "
          f"({r['renderer']})", flush=True)
    return {"name": "gpt2_schedule", "label": label, "contenders": {"tg": {"call": {"median": total, "n": 1}, **r}}, "skipped": {}}
  except Exception as e:
    note(f"{label}: tg failed: {type(e).__name__}: {e}")
    traceback.print_exc()
    return {"name": "gpt2_schedule", "label": label, "contenders": {}, "skipped": {"tg": f"failed: {type(e).__name__}: {str(e)[:120]}"}}

def tensor_workloads(args, torch_, tiny) -> list[dict]:
  """The model-level workloads: training steps, a transformer block, JIT replay, first-step times, GPT-2 scheduling."""
  rows = []
  want = lambda n: not args.only or any(o in n for o in args.only) or any(o == "models" for o in args.only)  # noqa: E731
  if want("mlp"):
    rows.append(_model_row(args, torch_, tiny, "mlp_step", "MLP 784-512-10 train step, Adam, batch 128", "build_mlp", "torch_mlp", True))
  if want("cnn"):
    rows.append(_model_row(args, torch_, tiny, "cnn_step", "CNN train step 32x1x28x28, 2 conv + linear, SGD", "build_cnn", "torch_cnn", False))
  if want("block"):
    rows.append(_model_row(args, torch_, tiny, "block_fwd", "transformer block fwd 4x128x256, 4 heads", "build_block", "torch_block", False))
  if want("jit"):
    rows.append(_model_row(args, torch_, tiny, "jit_tiny", "16-element add (launch overhead; JIT replay)", "build_tiny_add", None, True,
                           expected=np.arange(16, dtype=np.float32) + 1))
    if torch_ is not None:  # PyTorch eager for comparison (the bar for a jitted replay: one eager op, plus its synchronize)
      # measured like for like: tight loops of PyTorch's eager op + synchronize and of tg's jitted replay + synchronize, in
      # alternating blocks (the round-robin rows above put every other contender's work, tinygrad's context switch included,
      # between two tg calls); the ratio column of this row compares these loops
      import models as MD
      gpu = args.device != "CPU"
      tdev, sync = ("cuda", torch_.cuda.synchronize) if gpu else ("cpu", lambda: None)
      a, b = torch_.arange(16, dtype=torch_.float32, device=tdev), torch_.ones(16, device=tdev)
      tl, pl = [], []
      if "tg JIT" in rows[-1]["contenders"]: tg_step, tg_sync = MD.build_tiny_add("tg", args.device, True), _sync_tg(args.device)
      for _ in range(4):
        if "tg JIT" in rows[-1]["contenders"]: tl += _loop_times(tg_step, 20, 500, tg_sync)
        pl += _loop_times(lambda: a + b, 20, 500, sync)
      if tl: rows[-1]["contenders"]["tg JIT"]["loop"] = stats(tl)
      rows[-1]["contenders"]["torch"] = {"call": stats(pl), "check": "ok" if torch_.equal(a + b, a + 1)
                                         else "MISMATCH", "note": "eager op" + (" + synchronize" if gpu else "") + ", tight loop"}
      rows[-1]["skipped"].pop("torch", None)
  if want("first"): rows += _first_step_rows(args, torch_, tiny)
  if want("gpt2"): rows.append(_gpt2_row(args))
  return rows

def _loop_times(fn: Callable, warmup: int, reps: int, sync: Callable = lambda: None) -> list[float]:
  """Seconds of each of `reps` back-to-back calls of `fn` + `sync`, after `warmup` of them."""
  for _ in range(warmup): fn(); sync()  # noqa: E702
  xs = []
  for _ in range(reps):
    st = time.perf_counter(); fn(); sync(); xs.append(time.perf_counter() - st)  # noqa: E702
  return xs

# ***** output *****

def _ms(s: dict) -> str:
  if not s or s.get("median") is None: return "-"
  m = s["median"] * 1e3
  if "p25" not in s: return f"{m:.3g}"
  return f"{m:.3g} ({s['p25'] * 1e3:.3g}-{s['p75'] * 1e3:.3g})"

def ratios(res: dict) -> dict[str, dict[str, dict[str, float]]]:
  """For each tg variant and peer: tg speed / peer speed (peer median time / tg median time), kernel and call; > 1 means tg wins."""
  out: dict = {}
  tgs = [n for n in res if n.startswith("tg")]
  peers = [n for n in res if not n.startswith("tg")]
  for t in tgs:
    for p in peers:
      r = {}
      for kind in ("kernel", "call"):
        pk = res[p].get(kind) or (res[p].get("call") if kind == "kernel" else None)  # numpy/torch without an out= form: the call itself
        tk = res[t].get(kind)
        if pk and tk and pk.get("median") and tk.get("median"): r[kind] = pk["median"] / tk["median"]
      out.setdefault(t, {})[p] = r
  return out

def table(results: list[dict], model_rows: list[dict]) -> str:
  """The terminal/README table: times per contender, then the ratios."""
  lines = ["| workload | contender | kernel ms, median (p25-p75) | call ms, median (p25-p75) | GFLOP/s (kernel) | check |",
           "| --- | --- | --- | --- | --- | --- |"] if results else []
  for w in results:
    for i, (name, r) in enumerate(w["contenders"].items()):
      k = r["kernel"] or r["call"]
      gf = f"{w['flops'] / k['median'] * 1e-9:.1f}" if k else "-"
      lines.append(f"| {w['label'] if i == 0 else ''} | {name} | {_ms(r['kernel'])} | {_ms(r['call'])} | {gf} | {r.get('check', '-')} |")
  peers = ["numpy", "torch", "tinygrad"]
  if results: lines += ["", "tg speed / peer speed (peer time / tg time; > 1 means tg is faster). Each cell: kernel, call. "
            "BEAM first, heuristic in brackets.", "",
            "| workload | " + " | ".join(f"vs {p}" for p in peers) + " |", "| --- |" + " --- |" * len(peers)]
  for w in results:
    rs = w["ratios"]
    beam = next((t for t in rs if "BEAM" in t), None)
    cells = []
    for p in peers:
      h = rs.get("tg", {}).get(p, {})
      b = rs.get(beam, {}).get(p, {}) if beam else {}
      f = lambda d, k: f"{d[k]:.2f}" if k in d else "-"  # noqa: E731
      cells.append(f"{f(b, 'kernel')}, {f(b, 'call')} [{f(h, 'kernel')}, {f(h, 'call')}]" if h or b else "-")
    lines.append(f"| {w['label']} | " + " | ".join(cells) + " |")
  if model_rows:
    cols = MODEL_COLS
    lines += ["", "Model-level workloads: whole-call time, ms, median (p25-p75); one-shot rows are single runs. Ratios: tg JIT speed / "
              "peer speed (> 1: tg faster).", "",
              "| workload | " + " | ".join(cols) + " | tg JIT / torch | tg JIT / tinygrad JIT | check |", "| --- |" + " --- |" * (len(cols) + 3)]
    for r in model_rows:
      cs = r["contenders"]
      cells = [(_ms(cs[c].get("call", {})) if c in cs else r["skipped"].get(c, "-")) for c in cols]
      if r["name"] == "gpt2_schedule" and "tg" in cs:
        g = cs["tg"]
        cells[0] = f"{g['schedule_s'] + g['lower_s']:.3g} s ({g['kernels']} kernels: schedule {g['schedule_s']:.2f} s, lower {g['lower_s']:.1f} s)"
      loop = cs.get("tg JIT", {}).get("loop")  # (the tiny add: tg's replay also in a tight loop, as PyTorch's op is measured)
      if loop: cells[cols.index("tg JIT")] += f"; tight loop {_ms(loop)}"
      tj = loop["median"] if loop else (cs.get("tg JIT") or cs.get("tg") or {}).get("call", {}).get("median")
      rat = [f"{cs[p]['call']['median'] / tj:.2f}" if tj and p in cs and cs[p].get("call", {}).get("median") else "-"
             for p in ("torch", "tinygrad JIT")]
      chk = ", ".join(f"{c}: {v['check']}" for c, v in cs.items() if v.get("check") not in (None, "ok", "reference", "finite"))
      lines.append(f"| {r['label']} | " + " | ".join(cells + rat) + f" | {chk or 'ok'} |")
  return "\n".join(lines)

def plot(results: list[dict], path: pathlib.Path, title: str) -> bool:
  """A bar chart of tg/peer speed ratios (kernel and call, BEAM), log scale, with the break-even line at 1."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    note("matplotlib is not installed: no ratios.png (pip install matplotlib)")
    return False
  peers = [p for p in ("numpy", "torch", "tinygrad") if any(p in r for w in results for r in w["ratios"].values())]
  labels = [w["label"] for w in results]
  fig, axs = plt.subplots(1, 2, figsize=(14, 0.55 * len(labels) * max(1, len(peers)) / 2 + 2), sharey=True)
  colors = {"numpy": "#4c72b0", "torch": "#dd8452", "tinygrad": "#55a868"}
  h = 0.8 / max(1, len(peers))
  for ax, kind in zip(axs, ("kernel", "call")):
    for j, p in enumerate(peers):
      ys, vals = [], []
      for i, w in enumerate(results):
        rs = w["ratios"]
        t = next((t for t in rs if "BEAM" in t), "tg")
        v = rs.get(t, {}).get(p, {}).get(kind)
        if v is not None: ys.append(i + j * h); vals.append(v)  # noqa: E702
      ax.barh(ys, vals, height=h, color=colors[p], label=f"vs {p}")
      for y, v in zip(ys, vals): ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_title(f"{kind} time: tg (BEAM) speed / peer speed")
    ax.set_xlabel("ratio (> 1: tg faster)")
    ax.set_yticks([i + h * (len(peers) - 1) / 2 for i in range(len(labels))])
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
  axs[0].legend(loc="lower right", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True

def _version(mod: str) -> str | None:
  try:
    from importlib.metadata import version
    return version(mod)
  except Exception:
    try: return __import__(mod).__version__
    except Exception: return None

def machine_info(args) -> dict:
  """CPU model, cores, memory, Python, package versions, compilers and date."""
  cpu = platform.processor()
  try:
    cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
  except Exception: pass
  def first_line(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[0]
    except Exception: return None
  tg_versions = {p: _version(p) for p in ("tg-uop", "tg-codegen", "tg-tensor")}
  return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
          "machine": platform.machine(), "os": platform.platform(), "python": platform.python_version(),
          "numpy": np.__version__, "torch": _version("torch"), "tinygrad": _version("tinygrad"), "tg": tg_versions,
          "cc": first_line(["cc", "--version"]), "clang": first_line(["clang", "--version"]), "device": args.device,
          "beam": args.beam, "quick": args.quick, "tg_cache_dir": str(_cache_dir())}

def _cache_dir():
  from tg_uop.helpers import cache_dir
  return cache_dir()

def tg_device_opens(device: str) -> str | None:
  """None when tg's `device` opens, else why not."""
  try:
    from tg_uop.device import Device
    Device[device]
    return None
  except Exception as e: return f"{type(e).__name__}: {e}"

def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
  ap.add_argument("--only", action="append", default=[], help="run only workloads whose name contains this (repeatable)")
  ap.add_argument("--beam", type=int, default=int(os.environ.get("BENCH_BEAM", "2")), help="BEAM width for the tg BEAM rows (0: skip)")
  ap.add_argument("--device", default="CPU", help="tg device: CPU, or NV/CUDA for the GPU run; a comma list takes the first that opens")
  ap.add_argument("--out", default=None, help="output folder (default bench/results/<device>)")
  ap.add_argument("--beam-kernel-s", type=float, default=150, help="BEAM time limit per kernel, seconds (then heuristic opts)")
  ap.add_argument("--beam-total-s", type=float, default=360, help="BEAM time limit for the whole run, seconds")
  ap.add_argument("--skip-models", action="store_true", help="skip the model-level workloads")
  args = ap.parse_args(argv)
  args.beam_budget = BeamBudget(args.beam_kernel_s, args.beam_total_s)
  t0 = time.perf_counter()
  whys = {}
  for d in args.device.upper().split(","):
    if (why := tg_device_opens(d.strip())) is None: break
    whys[d.strip()] = why
  else:
    print("no tg device to benchmark opens here (" + "; ".join(f"{d}: {w}" for d, w in whys.items()) + "): exiting without results")
    return 0
  args.device = d.strip()
  out = pathlib.Path(args.out or ROOT / "bench" / "results" / ("cpu" if args.device == "CPU" else "gpu"))
  info = machine_info(args)
  print(f"tg bench on {info['cpu']} ({info['cores']} cores), device {args.device}, BEAM={args.beam}, {'quick' if args.quick else 'full'}; "
        f"numpy {info['numpy']}, torch {info['torch']}, tinygrad {info['tinygrad']}; tg cache {info['tg_cache_dir']}", flush=True)
  torch_ = load_torch(args.device != "CPU")
  tiny = load_tinygrad(args.device)
  results = []
  for w in workloads(args.quick) + (gpu_workloads(args.quick) if args.device != "CPU" else []):
    if args.only and not any(o in w.name for o in args.only): continue
    r = run_workload(w, args, torch_, tiny)
    r["ratios"] = ratios(r["contenders"])
    results.append(r)
    for name, c in r["contenders"].items():
      print(f"  {name:12s} kernel {_ms(c['kernel']):28s} call {_ms(c['call']):28s} {c.get('check', '')}", flush=True)
  model_rows = []
  if not args.skip_models and (not args.only or any(o in n for o in args.only for n in ("models", "mlp", "cnn", "block", "jit", "first", "gpt2"))):
    try: model_rows = tensor_workloads(args, torch_, tiny)
    except Exception as e:
      note(f"model-level workloads failed: {type(e).__name__}: {e}")
      traceback.print_exc()
  info["wall_s"] = time.perf_counter() - t0
  txt = table(results, model_rows)
  print("\n" + txt)
  if NOTES: print("\nNotes:\n" + "\n".join(f"- {n}" for n in NOTES))
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps({"machine": info, "workloads": results, "model_workloads": model_rows, "notes": NOTES,
                                                "table_md": txt}, indent=1, default=str))
  title = f"tg vs peers on {info['cpu']} ({info['cores']} cores), {info['date'][:10]}, BEAM={args.beam}"
  if results: plot(results, out / "ratios.png", title)
  print(f"\nwrote {out / 'results.json'} and {out / 'ratios.png'} in {info['wall_s']:.0f} s")
  return 0

if __name__ == "__main__":
  sys.exit(main())
