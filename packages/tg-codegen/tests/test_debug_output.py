"""Visibility: DEBUG=2 prints one line per kernel run (device, name, global/local sizes, time, GFLOPS, GB/s), DEBUG=3 the applied
opts, DEBUG=4 the source. The numbers on the line agree with the program's own cost estimate, which is checked against counts
worked out by hand."""
from __future__ import annotations
import re
import numpy as np
import pytest
from tg_uop.device import Device
from tg_uop.helpers import Context
from tg_uop.runtime.buffer import Buffer
from tg_codegen import examples
from tg_codegen.kernel import Opt, OptOps
from tg_codegen.program import get_program, CompiledRunner

def _cpu_ok() -> str | None:
  try: Device["CPU"]
  except Exception as e: return str(e)
  return None
needs_cpu = pytest.mark.skipif(_cpu_ok() is not None, reason=f"CPU device unavailable: {_cpu_ok()}")

LINE = re.compile(r"^(?P<dev>\S+)\s+(?P<name>\S+)\s+global \((?P<g>\d+, \d+, \d+)\) local \((?P<l>\d+, \d+, \d+)\)\s+"
                  r"(?P<us>[\d.]+) us\s+(?P<gflops>[\d.]+) GFLOPS\s+(?P<gbs>[\d.]+) GB/s\s*$")

@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

def _bufs(ex, device: str) -> list[Buffer]:
  rng = np.random.default_rng(0)
  bufs = [Buffer(device, int(np.prod(s)), ex.dtype).allocate() for s in ex.shapes]
  for b, s in zip(bufs[1:], ex.shapes[1:]): b.copyin(memoryview(rng.standard_normal(s).astype(np.float32)).cast("B"))
  return bufs

def _runner(ex, device: str, opts=None) -> CompiledRunner:
  return CompiledRunner(device, get_program(ex.ast, Device[device].renderer, opts, device))

def _lines(out: str) -> list[re.Match]: return [m for line in out.splitlines() if (m := LINE.match(line))]

@needs_cpu
def test_debug2_prints_one_line_per_kernel_run(capsys):
  ex = examples.elementwise(1 << 14)
  runner, bufs = _runner(ex, "CPU"), _bufs(ex, "CPU")
  capsys.readouterr()
  with Context(DEBUG=2):
    for _ in range(3): runner(bufs)
  lines = _lines(capsys.readouterr().out)
  assert len(lines) == 3
  spec = runner.spec
  for m in lines:
    assert m["dev"] == "CPU" and m["name"] == spec.name
    assert tuple(int(x) for x in m["g"].split(", ")) == spec.global_size and tuple(int(x) for x in m["l"].split(", ")) == spec.local_size
    us, gflops, gbs = float(m["us"]), float(m["gflops"]), float(m["gbs"])
    assert us > 0
    # GFLOPS and GB/s are the estimate over the printed time, up to the printed rounding (us has 2 decimals: a fast kernel's printed
    # time is off by up to 0.005 us, relatively large)
    rel = 1e-3 + 0.005 / us
    assert gflops == pytest.approx(spec.flops / (us * 1e3), rel=rel, abs=0.01)
    assert gbs == pytest.approx(spec.mem_bytes / (us * 1e3), rel=rel, abs=0.01)

@needs_cpu
def test_debug_below_2_prints_no_run_line(capsys):
  ex = examples.elementwise(256)
  runner, bufs = _runner(ex, "CPU"), _bufs(ex, "CPU")
  capsys.readouterr()
  with Context(DEBUG=1): runner(bufs)
  assert _lines(capsys.readouterr().out) == []

def test_debug2_line_for_the_python_device(capsys):
  ex = examples.row_reduce(4, 8)
  runner, bufs = _runner(ex, "PYTHON"), _bufs(ex, "PYTHON")
  capsys.readouterr()
  with Context(DEBUG=2): runner(bufs)
  (m,) = _lines(capsys.readouterr().out)
  assert m["dev"] == "PYTHON" and m["name"] == runner.spec.name

