"""Example kernels, written the way the scheduler emits them (fresh ranges per reduce, no keep-dims): elementwise, reduce,
matmul and conv2d. Tests fuzz the lowering with them and `bench/` times them; each comes with a numpy reference."""
from __future__ import annotations
from dataclasses import dataclass
from typing import Callable
from tg_uop.dtype import DType, dtypes
from tg_uop.ops import Ops
from tg_uop.uop import UOp

@dataclass
class ExampleKernel:
  """A kernel, the shapes of its buffers (buffer 0 is the output) and a numpy function computing buffer 0 from the others."""
  name: str
  ast: UOp
  shapes: list[tuple[int, ...]]
  reference: Callable
  dtype: DType = dtypes.float32

def _g(i: int, n: int, dt: DType = dtypes.float32) -> UOp: return UOp(Ops.DEFINE_GLOBAL, dt.ptr(n), (), i)
def _reduce(x: UOp, *rngs: UOp, op: Ops = Ops.ADD) -> UOp: return UOp(Ops.REDUCE, x.dtype, (x, *rngs), op)

def elementwise(n: int) -> ExampleKernel:
  """out = a*b + a."""
  out, a, b = _g(0, n), _g(1, n), _g(2, n)
  r = UOp.range(n, 0)
  x, y = a.index(r).load(), b.index(r).load()
  return ExampleKernel(f"ew_{n}", UOp.sink(out.index(r).store(x * y + x).end(r)), [(n,), (n,), (n,)], lambda a, b: a * b + a)

def add(n: int) -> ExampleKernel:
  """out = a + b."""
  out, a, b = _g(0, n), _g(1, n), _g(2, n)
  r = UOp.range(n, 0)
  return ExampleKernel(f"add_{n}", UOp.sink(out.index(r).store(a.index(r).load() + b.index(r).load()).end(r)), [(n,), (n,), (n,)],
                       lambda a, b: a + b)

def row_reduce(m: int, k: int, op: Ops = Ops.ADD) -> ExampleKernel:
  """out[i] = reduce_k a[i, k] with op ADD or MAX."""
  out, a = _g(0, m), _g(1, m * k)
  i, r = UOp.range(m, 0), UOp.range(k, 1)
  ref = (lambda a: a.sum(1)) if op is Ops.ADD else (lambda a: a.max(1))
  return ExampleKernel(f"reduce_{op.name.lower()}_{m}_{k}", UOp.sink(out.index(i).store(_reduce(a.index(i * k + r).load(), r, op=op)).end(i)),
                       [(m,), (m, k)], ref)

def matmul(m: int, n: int, k: int) -> ExampleKernel:
  """c[i, j] = sum_l a[i, l] * b[l, j]."""
  c, a, b = _g(0, m * n), _g(1, m * k), _g(2, k * n)
  i, j, r = UOp.range(m, 0), UOp.range(n, 1), UOp.range(k, 2)
  acc = _reduce(a.index(i * k + r).load() * b.index(r * n + j).load(), r)
  return ExampleKernel(f"matmul_{m}_{n}_{k}", UOp.sink(c.index(i * n + j).store(acc).end(i, j)), [(m, n), (m, k), (k, n)],
                       lambda a, b: a @ b)

def half_matmul(m: int, n: int, k: int, dt: DType = dtypes.float16, trans_b: bool = False) -> ExampleKernel:
  """c[i, j] = half(sum_l float(a[i, l] * b[l, j])) in `dt` (float16), accumulated in float32: the kernel tg-tensor emits for a
  float16 matmul, and the one the TC (tensor core) opt applies to. With `trans_b`, b is given as (n, k) (`x @ w.T`, nn.Linear)."""
  c, a, b = _g(0, m * n, dt), _g(1, m * k, dt), _g(2, k * n, dt)
  i, j, r = UOp.range(m, 0), UOp.range(n, 1), UOp.range(k, 2)
  acc = _reduce((a.index(i * k + r).load() * b.index(j * k + r if trans_b else r * n + j).load()).cast(dtypes.float32), r)
  return ExampleKernel(f"hmatmul{'_bt' if trans_b else ''}_{m}_{n}_{k}", UOp.sink(c.index(i * n + j).store(acc.cast(dt)).end(i, j)),
                       [(m, n), (m, k), (n, k) if trans_b else (k, n)],
                       (lambda a, b: a.astype("float32") @ b.astype("float32").T) if trans_b else
                       (lambda a, b: a.astype("float32") @ b.astype("float32")), dt)

