"""Tensor cores: the `mma.sync` shapes tg lowers the TC opt to, the per-lane fragment layout, and a reference implementation.

A WMMA UOp is `UOp(Ops.WMMA, dtype_out.vec(4), (a, b, c), arg)` with `arg = (name, (M, N, K), dtype_in, dtype_out, device, threads,
*extra)`; only (16, 8, 16), dtype_in float16 or bfloat16, dtype_out float32 and threads 32 exist (`mma.sync.aligned.m16n8k16.row.col
.f32.{f16,bf16}.{f16,bf16}.f32`). Per warp it computes D(16x8) = A(16x16) @ B(16x8) + C; each of the 32 lanes holds `a`:
dtype_in.vec(8), `b`: dtype_in.vec(4), `c` and the result: float.vec(4). With g = lane // 4 and t = lane % 4, element i of each is at
  a[i]: row g + 8*((i//2)%2), col 2*t + i%2 + 8*(i//4)      (A is M x K)
  b[i]: row 2*t + i%2 + 8*(i//2), col g                     (B is K x N)
  c[i]: row g + 8*(i//2),       col 2*t + i%2               (C and D are M x N)
`TensorCore.a_elem/b_elem/c_elem(lane, i)` compute these for ints and for index UOps alike (the lowering uses them on the lane's
SPECIAL), the CUDA C and PTX renderers emit the instruction, and `mma_reference` is what the PYTHON device runs.
"""
from __future__ import annotations
from dataclasses import dataclass
from typing import Any
from tg_uop.dtype import DType, dtypes

