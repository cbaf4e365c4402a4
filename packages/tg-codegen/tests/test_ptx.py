"""PTXRenderer: every program assembles with ptxas for sm_90 and sm_80, and the assembled kernels have the structure the program
asks for (parameters, shared memory, no spills). On a machine with an NVIDIA GPU (libcuda), the kernels also run and match numpy.

The GPU-style programs built here (launch through gidx/lidx, local reductions, tensor cores, every int dtype) are reused by
test_cuda_renderer.py."""
from __future__ import annotations
import ctypes, ctypes.util, math, os, re, shutil, subprocess, tempfile
import numpy as np
import pytest
from tg_uop.alu import exec_alu
from tg_uop.dtype import DType, dtypes, to_np_name
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import ConformanceProgram, all_programs, linearize_steps, validate_linear, unsupported, check_results
from tg_codegen.renderer.cuda import TensorCore, MMA_TENSOR_CORES
from tg_codegen.renderer.ptx import PTXRenderer

ARCHS = ("sm_90", "sm_80")

# ---------------- toolchain ----------------

def find_tool(name: str) -> str | None:
  """`name` on PATH or in /usr/local/cuda/bin, else None."""
  return shutil.which(name) or (p if os.path.exists(p := f"/usr/local/cuda/bin/{name}") else None)

def assemble(ptx: str, arch: str) -> str:
  """ptxas -v's report for `ptx` (skips the test without ptxas; fails with ptxas's errors)."""
  if (ptxas := find_tool("ptxas")) is None: pytest.skip("ptxas is not on PATH nor in /usr/local/cuda/bin: install the CUDA toolkit")
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "k.ptx")
    with open(path, "w") as f: f.write(ptx)
    res = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", os.path.join(d, "k.cubin")], capture_output=True, text=True)
  assert res.returncode == 0, f"ptxas failed:\n{res.stderr}\n--- source ---\n{ptx}"
  return res.stderr + res.stdout

def smem_bytes(report: str) -> int: return int(m.group(1)) if (m := re.search(r"(\d+) bytes smem", report)) else 0
def spill_bytes(report: str) -> int: return sum(int(x) for x in re.findall(r"(\d+) bytes spill (?:stores|loads)", report))
def entry_params(ptx: str) -> int:
  """How many parameters the .entry declares."""
  m = re.search(r"\.entry\s+\w+\s*\((.*?)\)", ptx, re.S)
  assert m is not None, ptx
  return len(re.findall(r"\.param\b", m.group(1)))

# ---------------- GPU-style programs ----------------

def _g(i: int, dt: DType, n: int) -> UOp: return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)
def _c(v, dt: DType = dtypes.index) -> UOp: return UOp.const(dt, v)
def _np_dt(dt: DType): return np.dtype(to_np_name(dt))

def local_reduce(blocks: int = 3, threads: int = 64, per: int = 4) -> ConformanceProgram:
  """Row sums: each of `threads` threads sums `per` elements into a DEFINE_REG, writes it to DEFINE_LOCAL, BARRIER, lidx0 == 0 adds
  the partial sums and stores the row's sum."""
  n = threads * per
  out, a = _g(0, dtypes.float32, blocks), _g(1, dtypes.float32, blocks * n)
  g, l = UOp.special(blocks, "gidx0"), UOp.special(threads, "lidx0")
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 0)
  acc2 = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 1)
  lm = UOp(Ops.DEFINE_LOCAL, dtypes.float32.ptr(threads, "local"), (), 0)
  r, r2 = UOp.range(per, 0), UOp.range(threads, 1)
  init = acc.index(_c(0)).store(_c(0.0, dtypes.float32))
  upd = acc.index(_c(0)).store(acc.index(_c(0)).load() + a.index(g * n + r * threads + l).load())
  endr = upd.end(r)
  st_l = lm.index(l).store(acc.index(_c(0, dtypes.int32)).load())
  bar = UOp(Ops.BARRIER, dtypes.void, (st_l,))
  if_ = UOp(Ops.IF, dtypes.void, (l.eq(0),))
  init2 = acc2.index(_c(0)).store(_c(0.0, dtypes.float32))
  upd2 = acc2.index(_c(0)).store(acc2.index(_c(0)).load() + lm.index(r2).load())
  endr2 = upd2.end(r2)
  final = acc2.index(_c(0, dtypes.int32)).load()
  st = out.index(g).store(final)
  endif = UOp(Ops.ENDIF, dtypes.void, (if_,))
  sink = UOp.sink(endif, st, bar)
  uops = linearize_steps(sink, g, l, init, r, upd, endr, st_l, bar, if_, init2, r2, upd2, endr2, final, st, endif)
  x = np.random.default_rng(0).standard_normal((blocks, n)).astype(np.float32)
  return ConformanceProgram("local_reduce", uops, [(dtypes.float32, blocks), (dtypes.float32, blocks * n)], {1: x.reshape(-1)},
                            {0: x.sum(axis=1)}, global_size=(blocks, 1, 1), local_size=(threads, 1, 1), requires=frozenset({"local"}),
                            rtol=1e-4, atol=1e-4, description="reduce through DEFINE_LOCAL + BARRIER")

