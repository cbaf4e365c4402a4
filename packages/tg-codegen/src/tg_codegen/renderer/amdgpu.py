"""`AMDGPURenderer`: linearized UOps as LLVM IR for AMD GPUs (gfx942, MI300X), plus `compile_amdgpu` (llvmlite -> ELF code object)
and `kernel_descriptor` (a small ELF64 reader that decodes the 64-byte AMDHSA kernel descriptor `<name>.kd`).

Kernel ABI: `amdgpu_kernel void @name(ptr addrspace(1) %data0.., i32 %vars..)` with no hidden arguments ("amdgpu-no-implicitarg-ptr"),
so the kernarg segment is exactly the explicit params: 8 bytes per buffer, then 4 per int32 variable (naturally aligned).
gidxN is the workgroup id, lidxN the work-item id in the workgroup (global_size counts workgroups, as the contract says)."""
from __future__ import annotations
import struct
from typing import Any
from tg_uop.dtype import DType, PtrDType
from tg_uop.helpers import prod
from tg_uop.ops import Ops, GroupOp
from tg_uop.uop import UOp
from tg_codegen.renderer.llvmir import LLVMRenderer, _Builder, ident, llvm_type

AMDGPU_TRIPLE = "amdgcn-amd-amdhsa"
_ADDRSPACE = {"global": 1, "local": 3, "reg": 5}
_DIM = "xyz"

class AMDGPURenderer(LLVMRenderer):
  """Linearized UOps -> LLVM IR for an AMDGPU kernel (default arch gfx942); compile with `compile_amdgpu`."""
  device = "AMD"
  suffix = "AMDGPU"
  index_bits = 32  # 64-bit address math costs GPU registers and instructions
  default_arch = "gfx942"
  has_local = True
  has_shared = True
  global_max = (0x7FFFFFFF, 0xFFFF, 0xFFFF)
  local_max = (1024, 1024, 1024)
  shared_max = 65536
  supports_float4 = True
  # f64 exp2/log2/sin/pow have no AMDGPU lowering in LLVM (no libm on the GPU), so the lowering decomposes these for every dtype
  supported_ops: frozenset[Ops] = frozenset(GroupOp.ALU - {Ops.THREEFRY, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.POW})

  def module_header(self) -> list[str]: return [f"; tg kernel, {type(self).__name__} {self.arch}", f'target triple = "{AMDGPU_TRIPLE}"']
  def calling_convention(self) -> str: return "amdgpu_kernel "
  def extra_params(self) -> list[str]: return []
  def ptr_type(self, dt: DType) -> str:
    space = dt.addrspace if isinstance(dt, PtrDType) else "global"
    if space not in _ADDRSPACE: raise ValueError(f"unknown address space {space!r}: use 'global', 'local' or 'reg'")
    return f"ptr addrspace({_ADDRSPACE[space]})"
  def function_attributes(self, b: _Builder) -> str:
    # the largest workgroup this kernel is launched with, so LLVM may use more registers per thread when it is small
    bounds = [u.src[0] for u in b.uops if u.op is Ops.SPECIAL and str(u.arg).startswith("lidx")]
    size = prod(s.arg for s in bounds) if all(s.op is Ops.CONST for s in bounds) else 1024
    if size > 1024: raise ValueError(f"the workgroup has {size} threads, more than the 1024 AMDGPU allows: use smaller LOCAL opts")
    return f'nounwind "amdgpu-flat-work-group-size"="1,{max(size, 1)}" "amdgpu-no-implicitarg-ptr" "uniform-work-group-size"="true"'
  def define_reg(self, b: _Builder, u: UOp) -> str:
    name = b.tmp("reg")
    b.prologue.append(f"{name} = alloca [{max(u.dtype.size, 1)} x {llvm_type(u.dtype.base, True)}], align 16, addrspace(5)")
    return name
  def define_local(self, b: _Builder, u: UOp) -> str:
    name = "@" + ident(f"local{u.arg}" if not isinstance(u.arg, str) else u.arg)
    if u.dtype.size < 0: raise ValueError("DEFINE_LOCAL needs a static size: give its dtype a size with .ptr(size, 'local')")
    b.globals.append(f"{name} = internal addrspace(3) global [{u.dtype.size} x {llvm_type(u.dtype.base, True)}] poison, align 16")
    return name
  def barrier(self, b: _Builder, u: UOp) -> None:
    b.emit('fence syncscope("workgroup") release')
    b.emit(f"call void {b.declare('llvm.amdgcn.s.barrier', 'void', [])}()")
    b.emit('fence syncscope("workgroup") acquire')
  def special(self, b: _Builder, u: UOp) -> str:
    name = str(u.arg)
    if len(name) != 5 or name[:4] not in ("gidx", "lidx") or name[4] not in "012":
      raise ValueError(f"unknown SPECIAL {name!r}: use gidx0..2 (workgroup id) or lidx0..2 (work-item id)")
    kind = "workgroup" if name[:4] == "gidx" else "workitem"
    fn = b.declare(f"llvm.amdgcn.{kind}.id.{_DIM[int(name[4])]}", "i32", [])
    var = b.unique(name)
    vt = llvm_type(u.dtype)
    if vt == "i32": b.emit(f"{var} = call i32 {fn}()")
    else: b.emit(f"{var} = sext i32 {b.op(f'call i32 {fn}()')} to {vt}")
    return var

