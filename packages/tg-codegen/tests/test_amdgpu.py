"""AMDGPURenderer: rendered IR assembles for gfx942 with llvmlite, and the kernel descriptor in the ELF agrees with the program
(kernarg bytes from the params, group segment from DEFINE_LOCAL, a sane entry offset, workgroup-id SGPRs for the gidx dims used)."""
import pytest
llvm = pytest.importorskip("llvmlite.binding")
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_uop.testing.programs import all_programs, linearize_steps, unsupported, validate_linear
from tg_codegen.renderer.amdgpu import AMDGPURenderer, compile_amdgpu, elf_sections, elf_symbols, kernel_descriptor

def _has_amdgpu() -> str | None:
  llvm.initialize_all_targets()
  try: llvm.Target.from_triple("amdgcn-amd-amdhsa")
  except RuntimeError as e: return f"llvmlite's LLVM has no AMDGPU target: {e}"
  return None
pytestmark = pytest.mark.skipif(_has_amdgpu() is not None, reason=str(_has_amdgpu()))

def expected_kernarg_size(uops: list[UOp]) -> int:
  """Explicit kernel arguments only: 8-byte pointers in buffer order, then 4-byte ints, each naturally aligned."""
  off = 0
  for size in [8] * sum(u.op is Ops.DEFINE_GLOBAL for u in uops) + [4] * sum(u.op is Ops.DEFINE_VAR for u in uops):
    off = (off + size - 1) // size * size + size
  return off

def expected_group_bytes(uops: list[UOp]) -> int:
  return sum(u.dtype.size * u.dtype.base.itemsize for u in uops if u.op is Ops.DEFINE_LOCAL)

def build(name: str, uops: list[UOp]) -> tuple[bytes, dict]:
  elf = compile_amdgpu(AMDGPURenderer().render(name, uops))
  return elf, kernel_descriptor(elf, name)

def check_descriptor(elf: bytes, name: str, kd: dict, uops: list[UOp]):
  assert kd["kernarg_size"] == expected_kernarg_size(uops)
  assert kd["group_segment_fixed_size"] == expected_group_bytes(uops)
  kernel = next(s for s in elf_symbols(elf) if s["name"] == name)
  text = elf_sections(elf)[kernel["shndx"]]
  assert text["name"] == ".text" and text["flags"] & 0x4  # executable
  # the entry offset leads from the descriptor to the kernel's first instruction, which is 256-byte aligned
  assert kd["entry_address"] == text["offset"] + kernel["value"]
  assert kd["entry_address"] % 256 == 0 and kd["kernel_code_entry_byte_offset"] != 0
  assert kd["kernel_code_properties"] & (1 << 3)  # the kernarg segment pointer is passed in SGPRs

PROGS = [p for p in all_programs() if unsupported(p, AMDGPURenderer()) is None]

def test_conformance_programs_cover_the_brief():
  assert {"elementwise", "reduce_rows", "matmul", "int32_alu", "gated", "casts", "cast_half", "vector", "define_var",
          "local_reverse"} <= {p.name for p in PROGS}

@pytest.mark.parametrize("prog", PROGS, ids=lambda p: p.name)
def test_conformance_program_assembles_with_a_matching_descriptor(prog):
  elf, kd = build(prog.name, prog.uops)
  check_descriptor(elf, prog.name, kd, prog.uops)

def _g(i: int, dt: DType, n: int) -> UOp: return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)
def _c(v, dt: DType = dtypes.index) -> UOp: return UOp.const(dt, v)

def group_reduce(rows: int = 4, threads: int = 64, per_thread: int = 8) -> list[UOp]:
  """out[row] = sum(a[row, :]): each of `threads` work-items sums its slice into a register, writes it to local memory, a BARRIER,
  then work-item 0 adds up the partial sums (GROUP-style reduce)."""
  n = threads * per_thread
  out, a = _g(0, dtypes.float32, rows), _g(1, dtypes.float32, rows * n)
  g, l = UOp.special(rows, "gidx0"), UOp.special(threads, "lidx0")
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 0)
  part = UOp(Ops.DEFINE_LOCAL, dtypes.float32.ptr(threads, "local"), (), 0)
  r = UOp.range(per_thread, 0)
  init = acc.index(_c(0)).store(_c(0.0, dtypes.float32))
  upd = acc.index(_c(0)).store(acc.index(_c(0)).load() + a.index(g * n + l * per_thread + r).load())
  endr = upd.end(r)
  st_local = part.index(l).store(acc.index(_c(0, dtypes.int32)).load())
  bar = UOp(Ops.BARRIER, dtypes.void, (st_local,))
  if_ = UOp(Ops.IF, dtypes.void, (l.eq(0),))
  acc2 = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 1)
  r2 = UOp.range(threads, 1)
  init2 = acc2.index(_c(0)).store(_c(0.0, dtypes.float32))
  upd2 = acc2.index(_c(0)).store(acc2.index(_c(0)).load() + part.index(r2).load())
  endr2 = upd2.end(r2)
  st = out.index(g).store(acc2.index(_c(0, dtypes.int32)).load())
  endif = UOp(Ops.ENDIF, dtypes.void, (if_,))
  sink = UOp.sink(bar, endif, st)
  uops = linearize_steps(sink, g, l, init, r, upd, endr, st_local, bar, if_, init2, r2, upd2, endr2, st, endif)
  validate_linear(uops)
  return uops

