"""Hopper's warpgroup MMA (`tg_codegen.lower.wgmma`): the PYTHON device runs WGMMA warpgroup-wide from the shared-memory
descriptors (`tensor_cores.wgmma_reference`), so the staged tiles, their layouts (core matrices, 128-byte swizzle), the cp.async
pipeline and the result layout are checked against numpy here; the CUDA C is compiled with nvcc for sm_90a where installed. The
H100 runs of the same kernels are in tests/test_cuda_end_to_end.py (marked gpu)."""
from __future__ import annotations
import itertools, os, shutil, subprocess, tempfile
import numpy as np
import pytest
from tg_uop.dtype import dtypes
from tg_uop.helpers import Context
from tg_codegen.examples import half_matmul, run_example
from tg_codegen.kernel import Opt, OptOps
from tg_codegen.opt.heuristic import hand_coded_optimizations
from tg_codegen.program import get_program
from tg_codegen.renderer.cuda import CUDARenderer
from tg_codegen.tensor_cores import wg_offset, wg_kstep

T = Opt(OptOps.TC, 0, 0)
def U(a, n): return Opt(OptOps.UPCAST, a, n)
def L(a, n): return Opt(OptOps.LOCAL, a, n)
def R(a, n): return Opt(OptOps.UNROLL, a, n)

# (M, N, K), opts, what they exercise. The warpgroup is the last LOCAL: M by 4
CASES = [((64, 16, 32), [T, U(1, 2), L(0, 4)], "sync, core matrices"),
         ((128, 32, 64), [T, U(1, 2), U(0, 2), L(0, 4), R(1, 2)], "cp.async pipeline, two WGMMAs an iteration, K steps"),
         ((128, 64, 32), [T, U(1, 2), L(1, 2), L(0, 4)], "two warpgroups along N"),
         ((128, 64, 64), [T, U(1, 4), U(1, 2), U(0, 2), L(0, 4), R(0, 4)], "128-byte swizzle")]

@pytest.mark.parametrize("shape,opts,what", CASES, ids=[c[2] for c in CASES])
def test_wgmma_matmul_python(shape, opts, what):
  ex = half_matmul(*shape)
  rng = np.random.default_rng(1)
  ins = [rng.standard_normal(s).astype(np.float16) for s in ex.shapes[1:]]
  out, spec = run_example(ex, "PYTHON", ins, opts)
  assert "WGMMA" in spec.src
  np.testing.assert_allclose(out.astype(np.float32), ex.reference(*ins), rtol=2e-2, atol=2e-2, err_msg=what)

@pytest.mark.parametrize("kmajor,swizzle", list(itertools.product((True, False), (True, False))))
def test_wg_layouts_place_each_element_once(kmajor, swizzle):
  # a 128 x 64 tile (rows x K) of one iteration: every element its own slot, each 8-run of the contiguous dimension 16 contiguous bytes
  rows, k = 128, 64
  lbo, sbo = ((8, 512) if kmajor else (512, 8 * rows)) if swizzle else ((64, 8 * k) if kmajor else (8 * rows, 64))
  offs = {(r, q): wg_offset(kmajor, swizzle, lbo, sbo, r, q) for r in range(rows) for q in range(k)}
  assert sorted(offs.values()) == list(range(rows * k))
  for r, q in offs:
    if (q if kmajor else r) % 8 == 0: assert all(offs[(r, q + i) if kmajor else (r + i, q)] == offs[(r, q)] + i for i in range(8))
  assert wg_kstep(kmajor, swizzle, lbo, sbo) == (offs[(0, 16)] - offs[(0, 0)])

def test_wgmma_needs_a_warpgroup_and_sm90a():
  ex = half_matmul(512, 512, 512)
  wg = [T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4), R(2, 4)]
  assert "wgmma.mma_async" in get_program(ex.ast, CUDARenderer("sm_90a"), wg).src
  assert "wgmma" not in get_program(ex.ast, CUDARenderer("sm_90"), wg).src  # plain sm_90 has no wgmma: mma.sync
  # the heuristic: Hopper's tiles on sm_90a (wgmma, TMA), mma.sync tiles otherwise
  assert "wgmma" in get_program(ex.ast, CUDARenderer("sm_90a"), hand_coded_optimizations(ex.ast, CUDARenderer("sm_90a"))).src
  assert "wgmma" not in get_program(ex.ast, CUDARenderer("sm_90"), hand_coded_optimizations(ex.ast, CUDARenderer("sm_90"))).src

