"""The jitted tiny-kernel round trip on CUDA taken apart: raw ctypes cuLaunchKernel (+ cuCtxSynchronize), the program's launcher
+ the device's synchronize, the whole TinyJit replay + synchronize, and PyTorch's eager op + synchronize beside them (then tg's
replay again, with PyTorch's CUDA state live in the process).

  PYTHONPATH=packages/tg-uop/src:packages/tg-codegen/src:packages/tg-tensor/src:packages/tg-driver-nv/src python bench/gpu_launch_floor.py
"""
import sys, ctypes
sys.path.insert(0, "bench")
from models import build_tiny_add
from tg_uop.device import Device
from tg_tensor.jit import TinyJit
from tg_tensor.buffers import get_buffer
from tg_driver_nv.autogen import cuda
from gpu_tiny_latency import per_call_us as per  # the median of runs of calls, after a warm-up
dev = "CUDA"; d = Device[dev]
f = build_tiny_add("tg", dev, True)
for _ in range(5): f()
jit = next(c.cell_contents for c in f.__closure__ if isinstance(c.cell_contents, TinyJit))
plan = jit.captured.plan
kind, r, refs, launch = plan.steps[0]
last = f()
dyn = [get_buffer(u) for u in jit.captured.inputs] + [get_buffer(last.uop)]
bufs = [dyn[x]._buf if isinstance(x, int) else x._buf for x in refs]
prg = r.prg
(g0, g1, g2), (l0, l1, l2) = (r.spec.global_size + (1, 1, 1))[:3], (r.spec.local_size + (1, 1, 1))[:3]
params = (ctypes.c_void_p * len(bufs))(*(ctypes.addressof(b) for b in bufs))
L, S = cuda.cuLaunchKernel, cuda.cuCtxSynchronize
fn = prg.fn
print("raw cuLaunchKernel + cuCtxSynchronize:", round(per(lambda: (L(fn, g0, g1, g2, l0, l1, l2, 0, None, params, None), S())), 1), "us")
print("raw cuLaunchKernel only:", round(per(lambda: L(fn, g0, g1, g2, l0, l1, l2, 0, None, params, None), n=500), 1), "us"); S()
print("raw cuCtxSynchronize only:", round(per(S), 1), "us")
print("launcher + device.synchronize:", round(per(lambda: (launch(*bufs), d.synchronize())), 1), "us")
print("jit f() + device.synchronize:", round(per(lambda: (f(), d.synchronize())), 1), "us")
print("d.activate:", round(per(d.activate), 2), "us")
import torch
ta, tb = torch.arange(16, dtype=torch.float32, device="cuda"), torch.ones(16, device="cuda")
print("torch a+b + sync:", round(per(lambda: (ta + tb, torch.cuda.synchronize())), 1), "us")
print("jit f() + device.synchronize (after torch):", round(per(lambda: (f(), d.synchronize())), 1), "us")
