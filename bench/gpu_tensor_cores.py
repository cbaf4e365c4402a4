"""Tensor-core kernels on an NVIDIA GPU, kernel time by the device timer beside PyTorch (cuBLAS/cuDNN), each result checked:
float16/bfloat16 matmul 4096 and 8192 with the heuristic's tiles (shared-memory staging, ldmatrix, mma.sync), the same without
staging (`TC_STAGE=0`); on sm_90a the heuristic's Hopper tiles (wgmma, TMA copies on mbarriers) beside the mma.sync tiles and other
wgmma tilings (the last LOCAL a 4-warp group over M); the 3x3 float16 conv of bench/run.py.

  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-tensor/src:packages/tg-driver-nv/src python bench/gpu_tensor_cores.py

PyTorch's time is the mean of 20 back-to-back calls (its launches overlap, so this is its kernel throughput)."""
from __future__ import annotations
import time
import numpy as np
import torch
from tg_uop.device import Device
from tg_uop.dtype import dtypes
from tg_uop.helpers import Context
from tg_uop.runtime.buffer import Buffer
from tg_codegen.examples import half_matmul, conv2d
from tg_codegen.kernel import Opt, OptOps
from tg_codegen.opt.heuristic import hand_coded_optimizations
from tg_codegen.program import get_program, CompiledRunner

DEV = "CUDA"
T = Opt(OptOps.TC, 0, 0)
def U(a, n): return Opt(OptOps.UPCAST, a, n)
def L(a, n): return Opt(OptOps.LOCAL, a, n)
def R(a, n): return Opt(OptOps.UNROLL, a, n)
# (label: opts, context) beside the heuristic's (on sm_90a: wgmma 128x256 with TMA): other wgmma tilings, and its tiles copied by
# every thread with cp.async instead of TMA
WGMMA = {"wgmma+TMA 256x128 (2 groups along N), k64": ([T, U(1, 8), L(1, 2), L(0, 4), U(0, 4), R(2, 4)], {}),
         "wgmma+TMA 128x128 (2 groups along N), k64": ([T, U(1, 8), L(1, 2), L(0, 4), U(0, 2), R(2, 4)], {}),
         "wgmma 128x256, cp.async copies (TC_TMA=0)": ([T, U(1, 16), L(1, 2), L(0, 4), U(0, 2), R(2, 4)], {"TC_TMA": 0}),
         "wgmma 128x256, k16, core matrices, cp.async": ([T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4)], {})}

def torch_time(fn) -> float:
  for _ in range(3): fn()
  torch.cuda.synchronize()
  st = time.perf_counter()
  for _ in range(20): fn()
  torch.cuda.synchronize()
  return (time.perf_counter() - st) / 20

def run(ex, opts, bufs, ref, label: str, flops: float, to_float) -> None:
  ren = Device[DEV].renderer
  spec = get_program(ex.ast, ren, opts if opts is not None else hand_coded_optimizations(ex.ast, ren), DEV)
  r = CompiledRunner(DEV, spec)
  t = min([r(bufs, wait=True) for _ in range(12)][2:])
  got = to_float(bufs[0])
  err = float(np.abs(got - ref).max() / np.abs(ref).max())
  print(f"  {label:58s} {t * 1e3:7.3f} ms {flops / t / 1e12:6.1f} TFLOPS  max rel err {err:.1e}", flush=True)

def main() -> None:
  print(f"{torch.cuda.get_device_name()}; tg renderer {Device[DEV].renderer}", flush=True)
  for n, dt, tdt in ((4096, dtypes.float16, torch.float16), (8192, dtypes.float16, torch.float16), (4096, dtypes.bfloat16, torch.bfloat16)):
    ex = half_matmul(n, n, n, dt)
    ta, tb = (torch.randn(n, n, device="cuda") * 0.1).to(tdt), (torch.randn(n, n, device="cuda") * 0.1).to(tdt)
    ref = (ta @ tb).float().cpu().numpy()
    print(f"matmul {n} {tdt}: torch {torch_time(lambda: ta @ tb) * 1e3:.3f} ms", flush=True)
    bufs = [Buffer(DEV, n * n, dt).allocate() for _ in range(3)]
    for b, t in zip(bufs[1:], (ta, tb)): b.copyin(memoryview(t.view(torch.int16).cpu().numpy()).cast("B"))
    def as_float(b, n=n, tdt=tdt):
      out = np.empty(n * n, np.int16)
      b.copyout(memoryview(out).cast("B"))
      return torch.tensor(out).view(tdt).float().numpy().reshape(n, n)
    ren = Device[DEV].renderer
    run(ex, None, bufs, ref, "heuristic" + (" (wgmma, TMA)" if getattr(ren, "tma", False) else " (staged, ldmatrix, mma.sync)"), 2 * n ** 3, as_float)
    if getattr(ren, "wgmma", False):
      mma = hand_coded_optimizations(ex.ast, type(ren)("sm_90"))  # the tiles without Hopper's instructions
      run(ex, mma, bufs, ref, "mma.sync tiles (staged, ldmatrix)", 2 * n ** 3, as_float)
      with Context(TC_STAGE=0): run(ex, mma, bufs, ref, "mma.sync tiles without staging (TC_STAGE=0)", 2 * n ** 3, as_float)
      for label, (opts, ctx) in WGMMA.items():
        with Context(**ctx): run(ex, opts, bufs, ref, label, 2 * n ** 3, as_float)
  bs, c, hw = 32, 64, 58
  ex = conv2d(bs, c, c, hw, hw, 3, 3, dt=dtypes.float16)
  rng = np.random.default_rng(0)
  x, w = (rng.standard_normal((bs, c, hw, hw)) * 0.3).astype(np.float16), (rng.standard_normal((c, c, 3, 3)) * 0.1).astype(np.float16)
  tx, tw = torch.tensor(x).cuda(), torch.tensor(w).cuda()
  ref = torch.nn.functional.conv2d(tx, tw).float().cpu().numpy()
  print(f"conv2d f16 {bs}x{c}x{hw}x{hw} by {c}x3x3: torch {torch_time(lambda: torch.nn.functional.conv2d(tx, tw)) * 1e3:.3f} ms", flush=True)
  bufs = [Buffer(DEV, int(np.prod(s)), dtypes.float16).allocate() for s in ex.shapes]
  for b, a in zip(bufs[1:], (x, w)): b.copyin(memoryview(np.ascontiguousarray(a)).cast("B"))
  def conv_out(b):
    out = np.empty(ex.shapes[0], np.float16)
    b.copyout(memoryview(out).cast("B"))
    return out.astype(np.float32)
  run(ex, None, bufs, ref, "heuristic", 2 * bs * c * 56 * 56 * c * 9, conv_out)

if __name__ == "__main__": main()
