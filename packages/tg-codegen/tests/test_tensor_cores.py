"""The TC opt (tensor cores): lowering a float16 matmul or conv to WMMAs. The PYTHON device runs WMMA exactly as a warp of the GPU
does (`tg_codegen.tensor_cores.mma_reference`), so results are checked against numpy here, without a GPU; the CUDA C and PTX the
same kernels render to are checked for the instruction, and compiled with nvcc / assembled with ptxas for sm_90 where installed."""
from __future__ import annotations
import random, shutil, subprocess, tempfile, os
import numpy as np
import pytest
from tg_codegen.examples import half_matmul, conv2d, matmul, run_example
from tg_codegen.kernel import Opt, OptOps, KernelOptError, apply_opts, AxisType
from tg_codegen.opt.heuristic import hand_coded_optimizations
from tg_codegen.opt.search import random_opts
from tg_codegen.program import get_program
from tg_codegen.renderer.cuda import CUDARenderer
from tg_codegen.renderer.ptx import PTXRenderer
from tg_codegen.renderer.cstyle import ClangRenderer
from tg_codegen.devices.python import PythonRenderer
from tg_codegen.tensor_cores import MMA_TENSOR_CORES, mma_reference

TC = Opt(OptOps.TC, 0, 0)

def _inputs(ex, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(s).astype(np.float16) for s in ex.shapes[1:]]

def _check(ex, opts, seed=0):
  ins = _inputs(ex, seed)
  out, spec = run_example(ex, "PYTHON", ins, opts)
  ref = ex.reference(*ins)
  np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2e-2, atol=2e-2, err_msg=f"{ex.name} with {opts}")
  return spec

def test_layout_covers_each_element_once():
  tc = MMA_TENSOR_CORES[0]
  for f, (rows, cols), n in ((tc.a_elem, (16, 16), 8), (tc.b_elem, (16, 8), 4), (tc.c_elem, (16, 8), 4)):
    seen = sorted(f(lane, i) for lane in range(32) for i in range(n))
    assert seen == sorted((r, c) for r in range(rows) for c in range(cols))

def test_mma_reference_is_a_matmul():
  tc, rng = MMA_TENSOR_CORES[0], np.random.default_rng(1)
  A, B, C = rng.standard_normal((16, 16)), rng.standard_normal((16, 8)), rng.standard_normal((16, 8))
  frags = [(tuple(A[tc.a_elem(l, i)] for i in range(8)), tuple(B[tc.b_elem(l, i)] for i in range(4)), tuple(C[tc.c_elem(l, i)] for i in range(4)))
           for l in range(32)]
  D = np.zeros((16, 8))
  for lane, res in enumerate(mma_reference(tc, frags)):
    for i, v in enumerate(res): D[tc.c_elem(lane, i)] = v
  np.testing.assert_allclose(D, A @ B + C, rtol=1e-6, atol=1e-6)

@pytest.mark.parametrize("opts", [[TC], [TC, Opt(OptOps.UPCAST, 0, 2)], [TC, Opt(OptOps.UPCAST, 1, 2), Opt(OptOps.UNROLL, 1, 3)],
                                  [TC, Opt(OptOps.LOCAL, 1, 2), Opt(OptOps.LOCAL, 0, 2)], [TC, Opt(OptOps.UNROLL, 2, 0)],
                                  [TC, Opt(OptOps.GROUPTOP, 2, 3)]])
def test_tc_matmul_python(opts):
  spec = _check(half_matmul(32, 16, 48), opts)
  assert "WMMA" in spec.src

def test_tc_bfloat16_python():
  ex = half_matmul(16, 8, 32, dt=__import__("tg_uop.dtype", fromlist=["dtypes"]).dtypes.bfloat16)
  spec = get_program(ex.ast, PythonRenderer(), [TC])
  assert "WMMA" in spec.src

def test_tc_whole_matrix_in_one_step():
  # K = 16: no loop is left, the WMMA's C is zero
  _check(half_matmul(16, 8, 16), [TC])

def test_tc_conv_python():
  ex = conv2d(1, 16, 16, 4, 10, 3, 3, dt=__import__("tg_uop.dtype", fromlist=["dtypes"]).dtypes.float16)
  info = apply_opts(ex.ast, [], PythonRenderer())
  assert info.mma, "a float16 conv is a tensor-core candidate"
  ran = 0
  for c in range(len(info.mma)):
    try: apply_opts(ex.ast, [Opt(OptOps.TC, c, 0)], PythonRenderer())
    except KernelOptError: continue
    _check(ex, [Opt(OptOps.TC, c, 0)])
    ran += 1
  assert ran >= 1