def test_debug3_prints_the_applied_opts_and_debug4_the_source(capsys):
  ex = examples.matmul(8, 12, 16)
  ren = Device["PYTHON"].renderer
  opts = [Opt(OptOps.UPCAST, 1, 4), Opt(OptOps.UNROLL, 2, 4)]
  with Context(DEBUG=2): spec = get_program(ex.ast, ren, opts)
  out = capsys.readouterr().out
  assert "UPCAST" not in out and spec.src not in out
  with Context(DEBUG=3): spec = get_program(ex.ast, ren, opts)
  out = capsys.readouterr().out
  line = next(line for line in out.splitlines() if spec.name in line)
  assert all(repr(o) in line for o in opts), line
  assert spec.src not in out
  with Context(DEBUG=4): spec = get_program(ex.ast, ren, opts)
  out = capsys.readouterr().out
  assert spec.src in out and all(repr(o) in out for o in opts)

def test_debug3_prints_the_heuristics_opts_too(capsys):
  ex = examples.matmul(8, 12, 16)
  with Context(DEBUG=3, BEAM=0, NOOPT=0): spec = get_program(ex.ast, Device["PYTHON"].renderer)
  assert spec.info.opts, "the heuristic picked no opts for a matmul"
  out = capsys.readouterr().out
  assert all(repr(o) in out for o in spec.info.opts)

# ---- the estimate behind GFLOPS and GB/s ----

@pytest.mark.parametrize("dev", ["PYTHON", "NULL:PTX:sm_90", "CPU"])
def test_elementwise_estimate_counts_each_flop_and_byte_once(dev):
  if dev == "CPU" and _cpu_ok(): pytest.skip(_cpu_ok())
  n = 4096
  ex = examples.elementwise(n)  # a*b + a: 2 flops, 3 floats moved per element
  for opts in (None, [], [Opt(OptOps.UPCAST, 0, 4)]):
    spec = get_program(ex.ast, Device[dev].renderer, opts, dev)
    assert (spec.flops, spec.mem_bytes) == (2 * n, 3 * 4 * n), f"{dev} with {spec.info.opts}"

@pytest.mark.parametrize("opts", [[], [Opt(OptOps.UPCAST, 1, 4)], [Opt(OptOps.UPCAST, 0, 4), Opt(OptOps.UPCAST, 1, 4)],
                                  [Opt(OptOps.UNROLL, 2, 4)], [Opt(OptOps.LOCAL, 0, 2), Opt(OptOps.LOCAL, 1, 4)]], ids=repr)
def test_matmul_flops_estimate_is_2mnk_whatever_the_tiling(opts):
  m, n, k = 8, 12, 16
  spec = get_program(examples.matmul(m, n, k).ast, Device["PYTHON"].renderer, opts)
  assert spec.flops == 2 * m * n * k

def test_group_reduce_flops_estimate_counts_the_work_once():
  # after a GROUP reduce every thread of the workgroup folds all partial sums again, and the estimate counts each of them: the
  # DEBUG=2 GFLOPS of GPU reductions came out 8x (this matmul) to 64x (a 1024-long row sum with GROUPTOP 256) too high
  m, n, k = 8, 12, 16
  spec = get_program(examples.matmul(m, n, k).ast, Device["PYTHON"].renderer, [Opt(OptOps.GROUPTOP, 2, 16)])
  assert spec.flops <= 2 * (2 * m * n * k), f"estimated {spec.flops} flops for a {2 * m * n * k}-flop matmul"
  spec = get_program(examples.row_reduce(3, 1024).ast, Device["NULL:PTX:sm_90"].renderer, [Opt(OptOps.GROUPTOP, 1, 256)], "NULL:PTX:sm_90")
  assert spec.flops <= 2 * 3 * 1024, f"estimated {spec.flops} flops for a {3 * 1024}-flop row sum"