# ---- compiling with llvmlite ----
def _amdgpu_target_machine(arch: str):
  try: import llvmlite.binding as llvm
  except ImportError: raise ImportError("compiling AMDGPU code needs llvmlite: pip install llvmlite") from None
  llvm.initialize_all_targets()
  llvm.initialize_all_asmprinters()
  try: target = llvm.Target.from_triple(AMDGPU_TRIPLE)
  except RuntimeError as e: raise RuntimeError(f"this llvmlite's LLVM has no AMDGPU target ({e}): install an llvmlite built with it") from None
  return llvm, target.create_target_machine(cpu=arch, features="", opt=3, reloc="pic", codemodel="default")

def compile_amdgpu(src: str, arch: str = "gfx942") -> bytes:
  """AMDGPU LLVM IR text -> a relocatable ELF code object (AMDHSA ABI) for `arch`, optimized at O3."""
  llvm, tm = _amdgpu_target_machine(arch)
  try:
    mod = llvm.parse_assembly(src)
    mod.verify()
  except RuntimeError as e: raise ValueError(f"invalid AMDGPU LLVM IR: {e}") from None
  mod.triple, mod.data_layout = AMDGPU_TRIPLE, str(tm.target_data)
  pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
  pb.getModulePassManager().run(mod, pb)
  return bytes(tm.emit_object(mod))

# ---- reading the ELF ----
_SHT_SYMTAB, _SHT_RELA = 2, 4
_R_AMDGPU_ABS64, _R_AMDGPU_REL64 = 3, 5

def _cstr(data: bytes, off: int) -> str: return data[off:data.index(b"\0", off)].decode()

def elf_sections(elf: bytes) -> list[dict[str, Any]]:
  """The section headers of an ELF64 little-endian file: name, type, flags, addr, offset, size, link, info, entsize."""
  if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
    raise ValueError("not an ELF64 little-endian file: pass the bytes compile_amdgpu returned")
  shoff, = struct.unpack_from("<Q", elf, 0x28)
  shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
  secs = []
  for i in range(shnum):
    name, typ, flags, addr, off, size, link, info, _, entsize = struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize)
    secs.append({"name": name, "type": typ, "flags": flags, "addr": addr, "offset": off, "size": size, "link": link, "info": info,
                 "entsize": entsize})
  strtab = secs[shstrndx]["offset"]
  for s in secs: s["name"] = _cstr(elf, strtab + s["name"])
  return secs