@pytest.mark.parametrize("opts", [[T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4)], [T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4), R(2, 4)]],
                         ids=["pipelined", "swizzled"])
@pytest.mark.parametrize("dt", [dtypes.float16, dtypes.bfloat16], ids=["f16", "bf16"])
def test_wgmma_cuda_compiles_for_sm90a(opts, dt):
  src = get_program(half_matmul(512, 512, 512, dt).ast, CUDARenderer("sm_90a"), opts).src
  assert "wgmma.mma_async.sync.aligned.m64n128k16.f32" in src and "fence.proxy.async.shared::cta" in src and "tg_wgdesc" in src
  if (nvcc := shutil.which("nvcc") or (p if os.path.exists(p := "/usr/local/cuda/bin/nvcc") else None)) is None: pytest.skip("no nvcc")
  with tempfile.TemporaryDirectory() as d:
    open(f"{d}/k.cu", "w").write(src)
    res = subprocess.run([nvcc, "-cubin", "-arch=sm_90a", f"{d}/k.cu", "-o", f"{d}/k.cubin"], capture_output=True, text=True)
  assert res.returncode == 0, res.stderr

def test_over_48kb_of_shared_memory_is_dynamic():
  # 4 stages of 256x64 + 64x128 tiles (192 KB): one extern array, each buffer a 1024-byte aligned slice, and the size in the symbol
  # the CUDA device reads to launch with it; under 48 KB, static arrays as before
  ren = CUDARenderer("sm_90a")
  big = get_program(half_matmul(512, 512, 512).ast, ren, [T, U(1, 4), U(1, 4), U(0, 2), L(0, 2), L(0, 4), R(2, 4)]).src
  assert 'extern "C" __device__ const unsigned int tg_dynamic_shared_bytes = 196608;' in big and "extern __shared__" in big
  assert "half* smem0 = (half*)(tg_dsmem + 0);" in big and "half* smem1 = (half*)(tg_dsmem + 131072);" in big
  small = get_program(half_matmul(512, 512, 512).ast, ren, hand_coded_optimizations(half_matmul(512, 512, 512).ast, CUDARenderer("sm_90"))).src
  assert "tg_dynamic_shared_bytes" not in small and "__shared__ __align__(1024) half smem0" in small

# ---- TMA: the tiles copied by bulk tensor copies completing on mbarriers (Hopper's heuristic tiles)

TMA_CASES = [((128, 128, 256), [T, U(1, 8), L(0, 4), R(2, 4)], dtypes.float16, False, "one warpgroup, 4 iterations in 8 stages"),
             ((128, 256, 192), [T, U(1, 8), L(1, 2), L(0, 4), R(2, 4)], dtypes.bfloat16, False, "two warpgroups along N, two B boxes"),
             ((256, 256, 640), [T, U(1, 8), L(1, 2), L(0, 4), U(0, 2), R(2, 4)], dtypes.float16, False, "two WGMMAs along M, 10 iterations"),
             ((128, 256, 192), [T, U(1, 8), L(1, 2), L(0, 4), R(2, 4)], dtypes.float16, True, "K-major B (x @ w.T), two warpgroups"),
             ((256, 256, 320), [T, U(1, 8), L(1, 2), L(0, 4), U(0, 2), R(2, 4)], dtypes.bfloat16, True, "K-major B, two WGMMAs along M")]

