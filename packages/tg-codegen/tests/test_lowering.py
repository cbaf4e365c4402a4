"""The lowering is checked by running kernels on the PYTHON (reference) and CPU devices against numpy, under many opt choices."""
import random
from tg_codegen.opt.search import random_opts as search_random_opts
import numpy as np
import pytest
from tg_uop.ops import Ops
from tg_uop.device import Device
from tg_codegen import examples
from tg_codegen.kernel import Opt, OptOps, KernelOptError, apply_opts, initial_info

def _inputs(ex, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]

def _check(ex, dev, opts, seed=0):
  ins = _inputs(ex, seed)
  out, spec = examples.run_example(ex, dev, ins, opts)
  np.testing.assert_allclose(out, ex.reference(*ins), rtol=1e-4, atol=1e-4, err_msg=f"{ex.name} on {dev} with {spec.info.opts}")
  return spec

KERNELS = [examples.elementwise(24), examples.row_reduce(6, 40), examples.row_reduce(5, 12, Ops.MAX), examples.matmul(8, 12, 16),
           examples.conv2d(2, 3, 4, 6, 6, 3, 3), examples.sum_of_row_max(8, 16)]

def random_opts(ex, ren, rnd: random.Random, n: int = 4) -> list[Opt]:
  return search_random_opts(ex.ast, ren, rnd, n)

@pytest.mark.parametrize("ex", KERNELS, ids=lambda e: e.name)
def test_python_device_matches_numpy_with_default_opts(ex):
  _check(ex, "PYTHON", None)

@pytest.mark.parametrize("ex", KERNELS, ids=lambda e: e.name)
def test_python_device_matches_numpy_without_opts(ex):
  _check(ex, "PYTHON", [])

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ex", KERNELS, ids=lambda e: e.name)
def test_random_valid_opts_never_change_results_python(ex, seed):
  ren = Device["PYTHON"].renderer
  _check(ex, "PYTHON", random_opts(ex, ren, random.Random(seed)), seed)

def _cpu_ok():
  try: Device["CPU"]
  except Exception as e: return str(e)
  return None

@pytest.mark.skipif(_cpu_ok() is not None, reason="CPU device unavailable")
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ex", KERNELS, ids=lambda e: e.name)
def test_random_valid_opts_never_change_results_cpu(ex, seed):
  ren = Device["CPU"].renderer
  _check(ex, "CPU", random_opts(ex, ren, random.Random(100 + seed)), seed)

@pytest.mark.skipif(_cpu_ok() is not None, reason="CPU device unavailable")
@pytest.mark.parametrize("ex", KERNELS, ids=lambda e: e.name)
def test_cpu_matches_numpy_with_default_opts(ex):
  _check(ex, "CPU", None)

def test_opt_errors_name_the_opt():
  ex = examples.matmul(8, 12, 16)
  ren = Device["PYTHON"].renderer
  with pytest.raises(KernelOptError, match=r"UPCAST.*5 does not divide 8"): apply_opts(ex.ast, [Opt(OptOps.UPCAST, 0, 5)], ren)
  with pytest.raises(KernelOptError, match=r"UNROLL needs a reduce axis"): apply_opts(ex.ast, [Opt(OptOps.UNROLL, 0, 2)], ren)
  with pytest.raises(KernelOptError, match=r"out of range"): apply_opts(ex.ast, [Opt(OptOps.UPCAST, 7, 2)], ren)
  with pytest.raises(KernelOptError, match=r"threads per block"):
    apply_opts(examples.matmul(64, 64, 4).ast, [Opt(OptOps.LOCAL, 0, 32), Opt(OptOps.LOCAL, 1, 64)], ren)

def test_cpu_renderer_refuses_locals():
  if _cpu_ok() is not None: pytest.skip("CPU device unavailable")
  with pytest.raises(KernelOptError, match="no local"): apply_opts(examples.matmul(8, 8, 8).ast, [Opt(OptOps.LOCAL, 0, 2)], Device["CPU"].renderer)

def test_axes_after_split_keep_roles():
  ex = examples.matmul(8, 12, 16)
  info = apply_opts(ex.ast, [Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UNROLL, 2, 4)], Device["PYTHON"].renderer)
  assert [(a.type.name, a.size) for a in info.axes] == [("GLOBAL", 8), ("GLOBAL", 3), ("REDUCE", 4), ("UPCAST", 4), ("UNROLL", 4)]
  assert initial_info(ex.ast).name == "r_8_12_16"

def test_loop_invariant_loads_are_hoisted():
  # the load of b[j] in out[i,j] = a[i]+b[j]... here: a reduce whose input doesn't depend on the outer loop is computed once
  from tg_codegen.program import get_program
  spec = get_program(examples.row_reduce(4, 8).ast, Device["PYTHON"].renderer, [])
  ranges = [u for u in spec.uops if u.op is Ops.RANGE]
  assert len(ranges) == 1 and spec.global_size == (4, 1, 1)

@pytest.mark.parametrize("dev", ["PYTHON", "CPU"])
def test_symbolic_size_kernel_runs_only_the_variable_range(dev):
  from tg_uop import UOp, dtypes
  from tg_uop.runtime.buffer import Buffer
  from tg_codegen.program import get_program, CompiledRunner
  if dev == "CPU" and _cpu_ok() is not None: pytest.skip("CPU device unavailable")
  n = UOp.variable("n", 1, 64)
  out, a = (UOp(Ops.DEFINE_GLOBAL, dtypes.float32.ptr(64), (), i) for i in range(2))
  r = UOp.range(n, 0)
  ast = UOp.sink(out.index(r).store(a.index(r).load() * 2.0).end(r))
  runner = CompiledRunner(dev, get_program(ast, Device[dev].renderer, None, dev))
  bo, ba = Buffer(dev, 64, dtypes.float32).allocate(), Buffer(dev, 64, dtypes.float32).allocate()
  x = np.arange(64, dtype=np.float32)
  ba.copyin(memoryview(x).cast("B")); bo.copyin(memoryview(np.zeros(64, np.float32)).cast("B"))  # noqa: E702
  for nv in (10, 3):
    runner([bo, ba], {"n": nv}, wait=True)
  got = np.empty(64, np.float32); bo.copyout(memoryview(got).cast("B"))  # noqa: E702
  np.testing.assert_array_equal(got, np.where(np.arange(64) < 10, x * 2, 0))
  with pytest.raises(ValueError, match="outside its bounds"): runner([bo, ba], {"n": 65})

def test_generic_decompositions_respect_native_dtypes():
  # FDIV native on float32 only: float64 division becomes a multiply by the reciprocal, float32 division stays
  from tg_uop import UOp, dtypes
  from tg_uop.ops import GroupOp
  from tg_uop.rewrite import graph_rewrite
  from tg_codegen.lower.decompose import decompositions_for
  pm = decompositions_for(frozenset(GroupOp.ALU), frozenset({(Ops.FDIV, frozenset({dtypes.float32}))}))
  ops = lambda u: {x.op for x in graph_rewrite(u, pm).toposort()}  # noqa: E731
  for dt in (dtypes.float32, dtypes.float64):
    a, b = (UOp(Ops.DEFINE_GLOBAL, dt.ptr(4), (), i).index(UOp.const(dtypes.index, 0)).load() for i in range(2))
    assert (Ops.FDIV in ops(a / b)) == (dt == dtypes.float32) and (Ops.RECIP in ops(a / b)) == (dt == dtypes.float64), dt
  with pytest.raises(ValueError, match="MAX.*no decomposition"): decompositions_for(frozenset(GroupOp.ALU), frozenset({(Ops.MAX, frozenset())}))
