"""tg-codegen's example kernels (elementwise, row reduce, matmul, conv2d) lowered, rendered as CUDA C and as PTX, compiled and run
on the CUDA device of tg-driver-nv, against numpy. Marked `gpu`; skipped where the CUDA device doesn't open."""
from __future__ import annotations
import numpy as np
import pytest
from tg_uop.ops import Ops
from tg_codegen import examples as E
from tg_driver_nv.libs import cuda_unusable

DEVICES = ["CUDA", "CUDA:PTX"]
EXAMPLES = [E.elementwise(1000), E.add(4096), E.row_reduce(37, 129), E.row_reduce(16, 300, Ops.MAX), E.matmul(64, 48, 80),
            E.conv2d(2, 3, 4, 10, 9, 3, 3)]

@pytest.mark.gpu
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.name)
def test_example_kernel_matches_numpy(device, ex):
  if (why := cuda_unusable(device)) is not None: pytest.skip(f"{device} is not usable here: {why}")
  rng = np.random.default_rng(abs(hash(ex.name)) % 2**32)
  inputs = [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]
  out, spec = E.run_example(ex, device, inputs)
  ref = np.asarray(ex.reference(*[x.astype(np.float64) for x in inputs]))
  assert spec.src, "the program has no source"
  np.testing.assert_allclose(out.astype(np.float64), ref.reshape(out.shape), rtol=1e-4, atol=1e-4)

@pytest.mark.gpu
def test_tinyjit_replays_through_a_cuda_graph():
  if (why := cuda_unusable("CUDA")) is not None: pytest.skip(f"CUDA is not usable here: {why}")
  from tg_uop.device import Device
  from tg_tensor.tensor import Tensor
  from tg_tensor.jit import TinyJit
  from tg_tensor.jit_graph import GraphBatch
  from tg_driver_nv.cuda_device import CUDAGraph
  @TinyJit
  def f(x, y): return ((x * y + 1).exp() * 2).sum(1).contiguous() + 1, x - y
  rng = np.random.default_rng(0)
  outs = []
  for _ in range(5):
    a, b = rng.standard_normal((64, 256)).astype(np.float32), rng.standard_normal((64, 256)).astype(np.float32)
    s, d = f(Tensor(a, device="CUDA"), Tensor(b, device="CUDA"))
    np.testing.assert_allclose(s.numpy(), (np.exp(a.astype(np.float64) * b + 1) * 2).sum(1) + 1, rtol=1e-4)
    outs.append((d, a - b))
  for d, ref in outs: np.testing.assert_allclose(d.numpy(), ref, rtol=1e-6)  # each replay wrote a fresh output
  batches = [s for s in f.captured.batched if isinstance(s, GraphBatch)]
  assert batches and all(isinstance(bt.graph, CUDAGraph) for bt in batches) and Device["CUDA"].graph is CUDAGraph

@pytest.mark.gpu
def test_jitted_launch_makes_its_context_current_again():
  # a replay's launcher doesn't ask which context is current: with none current (as another library may leave the thread), its
  # launch fails on the function's handle, it makes the device's context current and launches again
  if (why := cuda_unusable("CUDA")) is not None: pytest.skip(f"CUDA is not usable here: {why}")
  from tg_tensor.tensor import Tensor
  from tg_tensor.jit import TinyJit
  from tg_driver_nv.autogen import cuda
  f = TinyJit(lambda x: (x * 2 + 1).realize())
  for i in range(5):
    x = np.arange(16, dtype=np.float32) + i
    t = Tensor(x, device="CUDA")  # (its copy makes the context current)
    cuda.cuCtxSetCurrent(None)
    np.testing.assert_array_equal(f(t).numpy(), x * 2 + 1)

def _tc_opts(kind: str):
  from tg_codegen.kernel import Opt, OptOps
  T = Opt(OptOps.TC, 0, 0)
  def U(a, n): return Opt(OptOps.UPCAST, a, n)
  def L(a, n): return Opt(OptOps.LOCAL, a, n)
  def R(a, n): return Opt(OptOps.UNROLL, a, n)
  return {"heuristic": None, "mma staged cp.async": [T, U(0, 4), U(1, 4), U(1, 2), L(0, 2), L(1, 2), R(2, 2)],
          "wgmma pipelined": [T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4)],
          "wgmma swizzled": [T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4), R(2, 4)]}[kind]

