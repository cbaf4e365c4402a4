"""The CPU heuristic's register tiles: where the SIMD lanes go for the reductions of a training step, and that the tiled
programs compute the numpy reference."""
from __future__ import annotations
import pytest
np = pytest.importorskip("numpy")
from tg_uop.device import Device
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.examples import ExampleKernel, run_example, _g, _reduce
from tg_codegen.kernel import OptOps
from tg_codegen.opt.heuristic import hand_coded_optimizations

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

def _ren():
  ren = Device["CPU"].renderer
  if not getattr(ren, "supports_float4", False): pytest.skip("the CPU renderer emits no vectors")
  return ren

def x_wT(m: int, n: int, k: int) -> ExampleKernel:
  """c[i, j] = sum_l x[i, l] * w[j, l]: a linear layer's forward with weights stored (out, in); the reduction runs along memory."""
  c, x, w = _g(0, m * n), _g(1, m * k), _g(2, n * k)
  i, j, r = UOp.range(m, 0), UOp.range(n, 1), UOp.range(k, 2)
  acc = _reduce(x.index(i * k + r).load() * w.index(j * k + r).load(), r)
  return ExampleKernel("x_wT", UOp.sink(c.index(i * n + j).store(acc).end(i, j)), [(m, n), (m, k), (n, k)], lambda x, w: x @ w.T)

def masked_grad(m: int, n: int, b: int) -> ExampleKernel:
  """c[i, l] = sum_s (z[s, i] > 0 ? d[s, i] : 0) * x[s, l]: a weight gradient through a ReLU whose mask is recomputed in the loop."""
  c, z, d, x = _g(0, m * n), _g(1, b * m), _g(2, b * m), _g(3, b * n)
  i, j, s = UOp.range(m, 0), UOp.range(n, 1), UOp.range(b, 2)
  g = (UOp.const(dtypes.float32, 0.0) < z.index(s * m + i).load()).where(d.index(s * m + i).load(), UOp.const(dtypes.float32, 0.0))
  acc = _reduce(g * x.index(s * n + j).load(), s)
  return ExampleKernel("masked_grad", UOp.sink(c.index(i * n + j).store(acc).end(i, j)), [(m, n), (b, m), (b, m), (b, n)],
                       lambda z, d, x: np.where(z > 0, d, 0).T @ x)

def exp_grad(m: int, n: int, b: int) -> ExampleKernel:
  """c[i, j] = sum_s exp2(l[s, i]) * h[s, j]: a gradient whose left factor (a softmax's, here exp2) is recomputed in the loop."""
  c, lg, h = _g(0, m * n), _g(1, b * m), _g(2, b * n)
  i, j, s = UOp.range(m, 0), UOp.range(n, 1), UOp.range(b, 2)
  acc = _reduce(lg.index(s * m + i).load().alu(Ops.EXP2) * h.index(s * n + j).load(), s)
  return ExampleKernel("exp_grad", UOp.sink(c.index(i * n + j).store(acc).end(i, j)), [(m, n), (b, m), (b, n)],
                       lambda lg, h: np.exp2(lg).T @ h)

def _vector_loads(spec, buf: int, lanes: int) -> int:
  """How many LOADs of `lanes`-wide vectors read buffer `buf` in the program."""
  return sum(1 for u in spec.uops if u.op is Ops.LOAD and u.dtype.count == lanes and
             any(s.op is Ops.DEFINE_GLOBAL and s.arg == buf for s in u.src[0].toposort()))

def _check(ex: ExampleKernel, seed: int = 0):
  rng = np.random.default_rng(seed)
  ins = [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]
  out, spec = run_example(ex, "CPU", ins)
  np.testing.assert_allclose(out, ex.reference(*ins), rtol=1e-4, atol=1e-4, err_msg=f"{ex.name} with {spec.info.opts}")
  return spec

def test_x_wT_takes_lanes_along_the_reduction_and_a_tile_along_rows():
  ex = x_wT(32, 48, 64)
  opts = hand_coded_optimizations(ex.ast, _ren())
  assert any(o.op is OptOps.UNROLL and o.arg == 16 for o in opts), opts
  # the output axis whose stores are contiguous is not upcast: it would take the lanes and turn the loads of w into gathers
  assert not any(o.op is OptOps.UPCAST and o.axis == 1 for o in opts), opts
  spec = _check(ex)
  assert _vector_loads(spec, 2, 16) > 0 and _vector_loads(spec, 1, 16) > 0, "the reduction should load x and w as 16-lane vectors"

def test_a_mask_recomputed_in_the_loop_is_vectorized_along_its_axis():
  ex = masked_grad(32, 42, 8)
  opts = hand_coded_optimizations(ex.ast, _ren())
  assert [(o.op, o.axis, o.arg) for o in opts if o.axis == 0] == [(OptOps.UPCAST, 0, 16)], opts
  assert any(o.op is OptOps.UPCAST and o.axis == 1 and o.arg not in (2, 4, 8, 16) for o in opts), opts
  spec = _check(ex)
  assert _vector_loads(spec, 1, 16) > 0 and _vector_loads(spec, 2, 16) > 0, "z and d should be read as 16-lane vectors"

def test_work_that_does_not_vary_with_the_lanes_gets_a_wider_tile():
  ex = exp_grad(10, 512, 16)
  opts = hand_coded_optimizations(ex.ast, _ren())
  along_lanes = [o.arg for o in opts if o.op is OptOps.UPCAST and o.axis == 1]
  assert along_lanes[0] == 16 and len(along_lanes) == 2 and along_lanes[1] > 1, opts
  _check(ex)

def test_a_plain_matmul_keeps_lanes_on_the_last_axis_and_a_tile_of_rows():
  # nothing but loads and multiply-adds in the loop: no reason to move the lanes or widen the tile
  from tg_codegen.examples import matmul
  ex = matmul(32, 64, 16)
  opts = hand_coded_optimizations(ex.ast, _ren())
  assert [(o.op, o.axis, o.arg) for o in opts] == [(OptOps.UPCAST, 1, 16), (OptOps.UPCAST, 0, 8)], opts
  _check(ex)

@pytest.mark.parametrize("ex", [x_wT(16, 10, 24), masked_grad(16, 28, 3), masked_grad(20, 16, 5), exp_grad(16, 64, 4), exp_grad(3, 20, 7)],
                         ids=lambda e: f"{e.name}-{'x'.join(map(str, e.shapes[0]))}")
def test_tiled_reductions_of_other_sizes_compute_the_reference(ex):
  _ren()
  _check(ex, 1)