def test_group_reduce_with_local_memory_and_barrier_assembles():
  uops = group_reduce(threads=64)
  elf, kd = build("group_reduce", uops)
  check_descriptor(elf, "group_reduce", kd, uops)
  assert kd["group_segment_fixed_size"] == 64 * 4
  assert kd["private_segment_fixed_size"] == 0  # the accumulators live in registers, not scratch

def test_local_matmul_tile_assembles():
  # c = a @ b for a 16x16 tile per workgroup: lidx0/lidx1 index the output, the k loop reads a and b staged in local memory
  t, k = 16, 32
  c, a, b = _g(0, dtypes.float32, t * t * 4), _g(1, dtypes.float32, 2 * t * k), _g(2, dtypes.float32, k * 2 * t)
  g0, g1, l0, l1 = UOp.special(2, "gidx0"), UOp.special(2, "gidx1"), UOp.special(t, "lidx0"), UOp.special(t, "lidx1")
  la = UOp(Ops.DEFINE_LOCAL, dtypes.float32.ptr(t * k, "local"), (), 0)
  lb = UOp(Ops.DEFINE_LOCAL, dtypes.float32.ptr(k * t, "local"), (), 1)
  acc = UOp(Ops.DEFINE_REG, dtypes.float32.ptr(1, "reg"), (), 0)
  rl = UOp.range(k // t, 0)
  sa = la.index(l1 * k + rl * t + l0).store(a.index((g1 * t + l1) * k + rl * t + l0).load())
  sb = lb.index((rl * t + l1) * t + l0).store(b.index((rl * t + l1) * (2 * t) + g0 * t + l0).load())
  endl = UOp(Ops.END, dtypes.void, (sa, sb, rl))
  bar = UOp(Ops.BARRIER, dtypes.void, (endl,))
  init = acc.index(_c(0)).store(_c(0.0, dtypes.float32))
  r = UOp.range(k, 1)
  upd = acc.index(_c(0)).store(acc.index(_c(0)).load() + la.index(l1 * k + r).load() * lb.index(r * t + l0).load())
  endr = upd.end(r)
  st = c.index((g1 * t + l1) * (2 * t) + g0 * t + l0).store(acc.index(_c(0, dtypes.int32)).load())
  # index math shared by the staging loop and the code after it is computed before the loop, so it dominates both
  uops = linearize_steps(UOp.sink(bar, st), g0, g1, l0, l1, l1 * k, (g1 * t + l1) * k, g0 * t, rl, sa, sb, endl, bar, init, r, upd, endr, st)
  validate_linear(uops)
  elf, kd = build("tile_matmul", uops)
  check_descriptor(elf, "tile_matmul", kd, uops)
  assert kd["group_segment_fixed_size"] == 2 * t * k * 4
  rsrc2 = kd["compute_pgm_rsrc2"]
  assert rsrc2 >> 7 & 1 and rsrc2 >> 8 & 1 and not rsrc2 >> 9 & 1  # workgroup ids x and y are enabled, z is not
  assert (rsrc2 >> 11) & 3 == 1  # work-item ids x and y are passed in VGPRs

@pytest.mark.parametrize("dims", [("gidx0",), ("gidx0", "gidx1"), ("gidx0", "gidx1", "gidx2"), ("gidx2",)])
def test_workgroup_id_sgprs_follow_the_gidx_dims_used(dims):
  out = _g(0, dtypes.int32, 64)
  sp = [UOp.special(4, d) for d in dims]
  idx = sp[0]
  for s in sp[1:]: idx = idx * 4 + s
  st = out.index(idx).store(idx.cast(dtypes.int32))
  uops = linearize_steps(UOp.sink(st), *sp, st)
  elf, kd = build("grid", uops)
  check_descriptor(elf, "grid", kd, uops)
  enabled = {f"gidx{i}" for i in range(3) if kd["compute_pgm_rsrc2"] >> (7 + i) & 1}
  assert {"gidx1", "gidx2"} & enabled == {"gidx1", "gidx2"} & set(dims)

def test_kernarg_size_counts_pointers_then_int_vars():
  out, a = _g(0, dtypes.float32, 64), _g(1, dtypes.float32, 64)
  n, m, k = UOp.variable("n", 1, 8), UOp.variable("m", 1, 8), UOp.variable("k", 1, 8)
  l = UOp.special(64, "lidx0")
  st = out.index(l, gate=l < n * m + k).store(a.index(l).load())
  uops = linearize_steps(UOp.sink(st), l, st)
  elf, kd = build("vars", uops)
  assert kd["kernarg_size"] == 2 * 8 + 3 * 4 == expected_kernarg_size(uops)

FLOAT_OPS = [Ops.ADD, Ops.SUB, Ops.MUL, Ops.FDIV, Ops.MAX, Ops.NEG, Ops.RECIP, Ops.SQRT, Ops.TRUNC, Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ,
             Ops.WHERE, Ops.MULACC]
INT_OPS = [Ops.ADD, Ops.SUB, Ops.MUL, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.NEG, Ops.SHL, Ops.SHR, Ops.AND, Ops.OR, Ops.XOR, Ops.CMPLT,
           Ops.CMPNE, Ops.CMPEQ, Ops.WHERE, Ops.MULACC]

@pytest.mark.parametrize("dt", [dtypes.int8, dtypes.uint16, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.uint64, dtypes.float16,
                                dtypes.bfloat16, dtypes.float32, dtypes.float64], ids=str)
def test_every_supported_alu_op_assembles(dt):
  # one kernel per dtype computing every op, so a missing lowering in LLVM's AMDGPU backend shows up here and not on the GPU
  ops = FLOAT_OPS if dtypes.is_float(dt) else INT_OPS
  assert set(ops) <= AMDGPURenderer.supported_ops
  ins = [_g(i, dt, 64) for i in (1, 2, 3)]
  cond = _g(4, dtypes.bool, 64)
  l = UOp.special(64, "lidx0")
  x, y, z = (b.index(l).load() for b in ins)
  c = cond.index(l).load()
  stores = []
  for i, op in enumerate(ops):
    srcs = (x,) if op in (Ops.NEG, Ops.RECIP, Ops.SQRT, Ops.TRUNC) else (c, x, y) if op is Ops.WHERE else (x, y, z) if op is Ops.MULACC else (x, y)
    out_dt = dtypes.bool if op in (Ops.CMPLT, Ops.CMPNE, Ops.CMPEQ) else dt
    buf = _g(5 + i, out_dt, 64)
    stores.append(buf.index(l).store(UOp(op, out_dt, srcs)))
  casts = [_g(5 + len(ops) + i, t, 64).index(l).store(x.cast(t)) for i, t in
           enumerate([dtypes.bool, dtypes.int8, dtypes.uint32, dtypes.int64, dtypes.float16, dtypes.bfloat16, dtypes.float32, dtypes.float64])]
  uops = linearize_steps(UOp.sink(*stores, *casts), l, *stores, *casts)
  elf, kd = build("alu", uops)
  check_descriptor(elf, "alu", kd, uops)

def test_transcendentals_are_left_to_the_lowering():
  # f64 exp2/log2/sin/pow have no AMDGPU lowering in LLVM, so the renderer declares them unsupported and refuses them clearly
  out, a = _g(0, dtypes.float32, 4), _g(1, dtypes.float32, 4)
  l = UOp.special(4, "lidx0")
  st = out.index(l).store(UOp(Ops.EXP2, dtypes.float32, (a.index(l).load(),)))
  with pytest.raises(ValueError, match="EXP2"): AMDGPURenderer().render("e", linearize_steps(UOp.sink(st), l, st))
  assert not {Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW} & AMDGPURenderer.supported_ops

def test_too_large_workgroup_is_refused():
  out = _g(0, dtypes.int32, 4096)
  l0, l1 = UOp.special(64, "lidx0"), UOp.special(32, "lidx1")
  st = out.index(l1 * 64 + l0).store(_c(1, dtypes.int32))
  with pytest.raises(ValueError, match="1024"): AMDGPURenderer().render("big", linearize_steps(UOp.sink(st), l0, l1, st))

def test_kernel_descriptor_errors_name_the_problem():
  prog = PROGS[0]
  elf = compile_amdgpu(AMDGPURenderer().render(prog.name, prog.uops))
  with pytest.raises(ValueError, match=prog.name): kernel_descriptor(elf, "nope")
  with pytest.raises(ValueError, match="ELF64"): kernel_descriptor(b"not an elf at all" * 4, prog.name)

def test_invalid_ir_raises_value_error():
  with pytest.raises(ValueError, match="invalid AMDGPU LLVM IR"): compile_amdgpu("define void @f( {")

def test_renderer_attributes():
  r = AMDGPURenderer()
  assert (r.arch, r.has_local, r.has_shared, r.local_max, r.shared_max) == ("gfx942", True, True, (1024, 1024, 1024), 65536)
  assert AMDGPURenderer("gfx90a").arch == "gfx90a"
