"""Hand-written tg kernels for the benchmark workloads that `tg_codegen.examples` lacks, built the way the scheduler emits them
(fresh ranges per reduce, no keep-dims). Each kernel is a `BenchKernel`: the AST plus the names of the buffers it takes, in
DEFINE_GLOBAL order, so a workload can chain several kernels over shared buffers (softmax is three)."""
from __future__ import annotations
import math
from dataclasses import dataclass
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp

LOG2E = math.log2(math.e)
GELU_C = math.sqrt(2 / math.pi)

@dataclass
class BenchKernel:
  """One kernel of a workload: its AST and the workload buffer names bound to DEFINE_GLOBAL 0..n-1 (0 is written)."""
  ast: UOp
  bufs: tuple[str, ...]

def _g(i: int, n: int, dt: DType = dtypes.float32) -> UOp: return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)
def _reduce(x: UOp, *rngs: UOp, op: Ops = Ops.ADD) -> UOp: return UOp(Ops.REDUCE, x.dtype, (x, *rngs), op)
def _exp(x: UOp) -> UOp: return (x * LOG2E).alu(Ops.EXP2)

def gelu_tanh(y: UOp) -> UOp:
  """The tanh-approximation gelu, 0.5*y*(1+tanh(c*(y+0.044715*y^3))), written as y*sigmoid(2z) (the same function) with EXP2."""
  z = (y + y * y * y * 0.044715) * GELU_C
  return y * (_exp(z * -2.0) + 1.0).alu(Ops.RECIP)

def add(n: int) -> list[BenchKernel]:
  """out = a + b over n floats."""
  out, a, b = _g(0, n), _g(1, n), _g(2, n)
  r = UOp.range(n, 0)
  return [BenchKernel(UOp.sink(out.index(r).store(a.index(r).load() + b.index(r).load()).end(r)), ("out", "a", "b"))]

def gelu_affine(m: int, n: int) -> list[BenchKernel]:
  """out[i, j] = gelu(x[i, j] * w[j] + b[j]): one fused kernel."""
  out, x, w, b = _g(0, m * n), _g(1, m * n), _g(2, n), _g(3, n)
  i, j = UOp.range(m, 0), UOp.range(n, 1)
  y = x.index(i * n + j).load() * w.index(j).load() + b.index(j).load()
  return [BenchKernel(UOp.sink(out.index(i * n + j).store(gelu_tanh(y)).end(i, j)), ("out", "x", "w", "b"))]

def row_sum(m: int, n: int) -> list[BenchKernel]:
  """out[i] = sum_j x[i, j]."""
  out, x = _g(0, m), _g(1, m * n)
  i, r = UOp.range(m, 0), UOp.range(n, 1)
  return [BenchKernel(UOp.sink(out.index(i).store(_reduce(x.index(i * n + r).load(), r)).end(i)), ("out", "x"))]

def softmax_rows(m: int, n: int) -> list[BenchKernel]:
  """out = softmax(x, axis=1) in three kernels: row max, row sum of exp(x - max), normalize."""
  mx, x = _g(0, m), _g(1, m * n)
  i, r = UOp.range(m, 0), UOp.range(n, 1)
  k_max = UOp.sink(mx.index(i).store(_reduce(x.index(i * n + r).load(), r, op=Ops.MAX)).end(i))
  s, x, mx = _g(0, m), _g(1, m * n), _g(2, m)
  i, r = UOp.range(m, 0), UOp.range(n, 1)
  k_sum = UOp.sink(s.index(i).store(_reduce(_exp(x.index(i * n + r).load() - mx.index(i).load()), r)).end(i))
  out, x, mx, s = _g(0, m * n), _g(1, m * n), _g(2, m), _g(3, m)
  i, j = UOp.range(m, 0), UOp.range(n, 1)
  e = _exp(x.index(i * n + j).load() - mx.index(i).load())
  k_norm = UOp.sink(out.index(i * n + j).store(e * s.index(i).load().alu(Ops.RECIP)).end(i, j))
  return [BenchKernel(k_max, ("mx", "x")), BenchKernel(k_sum, ("s", "x", "mx")), BenchKernel(k_norm, ("out", "x", "mx", "s"))]

def matmul(m: int, n: int, k: int, dt: DType = dtypes.float32) -> list[BenchKernel]:
  """c = a @ b in `dt`, accumulating in float32 (as numpy, PyTorch and tinygrad do for float16 on the CPU)."""
  c, a, b = _g(0, m * n, dt), _g(1, m * k, dt), _g(2, k * n, dt)
  i, j, r = UOp.range(m, 0), UOp.range(n, 1), UOp.range(k, 2)
  prod = a.index(i * k + r).load().cast(dtypes.float32) * b.index(r * n + j).load().cast(dtypes.float32)
  return [BenchKernel(UOp.sink(c.index(i * n + j).store(_reduce(prod, r).cast(dt)).end(i, j)), ("c", "a", "b"))]

def conv2d(bs: int, cin: int, cout: int, h: int, w: int, kh: int, kw: int, dt: DType = dtypes.float32) -> list[BenchKernel]:
  """out = conv2d(x, wt), valid padding, stride 1 (NCHW, OIHW); float16 sums in float32."""
  from tg_codegen.examples import conv2d as ex_conv
  return [BenchKernel(ex_conv(bs, cin, cout, h, w, kh, kw, dt).ast, ("out", "x", "wt"))]
