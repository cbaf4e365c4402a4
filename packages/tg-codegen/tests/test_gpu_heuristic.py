"""The GPU heuristic: long reductions along memory get a warp per output reading float4s side by side (UNROLL 4 + GROUP), matmuls
keep their register tiles, elementwise kernels get full blocks; the CUDA C it renders has vector loads, and the PYTHON device
(a GPU emulator with local memory) computes the numpy reference with those opts."""
from __future__ import annotations
import pytest
np = pytest.importorskip("numpy")
from tg_uop.ops import Ops
from tg_codegen import examples as E
from tg_codegen.kernel import OptOps
from tg_codegen.opt.heuristic import gpu_row_reduce_opts, hand_coded_optimizations
from tg_codegen.program import get_program
from tg_codegen.renderer.cuda import CUDARenderer

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

def _ops(opts): return [(o.op, o.arg) for o in opts]

@pytest.mark.parametrize("op", [Ops.ADD, Ops.MAX])
def test_row_reduction_is_a_warp_per_row_with_float4_loads(op):
  ren = CUDARenderer("sm_90")
  ex = E.row_reduce(4096, 8192, op)
  assert _ops(hand_coded_optimizations(ex.ast, ren)) == [(OptOps.UNROLL, 4), (OptOps.GROUP, 32)]
  spec = get_program(ex.ast, ren)
  assert spec.global_size == (4096, 1, 1) and spec.local_size == (32, 1, 1)
  assert "*((float4*)(data1+" in spec.src, "the row is read with 16-byte loads"

def test_few_long_rows_get_more_threads_each():
  opts = _ops(hand_coded_optimizations(E.row_reduce(16, 8192).ast, CUDARenderer("sm_90")))
  assert opts[0] == (OptOps.UNROLL, 4) and opts[1][0] is OptOps.GROUP and opts[1][1] > 32

def test_matmul_and_column_sums_are_not_row_reductions():
  from tg_codegen.examples import _g, _reduce
  from tg_uop.uop import UOp
  out, a = _g(0, 1024), _g(1, 512 * 1024)
  j, r = UOp.range(1024, 0), UOp.range(512, 1)
  col_sum = UOp.sink(out.index(j).store(_reduce(a.index(r * 1024 + j).load(), r)).end(j))  # the reduction strides across memory
  ren = CUDARenderer("sm_90")
  assert gpu_row_reduce_opts(E.matmul(256, 256, 256).ast, ren) is None and gpu_row_reduce_opts(col_sum, ren) is None
  assert gpu_row_reduce_opts(E.row_reduce(64, 128).ast, ren) is None, "short rows keep the register-tile path"

def test_elementwise_gets_float4_and_256_thread_blocks():
  spec = get_program(E.add(1 << 20).ast, CUDARenderer("sm_90"))
  assert spec.local_size == (256, 1, 1) and "float4 val" in spec.src

@pytest.mark.parametrize("ex", [E.row_reduce(8, 1024), E.row_reduce(5, 512, Ops.MAX), E.row_reduce(64, 256)], ids=lambda e: e.name)
def test_row_reduction_opts_compute_the_reference_on_the_python_gpu(ex):
  from tg_uop.device import Device
  opts = hand_coded_optimizations(ex.ast, Device["PYTHON"].renderer)
  assert any(o.op is OptOps.GROUP for o in opts)
  x = np.random.default_rng(0).standard_normal(ex.shapes[1]).astype(np.float32)
  out, _ = E.run_example(ex, "PYTHON", [x], opts)
  np.testing.assert_allclose(out, ex.reference(x.astype(np.float64)), rtol=1e-5, atol=1e-5)
