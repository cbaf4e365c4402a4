"""The default opt-op choice: a few readable rules, each tried and kept only if it fits the kernel."""
from __future__ import annotations
from tg_uop.uop import UOp
from tg_codegen.kernel import Opt, OptOps, AxisType, KernelInfo, KernelOptError, initial_info, apply_opt

def _try(info: KernelInfo, opt: Opt, ren) -> KernelInfo:
  try: return apply_opt(info, opt, ren)
  except KernelOptError: return info

def _axes(info: KernelInfo, t: AxisType) -> list[int]: return [i for i, a in enumerate(info.axes) if a.type is t]

def hand_coded_optimizations(ast: UOp, ren) -> list[Opt]:
  """Opts for `ast` on `ren`: register tiles via UPCAST, UNROLL of short reduce loops, and LOCAL/GROUP on GPUs."""
  info = initial_info(ast)
  glb, red = _axes(info, AxisType.GLOBAL), _axes(info, AxisType.REDUCE)
  if ren.has_local and red and glb == [] or (ren.has_local and red and all(info.axes[i].size <= 32 for i in glb)):
    # few outputs, long reductions: spread each reduction over a workgroup
    for amt in (256, 128, 64, 32, 16):
      if (new := _try(info, Opt(OptOps.GROUPTOP, red[0], amt), ren)) is not info: info = new; break  # noqa: E702
  # register tiling: upcast up to two parallel axes (the last ones first) when the kernel reduces, one otherwise
  for i in list(reversed(glb))[:2 if red else 1]:
    size = info.axes[i].size
    for amt in ((4,) if red else (8, 4)):
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
