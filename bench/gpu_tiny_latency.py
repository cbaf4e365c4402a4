"""Replay latency of a tiny jitted kernel, checked against numpy, on CUDA and NV (for the H100 machine).

Run from the repo root:  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-tensor/src:packages/tg-driver-nv/src \
  python3 bench/gpu_tiny_latency.py [CUDA NV CPU ...]
For each device: (1) correctness: a jitted 16-element add (bench's build_tiny_add) against numpy; a jitted single kernel and a
jitted multi-kernel function (a CUDA graph batch on CUDA) on new inputs every call, every result kept and checked at the end (a
replay must never overwrite an earlier result); (2) per-call microseconds, the median of 7 runs of N calls: the jitted tiny add
with and without synchronize, synchronize alone, and the kernel's launcher alone; PyTorch's eager a+b + synchronize beside it when
torch has CUDA; (3) a short profile of the replay (Python calls per replay)."""
import cProfile, io, pstats, statistics, sys, time, traceback
sys.path.insert(0, "bench")
import numpy as np

N, RUNS = 2000, 7

def per_call_us(fn, n: int = N, runs: int = RUNS) -> float:
  for _ in range(200): fn()
  times = []
  for _ in range(runs):
    st = time.perf_counter()
    for _ in range(n): fn()
    times.append((time.perf_counter() - st) / n * 1e6)
  return statistics.median(times)

def check(dev: str) -> None:
  from models import build_tiny_add
  from tg_uop.device import Device
  from tg_tensor.tensor import Tensor
  from tg_tensor.jit import TinyJit
  from tg_tensor.jit_graph import GraphBatch
  d = Device[dev]
  print(f"== {dev}: {d!r}", flush=True)
  # ---- correctness
  f = build_tiny_add("tg", dev, True)
  outs = [f() for _ in range(6)]
  for o in outs: np.testing.assert_array_equal(o.numpy(), np.arange(16, dtype=np.float32) + 1)
  assert len({id(o.uop) for o in outs}) == len(outs), "each replay must return a fresh output"
  one = TinyJit(lambda x: (x * 2 + 1).realize())
  many = TinyJit(lambda x, y: (((x * y + 1).exp() * 2).sum(1).contiguous() + 1, x - y))
  rng = np.random.default_rng(0)
  kept = []
  for _ in range(8):
    a, b = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
    kept.append((one(Tensor(a, device=dev)), a * 2 + 1))
    s, diff = many(Tensor(a, device=dev), Tensor(b, device=dev))
    kept += [(s, (np.exp(a.astype(np.float64) * b + 1) * 2).sum(1) + 1), (diff, a - b)]
  for t, ref in kept: np.testing.assert_allclose(t.numpy(), ref, rtol=1e-4, atol=1e-5)
  graphs = sum(isinstance(s, GraphBatch) for s in many.captured.batched)
  print(f"correct: tiny add x{len(outs)}, {len(kept)} kept results of a 1-kernel and a {sum(s[0] is not None for s in many.captured.steps)}"
        f"-kernel jit ({graphs} graph batch(es)) match numpy", flush=True)
  # ---- latency
  sync = d.synchronize
  jit = next(c.cell_contents for c in f.__closure__ if isinstance(c.cell_contents, TinyJit))
  plan = jit.captured.plan
  kind, _, refs, launch = plan.steps[0]
  res = {"jit tiny add + sync": per_call_us(lambda: (f(), sync())), "jit tiny add (no sync)": per_call_us(f), "sync alone": per_call_us(sync)}
  if kind == "kernel":
    from tg_tensor.buffers import get_buffer
    last = f()
    dyn = [get_buffer(u) for u in jit.captured.inputs] + [get_buffer(last.uop)]
    bufs = [dyn[x]._buf if isinstance(x, int) else x._buf for x in refs]
    res["kernel launcher alone"] = per_call_us(lambda: launch(*bufs))
    sync()
  for k, v in res.items(): print(f"{dev} {k}: {v:.1f} us", flush=True)
  if dev == "CUDA":
    try:
      import torch
      if torch.cuda.is_available():
        ta, tb = torch.arange(16, dtype=torch.float32, device="cuda"), torch.ones(16, device="cuda")
        print(f"torch eager a+b + synchronize: {per_call_us(lambda: (ta + tb, torch.cuda.synchronize())):.1f} us", flush=True)
        print(f"torch synchronize alone: {per_call_us(torch.cuda.synchronize):.1f} us", flush=True)
        print(f"{dev} jit tiny add + sync (after torch): {per_call_us(lambda: (f(), sync())):.1f} us", flush=True)
        np.testing.assert_array_equal(f().numpy(), np.arange(16, dtype=np.float32) + 1)
    except ImportError: print("(no torch here)")
  # ---- profile
  pr = cProfile.Profile()
  pr.enable()
  for _ in range(1000): f(); sync()
  pr.disable()
  s = io.StringIO()
  st = pstats.Stats(pr, stream=s)
  print(f"{dev}: {st.total_calls / 1000:.0f} Python function calls per replay + sync; top by own time:")
  st.sort_stats("tottime").print_stats(12)
  lines = s.getvalue().splitlines()
  print("\n".join(lines[next(i for i, ln in enumerate(lines) if "ncalls" in ln):][:14]), flush=True)

if __name__ == "__main__":
  for dev in sys.argv[1:] or ["CUDA", "NV"]:
    try: check(dev)
    except Exception:
      print(f"== {dev}: FAILED", flush=True)
      traceback.print_exc()