def conv2d(bs: int, cin: int, cout: int, h: int, w: int, kh: int, kw: int, dt: DType = dtypes.float32) -> ExampleKernel:
  """out[b, co, y, x] = sum_{ci, ky, kx} inp[b, ci, y+ky, x+kx] * wt[co, ci, ky, kx] (valid padding, stride 1); for float16 or
  bfloat16 `dt` the products are summed in float32, as tg-tensor does."""
  oh, ow = h - kh + 1, w - kw + 1
  out, inp, wt = _g(0, bs * cout * oh * ow, dt), _g(1, bs * cin * h * w, dt), _g(2, cout * cin * kh * kw, dt)
  b, co, y, x = (UOp.range(s, i) for i, s in enumerate((bs, cout, oh, ow)))
  ci, ky, kx = (UOp.range(s, 4 + i) for i, s in enumerate((cin, kh, kw)))
  v = inp.index(((b * cin + ci) * h + y + ky) * w + x + kx).load() * wt.index(((co * cin + ci) * kh + ky) * kw + kx).load()
  if dt != dtypes.float32: v = v.cast(dtypes.float32)
  acc = _reduce(v, ci, ky, kx)
  st = out.index(((b * cout + co) * oh + y) * ow + x).store(acc if dt == dtypes.float32 else acc.cast(dt))
  def ref(inp, wt):
    import numpy as np
    o, inp, wt = np.zeros((bs, cout, oh, ow), dtype=np.float64), inp.astype(np.float64), wt.astype(np.float64)
    for dy in range(kh):
      for dx in range(kw): o += np.einsum("bchw,oc->bohw", inp[:, :, dy:dy + oh, dx:dx + ow], wt[:, :, dy, dx])
    return o
  return ExampleKernel(f"conv_{bs}_{cin}_{cout}_{h}_{w}_{kh}_{kw}", UOp.sink(st.end(b, co, y, x)),
                       [(bs, cout, oh, ow), (bs, cin, h, w), (cout, cin, kh, kw)], ref, dt)

def run_example(ex: ExampleKernel, device: str, inputs: list, opts=None):
  """Run `ex` on `device` with numpy `inputs` (buffers 1..n; bfloat16 as uint16 bit patterns); returns (output array, ProgramSpec)."""
  import numpy as np
  from tg_uop.runtime.buffer import Buffer
  from tg_uop.device import Device
  from tg_codegen.program import get_program, CompiledRunner
  from tg_uop.dtype import to_np_name
  npdt = np.dtype(to_np_name(ex.dtype)) if ex.dtype != dtypes.bfloat16 else np.dtype(np.uint16)  # bfloat16 as its raw bits
  spec = get_program(ex.ast, Device[device].renderer, opts, device)
  bufs = [Buffer(device, int(np.prod(s)), ex.dtype).allocate() for s in ex.shapes]
  for b, a in zip(bufs[1:], inputs): b.copyin(memoryview(np.ascontiguousarray(a, dtype=npdt)).cast("B"))
  CompiledRunner(device, spec)(bufs, wait=True)
  out = np.empty(ex.shapes[0], dtype=npdt)
  bufs[0].copyout(memoryview(out).cast("B"))
  return out, spec

def sum_of_row_max(m: int, k: int) -> ExampleKernel:
  """out = sum_i max_k a[i, k]: a reduction nested in another, one scalar output."""
  out, a = _g(0, 1), _g(1, m * k)
  i, r = UOp.range(m, 0), UOp.range(k, 1)
  inner = _reduce(a.index(i * k + r).load(), r, op=Ops.MAX)
  return ExampleKernel(f"sum_max_{m}_{k}", UOp.sink(out.index(UOp.const(dtypes.index, 0)).store(_reduce(inner, i))), [(1,), (m, k)],
                       lambda a: a.max(1).sum(keepdims=True))