@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["heuristic", "mma staged cp.async", "wgmma pipelined", "wgmma swizzled"])
@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_tensor_core_matmul_matches_numpy(kind, dt):
  # float16/bfloat16 matmul through tensor cores: shared-memory tiles with ldmatrix + mma.sync, or wgmma (sm_90a) where the opts
  # make a warpgroup; inputs are exactly representable, so the float32 accumulations match numpy's closely
  if (why := cuda_unusable("CUDA")) is not None: pytest.skip(f"CUDA is not usable here: {why}")
  from tg_uop.device import Device
  from tg_uop.dtype import dtypes
  ren = Device["CUDA"].renderer
  if kind.startswith("wgmma") and not getattr(ren, "wgmma", False): pytest.skip(f"{ren} has no wgmma (needs an sm_90 GPU)")
  ex = E.half_matmul(512, 512, 512, getattr(dtypes, dt))
  rng = np.random.default_rng(3)
  a, b = (rng.integers(-8, 8, (512, 512)) / 8).astype(np.float32), (rng.integers(-8, 8, (512, 512)) / 8).astype(np.float32)
  if dt == "float16": ins = [a.astype(np.float16), b.astype(np.float16)]
  else: ins = [(a.view(np.uint32) >> 16).astype(np.uint16), (b.view(np.uint32) >> 16).astype(np.uint16)]  # exact in bfloat16
  out, spec = E.run_example(ex, "CUDA", ins, _tc_opts(kind))
  got = out.astype(np.float32) if dt == "float16" else (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
  # (the heuristic's tiles are Hopper's wgmma + TMA ones on sm_90a)
  assert ("wgmma.mma_async" in spec.src) == (kind.startswith("wgmma") or (kind == "heuristic" and getattr(ren, "tma", False)))
  np.testing.assert_allclose(got, a @ b, rtol=1e-2, atol=1e-2)

@pytest.mark.gpu
@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "b.T"])
@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_tma_wgmma_matmul_matches_numpy(dt, trans_b):
  # Hopper's heuristic tiles (TMA box copies into 4 stages on mbarriers, wgmma): a non-square matmul whose K takes 10 iterations
  # (each stage's mbarrier goes through both phases, twice), then the same through Tensors with a fused bias + relu epilogue;
  # with b.T, B is K-major (x @ w.T, as nn.Linear multiplies)
  if (why := cuda_unusable("CUDA")) is not None: pytest.skip(f"CUDA is not usable here: {why}")
  from tg_uop.device import Device
  from tg_uop.dtype import dtypes
  from tg_tensor.tensor import Tensor
  if not getattr(Device["CUDA"].renderer, "tma", False): pytest.skip(f"{Device['CUDA'].renderer} has no TMA (needs an sm_90 GPU)")
  m, n, k = 256, 512, 640
  ex = E.half_matmul(m, n, k, getattr(dtypes, dt), trans_b=trans_b)
  rng = np.random.default_rng(4)
  a, b = (rng.integers(-8, 8, (m, k)) / 8).astype(np.float32), (rng.integers(-8, 8, (k, n)) / 8).astype(np.float32)
  bits = lambda x: x.astype(np.float16) if dt == "float16" else (x.view(np.uint32) >> 16).astype(np.uint16)  # noqa: E731
  out, spec = E.run_example(ex, "CUDA", [bits(a), bits(np.ascontiguousarray(b.T) if trans_b else b)], None)
  got = out.astype(np.float32) if dt == "float16" else (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
  assert "cp.async.bulk.tensor.2d" in spec.src and "mbarrier.try_wait.parity" in spec.src and "wgmma.mma_async" in spec.src
  np.testing.assert_allclose(got, a @ b, rtol=1e-2, atol=1e-2)
  if dt == "float16":
    bias = (rng.integers(-8, 8, n) / 8).astype(np.float16)
    ta, tbias = Tensor(a.astype(np.float16), device="CUDA"), Tensor(bias, device="CUDA")
    tb = Tensor(np.ascontiguousarray(b.T).astype(np.float16), device="CUDA").T if trans_b else Tensor(b.astype(np.float16), device="CUDA")
    res = (ta @ tb + tbias).relu().numpy()
    np.testing.assert_allclose(res.astype(np.float32), np.maximum(a @ b + bias.astype(np.float32), 0), rtol=1e-2, atol=1e-2)
