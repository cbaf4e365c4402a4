"""The example kernels (elementwise, reduce ADD/MAX, matmul, conv2d) lowered for every target: PTX/sm_90 and AMDGPU/gfx942 through the
NULL device assemble (ptxas, llvmlite) with the parameters and shared memory the program asks for, and the GPU-lowered programs
compute the right values when interpreted by the PYTHON device; CUDA C compiles with nvcc; LLVM IR runs on the CPU; kernels with
EXP2/LOG2/SIN/POW lose those ops for renderers that lack them and still match numpy."""
from __future__ import annotations
import concurrent.futures, dataclasses, os, random, re, shutil, subprocess, tempfile
import numpy as np
import pytest
from tg_uop.device import Device
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.runtime.buffer import Buffer
from tg_codegen import examples
from tg_codegen.kernel import Opt
from tg_codegen.program import get_program, CompiledRunner
from tg_codegen.opt.search import random_opts as search_random_opts

PTX, AMD, CUDA, LLVM = "NULL:PTX:sm_90", "NULL:AMDGPU:gfx942", "NULL:CUDA:sm_90", "CPU:LLVM"

KERNELS = [examples.elementwise(24), examples.elementwise(4096), examples.add(100), examples.row_reduce(6, 40), examples.row_reduce(3, 1024),
           examples.row_reduce(5, 12, Ops.MAX), examples.row_reduce(4, 1000, Ops.MAX), examples.matmul(8, 12, 16), examples.matmul(5, 7, 3),
           examples.matmul(64, 64, 64), examples.conv2d(2, 3, 4, 6, 6, 3, 3), examples.conv2d(1, 4, 8, 10, 10, 3, 3)]
SMALL = [ex for ex in KERNELS if all(int(np.prod(s)) <= 2048 for s in ex.shapes)]  # few enough threads for the PYTHON interpreter
SEEDS = range(4)

@pytest.fixture(autouse=True, scope="module")
def _tmp_cache(tmp_path_factory):
  """Compiled programs go to a cache dir of this module's own (cache_dir() reads XDG_CACHE_HOME at call time)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield

def random_opts(ex, ren, rnd: random.Random, n: int = 4) -> list[Opt]:
  return search_random_opts(ex.ast, ren, rnd, n)

def _inputs(ex, seed: int = 0) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [rng.standard_normal(s).astype(np.float32) for s in ex.shapes[1:]]

def _cases():
  """(kernel, seed) pairs: seed None means the heuristic's opts, else random valid opts from that seed."""
  return [pytest.param(ex, s, id=f"{ex.name}-{'heuristic' if s is None else f'seed{s}'}") for ex in KERNELS for s in [None, *SEEDS]]

def _program(ex, dev: str, seed: int | None):
  ren = Device[dev].renderer
  opts = None if seed is None else random_opts(ex, ren, random.Random(1000 + seed))
  return get_program(ex.ast, ren, opts, dev)