def elf_symbols(elf: bytes) -> list[dict[str, Any]]:
  """The symbols of an ELF64 file: name, value, size, shndx (section index), info."""
  secs = elf_sections(elf)
  out = []
  for s in secs:
    if s["type"] != _SHT_SYMTAB: continue
    strtab = secs[s["link"]]["offset"]
    for off in range(s["offset"], s["offset"] + s["size"], s["entsize"]):
      name, info, _, shndx, value, size = struct.unpack_from("<IBBHQQ", elf, off)
      out.append({"name": _cstr(elf, strtab + name), "value": value, "size": size, "shndx": shndx, "info": info})
  return out

def _section_addrs(secs: list[dict[str, Any]], relocatable: bool) -> list[int]:
  # a relocatable object has every section at address 0: place each at its file offset, so differences between symbols are real
  return [s["offset"] if relocatable else s["addr"] for s in secs]

def kernel_descriptor(elf: bytes, name: str) -> dict[str, int]:
  """The AMDHSA kernel descriptor of kernel `name` (symbol `<name>.kd`), with relocations applied; field names as in AMDGPUUsage,
  plus `kd_address` and `entry_address` (in a relocatable object, addresses are file offsets)."""
  secs, syms = elf_sections(elf), elf_symbols(elf)
  relocatable = struct.unpack_from("<H", elf, 0x10)[0] == 1
  addrs = _section_addrs(secs, relocatable)
  kd = next((s for s in syms if s["name"] == f"{name}.kd"), None)
  if kd is None:
    raise ValueError(f"no kernel descriptor {name}.kd in the ELF; kernels in it: {[s['name'][:-3] for s in syms if s['name'].endswith('.kd')]}")
  sec = secs[kd["shndx"]]
  # in an object file a symbol's value is its offset in its section; in a linked one it is its virtual address
  kd_addr = addrs[kd["shndx"]] + kd["value"] if relocatable else kd["value"]
  start = sec["offset"] + (kd["value"] if relocatable else kd["value"] - sec["addr"])
  raw = bytearray(elf[start:start + 64])
  if len(raw) != 64: raise ValueError(f"{name}.kd is cut short: the ELF is truncated")
  # an object file leaves the entry offset to an R_AMDGPU_REL64 relocation against the kernel; a linked file has it resolved
  for rs in (r for r in secs if relocatable and r["type"] == _SHT_RELA and r["info"] == kd["shndx"]):
    symtab = secs[rs["link"]]
    for off in range(rs["offset"], rs["offset"] + rs["size"], rs["entsize"]):
      r_off, r_info, addend = struct.unpack_from("<QQq", elf, off)
      where = addrs[kd["shndx"]] + r_off
      if not kd_addr <= where < kd_addr + 64: continue
      _, _, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", elf, symtab["offset"] + (r_info >> 32) * symtab["entsize"])
      target, typ = addrs[shndx] + value + addend, r_info & 0xFFFFFFFF
      if typ == _R_AMDGPU_REL64: struct.pack_into("<q", raw, where - kd_addr, target - where)
      elif typ == _R_AMDGPU_ABS64: struct.pack_into("<Q", raw, where - kd_addr, target)
      else: raise ValueError(f"unexpected relocation type {typ} in {name}.kd: only REL64/ABS64 are understood")
  g, p, ka = struct.unpack_from("<III", raw, 0)
  entry, = struct.unpack_from("<q", raw, 16)
  rsrc3, rsrc1, rsrc2 = struct.unpack_from("<III", raw, 44)
  props, preload = struct.unpack_from("<HH", raw, 56)
  return {"group_segment_fixed_size": g, "private_segment_fixed_size": p, "kernarg_size": ka, "kernel_code_entry_byte_offset": entry,
          "compute_pgm_rsrc3": rsrc3, "compute_pgm_rsrc1": rsrc1, "compute_pgm_rsrc2": rsrc2, "kernel_code_properties": props,
          "kernarg_preload": preload, "kd_address": kd_addr, "entry_address": kd_addr + entry}
