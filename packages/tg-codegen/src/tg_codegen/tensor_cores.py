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
