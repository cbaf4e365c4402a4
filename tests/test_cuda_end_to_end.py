"""tg-codegen's example kernels (elementwise, row reduce, matmul, conv2d) lowered, rendered as CUDA C and as PTX, compiled and run
on the CUDA device of tg-driver-nv, against numpy. Marked `gpu`; skipped where the CUDA device doesn't open."""
from __future__ import annotations
import functools
import numpy as np
import pytest
from tg_uop.ops import Ops
from tg_codegen import examples as E

@functools.cache
def cuda_unusable(name: str) -> str | None:
  """None when `Device[name]` opens, else why not."""
  from tg_driver_nv.libs import cuda_probe
  if (why := cuda_probe()) is not None: return why
  try:
    from tg_uop.device import Device
    Device[name]
  except Exception as e: return f"{type(e).__name__}: {e}"
  return None

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
