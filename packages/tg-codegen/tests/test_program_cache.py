"""Compiled programs are cached on disk: a second CompiledRunner for the same source (in this process or in a new one) runs the
cached binary without invoking the C compiler or LLVM; another source, other flags or another compiler miss the cache;
CACHELEVEL=0 compiles every time and writes nothing."""
from __future__ import annotations
import os, pathlib, shutil, subprocess, sys, textwrap
import numpy as np
import pytest
from tg_uop.device import Device
from tg_uop.helpers import Context, cache_dir
from tg_uop.runtime.buffer import Buffer
from tg_codegen import examples
from tg_codegen.devices import cpu
from tg_codegen.program import get_program, CompiledRunner

def _device_ok(name: str) -> str | None:
  try: Device[name]
  except Exception as e: return str(e)
  return None

@pytest.fixture
def cache(tmp_path, monkeypatch) -> pathlib.Path:
  """A fresh tg cache dir (cache_dir() reads XDG_CACHE_HOME at call time)."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cache_dir() == tmp_path / "tg"
  return tmp_path / "tg"

@pytest.fixture
def cc_calls(monkeypatch) -> list[list[str]]:
  """Every C compiler invocation that builds a library (not `cc --version`), recorded and then run for real."""
  if _device_ok("CPU") or not isinstance(Device["CPU"].compiler, cpu.CCompiler): pytest.skip("the CPU device has no C compiler")
  calls: list[list[str]] = []
  real = subprocess.run
  def counting(args, *a, **k):
    if isinstance(args, (list, tuple)) and "-shared" in args: calls.append(list(args))
    return real(args, *a, **k)
  monkeypatch.setattr(subprocess, "run", counting)
  return calls

def _run(runner: CompiledRunner, ex) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  ins = [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]
  bufs = [Buffer(runner.device, int(np.prod(s)), ex.dtype).allocate() for s in ex.shapes]
  for b, a in zip(bufs[1:], ins): b.copyin(memoryview(a).cast("B"))
  runner(bufs, wait=True)
  out = np.empty(ex.shapes[0], dtype=np.float32)
  bufs[0].copyout(memoryview(out).cast("B"))
  return out, ex.reference(*ins)

def _files(d: pathlib.Path) -> list[pathlib.Path]: return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []

def test_second_runner_for_the_same_source_does_not_invoke_the_c_compiler(cache, cc_calls):
  ex = examples.matmul(8, 12, 16)
  spec = get_program(ex.ast, Device["CPU"].renderer, None, "CPU")
  first = CompiledRunner("CPU", spec)
  assert len(cc_calls) == 1
  assert len(_files(cache / "compile")) == 1
  second = CompiledRunner("CPU", get_program(examples.matmul(8, 12, 16).ast, Device["CPU"].renderer, None, "CPU"))
  assert len(cc_calls) == 1, "the same source was compiled twice"
  assert second.lib == first.lib
  np.testing.assert_allclose(*_run(second, ex), rtol=1e-4, atol=1e-4)  # the cached binary runs and is right

def test_cache_is_on_disk_not_in_the_compiler_object(cache, cc_calls):
  src = get_program(examples.elementwise(64).ast, Device["CPU"].renderer, None, "CPU").src
  lib = Device["CPU"].compiler.compile_cached(src)
  fresh = cpu.CCompiler(cc=Device["CPU"].compiler.cc)
  assert fresh.compile_cached(src) == lib and len(cc_calls) == 1

def test_another_source_compiles_again(cache, cc_calls):
  ren = Device["CPU"].renderer
  CompiledRunner("CPU", get_program(examples.elementwise(64).ast, ren, None, "CPU"))
  CompiledRunner("CPU", get_program(examples.elementwise(128).ast, ren, None, "CPU"))
  assert len(cc_calls) == 2 and len(_files(cache / "compile")) == 2

def test_flags_and_compiler_are_part_of_the_cache_key(cache):
  if _device_ok("CPU"): pytest.skip(_device_ok("CPU"))
  comp = Device["CPU"].compiler
  if not isinstance(comp, cpu.CCompiler): pytest.skip("the CPU device has no C compiler")
  src = "void f(void) {}"
  other_flags = cpu.CCompiler(cc=comp.cc, flags=tuple(f for f in comp.flags if f != "-O2") + ("-O1",))
  assert comp.cache_path(src) != other_flags.cache_path(src)
  others = [c for c in ("gcc", "clang") if (p := shutil.which(c)) and os.path.realpath(p) != os.path.realpath(comp.cc[0])]
  for name in others: assert cpu.CCompiler(cc=[name]).cache_path(src) != comp.cache_path(src), f"{name} shares {comp.cc[0]}'s cache"

def test_cachelevel_0_compiles_every_time_and_writes_nothing(cache, cc_calls):
  spec = get_program(examples.elementwise(64).ast, Device["CPU"].renderer, None, "CPU")
  with Context(CACHELEVEL=0):
    CompiledRunner("CPU", spec)
    runner = CompiledRunner("CPU", spec)
  assert len(cc_calls) == 2
  assert _files(cache) == []
  np.testing.assert_allclose(*_run(runner, examples.elementwise(64)), rtol=1e-6)

def test_llvm_programs_are_cached_too(cache, monkeypatch):
  if _device_ok("CPU:LLVM"): pytest.skip(_device_ok("CPU:LLVM"))
  calls = []
  real = cpu.LLVMCompiler.compile
  monkeypatch.setattr(cpu.LLVMCompiler, "compile", lambda self, src: calls.append(src) or real(self, src))
  ex = examples.row_reduce(6, 40)
  spec = get_program(ex.ast, Device["CPU:LLVM"].renderer, None, "CPU:LLVM")
  CompiledRunner("CPU:LLVM", spec)
  runner = CompiledRunner("CPU:LLVM", spec)
  assert len(calls) == 1
  np.testing.assert_allclose(*_run(runner, ex), rtol=1e-4, atol=1e-4)
  with Context(CACHELEVEL=0): CompiledRunner("CPU:LLVM", spec)
  assert len(calls) == 2

SCRIPT = textwrap.dedent("""
  import subprocess, sys
  from tg_uop.device import Device
  from tg_codegen import examples
  from tg_codegen.program import get_program, CompiledRunner
  calls, real = [], subprocess.run
  subprocess.run = lambda args, *a, **k: (calls.append(args) if "-shared" in args else None) or real(args, *a, **k)
  for ex in (examples.matmul(8, 12, 16), examples.conv2d(2, 3, 4, 6, 6, 3, 3), examples.row_reduce(5, 12)):
    CompiledRunner("CPU", get_program(ex.ast, Device["CPU"].renderer, None, "CPU"))
  print(len(calls))
""")

def test_a_new_process_reuses_the_cache(cache):
  # rendering must not depend on hash order, or every new process would miss the cache
  if _device_ok("CPU") or not isinstance(Device["CPU"].compiler, cpu.CCompiler): pytest.skip("the CPU device has no C compiler")
  env = {**os.environ, "XDG_CACHE_HOME": str(cache.parent), "PYTHONPATH": os.pathsep.join(sys.path)}
  def run(seed: int) -> int:
    res = subprocess.run([sys.executable, "-c", SCRIPT], env={**env, "PYTHONHASHSEED": str(seed)}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return int(res.stdout.strip().splitlines()[-1])
  assert run(1) == 3
  assert run(2) == 0, "a new process recompiled programs that were cached"