@pytest.mark.parametrize("shape,opts,dt,trans_b,what", TMA_CASES, ids=[c[4] for c in TMA_CASES])
def test_tma_wgmma_matmul_python(shape, opts, dt, trans_b, what):
  # PYTHON copies each box element by element into its 128-byte swizzled place, as the copy engine does; an mbarrier wait is a
  # block-wide sync there, so a wrong stage, phase or box shows up as a wrong result; a K-major B is read like A (no transpose)
  ex = half_matmul(*shape, dt, trans_b=trans_b)
  rng = np.random.default_rng(2)
  a, b = ((rng.integers(-8, 8, s) / 8).astype(np.float32) for s in ex.shapes[1:])
  bits = (lambda x: x.astype(np.float16)) if dt == dtypes.float16 else (lambda x: (x.view(np.uint32) >> 16).astype(np.uint16))
  out, spec = run_example(ex, "PYTHON", [bits(a), bits(b)], opts)
  assert "'tma'" in spec.src and "mbar_wait" in spec.src and "WGMMA" in spec.src, what
  got = out.astype(np.float32) if dt == dtypes.float16 else (out.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
  np.testing.assert_allclose(got, a @ (b.T if trans_b else b), rtol=1e-2, atol=1e-2, err_msg=what)

def test_k_major_b_takes_tma_wgmma_without_transpose():
  # x @ w.T (w as nn.Linear keeps it, (out, in)): B's K runs along memory, so its tile is one box of BN rows of 64 K (the map's
  # box 64 x 256) in A's layout, and the WGMMAs read it untransposed; without TMA that B can't be a wgmma operand (mma.sync then)
  ex = half_matmul(512, 512, 512, trans_b=True)
  ren = CUDARenderer("sm_90a")
  src = get_program(ex.ast, ren, opts := hand_coded_optimizations(ex.ast, ren)).src
  assert 'tg_tensor_maps[] = {2, 1, 6, 512, 512, 1024, 64, 128, 3, 2, 6, 512, 512, 1024, 64, 256, 3};' in src
  assert ", p, 1, 1, 0, 0;" in src and ", p, 1, 1, 0, 1;" not in src
  with Context(TC_TMA=0): assert "wgmma" not in get_program(ex.ast, ren, opts).src

def test_tma_cuda_source_and_tensor_maps():
  # the heuristic's 512^3 kernel on sm_90a: A one 128-row box, B four 64-column boxes a stage (3 stages ahead, then one an
  # iteration), each stage on its mbarrier, the maps
  # described for the CUDA device (buffer, CUtensorMapDataType, columns, rows, row bytes, box, 128-byte swizzle), the results stored
  # two halves at a time; TC_TMA=0 copies with cp.async instead (and the heuristic then takes mma.sync tiles); tiles whose rows
  # aren't in memory order can't be boxes
  ex = half_matmul(512, 512, 512)
  ren = CUDARenderer("sm_90a")
  src = get_program(ex.ast, ren, opts := hand_coded_optimizations(ex.ast, ren)).src
  assert 'tg_tensor_maps[] = {2, 1, 6, 512, 512, 1024, 64, 128, 3, 2, 6, 512, 512, 1024, 64, 64, 3};' in src
  assert "const __grid_constant__ tg_tmap tmap0, const __grid_constant__ tg_tmap tmap1)" in src
  assert src.count("cp.async.bulk.tensor.2d") == 4 * 5 and "mbarrier.arrive.expect_tx" in src and "tg_mbar_wait(" in src
  assert "*((tg_half2*)(data0+" in src and "cp.async.cg" not in src
  with Context(TC_TMA=0):
    off = get_program(ex.ast, ren, opts).src
    assert "wgmma" not in get_program(ex.ast, ren, hand_coded_optimizations(ex.ast, ren)).src  # the heuristic's tiles need TMA
  assert "tg_tensor_maps" not in off and "cp.async.cg" in off and "wgmma" in off
  assert "tg_tensor_maps" not in get_program(ex.ast, ren, [T, U(1, 4), U(1, 4), U(0, 2), L(1, 2), L(0, 4), R(2, 4)]).src
  if (nvcc := shutil.which("nvcc") or (p if os.path.exists(p := "/usr/local/cuda/bin/nvcc") else None)) is None: pytest.skip("no nvcc")
  with tempfile.TemporaryDirectory() as d:
    open(f"{d}/k.cu", "w").write(src)
    res = subprocess.run([nvcc, "-cubin", "-arch=sm_90a", f"{d}/k.cu", "-o", f"{d}/k.cubin"], capture_output=True, text=True)
  assert res.returncode == 0, res.stderr
