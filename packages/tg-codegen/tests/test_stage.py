"""Staging tensor-core operands through shared memory (`tg_codegen.lower.stage`): the PYTHON device runs the staged kernels (its
threads meet at each BARRIER in lockstep), so results are checked against numpy without a GPU; CUDA C and PTX are checked for the
wide copies and the padded tiles."""
from __future__ import annotations
import numpy as np
import pytest
from tg_uop.dtype import dtypes
from tg_uop.helpers import Context
from tg_codegen.examples import half_matmul, conv2d, run_example
from tg_codegen.kernel import Opt, OptOps
from tg_codegen.opt.heuristic import hand_coded_optimizations
from tg_codegen.program import get_program
from tg_codegen.renderer.cuda import CUDARenderer
from tg_codegen.renderer.ptx import PTXRenderer
from tg_codegen.tensor_cores import MMA_TENSOR_CORES, ldmatrix_row, ldmatrix_reference

TC = Opt(OptOps.TC, 0, 0)

def _run(ex, opts, seed=0):
  rng = np.random.default_rng(seed)
  ins = [rng.standard_normal(s).astype(np.float16) for s in ex.shapes[1:]]
  out, spec = run_example(ex, "PYTHON", ins, opts)
  np.testing.assert_allclose(out.astype(np.float32), ex.reference(*ins), rtol=2e-2, atol=2e-2, err_msg=f"{ex.name} with {opts}")
  return out, spec

@pytest.mark.parametrize("operand,contiguous", [("a", "k"), ("a", "m"), ("b", "n"), ("b", "k")])
def test_ldmatrix_rows_give_the_mma_fragments(operand, contiguous):
  # a 16x16 A or 16x8 B in a padded row-major tile whose rows run along `contiguous`: each lane points ldmatrix at its row and
  # receives exactly the elements the m16n8k16 layout gives it
  tc, rng = MMA_TENSOR_CORES[0], np.random.default_rng(3)
  shape = (16, 16) if operand == "a" else (16, 8)
  X = rng.standard_normal(shape)
  along_rows = contiguous == "k" if operand == "a" else contiguous == "n"  # the matrix's columns are contiguous in memory
  stored = X if along_rows else X.T
  width = stored.shape[1] + 8  # padded rows, as the staged tiles are
  flat = np.zeros(stored.shape[0] * width)
  for r in range(stored.shape[0]): flat[r * width:r * width + stored.shape[1]] = stored[r]
  def addr(rc): return rc[0] * width + rc[1] if along_rows else rc[1] * width + rc[0]
  nmat = 4 if operand == "a" else 2
  rows = [tuple(flat[addr(ldmatrix_row(operand, contiguous, lane)):][:8]) for lane in range(8 * nmat)]
  got = ldmatrix_reference(rows, nmat, trans=contiguous != "k")
  elem = tc.a_elem if operand == "a" else tc.b_elem
  for lane in range(32): assert got[lane] == tuple(X[elem(lane, i)] for i in range(2 * nmat)), f"lane {lane}"

@pytest.mark.parametrize("opts", [[TC, Opt(OptOps.LOCAL, 1, 2), Opt(OptOps.LOCAL, 0, 2)],
                                  [TC, Opt(OptOps.UPCAST, 0, 2), Opt(OptOps.LOCAL, 1, 2), Opt(OptOps.UNROLL, 2, 2)],
                                  [TC, Opt(OptOps.LOCAL, 0, 2), Opt(OptOps.UPCAST, 1, 2), Opt(OptOps.UNROLL, 2, 0)]])
def test_staged_matmul_matches_unstaged(opts):
  ex = half_matmul(64, 32, 64)
  staged, spec = _run(ex, opts)
  assert "DEFINE_LOCAL" in spec.src and "BARRIER" in spec.src and "ldmatrix" in spec.src
  with Context(TC_STAGE=0):
    plain, spec0 = _run(ex, opts)
  assert "DEFINE_LOCAL" not in spec0.src
  np.testing.assert_array_equal(staged, plain)  # the same products summed in the same order: bit for bit