@dataclass(frozen=True)
class TensorCore:
  """One `mma.sync` shape: per warp of `threads` lanes, D(MxN, dtype_out) = A(MxK, dtype_in) @ B(KxN, dtype_in) + C."""
  dims: tuple[int, int, int]
  dtype_in: DType
  dtype_out: DType
  threads: int = 32

  @property
  def name(self) -> str: return f"WMMA_{'_'.join(map(str, self.dims))}_{self.dtype_in.name}_{self.dtype_out.name}".replace(" ", "")
  @property
  def elements_per_thread(self) -> tuple[int, int, int]:
    """How many elements of A, B and C each lane holds."""
    m, n, k = self.dims
    return (m*k // self.threads, k*n // self.threads, m*n // self.threads)
  def wmma_arg(self, device: str = "CUDA", *extra: Any) -> tuple:
    """The `arg` of a WMMA UOp for this shape (see the module docstring)."""
    return (self.name, self.dims, self.dtype_in, self.dtype_out, device, self.threads, *extra)
  # the layout, for an int lane or an index UOp (then each result is an index expression of it)
  def a_elem(self, lane: Any, i: int) -> tuple[Any, Any]:
    """(row, col) in A of element i of lane `lane`."""
    return (lane//4 + 8*((i//2) % 2), (lane % 4)*2 + (i % 2 + 8*(i//4)))
  def b_elem(self, lane: Any, i: int) -> tuple[Any, Any]:
    """(row, col) in B of element i of lane `lane`."""
    return ((lane % 4)*2 + (i % 2 + 8*(i//2)), lane//4)
  def c_elem(self, lane: Any, i: int) -> tuple[Any, Any]:
    """(row, col) in C and D of element i of lane `lane`."""
    return (lane//4 + 8*(i//2), (lane % 4)*2 + i % 2)

MMA_TENSOR_CORES: list[TensorCore] = [TensorCore((16, 8, 16), dtypes.float16, dtypes.float32),
                                      TensorCore((16, 8, 16), dtypes.bfloat16, dtypes.float32)]

def parse_wmma_arg(arg: Any) -> TensorCore:
  """The `TensorCore` a WMMA UOp's arg names, with a clear error for shapes or dtypes no renderer can emit."""
  if not isinstance(arg, tuple) or len(arg) < 4:
    raise ValueError(f"WMMA arg must be (name, (M, N, K), dtype_in, dtype_out, device, threads, ...), got {arg!r}")
  dims, din, dout = tuple(arg[1]), arg[2], arg[3]
  threads = arg[5] if len(arg) > 5 else 32
  for tc in MMA_TENSOR_CORES:
    if tc.dims == dims and tc.dtype_in == din and tc.dtype_out == dout and tc.threads == threads: return tc
  raise ValueError(f"no tensor core for WMMA {dims} {din}->{dout} with {threads} threads: supported are "
                   f"{[(tc.dims, tc.dtype_in, tc.dtype_out) for tc in MMA_TENSOR_CORES]}")

def mma_reference(tc: TensorCore, frags: list[tuple[tuple, tuple, tuple]]) -> list[tuple]:
  """One warp's WMMA: `frags[lane] = (a, b, c)` as each lane holds them; returns each lane's result. Products of float16/bfloat16
  values are exact in float64 and the sum is rounded to float32 once (the hardware rounds at most as often; tests allow for it)."""
  from tg_uop.dtype import truncate_float
  m, n, k = tc.dims
  if len(frags) != tc.threads: raise RuntimeError(f"WMMA {tc.name} needs a full warp of {tc.threads} lanes, got {len(frags)}")
  A, B, C = [[0.0] * k for _ in range(m)], [[0.0] * n for _ in range(k)], [[0.0] * n for _ in range(m)]
  na, nb, nc = tc.elements_per_thread
  for lane, (a, b, c) in enumerate(frags):
    for i in range(na): r, q = tc.a_elem(lane, i); A[r][q] = float(a[i])  # noqa: E702
    for i in range(nb): r, q = tc.b_elem(lane, i); B[r][q] = float(b[i])  # noqa: E702
    for i in range(nc): r, q = tc.c_elem(lane, i); C[r][q] = float(c[i])  # noqa: E702
  D = [[truncate_float(sum(A[r][j] * B[j][q] for j in range(k)) + C[r][q], tc.dtype_out) for q in range(n)] for r in range(m)]
  return [tuple(D[r][q] for r, q in (tc.c_elem(lane, i) for i in range(nc))) for lane in range(tc.threads)]

# ldmatrix (sm_75+): a warp loads 1, 2 or 4 8x8 matrices of 16-bit values from shared memory. Lane j < 8*n gives the address of row
# j % 8 of matrix j // 8 (8 contiguous values, 16-byte aligned); lane l receives two values of each matrix: row l//4, cols 2*(l%4)
# and 2*(l%4)+1, or with .trans the transposed pair (rows 2*(l%4) and 2*(l%4)+1 of col l//4). For m16n8k16 that is exactly a lane's
# `a` (4 matrices) or `b` (2 matrices) fragment when each lane points at the right row:
def ldmatrix_row(operand: str, contiguous: str, lane: Any) -> tuple[Any, Any]:
  """(row, col) in A (M x K) or B (K x N) of the row start that `lane` gives ldmatrix to load its `operand` ("a" or "b") fragment,
  for a tile whose `contiguous` dimension ("k", "m" or "n") is the one running along shared memory; .trans is needed exactly when
  that dimension isn't K."""
  half, quarter = 8 * ((lane // 8) % 2), 8 * (lane // 16)
  if operand == "a": return (lane % 8 + half, quarter) if contiguous == "k" else (half, lane % 8 + quarter)
  return (half, lane % 8) if contiguous == "k" else (lane % 8 + half, 0)

def ldmatrix_reference(rows: list[tuple], nmat: int, trans: bool) -> list[tuple]:
  """One warp's `ldmatrix.x{nmat}[.trans]`: `rows[j]` holds the 8 values at the address lane j gave; returns each lane's values."""
  out = []
  for lane in range(32):
    vals: list = []
    for i in range(nmat):
      m = rows[8 * i:8 * i + 8]
      r, c = 2 * (lane % 4), lane // 4
      vals += [m[r][c], m[r + 1][c]] if trans else [m[c][r], m[c][r + 1]]
    out.append(tuple(vals))
  return out

# wgmma (sm_90a): a warpgroup of 4 warps (lanes 0..127) computes D(64 x N) += A(64 x 16) @ B(16 x N), N a multiple of 8 up to
# 256, reading A and B from shared memory through 64-bit descriptors: bits 0-13 the start address >> 4, 16-29 the leading byte
# offset >> 4, 32-45 the stride byte offset >> 4, 62-63 the swizzle mode (0 none, 1 128-byte). A is K-major (rows along M, values
# along K), B N-major (rows along K, values along N: the instruction's B transposed). `wg_offset` is where an element sits for a
# descriptor (the layouts as the PTX ISA defines them; the device tests check them against cuBLAS results):
# - no swizzle: core matrices of 8 rows x 16 bytes; K-major: lbo between core matrices along K, sbo along M; N-major: lbo along K
#   (8-row groups), sbo along N.
# - 128-byte swizzle: rows of 128 bytes (64 values) in atoms of 8 rows, the 16-byte chunk of each row XORed with the row (mod 8) by
#   the hardware on the address bits (atoms 1024-byte aligned); K-major: sbo between 8-row groups (lbo unused, K within one row);
#   N-major: lbo between atoms along N, sbo between 8-row groups along K.
# Each lane holds N/2 results: element i of lane (warp w, lane l) is at row 16*w + l//4 + 8*((i%4)//2), col 8*(i//4) + 2*(l%4) + i%2
# (the m16n8 C layout, one 8-column chunk per 4 values).
@dataclass(frozen=True)
class WarpGroupMMA:
  """One `wgmma.mma_async` shape m64nNk16 with float32 accumulators (see above)."""
  n: int
  dtype_in: DType
  dtype_out: DType = dtypes.float32
  threads: int = 128
  @property
  def dims(self) -> tuple[int, int, int]: return (64, self.n, 16)
  @property
  def name(self) -> str: return f"WGMMA_64_{self.n}_16_{self.dtype_in.name}_{self.dtype_out.name}".replace(" ", "")
  def c_elem(self, warp: Any, lane: Any, i: int) -> tuple[Any, Any]:
    """(row, col) in D of element i of lane `lane` of warp `warp` (ints or index UOps)."""
    return (warp*16 + lane//4 + 8*((i % 4)//2), (lane % 4)*2 + (i % 2 + 8*(i//4)))

def sw128(off: Any) -> Any:
  """A 16-bit element offset after the 128-byte swizzle: its 16-byte chunk in the row (bits 3-5) XOR the row mod 8 (bits 6-8)."""
  return off ^ (((off // 64) % 8) * 8)

def wg_offset(kmajor: bool, swizzle: bool, lbo: int, sbo: int, mn: Any, k: Any, start: Any = 0) -> Any:
  """Element offset in shared memory of operand element (`mn`, `k`) (A: row m; B: column n) for a descriptor at element `start`,
  with lbo/sbo in elements (see above; `start` must be 1024-byte aligned when swizzled, up to the K step's offset)."""
  if kmajor:
    return sw128(start + (mn // 8)*sbo + (mn % 8)*64 + k) if swizzle else start + (mn % 8)*8 + k % 8 + (k // 8)*lbo + (mn // 8)*sbo
  return sw128(start + (k // 8)*sbo + (mn // 64)*lbo + (k % 8)*64 + mn % 64) if swizzle else \
    start + (k % 8)*8 + mn % 8 + (k // 8)*lbo + (mn // 8)*sbo

def wg_kstep(kmajor: bool, swizzle: bool, lbo: int, sbo: int) -> int:
  """Elements a descriptor's start moves for the next 16 along K."""
  return 16 if kmajor and swizzle else 2 * (sbo if swizzle else lbo)

def wgmma_reference(wg: WarpGroupMMA, a: Any, b: Any, cs: list[tuple], a_layout: tuple, b_layout: tuple, ksteps: int = 1,
                    b_kmajor: bool = False) -> list[tuple]:
  """`ksteps` of one warpgroup's wgmma back to back (K = 16*ksteps): `a(off)`/`b(off)` read shared memory at element offsets,
  `a_layout`/`b_layout` = (start, swizzle, lbo, sbo) in elements (A K-major, B N-major or with `b_kmajor` K-major, its N as A's
  M); `cs[lane]` are the accumulators; returns each lane's D."""
  from tg_uop.dtype import truncate_float
  m, n = wg.dims[0], wg.dims[1]
  (sa, swa, la, ska), (sb, swb, lb, skb) = a_layout, b_layout
  A, B = [[0.0] * (16 * ksteps) for _ in range(m)], [[0.0] * n for _ in range(16 * ksteps)]
  for s in range(ksteps):
    a0, b0 = sa + s * wg_kstep(True, swa, la, ska), sb + s * wg_kstep(b_kmajor, swb, lb, skb)
    for q in range(16):
      for r in range(m): A[r][16 * s + q] = float(a(wg_offset(True, swa, la, ska, r, q, a0)))
      for c in range(n): B[16 * s + q][c] = float(b(wg_offset(b_kmajor, swb, lb, skb, c, q, b0)))
  out = []
  for lane in range(wg.threads):
    res = []
    for i in range(n // 2):
      r, q = wg.c_elem(lane // 32, lane % 32, i)
      res.append(truncate_float(sum(A[r][j] * B[j][q] for j in range(16 * ksteps)) + float(cs[lane][i]), wg.dtype_out))
    out.append(tuple(res))
  return out
