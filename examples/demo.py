"""tg demo: compile and run real kernels on the default device (the embedded CPU unless DEV says otherwise), check every
result against numpy and print what ran. Run it with `nox -s demo` (or `python examples/demo.py` with tg installed)."""
import time
import numpy as np
from tg_uop import Device
from tg_uop.ops import Ops
from tg_codegen import examples

def main() -> None:
  dev = Device.DEFAULT
  ren = Device[dev].renderer
  print(f"tg demo on device {dev} (renderer {type(ren).__name__})")
  rng = np.random.default_rng(0)
  kernels = [examples.elementwise(1 << 20), examples.row_reduce(1024, 1024), examples.row_reduce(512, 256, Ops.MAX),
             examples.matmul(256, 256, 256), examples.conv2d(8, 16, 32, 34, 34, 3, 3)]
  total = time.perf_counter()
  for ex in kernels:
    ins = [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]
    st = time.perf_counter()
    out, spec = examples.run_example(ex, dev, ins)
    first = time.perf_counter() - st
    ref = ex.reference(*ins)
    err = float(np.max(np.abs(out - ref)) / (np.max(np.abs(ref)) + 1e-12))
    ok = "ok " if err < 1e-4 else "BAD"
    print(f"  {ok} {ex.name:28s} {spec.info.name:24s} opts {len(spec.info.opts)}  first run {first*1e3:8.1f} ms  "
          f"rel err {err:.1e}  global {spec.global_size}")
    if err >= 1e-4: raise SystemExit(f"{ex.name}: result differs from numpy (relative error {err:.2e})")
  print(f"all {len(kernels)} kernels match numpy; {time.perf_counter() - total:.1f} s in total (compiles included, cached on disk)")

if __name__ == "__main__": main()