def gpu_matmul(m: int = 32, n: int = 64, k: int = 48, up: int = 4) -> ConformanceProgram:
  """c = a @ b with gidx0 over rows, lidx0 over column groups, `up` constant-indexed accumulators per thread and a loop over k."""
  c, a, b = _g(0, dtypes.float32, m * n), _g(1, dtypes.float32, m * k), _g(2, dtypes.float32, k * n)
  g, l = UOp.special(m, "gidx0"), UOp.special(n // up, "lidx0")
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(up, "reg"), (), 0)
  r = UOp.range(k, 0)
  inits = [acc.index(_c(j)).store(_c(0.0, dtypes.float32)) for j in range(up)]
  av = a.index(g * k + r).load()
  upds = [acc.index(_c(j)).store(UOp(Ops.MULACC, dtypes.float32, (av, b.index(r * n + l * up + j).load(), acc.index(_c(j)).load())))
          for j in range(up)]
  endr = UOp(Ops.END, dtypes.void, (*upds, r))
  finals = [acc.index(_c(j, dtypes.int32)).load() for j in range(up)]
  sts = [c.index(g * n + l * up + j).store(f) for j, f in enumerate(finals)]
  sink = UOp.sink(*sts)
  uops = linearize_steps(sink, g, l, *inits, l * up, g * n, *[g * n + l * up + j for j in range(up)], r, *upds, endr, *finals, *sts)
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
  return ConformanceProgram("gpu_matmul", uops, [(dtypes.float32, m * n), (dtypes.float32, m * k), (dtypes.float32, k * n)],
                            {1: x.reshape(-1), 2: y.reshape(-1)}, {0: (x @ y).reshape(-1)}, global_size=(m, 1, 1),
                            local_size=(n // up, 1, 1), rtol=1e-4, atol=1e-4, description="matmul with MULACC into register accumulators")

INT_DTYPES = (dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64)
INT_BINARY = (Ops.ADD, Ops.SUB, Ops.MUL, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR, Ops.CMPLT,
              Ops.CMPNE, Ops.CMPEQ)

def int_ops(dt: DType) -> ConformanceProgram:
  """Every int ALU op on `dt` with C semantics (wrap-around, truncating division, logical SHR for unsigned), against exec_alu."""
  lo, hi = dtypes.min(dt), dtypes.max(dt)
  avals = [7, -7, 7, -7, 0, 13, hi, lo, lo, 100, -100, 1, 5, -1, hi - 3, 3]
  bvals = [2, 2, -2, -2, 3, 5, 2, 2, 3, -7, 7, 1, 4, 3, 7, 1]  # no MIN / -1: C leaves it undefined
  a = np.array([dtypes.as_const(v, dt) for v in avals], dtype=_np_dt(dt))
  b = np.array([dtypes.as_const(v, dt) for v in bvals], dtype=_np_dt(dt))
  b = np.where(b == 0, 1, b).astype(_np_dt(dt))
  nb = len(a)
  ops = [*INT_BINARY, Ops.NEG, Ops.WHERE, Ops.MULACC]
  outs = [_g(i, dtypes.bool if op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ) else dt, nb) for i, op in enumerate(ops)]
  ga, gb = _g(len(ops), dt, nb), _g(len(ops) + 1, dt, nb)
  g = UOp.special(nb, "gidx0")
  av, bv = ga.index(g).load(), gb.index(g).load()
  sh = bv & (8 * dt.itemsize - 1)  # C leaves shifts by >= the width undefined; keep them in range
  vals, exp = [], {}
  for i, op in enumerate(ops):
    if op in (Ops.SHL, Ops.SHR): u, args = UOp(op, dt, (av, sh)), [(x, y & (8 * dt.itemsize - 1)) for x, y in zip(a.tolist(), b.tolist())]
    elif op is Ops.NEG: u, args = UOp(Ops.NEG, dt, (av,)), [(x,) for x in a.tolist()]
    elif op is Ops.WHERE: u, args = UOp(Ops.WHERE, dt, (av < bv, av, bv)), [(x < y, x, y) for x, y in zip(a.tolist(), b.tolist())]
    elif op is Ops.MULACC: u, args = UOp(Ops.MULACC, dt, (av, bv, av)), [(x, y, x) for x, y in zip(a.tolist(), b.tolist())]
    else: u, args = UOp(op, outs[i].dtype.base, (av, bv)), list(zip(a.tolist(), b.tolist()))
    vals.append(u)
    exp[i] = np.array([exec_alu(op, outs[i].dtype.base, t) for t in args], dtype=_np_dt(outs[i].dtype.base))
  sts = [o.index(g).store(v) for o, v in zip(outs, vals)]
  sink = UOp.sink(*sts)
  return ConformanceProgram(f"int_ops_{to_np_name(dt)}", linearize_steps(sink, g, *sts), [(o.dtype.base, nb) for o in outs] + [(dt, nb)] * 2,
                            {len(ops): a, len(ops) + 1: b}, exp, global_size=(nb, 1, 1), description=f"{dt} ALU with C semantics")

CAST_DTYPES = (dtypes.bool, *INT_DTYPES, dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64)

def cast_program(src: DType, dst: DType) -> ConformanceProgram:
  """out[i] = (dst)in[i] for a few values, through float32 host buffers where numpy lacks the dtype (bfloat16)."""
  vals = [0.0, 1.0, -1.0, 2.5, -2.5, 100.75, -100.75, 1 / 3, 3.0, 7.5, 65504.0, -3.7]
  if not dtypes.is_float(src): vals = [v for v in vals if abs(v) < 100]
  x = [dtypes.as_const(v, src) for v in vals]
  if dtypes.is_float(src) and dtypes.is_int(dst):  # C leaves float -> int undefined outside dst's range
    x = [v for v in x if dtypes.min(dst) <= int(v) <= dtypes.max(dst)]
  n = len(x)
  host_src, host_dst = (src if src != dtypes.bfloat16 else dtypes.float32), (dst if dst != dtypes.bfloat16 else dtypes.float32)
  out, inp = _g(0, host_dst, n), _g(1, host_src, n)
  g = UOp.special(n, "gidx0")
  v = inp.index(g).load()
  if src == dtypes.bfloat16: v = v.cast(dtypes.bfloat16)
  w = v.cast(dst)
  if dst == dtypes.bfloat16: w = w.cast(dtypes.float32)
  st = out.index(g).store(w)
  sink = UOp.sink(st)
  exp = [dtypes.as_const(dtypes.as_const(e, dst) if not (dtypes.is_float(src) and dtypes.is_int(dst)) else int(e), dst) for e in x]
  return ConformanceProgram(f"cast_{src.name}_{dst.name}".replace(" ", "_"), linearize_steps(sink, g, st), [(host_dst, n), (host_src, n)],
                            {1: np.array(x, dtype=_np_dt(host_src))}, {0: np.array(exp, dtype=_np_dt(host_dst))}, global_size=(n, 1, 1),
                            rtol=0, atol=0, description=f"CAST {src} -> {dst}")

def wmma_program(tc: TensorCore = MMA_TENSOR_CORES[0]) -> ConformanceProgram:
  """One warp computes D = A @ B + C (16x16 @ 16x8, float32 C) with a WMMA: each lane loads its fragment elements by the layout."""
  m, n, k = tc.dims
  host_in = tc.dtype_in if tc.dtype_in != dtypes.bfloat16 else dtypes.float32
  d, a, b, c = _g(0, dtypes.float32, m * n), _g(1, host_in, m * k), _g(2, host_in, k * n), _g(3, dtypes.float32, m * n)
  lane = UOp.special(tc.threads, "lidx0")
  g, t = lane // 4, lane % 4
  def ld(buf, idx):
    v = buf.index(idx).load()
    return v.cast(tc.dtype_in) if v.dtype != tc.dtype_in else v
  # element i's (row, col) as index expressions of the lane, following TensorCore.a_elem/b_elem/c_elem
  a_frag = UOp.vectorize(*(ld(a, (g + 8 * ((i // 2) % 2)) * k + t * 2 + (i % 2) + 8 * (i // 4)) for i in range(8)))
  b_frag = UOp.vectorize(*(ld(b, (t * 2 + (i % 2) + 8 * (i // 2)) * n + g) for i in range(4)))
  c_pos = [(g + 8 * (i // 2)) * n + t * 2 + (i % 2) for i in range(4)]
  c_frag = UOp.vectorize(*(c.index(p).load() for p in c_pos))
  w = UOp(Ops.WMMA, dtypes.float32.vec(4), (a_frag, b_frag, c_frag), tc.wmma_arg())
  sts = [d.index(p).store(w.gep(i)) for i, p in enumerate(c_pos)]
  sink = UOp.sink(*sts)
  rng = np.random.default_rng(2)
  to_in = lambda x: x.astype(np.float16) if tc.dtype_in == dtypes.float16 else \
    np.array([dtypes.as_const(float(v), dtypes.bfloat16) for v in x.reshape(-1)], np.float32).reshape(x.shape)
  x, y = to_in(rng.standard_normal((m, k))), to_in(rng.standard_normal((k, n)))
  z = rng.standard_normal((m, n)).astype(np.float32)
  ref = (x.astype(np.float64) @ y.astype(np.float64) + z).astype(np.float32)
  return ConformanceProgram(f"wmma_{tc.dtype_in.name.strip('_')}", linearize_steps(sink, lane, *sts),
                            [(dtypes.float32, m * n), (host_in, m * k), (host_in, k * n), (dtypes.float32, m * n)],
                            {1: x.reshape(-1), 2: y.reshape(-1), 3: z.reshape(-1)}, {0: ref.reshape(-1)}, local_size=(tc.threads, 1, 1),
                            rtol=1e-2, atol=1e-2, description=f"m16n8k16 {tc.dtype_in} tensor core")

def half_elementwise(dt: DType = dtypes.float16, blocks: int = 4, threads: int = 32) -> ConformanceProgram:
  """out = max(a*b + a, 0) in float16/bfloat16 (bf16 through float32 buffers), gidx0 x lidx0 launch, float16 vector loads."""
  n = blocks * threads
  host = dt if dt == dtypes.float16 else dtypes.float32
  out, a, b = _g(0, host, n), _g(1, host, n), _g(2, host, n)
  g, l = UOp.special(blocks, "gidx0"), UOp.special(threads, "lidx0")
  i = g * threads + l
  av, bv = a.index(i).load().cast(dt), b.index(i).load().cast(dt)
  r = (av * bv + av).maximum(_c(0.0, dt))
  st = out.index(i).store(r.cast(host))
  sink = UOp.sink(st)
  rng = np.random.default_rng(3)
  q = lambda x: np.array([dtypes.as_const(float(v), dt) for v in x], dtype=np.float32)
  x, y = q(rng.standard_normal(n) * 4), q(rng.standard_normal(n) * 4)
  e = q(np.maximum(q(q(x * y) + x), 0))
  return ConformanceProgram(f"half_elementwise_{dt.name.strip('_')}", linearize_steps(sink, g, l, st), [(host, n)] * 3,
                            {1: x.astype(_np_dt(host)), 2: y.astype(_np_dt(host))}, {0: e.astype(_np_dt(host))}, global_size=(blocks, 1, 1),
                            local_size=(threads, 1, 1), rtol=0, atol=0, description=f"{dt} elementwise rounding once per op")

def vector_half(rows: int = 8) -> ConformanceProgram:
  """half4 vector loads/stores at aligned indices and a misaligned half2 load split into scalar loads."""
  n = rows * 4
  out, a = _g(0, dtypes.float16, n), _g(1, dtypes.float16, n + 1)
  g = UOp.special(rows, "gidx0")
  v = UOp(Ops.LOAD, dtypes.float16.vec(4), (a.index(g * 4),))
  mis = UOp(Ops.LOAD, dtypes.float16.vec(2), (a.index(g * 4 + 1),))  # odd index: not provably aligned
  s = UOp.vectorize(v.gep(0) + mis.gep(1), v.gep(1), v.gep(2), v.gep(3) + mis.gep(0))
  st = out.index(g * 4).store(s)
  sink = UOp.sink(st)
  x = np.arange(n + 1, dtype=np.float16) / 4
  xa = x[:n].reshape(rows, 4).copy()
  e = xa.copy()
  e[:, 0] = xa[:, 0] + x[2:n + 2:4]
  e[:, 3] = xa[:, 3] + x[1:n + 1:4]
  return ConformanceProgram("vector_half", linearize_steps(sink, g, st), [(dtypes.float16, n), (dtypes.float16, n + 1)], {1: x},
                            {0: e.reshape(-1)}, global_size=(rows, 1, 1), requires=frozenset({"float4"}), rtol=0, atol=0,
                            description="half vectors, aligned and not")

def nan_max() -> ConformanceProgram:
  """MAX propagates nan from either side, for float32, float16 and float64 (as exec_alu and PyTorch), and CMPNE is true for nan."""
  a = [math.nan, 1.0, math.nan, -math.inf, 2.0, -0.5]
  b = [1.0, math.nan, math.nan, 3.0, -1.0, -0.25]
  n = len(a)
  fdts = (dtypes.float32, dtypes.float16, dtypes.float64)
  outs = [_g(i, dt, n) for i, dt in enumerate(fdts)] + [_g(3, dtypes.bool, n)]
  ins = [(_g(4 + 2 * i, dt, n), _g(5 + 2 * i, dt, n)) for i, dt in enumerate(fdts)]
  g = UOp.special(n, "gidx0")
  vals = [x.index(g).load().maximum(y.index(g).load()) for x, y in ins]
  vals.append(ins[0][0].index(g).load().ne(ins[0][1].index(g).load()))
  sts = [o.index(g).store(v) for o, v in zip(outs, vals)]
  sink = UOp.sink(*sts)
  exp = {i: np.array([exec_alu(Ops.MAX, dt, (x, y)) for x, y in zip(a, b)], _np_dt(dt)) for i, dt in enumerate(fdts)}
  exp[3] = np.array([x != y for x, y in zip(a, b)])
  inputs = {k: np.array(v, _np_dt(dt)) for i, dt in enumerate(fdts) for k, v in ((4 + 2 * i, a), (5 + 2 * i, b))}
  return ConformanceProgram("nan_max", linearize_steps(sink, g, *sts), [(dt, n) for dt in fdts] + [(dtypes.bool, n)] +
                            [(dt, n) for dt in fdts for _ in range(2)], inputs, exp, global_size=(n, 1, 1), rtol=0, atol=0,
                            description="nan-propagating MAX")

def gpu_programs() -> list[ConformanceProgram]:
  """Every GPU-style program of this file (the conformance programs come from tg_uop.testing)."""
  return [local_reduce(), gpu_matmul(), nan_max(), *(int_ops(dt) for dt in INT_DTYPES), wmma_program(MMA_TENSOR_CORES[0]),
          wmma_program(MMA_TENSOR_CORES[1]), half_elementwise(dtypes.float16), half_elementwise(dtypes.bfloat16), vector_half()]

def renderable(progs: list[ConformanceProgram], renderer) -> list:
  """pytest params of the programs `renderer` takes as written (others would be lowered first), each validated."""
  out = []
  for p in progs:
    validate_linear(p.uops)
    out.append(pytest.param(p, id=p.name, marks=pytest.mark.skip(reason=why)) if (why := unsupported(p, renderer)) else pytest.param(p, id=p.name))
  return out

ALL = all_programs() + gpu_programs()

# ---------------- a minimal libcuda runner for the GPU tests ----------------

def _libcuda():
  try: return ctypes.CDLL(ctypes.util.find_library("cuda") or "libcuda.so.1")
  except OSError: return None

class CudaRunner:
  """Loads PTX with the driver API and runs a ConformanceProgram (tests only: the real driver lives in tg-driver-nv)."""
  def __init__(self):
    self.cu = cu = _libcuda()
    if cu is None: pytest.skip("no libcuda: these tests need an NVIDIA GPU and driver")
    if cu.cuInit(0) != 0: pytest.skip("cuInit failed: no usable NVIDIA GPU")
    dev, self.ctx = ctypes.c_int(), ctypes.c_void_p()
    self.check(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    self.check(cu.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), dev), "cuDevicePrimaryCtxRetain")
    self.check(cu.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
    major, minor = ctypes.c_int(), ctypes.c_int()
    cu.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
    cu.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
    self.arch = f"sm_{major.value}{minor.value}"
  def check(self, status: int, what: str):
    if status != 0: raise RuntimeError(f"{what} failed with CUresult {status}")
  def run(self, prog: ConformanceProgram, ptx: str) -> dict[int, np.ndarray]:
    cu = self.cu
    mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
    log = ctypes.create_string_buffer(8192)
    opts = (ctypes.c_int * 2)(5, 6)  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
    vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(8192))
    st = cu.cuModuleLoadDataEx(ctypes.byref(mod), ptx.encode() + b"\0", 2, opts, vals)
    if st != 0: raise RuntimeError(f"cuModuleLoadDataEx failed ({st}): {log.value.decode()}")
    self.check(cu.cuModuleGetFunction(ctypes.byref(fn), mod, prog.name.encode()), "cuModuleGetFunction")
    ptrs = []
    try:
      for i, (dt, n) in enumerate(prog.bufs):
        p = ctypes.c_uint64()
        self.check(cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(max(1, dt.itemsize * n))), "cuMemAlloc")
        ptrs.append(p)
        host = np.ascontiguousarray(prog.inputs[i], dtype=_np_dt(dt)) if i in prog.inputs else np.zeros(n, _np_dt(dt))
        self.check(cu.cuMemcpyHtoD_v2(p, host.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(host.nbytes)), "cuMemcpyHtoD")
      args = [*ptrs, *(ctypes.c_int32(v) for v in prog.vals)]
      params = (ctypes.c_void_p * len(args))(*(ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args))
      self.check(cu.cuLaunchKernel(fn, *prog.global_size, *prog.local_size, 0, None, params, None), "cuLaunchKernel")
      self.check(cu.cuCtxSynchronize(), "cuCtxSynchronize")
      out = {}
      for i in prog.expected:
        dt, n = prog.bufs[i]
        host = np.zeros(n, _np_dt(dt))
        self.check(cu.cuMemcpyDtoH_v2(host.ctypes.data_as(ctypes.c_void_p), ptrs[i], ctypes.c_size_t(host.nbytes)), "cuMemcpyDtoH")
        out[i] = host
      return out
    finally:
      for p in ptrs: cu.cuMemFree_v2(p)
      cu.cuModuleUnload(mod)

@pytest.fixture(scope="module")
def gpu():
  return CudaRunner()

# ---------------- tests ----------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("prog", renderable(ALL, PTXRenderer()))
def test_program_assembles_without_spills(prog: ConformanceProgram, arch: str):
  ptx = PTXRenderer(arch).render(prog.name, prog.uops)
  report = assemble(ptx, arch)
  assert entry_params(ptx) == len(prog.bufs) + len(prog.vals)
  assert spill_bytes(report) == 0, report

@pytest.mark.parametrize("prog", [p for p in ALL if p.name in ("local_reverse", "local_reduce")], ids=lambda p: p.name)
def test_shared_memory_size_matches_define_local(prog: ConformanceProgram):
  want = sum(u.dtype.size * u.dtype.base.itemsize for u in prog.uops if u.op is Ops.DEFINE_LOCAL)
  assert want > 0 and smem_bytes(assemble(PTXRenderer().render(prog.name, prog.uops), "sm_90")) == want

def test_constant_indexed_accumulators_live_in_registers():
  prog = gpu_matmul()
  report = assemble(PTXRenderer().render(prog.name, prog.uops), "sm_90")
  assert not re.search(r"[1-9]\d* bytes stack frame", report), report

def test_dynamically_indexed_define_reg_uses_local_memory():
  out = _g(0, dtypes.float32, 4)
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(4, "reg"), (), 0)
  r = UOp.range(4, 0)
  st = acc.index(r).store(r.cast(dtypes.float32))
  e = st.end(r)
  r2 = UOp.range(4, 1)
  st2 = out.index(r2).store(acc.index(_c(3) - r2).load())
  e2 = st2.end(r2)
  uops = linearize_steps(UOp.sink(e, e2), r, st, e, r2, st2, e2)
  ptx = PTXRenderer().render("rev", uops)
  assert re.search(r"\.local\b.*\[16\]", ptx)
  assemble(ptx, "sm_90")

@pytest.mark.parametrize("src", CAST_DTYPES, ids=str)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_cast_assembles(src: DType, arch: str):
  for dst in CAST_DTYPES:
    prog = cast_program(src, dst)
    assemble(PTXRenderer(arch).render(prog.name, prog.uops), arch)

@pytest.mark.parametrize("dt", (dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64), ids=str)
def test_every_float_alu_op_assembles(dt: DType):
  a, b = _g(1, dt, 4), _g(2, dt, 4)
  g = UOp.special(4, "gidx0")
  av, bv = a.index(g).load(), b.index(g).load()
  ops = sorted((op for op in PTXRenderer.supported_ops if PTXRenderer().supports(op, dt)), key=lambda o: o.value)
  vals = []
  for op in ops:
    if op in (Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR): continue
    if op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ): vals.append(UOp(op, dtypes.bool, (av, bv)).where(av, bv))
    elif op is Ops.WHERE: vals.append((av < bv).where(av, bv))
    elif op is Ops.MULACC: vals.append(UOp(op, dt, (av, bv, av)))
    else: vals.append(UOp(op, dt, (av,) if op in (Ops.SQRT, Ops.RECIP, Ops.NEG, Ops.TRUNC, Ops.EXP2, Ops.LOG2) else (av, bv)))
  outs = [_g(3 + i, dt, 4) for i in range(len(vals))]
  sts = [o.index(g).store(v) for o, v in zip(outs, vals)]
  uops = linearize_steps(UOp.sink(*sts), g, *sts)
  ptx = PTXRenderer().render("float_ops", uops)
  assemble(ptx, "sm_90")
  assert ("max.NaN.f32" in ptx) == (dt != dtypes.float64)  # nan-propagating max (f64 uses setp.nan + selp)

def test_vectors_wider_than_16_bytes_are_split_into_16_byte_accesses():
  # 4 x float64 is 32 bytes: ptxas for sm_90 has no 256-bit ld/st, so it becomes two aligned v2.f64 halves (loads and stores)
  out, a = _g(0, dtypes.float64, 16), _g(1, dtypes.float64, 16)
  g = UOp.special(4, "gidx0")
  st = out.index(g * 4).store(UOp(Ops.LOAD, dtypes.float64.vec(4), (a.index(g * 4),)) * 2.0)
  ptx = PTXRenderer().render("k", linearize_steps(UOp.sink(st), g, st))
  assert ".v4.f64" not in ptx and len(re.findall(r"ld\.global\.v2\.f64", ptx)) == 2 and len(re.findall(r"st\.global\.v2\.f64", ptx)) == 2
  assemble(ptx, "sm_90")

HALF_F32 = (dtypes.float16, dtypes.bfloat16, dtypes.float32)

def test_transcendentals_are_native_only_where_ptx_has_an_accurate_instruction():
  # ex2.approx.f32 (CUDA's exp2f, 2 ulp) for f32 and the halves; lg2.approx.f32 only where its 2**-22 absolute error is under half an
  # ulp of the result (the halves); sin.approx never (absolute error, unbounded outside [-pi, pi]); nothing for f64
  r = PTXRenderer()
  native = {op: {dt for dt in (*HALF_F32, dtypes.float64) if r.supports(op, dt)} for op in (Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW)}
  assert native == {Ops.EXP2: set(HALF_F32), Ops.LOG2: {dtypes.float16, dtypes.bfloat16}, Ops.SIN: set(), Ops.POW: set()}

@pytest.mark.parametrize("op,dt", [(Ops.EXP2, dtypes.float64), (Ops.LOG2, dtypes.float32), (Ops.LOG2, dtypes.float64),
                                   (Ops.SIN, dtypes.float32)], ids=str)
def test_renderer_refuses_a_transcendental_the_lowering_must_decompose(op: Ops, dt: DType):
  a = _g(0, dt, 1)
  st = a.index(_c(0)).store(UOp(op, dt, (a.index(_c(0)).load(),)))
  with pytest.raises(ValueError, match=f"{op.name} on {dt}.*decompose"): PTXRenderer().render("k", linearize_steps(UOp.sink(st), st))

def _unary_program(op: Ops, dt: DType, n: int = 4) -> list[UOp]:
  out, a = _g(0, dt, n), _g(1, dt, n)
  g = UOp.special(n, "gidx0")
  st = out.index(g).store(UOp(op, dt, (a.index(g).load(),)))
  return linearize_steps(UOp.sink(st), g, st)

@pytest.mark.parametrize("op,dt", [(Ops.EXP2, dt) for dt in HALF_F32] + [(Ops.LOG2, dtypes.float16), (Ops.LOG2, dtypes.bfloat16)], ids=str)
@pytest.mark.parametrize("arch", ARCHS)
def test_native_exp2_and_log2_are_the_f32_approx_instruction_without_ftz(op: Ops, dt: DType, arch: str):
  # no .ftz: subnormal inputs and results survive (bfloat16 has f32's range); halves go through f32 and round to nearest once
  ptx = PTXRenderer(arch).render("k", _unary_program(op, dt))
  ins = {Ops.EXP2: "ex2", Ops.LOG2: "lg2"}[op]
  assert re.search(rf"^\s*{ins}\.approx\.f32 %f\d+, %f\d+;", ptx, re.M), ptx
  assert ".ftz" not in ptx
  if dt != dtypes.float32: assert f"cvt.rn.{_T_NAME[dt]}.f32" in ptx
  assemble(ptx, arch)

_T_NAME = {dtypes.float16: "f16", dtypes.bfloat16: "bf16"}
LOG2E = math.log2(math.e)

def _softmax_kernels(m: int, n: int, dt: DType) -> list[UOp]:
  """softmax's kernels as the scheduler emits them in `dt`: row max, row sum of exp(x - max), normalize (exp as EXP2(x*log2 e)),
  plus log-sum-exp's row log (LOG2)."""
  def red(x: UOp, r: UOp, op: Ops = Ops.ADD) -> UOp: return UOp(Ops.REDUCE, x.dtype, (x, r), op)
  def exp(x: UOp) -> UOp: return (x * LOG2E).alu(Ops.EXP2)
  mx, x = _g(0, dt, m), _g(1, dt, m * n)
  i, r = UOp.range(m, 0), UOp.range(n, 1)
  k_max = UOp.sink(mx.index(i).store(red(x.index(i * n + r).load(), r, Ops.MAX)).end(i))
  s, x, mx = _g(0, dt, m), _g(1, dt, m * n), _g(2, dt, m)
  i, r = UOp.range(m, 0), UOp.range(n, 1)
  k_sum = UOp.sink(s.index(i).store(red(exp(x.index(i * n + r).load() - mx.index(i).load()), r)).end(i))
  out, x, mx, s = _g(0, dt, m * n), _g(1, dt, m * n), _g(2, dt, m), _g(3, dt, m)
  i, j = UOp.range(m, 0), UOp.range(n, 1)
  k_norm = UOp.sink(out.index(i * n + j).store(exp(x.index(i * n + j).load() - mx.index(i).load()) * s.index(i).load().alu(Ops.RECIP)).end(i, j))
  lse, s, mx = _g(0, dt, m), _g(1, dt, m), _g(2, dt, m)
  i = UOp.range(m, 0)
  k_log = UOp.sink(lse.index(i).store(s.index(i).load().alu(Ops.LOG2) * math.log(2) + mx.index(i).load()).end(i))
  return [k_max, k_sum, k_norm, k_log]

@pytest.mark.parametrize("dt", (dtypes.float32, dtypes.float16, dtypes.bfloat16, dtypes.float64), ids=str)
def test_softmax_lowered_for_ptx_assembles_with_native_exp2_where_supported(dt: DType):
  # the lowering asks the renderer per dtype: EXP2 stays for f32 and the halves (one ex2.approx.f32 per element), float64 gets the
  # decomposition; LOG2 stays for the halves only
  from tg_uop.device import Device
  from tg_codegen.program import get_program
  dev = "NULL:PTX:sm_90"
  ren = Device[dev].renderer
  for ast in _softmax_kernels(64, 1024, dt):
    spec = get_program(ast, ren, None, dev)
    left = {u.op for u in spec.uops} & {Ops.EXP2, Ops.LOG2}
    wanted = {op for op in (Ops.EXP2, Ops.LOG2) if op in {u.op for u in ast.toposort()} and ren.supports(op, dt)}
    assert left == wanted, f"{dt}: {left} left in the program, wanted {wanted}"
    assert ("ex2.approx.f32" in spec.src) == (Ops.EXP2 in wanted) and ("lg2.approx.f32" in spec.src) == (Ops.LOG2 in wanted)
    assert ".ftz" not in spec.src
    assemble(spec.src, "sm_90")

def test_wmma_emits_mma_sync_for_both_input_types():
  for tc in MMA_TENSOR_CORES:
    prog = wmma_program(tc)
    ptx = PTXRenderer().render(prog.name, prog.uops)
    assert re.search(rf"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.{'f16' if tc.dtype_in == dtypes.float16 else 'bf16'}", ptx)
    for arch in ARCHS: assemble(ptx.replace(".target sm_90", f".target {arch}"), arch)

def test_wmma_layout_covers_every_element_once():
  for tc in MMA_TENSOR_CORES:
    m, n, k = tc.dims
    ea, eb, ec = tc.elements_per_thread
    assert sorted(tc.a_elem(l, i) for l in range(32) for i in range(ea)) == [(r, c) for r in range(m) for c in range(k)]
    assert sorted(tc.b_elem(l, i) for l in range(32) for i in range(eb)) == [(r, c) for r in range(k) for c in range(n)]
    assert sorted(tc.c_elem(l, i) for l in range(32) for i in range(ec)) == [(r, c) for r in range(m) for c in range(n)]

def test_wmma_rejects_unsupported_shapes():
  a = UOp.vectorize(*[_c(0.0, dtypes.float16)] * 8)
  w = UOp(Ops.WMMA, dtypes.float32.vec(4), (a, a, a), ("x", (16, 16, 16), dtypes.float16, dtypes.float32, "CUDA", 32))
  with pytest.raises(ValueError, match="no tensor core"): PTXRenderer().render("k", [a.src[0], a, w, UOp.sink()])

def test_launch_bounds_follow_local_dims():
  prog = local_reduce(threads=64)
  assert re.search(r"\.maxntid 64, 1, 1", PTXRenderer().render(prog.name, prog.uops))

def test_symbolic_loop_bound_is_guarded():
  prog = next(p for p in ALL if p.name == "define_var")
  ptx = PTXRenderer().render(prog.name, prog.uops)
  assert re.search(r"setp\.le\.s32\s+%p\d+, %r\d+, 0;\s*@%p\d+ bra \$L_end", ptx)  # a zero-trip loop skips its body

def test_arch_validation():
  for ok in ("sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"): assert PTXRenderer(ok).arch == ok
  with pytest.raises(ValueError, match="sm_80 or newer"): PTXRenderer("sm_75")
  with pytest.raises(ValueError, match="sm_90"): PTXRenderer("hopper")
  with pytest.raises(ValueError, match="identifier"): PTXRenderer().render("bad name", [UOp.sink()])

def test_renderer_attributes():
  r = PTXRenderer()
  assert (r.suffix, r.arch, r.has_local, r.has_shared) == ("PTX", "sm_90", True, True)
  assert r.local_max == (1024, 1024, 64) and r.global_max == (2**31 - 1, 65535, 65535) and r.shared_max == 49152
  assert {(tc.dims, tc.dtype_in, tc.dtype_out) for tc in r.tensor_cores} == {((16, 8, 16), dtypes.float16, dtypes.float32),
                                                                             ((16, 8, 16), dtypes.bfloat16, dtypes.float32)}

@pytest.mark.parametrize("prog", renderable(ALL + [cast_program(s, d) for s in CAST_DTYPES for d in CAST_DTYPES if s != d], PTXRenderer()))
def test_gpu_runs_match_reference(gpu: CudaRunner, prog: ConformanceProgram):
  if prog.name.startswith("wmma") and int(gpu.arch[3:]) < 80: pytest.skip("mma.sync m16n8k16 needs sm_80")
  arch = gpu.arch if int(gpu.arch[3:]) <= 90 else "sm_90"
  err = check_results(prog, gpu.run(prog, PTXRenderer(arch).render(prog.name, prog.uops)))
  assert err is None, err
