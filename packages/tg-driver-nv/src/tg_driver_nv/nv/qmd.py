"""Compute launch descriptors (QMD version 3, used by the Ampere, Ada and Hopper compute classes) and the cubin facts a launch
needs: the kernel's code, registers, shared and local memory, and where its parameters sit in constant bank 0."""
from __future__ import annotations
import struct
from dataclasses import dataclass, field

# (low bit, high bit) of each QMD field used here, per QMD major version: 3 for Ampere/Ada (clc6c0qmd.h, clc9c0qmd.h),
# 4 for Hopper (clcbc0qmd.h, whose QMD_TYPE selects a plain grid of CTAs)
QMD_SIZES = {3: 0x100, 4: 0x180}
QMD_FIELDS: dict[int, dict[str, tuple[int, int]]] = {3: {
  "qmd_group_id": (128, 133), "sm_global_caching_enable": (134, 134), "invalidate_texture_header_cache": (186, 186),
  "invalidate_texture_sampler_cache": (187, 187), "invalidate_texture_data_cache": (188, 188), "invalidate_shader_data_cache": (189, 189),
  "invalidate_instruction_cache": (190, 190), "invalidate_shader_constant_cache": (191, 191), "api_visible_call_limit": (378, 378),
  "sampler_index": (382, 382), "cta_raster_width": (384, 415), "cta_raster_height": (416, 431), "cta_raster_depth": (448, 463),
  "shared_memory_size": (544, 561), "min_sm_config_shared_mem_size": (562, 567), "max_sm_config_shared_mem_size": (569, 574),
  "qmd_version": (576, 579), "qmd_major_version": (580, 583), "cta_thread_dimension0": (592, 607), "cta_thread_dimension1": (608, 623),
  "cta_thread_dimension2": (624, 639), "register_count_v": (648, 656), "target_sm_config_shared_mem_size": (657, 662),
  "shader_local_memory_low_size": (736, 759), "barrier_count": (763, 767), "program_address_lower": (1536, 1567),
  "program_address_upper": (1568, 1584), "shader_local_memory_high_size": (1600, 1623), "cwd_membar_type": (368, 369),
  "sass_version": (1656, 1663), "release0_address_lower": (768, 799), "release0_address_upper": (800, 807),
  "release0_membar_type": (819, 819), "release0_enable": (823, 823), "release0_structure_size": (830, 831),
  "release0_payload_lower": (832, 863), "release0_payload_upper": (864, 895),
  **{k: v for i in range(8) for k, v in {f"constant_buffer_valid{i}": (640 + i, 640 + i),
     f"constant_buffer_addr_lower{i}": (1024 + 64 * i, 1055 + 64 * i), f"constant_buffer_addr_upper{i}": (1056 + 64 * i, 1072 + 64 * i),
     f"constant_buffer_size_shifted4_{i}": (1075 + 64 * i, 1087 + 64 * i)}.items()}},
 4: {
  "qmd_group_id": (16, 21), "qmd_type": (23, 25), "release0_enable": (320, 320), "release0_structure_size": (321, 322),
  "release0_membar_type": (323, 323), "shader_local_memory_low_size": (512, 535), "sass_version": (536, 543),
  "shader_local_memory_high_size": (544, 567), "api_visible_call_limit": (568, 568), "sampler_index": (569, 569),
  "qmd_version": (576, 579), "qmd_major_version": (580, 583), "shared_memory_size": (584, 601), "invalidate_texture_header_cache": (602, 602),
  "invalidate_texture_sampler_cache": (603, 603), "invalidate_texture_data_cache": (604, 604), "invalidate_shader_data_cache": (605, 605),
  "invalidate_instruction_cache": (606, 606), "invalidate_shader_constant_cache": (607, 607), "min_sm_config_shared_mem_size": (608, 613),
  "max_sm_config_shared_mem_size": (614, 619), "target_sm_config_shared_mem_size": (620, 625), "release0_address_lower": (640, 671),
  "release0_address_upper": (672, 696), "release0_payload_lower": (704, 735), "release0_payload_upper": (736, 767),
  "cta_raster_width": (1024, 1055), "cta_raster_height": (1056, 1071), "cta_raster_depth": (1088, 1103), "cwd_membar_type": (1136, 1137),
  "cta_thread_dimension0": (1152, 1167), "cta_thread_dimension1": (1168, 1183), "cta_thread_dimension2": (1184, 1199),
  "register_count_v": (1200, 1208), "barrier_count": (1211, 1215), "program_address_lower": (1216, 1247), "program_address_upper": (1248, 1272),
  "gpc_cga_width": (2144, 2149), "gpc_cga_height": (2152, 2157), "gpc_cga_depth": (2160, 2165),
  **{k: v for i in range(8) for k, v in {f"constant_buffer_valid{i}": (416 + 4 * i, 416 + 4 * i),
     f"constant_buffer_addr_lower{i}": (1536 + 64 * i, 1567 + 64 * i), f"constant_buffer_addr_upper{i}": (1568 + 64 * i, 1586 + 64 * i),
     f"constant_buffer_size_shifted4_{i}": (1587 + 64 * i, 1599 + 64 * i)}.items()}}}
