"""The default opt-op choice: a few readable rules, each tried and kept only if it fits the kernel."""
from __future__ import annotations
from tg_uop.ops import Ops
from tg_uop.uop import UOp
from tg_codegen.lower.lowerer import _unit_stride
from tg_codegen.kernel import Opt, OptOps, AxisType, KernelInfo, KernelOptError, initial_info, apply_opt

def _try(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  try: return apply_opt(info, opt, ren)
  except KernelOptError: return info

def _axes(info: KernelInfo, t: AxisType) -> list[int]: return [i for i, a in enumerate(info.axes) if a.type is t]

def hand_coded_optimizations(ast: UOp, ren) -> list[Opt]:
  """Opts for `ast` on `ren`: register tiles via UPCAST, UNROLL of short reduce loops, and LOCAL/GROUP on GPUs."""
  info = initial_info(ast)
  glb, red = _axes(info, AxisType.GLOBAL), _axes(info, AxisType.REDUCE)
  outputs = 1
  for i in glb: outputs *= info.axes[i].size
  if ren.has_local and red and outputs < 2048 and info.axes[red[0]].size >= 256:
    # few outputs, long reductions: spread each reduction over a workgroup
    for amt in (256, 128, 64, 32, 16):
      if (new := _try(info, Opt(OptOps.GROUPTOP, red[0], amt), ren)) is not info: info = new; break  # noqa: E702
  if not ren.has_local:
    # CPU: the last parallel axis becomes SIMD lanes (16 floats fill an AVX-512 register, two AVX2 ones); with a reduction, a
    # second axis is upcast too, so each loaded value feeds several accumulators (a register tile, as in a BLAS kernel)
    loads = [u.src[0].src[1] for u in ast.toposort() if u.op is Ops.LOAD and u.src[0].op is Ops.INDEX]
    unit = lambda r: any(_unit_stride(ix, r) for ix in loads)  # noqa: E731
    if red and not (glb and unit(info.axes[glb[-1]].rng)) and unit(info.axes[red[-1]].rng):
      # a reduction along memory (row sums, x @ w.T): SIMD lanes over the reduce axis and a tile of outputs at once, so each
      # loaded vector feeds several independent accumulators (with two parallel axes, a 4x4 tile of 8-lane accumulators)
      for amt in ((8, 4) if len(glb) > 1 else (16, 8, 4)):
        if info.axes[red[-1]].size % amt == 0 and (new := _try(info, Opt(OptOps.UNROLL, red[-1], amt), ren)) is not info:
          info = new
          break
      for ax in (glb[-1], glb[0]) if len(glb) > 1 else glb[-1:]:
        if info.axes[ax].size % 4 == 0 and info.axes[ax].size > 4: info = _try(info, Opt(OptOps.UPCAST, ax, 4), ren)
      return list(info.opts)
    if glb:
      last = glb[-1]
      for amt in (16, 8, 4):
        if info.axes[last].size % amt == 0 and (new := _try(info, Opt(OptOps.UPCAST, last, amt), ren)) is not info: info = new; break  # noqa: E702
      if red and len(glb) > 1:
        for amt in (8, 4, 2):
          if info.axes[glb[0]].size % amt == 0 and info.axes[glb[0]].size >= 2 * amt:
            if (new := _try(info, Opt(OptOps.UPCAST, glb[0], amt), ren)) is not info: info = new; break  # noqa: E702
    red = _axes(info, AxisType.REDUCE)
    if red and not glb and info.axes[red[-1]].size % 4 == 0: info = _try(info, Opt(OptOps.UNROLL, red[-1], 4), ren)
    return list(info.opts)
  # GPU register tiling: upcast up to two parallel axes (the last ones first) when the kernel reduces, one otherwise
  for i in list(reversed(glb))[:2 if red else 1]:
    size = info.axes[i].size
    for amt in ((4,) if red else (4, 2)):
      if size % amt == 0 and size > amt: info = _try(info, Opt(OptOps.UPCAST, i, amt), ren); break  # noqa: E702
  red = _axes(info, AxisType.REDUCE)
  if red and info.axes[red[-1]].size % 4 == 0 and info.axes[red[-1]].size <= 4096:
    info = _try(info, Opt(OptOps.UNROLL, red[-1], 4), ren)
  if ren.has_local and not info.nolocals:
    glb = _axes(info, AxisType.GLOBAL)
    budget = 256
    for i in reversed(glb):
      size = info.axes[i].size
      for amt in (32, 16, 8, 4, 2):
        if size % amt == 0 and amt <= budget and size >= amt:
          new = _try(info, Opt(OptOps.LOCAL, i, amt), ren)
          if new is not info: info, budget = new, budget // amt; break  # noqa: E702
      if budget < 2: break
  return list(info.opts)
