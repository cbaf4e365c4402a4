"""BEAM search on the CPU: the opts it finds apply cleanly and keep results equal to numpy; results are cached in a sqlite file
(a second search compiles nothing), IGNORE_BEAM_CACHE=1 searches again and CACHELEVEL=0 leaves no file behind."""
from __future__ import annotations
import sqlite3
import numpy as np
import pytest
from tg_uop.device import Device
from tg_uop.helpers import Context, cache_dir
from tg_codegen import examples
from tg_codegen.kernel import KernelInfo, Opt, OptOps, apply_opts
from tg_codegen.opt import search
from tg_codegen.program import choose_opts, get_program, CompiledRunner

DEV = "CPU"
WIDTH = 2

def _cpu_ok() -> str | None:
  try: Device[DEV]
  except Exception as e: return str(e)
  return None
pytestmark = pytest.mark.skipif(_cpu_ok() is not None, reason=f"CPU device unavailable: {_cpu_ok()}")

@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
  """A fresh tg cache dir (cache_dir() reads XDG_CACHE_HOME at call time) and at most 2 BEAM worker processes."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  monkeypatch.setattr(search, "getenv", lambda key, default=0: 2 if key == "BEAM_WORKERS" else default)
  assert cache_dir() == tmp_path / "tg"
  return tmp_path / "tg"

class Counting:
  """Replaces search.make_pool: a real process pool that records every candidate handed to the workers."""
  def __init__(self): self.candidates: list = []
  def __call__(self, workers):
    rec, real = self.candidates, search.multiprocessing.get_context("fork").Pool(workers)
    class Pool:
      def apply_async(self, fn, args): rec.append(args); return real.apply_async(fn, args)  # noqa: E702
      def terminate(self): real.terminate()
    return Pool()

def _forbid_compiling(monkeypatch):
  """Any attempt to build or compile a candidate fails the test."""
  def boom(*a, **k): raise AssertionError("BEAM compiled a candidate although the result was cached")
  monkeypatch.setattr(search, "make_pool", boom)
  monkeypatch.setattr(search, "_build", boom)
  monkeypatch.setattr(type(Device[DEV].compiler), "compile", boom)

def _run(ex, spec) -> tuple[np.ndarray, list[np.ndarray]]:
  from tg_uop.runtime.buffer import Buffer
  rng = np.random.default_rng(0)
  ins = [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]
  bufs = [Buffer(DEV, int(np.prod(s)), ex.dtype).allocate() for s in ex.shapes]
  for b, a in zip(bufs[1:], ins): b.copyin(memoryview(a).cast("B"))
  CompiledRunner(DEV, spec)(bufs, wait=True)
  out = np.empty(ex.shapes[0], dtype=np.float32)
  bufs[0].copyout(memoryview(out).cast("B"))
  return out, ins

def _rows(path) -> list[tuple[str, str]]:
  with sqlite3.connect(path) as con: return con.execute("SELECT key, opts FROM beam").fetchall()

def test_beam_finds_opts_that_apply_and_keep_results(tmp_cache):
  ex, ren = examples.matmul(8, 8, 16), Device[DEV].renderer
  with Context(BEAM=WIDTH, IGNORE_BEAM_CACHE=0, CACHELEVEL=2, NOOPT=0):
    spec = get_program(ex.ast, ren, None, DEV)
  opts = list(spec.info.opts)
  assert all(isinstance(o, Opt) for o in opts)
  assert apply_opts(ex.ast, opts, ren).opts == tuple(opts)  # every opt applies, in order
  out, ins = _run(ex, spec)
  np.testing.assert_allclose(out, ex.reference(*ins), rtol=1e-4, atol=1e-4, err_msg=f"BEAM opts {opts}")
  assert (tmp_cache / "beam.db").is_file() and len(_rows(tmp_cache / "beam.db")) == 1

def test_second_search_comes_from_the_cache_without_compiling(tmp_cache, monkeypatch):
  ex, ren = examples.row_reduce(8, 64), Device[DEV].renderer
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=2):
    first = search.beam_search(ex.ast, ren, WIDTH, DEV)
    _forbid_compiling(monkeypatch)
    assert search.beam_search(ex.ast, ren, WIDTH, DEV) == first
    with Context(BEAM=WIDTH, NOOPT=0): assert choose_opts(ex.ast, ren, DEV) == first  # the BEAM=N path reads the same cache
  # the same kernel built again (new UOps, same structure) hits the same entry
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=2): assert search.beam_search(examples.row_reduce(8, 64).ast, ren, WIDTH, DEV) == first

def test_cache_entries_are_per_kernel_and_width(tmp_cache):
  ren = Device[DEV].renderer
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=2):
    search.beam_search(examples.elementwise(256).ast, ren, 1, DEV)
    search.beam_search(examples.elementwise(256).ast, ren, 2, DEV)
    search.beam_search(examples.elementwise(128).ast, ren, 1, DEV)
  assert len(_rows(tmp_cache / "beam.db")) == 3

def test_ignore_beam_cache_searches_again(tmp_cache, monkeypatch):
  ex, ren = examples.elementwise(256), Device[DEV].renderer
  pool = Counting()
  monkeypatch.setattr(search, "make_pool", pool)
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=2): search.beam_search(ex.ast, ren, WIDTH, DEV)
  searched = len(pool.candidates)
  assert searched > 0
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=2): search.beam_search(ex.ast, ren, WIDTH, DEV)
  assert len(pool.candidates) == searched, "a cached result was searched again"
  with Context(IGNORE_BEAM_CACHE=1, CACHELEVEL=2): again = search.beam_search(ex.ast, ren, WIDTH, DEV)
  assert len(pool.candidates) > searched, "IGNORE_BEAM_CACHE=1 returned the cached result without searching"
  apply_opts(ex.ast, again, ren)

def test_cachelevel_0_writes_no_beam_db(tmp_cache, monkeypatch):
  ex, ren = examples.elementwise(256), Device[DEV].renderer
  pool = Counting()
  monkeypatch.setattr(search, "make_pool", pool)
  with Context(IGNORE_BEAM_CACHE=0, CACHELEVEL=0):
    opts = search.beam_search(ex.ast, ren, WIDTH, DEV)
    n = len(pool.candidates)
    assert n > 0
    search.beam_search(ex.ast, ren, WIDTH, DEV)
  assert len(pool.candidates) > n, "with CACHELEVEL=0 nothing is cached, so a second call searches again"
  assert not (tmp_cache / "beam.db").exists()
  apply_opts(ex.ast, opts, ren)

def test_opts_attached_to_the_kernel_win_over_beam(tmp_cache, monkeypatch):
  ex, ren = examples.matmul(8, 8, 8), Device[DEV].renderer
  mine = (Opt(OptOps.UPCAST, 1, 4),)
  ast = ex.ast.replace(arg=KernelInfo(opts=mine))
  _forbid_compiling(monkeypatch)
  with Context(BEAM=WIDTH, NOOPT=0): assert choose_opts(ast, ren, DEV) == list(mine)
  with Context(BEAM=0, NOOPT=1): assert choose_opts(ex.ast, ren, DEV) == []
  assert not (tmp_cache / "beam.db").exists()