def _local_bytes(uops: list[UOp], align: int = 1) -> int:
  """Bytes of shared memory the program declares, each array rounded up to `align` (both targets align shared arrays to 16)."""
  return sum(-(-u.dtype.size * u.dtype.base.itemsize // align) * align for u in uops if u.op is Ops.DEFINE_LOCAL)
def _nparams(uops: list[UOp]) -> tuple[int, int]:
  return sum(u.op is Ops.DEFINE_GLOBAL for u in uops), sum(u.op is Ops.DEFINE_VAR for u in uops)

def _check_launch(spec, ren):
  assert all(g >= 1 for g in spec.global_size) and all(g <= m for g, m in zip(spec.global_size, ren.global_max)), spec.global_size
  assert all(lo <= m for lo, m in zip(spec.local_size, ren.local_max)) and int(np.prod(spec.local_size)) <= 1024, spec.local_size

def run_uops_on_python(ex, spec, inputs: list[np.ndarray]) -> np.ndarray:
  """Interpret another target's linearized program on the PYTHON device (the reference semantics) and return buffer 0."""
  py = dataclasses.replace(spec, src=Device["PYTHON"].renderer.render(spec.name, spec.uops))
  bufs = [Buffer("PYTHON", int(np.prod(s)), ex.dtype).allocate() for s in ex.shapes]
  for b, a in zip(bufs[1:], inputs): b.copyin(memoryview(np.ascontiguousarray(a, dtype=np.float32)).cast("B"))
  CompiledRunner("PYTHON", py)(bufs, wait=True)
  out = np.empty(ex.shapes[0], dtype=np.float32)
  bufs[0].copyout(memoryview(out).cast("B"))
  return out

# ---------------- PTX for sm_90 ----------------

def find_tool(name: str) -> str | None:
  """`name` on PATH or in /usr/local/cuda/bin, else None."""
  return shutil.which(name) or (p if os.path.exists(p := f"/usr/local/cuda/bin/{name}") else None)

def ptxas_report(ptx: str, arch: str = "sm_90") -> str:
  """ptxas -v's report (skips without ptxas, fails with ptxas's errors and the source)."""
  if (ptxas := find_tool("ptxas")) is None: pytest.skip("ptxas is not on PATH nor in /usr/local/cuda/bin: install the CUDA toolkit")
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "k.ptx")
    with open(path, "w") as f: f.write(ptx)
    res = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", os.path.join(d, "k.cubin")], capture_output=True, text=True)
  assert res.returncode == 0, f"ptxas failed:\n{res.stderr}\n--- source ---\n{ptx}"
  return res.stderr + res.stdout

def _entry_params(ptx: str, name: str) -> int:
  m = re.search(rf"\.entry\s+{re.escape(name)}\s*\((.*?)\)", ptx, re.S)
  assert m is not None, f"no .entry {name} in\n{ptx}"
  return len(re.findall(r"\.param\b", m.group(1)))

@pytest.mark.parametrize("ex,seed", _cases())
def test_ptx_for_sm90_assembles_with_the_programs_params_and_shared_memory(ex, seed):
  spec = _program(ex, PTX, seed)
  _check_launch(spec, Device[PTX].renderer)
  report = ptxas_report(spec.src)
  assert re.search(r"^\s*\.target\s+sm_90", spec.src, re.M), "the PTX targets another arch"
  assert _entry_params(spec.src, spec.name) == sum(_nparams(spec.uops))
  smem = int(m.group(1)) if (m := re.search(r"(\d+) bytes smem", report)) else 0
  # each shared array is 16-byte aligned, so ptxas may count padding between them
  assert _local_bytes(spec.uops) <= smem <= _local_bytes(spec.uops, 16), f"ptxas reports {smem} bytes of shared memory:\n{report}"

@pytest.mark.parametrize("ex,seed", [pytest.param(ex, s, id=f"{ex.name}-{'heuristic' if s is None else f'seed{s}'}")
                                     for ex in SMALL for s in [None, 0, 1]])
def test_ptx_lowered_program_computes_the_reference(ex, seed):
  # the program handed to the PTX renderer (its vector widths, its grid, its decompositions) interpreted with exact semantics
  spec = _program(ex, PTX, seed)
  ins = _inputs(ex, seed or 0)
  np.testing.assert_allclose(run_uops_on_python(ex, spec, ins), ex.reference(*ins), rtol=1e-4, atol=1e-4,
                             err_msg=f"{ex.name} lowered for PTX with {spec.info.opts}")

# ---------------- AMDGPU for gfx942 ----------------

def _amdgpu():
  llvm = pytest.importorskip("llvmlite.binding")
  llvm.initialize_all_targets()
  try: llvm.Target.from_triple("amdgcn-amd-amdhsa")
  except RuntimeError as e: pytest.skip(f"llvmlite's LLVM has no AMDGPU target: {e}")
  from tg_codegen.renderer import amdgpu
  return amdgpu

@pytest.mark.parametrize("ex,seed", _cases())
def test_amdgpu_for_gfx942_assembles_with_a_matching_kernel_descriptor(ex, seed):
  amdgpu = _amdgpu()
  spec = _program(ex, AMD, seed)
  _check_launch(spec, Device[AMD].renderer)
  kd = amdgpu.kernel_descriptor(amdgpu.compile_amdgpu(spec.src, "gfx942"), spec.name)
  nbufs, nvars = _nparams(spec.uops)
  assert kd["kernarg_size"] == 8 * nbufs + 4 * nvars
  assert _local_bytes(spec.uops) <= kd["group_segment_fixed_size"] <= _local_bytes(spec.uops, 16)
  if len([u for u in spec.uops if u.op is Ops.DEFINE_LOCAL]) <= 1: assert kd["group_segment_fixed_size"] == _local_bytes(spec.uops)
  assert kd["kernel_code_entry_byte_offset"] != 0 and kd["entry_address"] % 256 == 0

@pytest.mark.parametrize("ex", [ex for ex in SMALL if ex.name.startswith(("reduce", "matmul"))], ids=lambda e: e.name)
def test_amdgpu_lowered_program_computes_the_reference(ex):
  spec = _program(ex, AMD, None)
  ins = _inputs(ex)
  np.testing.assert_allclose(run_uops_on_python(ex, spec, ins), ex.reference(*ins), rtol=1e-4, atol=1e-4)

def test_targets_see_the_opts_that_fit_them():
  # the heuristic uses workgroups and shared memory on the GPU targets (a long reduce is spread over a workgroup), none on the CPU
  ex = examples.row_reduce(3, 1024)
  for dev in (PTX, AMD):
    spec = _program(ex, dev, None)
    assert spec.local_size != (1, 1, 1) and _local_bytes(spec.uops) > 0, f"{dev}: {spec.info.opts}"
  cpu = get_program(ex.ast, Device[LLVM].renderer, None, LLVM)
  assert cpu.local_size == (1, 1, 1) and not any(u.op in (Ops.DEFINE_LOCAL, Ops.BARRIER) for u in cpu.uops)

# ---------------- CUDA C through nvcc ----------------

def test_cuda_c_for_sm90_compiles_with_nvcc():
  # nvcc takes about a second a file: two kernels that use the most features (vectors, unrolled reduce, shared memory, barriers)
  if (nvcc := find_tool("nvcc")) is None: pytest.skip("nvcc is not on PATH nor in /usr/local/cuda/bin: install the CUDA toolkit")
  specs = [_program(examples.matmul(64, 64, 64), CUDA, None), _program(examples.row_reduce(3, 1024), CUDA, None)]
  assert _local_bytes(specs[1].uops) > 0
  def nvcc_ptx(src: str) -> str:
    with tempfile.TemporaryDirectory() as d:
      cu, out = os.path.join(d, "k.cu"), os.path.join(d, "k.ptx")
      with open(cu, "w") as f: f.write(src)
      res = subprocess.run([nvcc, "-ptx", "-arch=sm_90", cu, "-o", out], capture_output=True, text=True)
      assert res.returncode == 0, f"nvcc failed:\n{res.stderr}\n--- source ---\n{src}"
      with open(out) as f: return f.read()
  with concurrent.futures.ThreadPoolExecutor(2) as pool: ptxs = list(pool.map(nvcc_ptx, [s.src for s in specs]))
  for spec, ptx in zip(specs, ptxs):
    assert _entry_params(ptx, spec.name) == sum(_nparams(spec.uops))

# ---------------- LLVM IR on the CPU ----------------

def _llvm_ok() -> str | None:
  try: Device[LLVM]
  except Exception as e: return str(e)
  return None

@pytest.mark.skipif(_llvm_ok() is not None, reason=f"no CPU:LLVM device: {_llvm_ok()}")
@pytest.mark.parametrize("ex,seed", _cases())
def test_llvm_on_cpu_matches_numpy_under_random_opts(ex, seed):
  ins = _inputs(ex, seed or 0)
  ren = Device[LLVM].renderer
  out, spec = examples.run_example(ex, LLVM, ins, None if seed is None else random_opts(ex, ren, random.Random(2000 + seed)))
  assert spec.src.lstrip().startswith(";") and "define void @" in spec.src  # it really is LLVM IR
  np.testing.assert_allclose(out, ex.reference(*ins), rtol=1e-4, atol=1e-4, err_msg=f"{ex.name} on {LLVM} with {spec.info.opts}")

# ---------------- transcendentals ----------------

TRANS = {Ops.EXP2: np.exp2, Ops.LOG2: np.log2, Ops.SIN: np.sin}
N = 64

def _special_values(op: Ops) -> np.ndarray:
  rng = np.random.default_rng(7)
  if op is Ops.LOG2: x = np.concatenate([np.exp2(rng.uniform(-140, 120, N - 8)), [0.0, 1.0, 2.0, 0.5, np.inf, 1e-45, 3.4e38, np.nan]])
  elif op is Ops.EXP2: x = np.concatenate([rng.uniform(-160, 130, N - 8), [0.0, -0.0, 1.0, -1.0, 127.9, -149.5, np.inf, -np.inf]])
  else:
    special = [0.0, -0.0, np.pi, -np.pi / 2, 1e-30, 30000.5, np.inf, np.nan]
    x = np.concatenate([rng.uniform(-100, 100, N - 16), rng.uniform(-1e5, 1e5, 8), special])
  return x.astype(np.float32)

def _reference(op: Ops, x: np.ndarray) -> np.ndarray:
  with np.errstate(all="ignore"): return TRANS[op](x.astype(np.float64)).astype(np.float32)

def unary_kernel(op: Ops) -> examples.ExampleKernel:
  """out[i] = op(a[i])."""
  out, a = examples._g(0, N), examples._g(1, N)
  r = UOp.range(N, 0)
  return examples.ExampleKernel(f"{op.name.lower()}_{N}", UOp.sink(out.index(r).store(a.index(r).load().alu(op)).end(r)), [(N,), (N,)],
                                lambda a: _reference(op, a))

def _close(out: np.ndarray, x: np.ndarray, op: Ops, what: str):
  ref = _reference(op, x)
  # a few ulp of float32, absolute near zero (sin of a multiple of pi)
  np.testing.assert_allclose(out, ref, rtol=5e-6, atol=1e-6 if op is Ops.SIN else 0, equal_nan=True, err_msg=f"{op.name} {what}")

@pytest.mark.parametrize("op", list(TRANS), ids=lambda o: o.name)
@pytest.mark.parametrize("dev", [PTX, AMD])
def test_renderers_without_transcendentals_get_them_decomposed(op, dev):
  # AMDGPU has none natively; PTX has EXP2 on float32 (ex2.approx.f32) and keeps it, the others are decomposed
  ren = Device[dev].renderer
  assert ren.supports(op, dtypes.float32) == (dev == PTX and op is Ops.EXP2)
  spec = get_program(unary_kernel(op).ast, ren, None, dev)
  left = {u.op for u in spec.uops} & {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW}
  assert left == ({op} if ren.supports(op, dtypes.float32) else set()), f"{dev} left {left} in the program"
  if dev == PTX: ptxas_report(spec.src)
  else:
    amdgpu = _amdgpu()
    amdgpu.kernel_descriptor(amdgpu.compile_amdgpu(spec.src), spec.name)

@pytest.mark.parametrize("op", list(TRANS), ids=lambda o: o.name)
def test_decomposed_transcendental_matches_numpy(op):
  # the AMDGPU program (decomposed, vectorized) interpreted exactly: range reduction must hold over the whole float range
  ex = unary_kernel(op)
  x = _special_values(op)
  spec = get_program(ex.ast, Device[AMD].renderer, None, AMD)
  assert op not in {u.op for u in spec.uops}
  _close(run_uops_on_python(ex, spec, [x]), x, op, "decomposed for AMDGPU")

@pytest.mark.parametrize("op", list(TRANS), ids=lambda o: o.name)
@pytest.mark.parametrize("dev", ["PYTHON", "CPU", LLVM])
def test_native_transcendental_matches_numpy(op, dev):
  if dev != "PYTHON" and (why := _llvm_ok() if dev == LLVM else None): pytest.skip(why)
  assert op in Device[dev].renderer.supported_ops
  ex = unary_kernel(op)
  x = _special_values(op)
  out, spec = examples.run_example(ex, dev, [x])
  assert op in {u.op for u in spec.uops}
  _close(out, x, op, f"on {dev}")

def test_pow_is_decomposed_for_the_c_renderer_and_matches_numpy():
  # the C renderer has no POW: the lowering rewrites it, and the CPU result agrees with numpy and with the PYTHON device's native POW
  out, a, b = examples._g(0, N), examples._g(1, N), examples._g(2, N)
  r = UOp.range(N, 0)
  ex = examples.ExampleKernel("pow", UOp.sink(out.index(r).store(a.index(r).load().alu(Ops.POW, b.index(r).load())).end(r)),
                              [(N,), (N,), (N,)], lambda a, b: np.power(a.astype(np.float64), b).astype(np.float32))
  rng = np.random.default_rng(3)
  base, ex_ = rng.uniform(0.01, 10, N).astype(np.float32), rng.uniform(-8, 8, N).astype(np.float32)
  base[:4], ex_[:4] = [2.0, 0.0, 1.0, 3.0], [10.0, 2.0, 0.0, -2.0]
  ren = Device["CPU"].renderer
  if Ops.POW in ren.supported_ops: pytest.skip("this C renderer has POW natively")
  got, spec = examples.run_example(ex, "CPU", [base, ex_])
  assert Ops.POW not in {u.op for u in spec.uops}
  ref = ex.reference(base, ex_)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  np.testing.assert_allclose(examples.run_example(ex, "PYTHON", [base, ex_])[0], ref, rtol=1e-5)