QMD_TYPE_GRID_CTA = 2

def qmd_version_of(qmd: bytes | bytearray | memoryview) -> int:
  """The major version a QMD declares (bits 580..583 in both layouts)."""
  return (int.from_bytes(bytes(qmd[72:74]), "little") >> 4) & 0xF

def qmd_set(qmd: bytearray | memoryview, name: str, value: int, version: int | None = None) -> None:
  """Write `value` into field `name` of a QMD of `version` (default: the version it declares); ValueError when it doesn't fit."""
  lo, hi = QMD_FIELDS[qmd_version_of(qmd) if version is None else version][name]
  if not 0 <= value < (1 << (hi - lo + 1)): raise ValueError(f"QMD field {name} is {hi - lo + 1} bits wide: {value:#x} doesn't fit")
  words, bit = memoryview(qmd).cast("B").cast("I"), lo
  while bit <= hi:  # a field spans at most a few 32-bit words: update them one at a time (launches write dozens of fields)
    w, off = divmod(bit, 32)
    n = min(32 - off, hi - bit + 1)
    mask = ((1 << n) - 1) << off
    words[w] = (words[w] & ~mask & 0xFFFFFFFF) | ((value & ((1 << n) - 1)) << off)
    value, bit = value >> n, bit + n

def qmd_get(qmd: bytes | bytearray | memoryview, name: str) -> int:
  """Read field `name` of a QMD (of the version it declares)."""
  lo, hi = QMD_FIELDS[qmd_version_of(qmd)][name]
  words, bit, out, shift = memoryview(qmd).cast("B").cast("I"), lo, 0, 0
  while bit <= hi:
    w, off = divmod(bit, 32)
    n = min(32 - off, hi - bit + 1)
    out |= ((words[w] >> off) & ((1 << n) - 1)) << shift
    shift, bit = shift + n, bit + n
  return out

def smem_config(nbytes: int) -> int:
  """The SM shared-memory carve-out encoding (KiB / 4 + 1) for at least `nbytes`."""
  return (nbytes + 4095) // 4096 + 1

# the largest shared-memory carve-out per SM, in bytes, by architecture
MAX_SMEM_CONFIG = {"sm_80": 164 << 10, "sm_86": 100 << 10, "sm_89": 100 << 10, "sm_90": 228 << 10}
SMEM_CONFIGS = (8, 16, 32, 64, 100, 132, 164, 196, 228)