def test_double_buffered_copies_match():
  # a K loop with small tiles: copies for the next step run (as cp.async on GPUs) while this step computes, into the other buffer
  ex = half_matmul(64, 32, 128)
  opts = [TC, Opt(OptOps.UPCAST, 0, 2), Opt(OptOps.LOCAL, 1, 2), Opt(OptOps.UNROLL, 2, 2)]
  staged, spec = _run(ex, opts)
  assert "'async'" in spec.src and "'wait1'" in spec.src
  with Context(TC_STAGE=0): plain, _ = _run(ex, opts)
  np.testing.assert_array_equal(staged, plain)

def test_staged_conv_with_strided_operand():
  # the weights' K (input channel) has stride 9 in memory: copied element by element, the tile still matches
  ex = conv2d(2, 16, 16, 6, 18, 3, 3, dt=dtypes.float16)
  for c in range(4):
    try: _, spec = _run(ex, [Opt(OptOps.TC, c, 0), Opt(OptOps.LOCAL, 1, 2)])
    except Exception as e:  # noqa: BLE001  (a TC choice that doesn't fit this conv)
      if "doesn't fit" in str(e): continue
      raise
    assert "DEFINE_LOCAL" in spec.src

def test_one_warp_is_not_staged():
  _, spec = _run(half_matmul(32, 16, 32), [TC, Opt(OptOps.UPCAST, 0, 2)])
  assert "DEFINE_LOCAL" not in spec.src

def test_cuda_copies_16_bytes_into_padded_rows():
  ren = CUDARenderer("sm_90")
  ex = half_matmul(4096, 4096, 4096)
  src = get_program(ex.ast, ren, hand_coded_optimizations(ex.ast, ren)).src
  # A's tile is 128 rows x 64 halves, padded to 72; B's 64 rows x 128, padded to 136
  assert "__shared__ __align__(1024) half smem0[9216];" in src and "__shared__ __align__(1024) half smem1[8704];" in src
  assert "*((tg_half8*)(data1+" in src and "*((tg_half8*)(smem0+" in src
  assert src.count("__syncthreads();") == 2

def test_ptx_copies_16_bytes():
  ren = PTXRenderer("sm_90")
  ex = half_matmul(256, 256, 256)
  src = get_program(ex.ast, ren, hand_coded_optimizations(ex.ast, ren)).src
  assert "ld.global.v4.b32" in src and "st.shared.v4.b32" in src and src.count("bar.sync 0;") == 2

def test_heuristic_conv_stages_the_weights():
  # a 3x3 float16 conv: the heuristic's tensor core takes M = output channels and N = output columns (rows of memory), adds output
  # rows and batch where N can't be upcast, and the block's warps share the weights through shared memory; the filter's rows are
  # unrolled whole
  ren = CUDARenderer("sm_90")
  ex = conv2d(32, 64, 64, 58, 58, 3, 3, dt=dtypes.float16)
  opts = hand_coded_optimizations(ex.ast, ren)
  assert opts[0].op is OptOps.TC and sum(o.op is OptOps.LOCAL for o in opts) == 2 and opts[-1] == Opt(OptOps.UNROLL, 4, 3)
  src = get_program(ex.ast, ren, opts).src
  assert "__shared__" in src and "mma.sync.aligned.m16n8k16" in src
  # and the same choices on a small conv run right on the PYTHON device
  small = conv2d(2, 16, 16, 6, 18, 3, 3, dt=dtypes.float16)
  _run(small, hand_coded_optimizations(small.ast, ren))

def test_local_size_over_the_device_limit_is_refused():
  # blockDim.z is at most 64 on NVIDIA GPUs: a launch with more failed with CUDA_ERROR_INVALID_VALUE; now lowering says why
  from tg_codegen.kernel import KernelOptError
  ex = conv2d(128, 3, 4, 10, 9, 3, 3)
  with pytest.raises(KernelOptError, match="exceeds the device limit"):
    get_program(ex.ast, CUDARenderer("sm_90"), [Opt(OptOps.LOCAL, 0, 128), Opt(OptOps.LOCAL, 0, 2), Opt(OptOps.LOCAL, 0, 2)])