def test_tc_random_opts_never_change_results():
  ex, rnd, used = half_matmul(32, 16, 32), random.Random(7), 0
  for _ in range(8):
    opts = random_opts(ex.ast, PythonRenderer(), rnd, n=3)
    used += bool(opts) and opts[0].op is OptOps.TC
    _check(ex, opts)
  assert used >= 2, "the fuzzer should pick TC some of the time"

def test_tc_errors():
  py, ex = PythonRenderer(), half_matmul(32, 16, 32)
  with pytest.raises(KernelOptError, match="has no tensor cores"): apply_opts(ex.ast, [TC], ClangRenderer())
  with pytest.raises(KernelOptError, match="TC must be the first opt"): apply_opts(ex.ast, [Opt(OptOps.UPCAST, 0, 2), TC], py)
  with pytest.raises(KernelOptError, match="not one REDUCE ADD of products of float16/bfloat16"): apply_opts(matmul(32, 16, 32).ast, [TC], py)
  with pytest.raises(KernelOptError, match=r"M axis \(size 24\) is not a multiple of 16"): apply_opts(half_matmul(24, 16, 32).ast, [TC], py)
  with pytest.raises(KernelOptError, match="chooses one of the kernel's"): apply_opts(ex.ast, [Opt(OptOps.TC, 9, 0)], py)
  info = apply_opts(ex.ast, [TC], py)
  tc_axis = next(i for i, a in enumerate(info.axes) if a.type is AxisType.TC)
  with pytest.raises(KernelOptError, match="UPCAST needs a global or local axis"): apply_opts(ex.ast, [TC, Opt(OptOps.UPCAST, tc_axis, 2)], py)
  with pytest.raises(KernelOptError, match="PADTO can't follow TC"): apply_opts(ex.ast, [TC, Opt(OptOps.PADTO, 0, 3)], py)
  with pytest.raises(KernelOptError, match="locals are already in use"): apply_opts(ex.ast, [TC, Opt(OptOps.NOLOCALS)], py)

def test_heuristic_uses_tensor_cores_on_gpus():
  cuda = CUDARenderer("sm_90")
  assert hand_coded_optimizations(half_matmul(256, 256, 256).ast, cuda)[0] == TC
  assert not any(o.op is OptOps.TC for o in hand_coded_optimizations(matmul(256, 256, 256).ast, cuda))  # float32: no tensor core
  assert not any(o.op is OptOps.TC for o in hand_coded_optimizations(half_matmul(256, 256, 256).ast, CUDARenderer("sm_75")))

# the heuristic's tiles (staged in shared memory, fragments by ldmatrix) and a K step of 32 (tiles small enough to double-buffer
# with cp.async)
PIPELINED = [TC, Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UPCAST, 1, 2), Opt(OptOps.LOCAL, 0, 2),
             Opt(OptOps.LOCAL, 1, 2), Opt(OptOps.UNROLL, 2, 2)]

@pytest.mark.parametrize("ren", [CUDARenderer("sm_90"), PTXRenderer("sm_90")], ids=["cuda", "ptx"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["heuristic", "cp.async"])
def test_tc_renders_for_sm90(ren, pipelined):
  ex = half_matmul(256, 256, 256)
  spec = get_program(ex.ast, ren, PIPELINED if pipelined else hand_coded_optimizations(ex.ast, ren))
  assert ("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in spec.src) and spec.local_size[0] == 32
  assert "ldmatrix.sync.aligned.m8n8.x4.shared.b16" in spec.src and "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16" in spec.src
  assert ("cp.async.cg.shared.global" in spec.src and "cp.async.wait_group 1" in spec.src) == pipelined
  with tempfile.TemporaryDirectory() as d:
    if isinstance(ren, CUDARenderer):
      if (nvcc := shutil.which("nvcc") or (p if os.path.exists(p := "/usr/local/cuda/bin/nvcc") else None)) is None: pytest.skip("no nvcc")
      open(f"{d}/k.cu", "w").write(spec.src)
      res = subprocess.run([nvcc, "-ptx", "-arch=sm_90", f"{d}/k.cu", "-o", f"{d}/k.ptx"], capture_output=True, text=True)
    else:
      if (ptxas := shutil.which("ptxas") or (p if os.path.exists(p := "/usr/local/cuda/bin/ptxas") else None)) is None: pytest.skip("no ptxas")
      open(f"{d}/k.ptx", "w").write(spec.src)
      res = subprocess.run([ptxas, "-arch=sm_90", f"{d}/k.ptx", "-o", f"{d}/k.cubin"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