def encode_qmd(*, program: int, registers: int, shared: int, local_per_thread: int, grid: tuple[int, int, int], block: tuple[int, int, int],
               cbufs: dict[int, tuple[int, int]], arch: str, version: int = 3, release: tuple[int, int] | None = None) -> bytearray:
  """A QMD of major `version` launching the code at `program` on `grid` blocks of `block` threads; `cbufs` maps bank ->
  (address, size); `release` (address, value) makes the GPU write a 32-bit value when the grid is done."""
  q = bytearray(QMD_SIZES[version])
  qmd_set(q, "qmd_major_version", version, version)
  for name in ("invalidate_texture_header_cache", "invalidate_texture_sampler_cache", "invalidate_texture_data_cache",
               "invalidate_shader_data_cache", "invalidate_instruction_cache", "invalidate_shader_constant_cache",
               "api_visible_call_limit", "sampler_index"):
    qmd_set(q, name, 1)
  if version == 3: qmd_set(q, "sm_global_caching_enable", 1)
  else:
    qmd_set(q, "qmd_type", QMD_TYPE_GRID_CTA)
    for d in ("width", "height", "depth"): qmd_set(q, f"gpc_cga_{d}", 1)
  qmd_set(q, "qmd_group_id", 0x3F)
  qmd_set(q, "barrier_count", 1)
  if release is not None:
    for name, v in (("release0_enable", 1), ("release0_structure_size", 1), ("release0_membar_type", 1),
                    ("release0_address_lower", release[0] & 0xFFFFFFFF), ("release0_address_upper", release[0] >> 32),
                    ("release0_payload_lower", release[1])):
      qmd_set(q, name, v)
  for i, (g, b) in enumerate(zip(grid, block)):
    qmd_set(q, ("cta_raster_width", "cta_raster_height", "cta_raster_depth")[i], g)
    qmd_set(q, f"cta_thread_dimension{i}", b)
  qmd_set(q, "register_count_v", registers)
  max_smem = MAX_SMEM_CONFIG.get(arch, 100 << 10)
  need = shared + (1 << 10)  # the hardware keeps 1 KiB of each block's shared memory for itself
  if need > max_smem: raise ValueError(f"the kernel needs {shared} bytes of shared memory; {arch} offers at most {max_smem - 1024}")
  carve = next(k << 10 for k in SMEM_CONFIGS if (k << 10) >= need)
  qmd_set(q, "shared_memory_size", (shared + 255) // 256 * 256)
  qmd_set(q, "min_sm_config_shared_mem_size", smem_config(carve))
  qmd_set(q, "target_sm_config_shared_mem_size", smem_config(carve))
  qmd_set(q, "max_sm_config_shared_mem_size", smem_config(max_smem))
  # compiled code keeps local arrays on a stack growing down from the top of the thread's local window: the "high" part
  qmd_set(q, "shader_local_memory_high_size", (local_per_thread + 15) // 16 * 16)
  qmd_set(q, "program_address_lower", program & 0xFFFFFFFF)
  qmd_set(q, "program_address_upper", program >> 32)
  for bank, (addr, size) in cbufs.items():
    qmd_set(q, f"constant_buffer_valid{bank}", 1)
    shift = 0 if version == 3 else 6  # version 4 stores constant buffer addresses in 64-byte units
    if addr % (1 << shift): raise ValueError(f"constant buffer {bank} at {addr:#x} isn't {1 << shift}-byte aligned")
    qmd_set(q, f"constant_buffer_addr_lower{bank}", (addr >> shift) & 0xFFFFFFFF)
    qmd_set(q, f"constant_buffer_addr_upper{bank}", addr >> (32 + shift))
    qmd_set(q, f"constant_buffer_size_shifted4_{bank}", (size + 15) // 16)
  return q

def relaunch_qmd(template: bytes, version: int, grid: tuple[int, int, int], block: tuple[int, int, int], cbuf0: tuple[int, int]) -> bytearray:
  """A copy of `template` (a program's QMD) with a new grid, block and constant bank 0: the few fields that change per launch."""
  q = bytearray(template)
  for name, v in zip(("cta_raster_width", "cta_raster_height", "cta_raster_depth", "cta_thread_dimension0", "cta_thread_dimension1",
                      "cta_thread_dimension2"), (*grid, *block)):
    qmd_set(q, name, v, version)
  shift = 0 if version == 3 else 6
  if cbuf0[0] % (1 << shift): raise ValueError(f"constant buffer 0 at {cbuf0[0]:#x} isn't {1 << shift}-byte aligned")
  qmd_set(q, "constant_buffer_addr_lower0", (cbuf0[0] >> shift) & 0xFFFFFFFF, version)
  qmd_set(q, "constant_buffer_addr_upper0", cbuf0[0] >> (32 + shift), version)
  qmd_set(q, "constant_buffer_size_shifted4_0", (cbuf0[1] + 15) // 16, version)
  return q

def _cbuf0_layout(version: int) -> tuple[int, int, int]:
  # constant bank 0's address fields, which every launch writes: the low half is one whole 32-bit word and the high part the low
  # bits of another, so a launch writes them as words instead of through qmd_set's field walk
  (llo, lhi), (ulo, uhi) = QMD_FIELDS[version]["constant_buffer_addr_lower0"], QMD_FIELDS[version]["constant_buffer_addr_upper0"]
  assert llo % 32 == 0 and lhi == llo + 31 and ulo % 32 == 0 and uhi < ulo + 32, f"QMD v{version}: bank 0's address fields moved"
  return llo // 8, ulo // 8, uhi - ulo + 1
_CBUF0 = {v: _cbuf0_layout(v) for v in QMD_FIELDS}

def set_cbuf0_address(qmd: bytes | bytearray, version: int, addr: int) -> bytearray:
  """A copy of `qmd` with constant bank 0 at `addr` (the one field that changes between launches of one shape)."""
  shift = 0 if version == 3 else 6
  if addr % (1 << shift): raise ValueError(f"constant buffer 0 at {addr:#x} isn't {1 << shift}-byte aligned")
  lower_at, upper_at, upper_bits = _CBUF0[version]
  if (upper := addr >> (32 + shift)) >= 1 << upper_bits:
    raise ValueError(f"QMD field constant_buffer_addr_upper0 is {upper_bits} bits wide: {upper:#x} doesn't fit")
  q = bytearray(qmd)
  struct.pack_into("<I", q, lower_at, (addr >> shift) & 0xFFFFFFFF)
  struct.pack_into("<I", q, upper_at, struct.unpack_from("<I", q, upper_at)[0] & ~((1 << upper_bits) - 1) & 0xFFFFFFFF | upper)
  return q

# ---------------- cubin (ELF) ----------------
EIATTR_PARAM_CBANK, EIATTR_FRAME_SIZE, EIATTR_MIN_STACK_SIZE, EIATTR_CBANK_PARAM_SIZE, EIATTR_REGCOUNT = 0x0A, 0x11, 0x12, 0x19, 0x2F
EIFMT_NVAL, EIFMT_BVAL, EIFMT_HVAL, EIFMT_SVAL = 1, 2, 3, 4
PARAM_BASE_DEFAULT = 0x210  # where kernel parameters start in constant bank 0 on sm_70 .. sm_90

@dataclass
class CubinKernel:
  """What a launch needs from a cubin: the kernel's code and resources."""
  name: str
  code: bytes
  registers: int
  shared: int
  local_per_thread: int
  param_base: int
  param_size: int
  cbufs: dict[int, bytes] = field(default_factory=dict)  # other constant banks the code reads (bank -> initial contents)

def _sections(elf: bytes) -> dict[str, tuple[int, int, int, int, int]]:
  """name -> (type, offset, size, info, index) for each section of a 64-bit little-endian ELF."""
  if elf[:4] != b"\x7fELF" or elf[4] != 2: raise ValueError("not a 64-bit ELF cubin (the NV device loads cubins: compile with ptxas/NVRTC)")
  shoff, = struct.unpack_from("<Q", elf, 0x28)
  shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
  hdrs = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
  strtab = hdrs[shstrndx][4]
  def name(off: int) -> str: return elf[strtab + off:elf.index(b"\0", strtab + off)].decode()
  return {name(h[0]): (h[1], h[4], h[5], h[7], i) for i, h in enumerate(hdrs)}

def _nv_info(data: bytes) -> list[tuple[int, bytes]]:
  """(attribute, value bytes) records of an .nv.info section."""
  out, i = [], 0
  while i + 4 <= len(data):
    fmt, attr, n = data[i], data[i + 1], struct.unpack_from("<H", data, i + 2)[0]
    if fmt == EIFMT_SVAL: out.append((attr, data[i + 4:i + 4 + n])); i += 4 + n
    else: out.append((attr, data[i + 2:i + 4])); i += 4
  return out

def _symbol_index(elf: bytes, secs: dict, name: str) -> int | None:
  if (symtab := secs.get(".symtab")) is None or (strtab := secs.get(".strtab")) is None: return None
  for i in range(symtab[2] // 24):
    st_name, = struct.unpack_from("<I", elf, symtab[1] + 24 * i)
    if elf[strtab[1] + st_name:elf.index(b"\0", strtab[1] + st_name)] == name.encode(): return i
  return None

def _zero_shared_relocs(elf: bytes, secs: dict, rela: tuple) -> bool:
  """True when every relocation of a kernel resolves to offset 0 of its shared memory, which the unlinked code already holds."""
  if (symtab := secs.get(".symtab")) is None: return False
  by_index = {v[4]: k for k, v in secs.items()}
  for i in range(rela[2] // 24):
    _, info, addend = struct.unpack_from("<QQq", elf, rela[1] + 24 * i)
    _, _, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", elf, symtab[1] + 24 * (info >> 32))
    if not by_index.get(shndx, "").startswith(".nv.shared.") or value + addend != 0: return False
  return True

def parse_cubin(elf: bytes, name: str) -> CubinKernel:
  """The kernel `name` of cubin `elf`; ValueError naming what is missing or unsupported."""
  secs = _sections(elf)
  if (text := secs.get(f".text.{name}")) is None:
    raise ValueError(f"cubin has no kernel {name!r} (kernels: {[s[6:] for s in secs if s.startswith('.text.')]})")
  if f".rel.text.{name}" in secs or ((rela := secs.get(f".rela.text.{name}")) is not None and not _zero_shared_relocs(elf, secs, rela)):
    raise ValueError(f"kernel {name!r} needs relocations (calls, globals, or several shared-memory arrays), which the NV loader doesn't apply")
  code = elf[text[1]:text[1] + text[2]]
  registers = (text[3] >> 24) & 0xFF
  shared = secs[s][2] if (s := f".nv.shared.{name}") in secs else 0
  param_base, param_size, local = PARAM_BASE_DEFAULT, 0, 0
  if (info := secs.get(f".nv.info.{name}")) is not None:
    for attr, val in _nv_info(elf[info[1]:info[1] + info[2]]):
      if attr == EIATTR_PARAM_CBANK and len(val) >= 8: param_base, param_size = struct.unpack_from("<HH", val, 4)
      elif attr == EIATTR_CBANK_PARAM_SIZE and len(val) == 2 and not param_size: param_size = struct.unpack_from("<H", val)[0]
      elif attr in (EIATTR_FRAME_SIZE, EIATTR_MIN_STACK_SIZE) and len(val) >= 8: local = max(local, struct.unpack_from("<I", val, 4)[0])
  # the module-wide .nv.info holds per-kernel records keyed by the kernel's symbol index: registers, stack sizes
  if (ginfo := secs.get(".nv.info")) is not None and (sym := _symbol_index(elf, secs, name)) is not None:
    for attr, val in _nv_info(elf[ginfo[1]:ginfo[1] + ginfo[2]]):
      if len(val) < 8 or struct.unpack_from("<I", val)[0] != sym: continue
      if attr == EIATTR_REGCOUNT: registers = struct.unpack_from("<I", val, 4)[0]
      elif attr in (EIATTR_FRAME_SIZE, EIATTR_MIN_STACK_SIZE): local = max(local, struct.unpack_from("<I", val, 4)[0])
  if registers == 0: raise ValueError(f"cubin doesn't say how many registers kernel {name!r} uses (no EIATTR_REGCOUNT)")
  cbufs = {}
  for sname, (_, off, size, _, _) in secs.items():
    # .nv.constant<bank> (module-wide) or .nv.constant<bank>.<kernel>; bank 0 is the launch's own, built per launch
    parts = sname.split(".")
    if sname.startswith(".nv.constant") and parts[2][8:].isdigit() and (len(parts) == 3 or ".".join(parts[3:]) == name):
      if (bank := int(parts[2][8:])) != 0: cbufs[bank] = elf[off:off + size]
  return CubinKernel(name, code, registers, shared, local, param_base, param_size, cbufs)
