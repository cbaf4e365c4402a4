"""CUDARenderer: every program compiles with `nvcc -ptx` for sm_90, nvcc's PTX assembles with ptxas (sm_90 and sm_80), and the
compiled kernels have the structure the program asks for (parameters, launch bounds, shared memory, no spills). On a machine with
an NVIDIA GPU (libcuda) the kernels also run and match the reference results."""
from __future__ import annotations
import concurrent.futures, importlib.util, os, pathlib, re, subprocess, sys, tempfile
import pytest
from tg_uop.dtype import dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import ConformanceProgram, check_results, linearize_steps
from tg_codegen.renderer.cuda import CUDARenderer, MMA_TENSOR_CORES

def _load_sibling(name: str):
  # the GPU-style programs and the toolchain helpers live in test_ptx.py; tests run in importlib mode, so load it by path
  if (mod := sys.modules.get(f"_tg_codegen_tests_{name}")) is not None: return mod
  spec = importlib.util.spec_from_file_location(f"_tg_codegen_tests_{name}", pathlib.Path(__file__).with_name(f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod

T = _load_sibling("test_ptx")
ALL: list[ConformanceProgram] = T.ALL
CASTS = [T.cast_program(s, d) for s in T.CAST_DTYPES for d in T.CAST_DTYPES if s != d]

def nvcc_ptx(src: str, arch: str = "sm_90") -> str:
  """nvcc's PTX for CUDA C `src` (raises with nvcc's errors)."""
  nvcc = T.find_tool("nvcc")
  with tempfile.TemporaryDirectory() as d:
    cu, out = os.path.join(d, "k.cu"), os.path.join(d, "k.ptx")
    with open(cu, "w") as f: f.write(src)
    res = subprocess.run([nvcc, "-ptx", f"-arch={arch}", cu, "-o", out], capture_output=True, text=True)
    if res.returncode != 0: raise RuntimeError(f"nvcc failed:\n{res.stderr}\n--- source ---\n{src}")
    with open(out) as f: return f.read()

@pytest.fixture(scope="module")
def compiled() -> dict[str, str | Exception]:
  """nvcc's PTX (or the error) for every program and a file of every cast, compiled in parallel (nvcc takes about a second each)."""
  if T.find_tool("nvcc") is None: pytest.skip("nvcc is not on PATH nor in /usr/local/cuda/bin: install the CUDA toolkit")
  r = CUDARenderer()
  jobs = {p.name: r.render(p.name, p.uops) for p in ALL}
  # casts need no helper structs, so they share one translation unit
  jobs["all_casts"] = "\n".join(r.render(p.name, p.uops) for p in CASTS)
  def one(src: str):
    try: return nvcc_ptx(src)
    except Exception as e: return e
  with concurrent.futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
    return dict(zip(jobs, ex.map(one, jobs.values())))

def _ptx_of(compiled, name: str) -> str:
  got = compiled[name]
  if isinstance(got, Exception): raise got
  return got

@pytest.mark.parametrize("prog", ALL, ids=lambda p: p.name)
def test_program_compiles_and_assembles(compiled, prog: ConformanceProgram):
  ptx = _ptx_of(compiled, prog.name)
  assert T.entry_params(ptx) == len(prog.bufs) + len(prog.vals)
  for arch in T.ARCHS:
    report = T.assemble(ptx.replace(".target sm_90", f".target {arch}"), arch)
    assert T.spill_bytes(report) == 0, report

def test_every_cast_compiles(compiled):
  ptx = _ptx_of(compiled, "all_casts")
  assert len(re.findall(r"\.entry\s", ptx)) == len(CASTS)
  T.assemble(ptx, "sm_90")

@pytest.mark.parametrize("name", ["local_reverse", "local_reduce"])
def test_shared_memory_size_matches_define_local(compiled, name: str):
  prog = next(p for p in ALL if p.name == name)
  want = sum(u.dtype.size * u.dtype.base.itemsize for u in prog.uops if u.op is Ops.DEFINE_LOCAL)
  assert want > 0 and T.smem_bytes(T.assemble(_ptx_of(compiled, name), "sm_90")) == want

def test_launch_dims_map_to_block_and_thread_ids(compiled):
  ptx = _ptx_of(compiled, "local_reduce")
  assert re.search(r"\.maxntid 64, 1, 1", ptx)
  assert "%ctaid.x" in ptx and "%tid.x" in ptx and "bar.sync" in ptx

def test_wmma_uses_tensor_core_instruction(compiled):
  for tc in MMA_TENSOR_CORES:
    it = "f16" if tc.dtype_in == dtypes.float16 else "bf16"
    assert re.search(rf"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.{it}\.{it}\.f32", _ptx_of(compiled, f"wmma_{tc.dtype_in.name.strip('_')}"))

def test_headers_only_when_needed():
  r = CUDARenderer()
  plain = next(p for p in ALL if p.name == "elementwise")
  assert "#include" not in r.render(plain.name, plain.uops)
  half = next(p for p in ALL if p.name == "cast_half")
  src = r.render(half.name, half.uops)
  assert "cuda_fp16.h" in src and "cuda_bf16.h" in src

def test_transcendentals_are_native_but_pow_is_not():
  assert {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.SQRT} <= CUDARenderer.supported_ops
  assert Ops.POW not in CUDARenderer.supported_ops and Ops.THREEFRY not in CUDARenderer.supported_ops
  a = T._g(0, dtypes.float32, 1)
  st = a.index(T._c(0)).store(UOp(Ops.POW, dtypes.float32, (a.index(T._c(0)).load(), UOp.const(dtypes.float32, 2.0))))
  with pytest.raises(ValueError, match="POW.*supported_ops"): CUDARenderer().render("k", linearize_steps(UOp.sink(st), st))

def test_renderer_attributes():
  r = CUDARenderer()
  assert (r.device, r.suffix, r.arch, r.has_local, r.has_shared, r.supports_float4) == ("CUDA", "CUDA", "sm_90", True, True, True)
  assert r.local_max == (1024, 1024, 64) and r.global_max == (2**31 - 1, 65535, 65535)
  # shared memory per block: the static 48 KB for opts; wgmma's pipeline stages may use dynamic shared memory: 163 KB on sm_80,
  # 227 KB on sm_90
  assert r.shared_max == 49152 and (CUDARenderer("sm_75").shared_max_dynamic, CUDARenderer("sm_80").shared_max_dynamic,
                                    r.shared_max_dynamic) == (49152, 166912, 232448)
  assert len(r.tensor_cores) == 2 and CUDARenderer("sm_75").tensor_cores == []
  with pytest.raises(ValueError, match="sm_90"): CUDARenderer("volta")
  with pytest.raises(ValueError, match="identifier"): r.render("1bad", [UOp.sink()])

def _gpu_ptx(src: str, arch: str) -> str:
  if T.find_tool("nvcc") is not None: return nvcc_ptx(src, arch)
  pytest.skip("no nvcc to compile CUDA C on this GPU machine")

@pytest.mark.parametrize("prog", T.renderable(ALL + CASTS, CUDARenderer()))
def test_gpu_runs_match_reference(prog: ConformanceProgram):
  gpu = T.CudaRunner()
  arch = gpu.arch if int(gpu.arch[3:]) <= 90 else "sm_90"
  err = check_results(prog, gpu.run(prog, _gpu_ptx(CUDARenderer(arch).render(prog.name, prog.uops), arch)))
  assert err is None, err
