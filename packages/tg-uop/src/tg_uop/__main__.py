"""`python -m tg_uop plugins [--probe] [--json]`: what is installed, what loaded, what is broken and why, and which devices work."""
from __future__ import annotations
import argparse, json, sys
from typing import Any

def _check_device(name: str) -> dict[str, Any]:
  """Open `name`, round-trip a few bytes through a Buffer, and run tg_uop.testing.probe_device when that exists."""
  from tg_uop.device import Device
  from tg_uop.dtype import dtypes
  from tg_uop.runtime.buffer import Buffer
  steps: list[str] = []
  try:
    dev = Device[name]
    steps.append(f"opened with renderer {type(getattr(dev, 'renderer', None)).__name__}")
    src = bytes(range(16))
    buf = Buffer(name, 4, dtypes.int32).allocate()
    buf.copyin(memoryview(bytearray(src)))
    out = bytearray(16)
    buf.copyout(memoryview(out))
    if getattr(dev, "executes", True):
      if bytes(out) != src: return {"ok": False, "detail": "; ".join(steps + [f"copy round trip returned {bytes(out).hex()}, expected {src.hex()}"])}
      steps.append("copy round trip ok")
    else: steps.append("copy round trip not checked (device keeps no memory)")
    try: from tg_uop.testing import probe_device  # the conformance suite may not be installed or written yet
    except ImportError: probe_device = None
    if probe_device is not None:
      res = probe_device(name)
      # probe_device returns None when a tiny kernel ran and matched numpy, else the text of what went wrong
      if res is not None and res is not True: return {"ok": False, "detail": "; ".join(steps + [f"probe kernel failed: {res}"])}
      steps.append("probe kernel ok")
    return {"ok": True, "detail": "; ".join(steps)}
  except Exception as e: return {"ok": False, "detail": "; ".join(steps + [f"{type(e).__name__}: {e}"])}

def collect(probe: bool = False) -> dict[str, Any]:
  """Everything `plugins` shows, as plain JSON-able data."""
  from tg_uop.plugins import API_VERSION
  from tg_uop.plugins.manager import get_plugin_manager
  from tg_uop.device import Device
  pm = get_plugin_manager()
  prov = lambda kind, key: (p.name if (p := pm.provider(kind, key)) is not None else None)
  devices = []
  for n, s in sorted(pm.devices().items(), key=lambda kv: (-kv[1].priority, kv[0])):
    why = pm.probe(n)
    d: dict[str, Any] = {"name": n, "priority": s.priority, "usable": why is None, "probe": why, "renderers": list(s.renderers),
                         "description": s.description, "plugin": prov("device", n)}
    if probe: d["check"] = _check_device(n) if why is None else {"ok": False, "detail": f"skipped: {why}"}
    devices.append(d)
  try: default, default_error = Device.DEFAULT, None
  except Exception as e: default, default_error = None, f"{type(e).__name__}: {e}"
  return {
    "api_version": list(API_VERSION),
    "packages": [{"name": i.name, "dist": i.dist, "version": i.version, "module": i.module, "state": i.state, "error": i.error} for i in pm.plugins],
    "devices": devices,
    "interfaces": [{"name": i, "device": d, "probe": pm.probe_interface(i, d), "description": s.description, "plugin": prov("interface", (i, d))}
                   for (i, d), s in sorted(pm.interfaces().items())],
    "renderers": [{"name": n, "devices": list(s.devices), "archs": list(s.archs), "description": s.description, "plugin": prov("renderer", n)}
                  for n, s in sorted(pm.renderers().items())],
    "frontends": [{"name": s.name, "extensions": list(s.extensions), "description": s.description, "plugin": prov("frontend", s.name)}
                  for s in pm.frontends()],
    "conflicts": pm.conflicts(),
    "default": default, "default_error": default_error,
  }

def _table(title: str, rows: list, header: list[str]) -> str:
  # a str row is a note under the previous row (an error, a check result); notes do not widen the columns
  if not rows: return f"{title}: none\n"
  cells = [r for r in rows if not isinstance(r, str)] + [header]
  cols = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
  fmt = lambda r: f"      {r}" if isinstance(r, str) else "  " + "  ".join(str(v).ljust(w) for v, w in zip(r, cols)).rstrip()
  return "\n".join([f"{title}:", fmt(header)] + [fmt(r) for r in rows]) + "\n"

def render_text(info: dict[str, Any]) -> str:
  """The human-readable report: broken plugins show their error on the line below."""
  out = [f"tg plugin API {info['api_version'][0]}.{info['api_version'][1]}\n"]
  pk = []
  for p in info["packages"]:
    pk.append([p["name"], p["dist"], p["version"], p["state"].upper() if p["state"] == "broken" else p["state"], p["module"]])
    if p["error"]: pk.append(("error: " if p["state"] == "broken" else "") + p["error"])
  out.append(_table("packages", pk, ["plugin", "dist", "version", "state", "module"]))
  dv = []
  for d in info["devices"]:
    dv.append([d["name"], d["priority"], "ok" if d["usable"] else f"no: {d['probe']}", ",".join(d["renderers"]) or "any", d["plugin"]])
    if "check" in d: dv.append(("check ok: " if d["check"]["ok"] else "CHECK FAILED: ") + d["check"]["detail"])
  out.append(_table("devices", dv, ["device", "priority", "probe", "renderers", "plugin"]))
  out.append(_table("interfaces", [[i["name"], i["device"], "ok" if i["probe"] is None else f"no: {i['probe']}", i["plugin"]]
                                   for i in info["interfaces"]], ["interface", "device", "probe", "plugin"]))
  out.append(_table("renderers", [[r["name"], ",".join(r["devices"]) or "-", ",".join(r["archs"]) or "any", r["plugin"]] for r in info["renderers"]],
                    ["renderer", "devices", "archs", "plugin"]))
  out.append(_table("frontends", [[f["name"], ",".join(f["extensions"]), f["plugin"]] for f in info["frontends"]],
                    ["frontend", "extensions", "plugin"]))
  for c in info["conflicts"]: out.append(f"conflict: {c}\n")
  out.append(f"default device: {info['default']}\n" if info["default"] else f"default device: none ({info['default_error']})\n")
  return "\n".join(out)

def main(argv: list[str] | None = None) -> int:
  """Entry point of `python -m tg_uop`."""
  ap = argparse.ArgumentParser(prog="python -m tg_uop", description="tg core tools")
  sub = ap.add_subparsers(dest="cmd", required=True)
  pp = sub.add_parser("plugins", help="list plugin packages, devices, interfaces, renderers and frontends")
  pp.add_argument("--probe", action="store_true", help="open each usable device and round-trip a small buffer through it")
  pp.add_argument("--json", action="store_true", help="print machine-readable JSON")
  args = ap.parse_args(argv)
  info = collect(probe=args.probe)
  # broken plugins are reported, not fatal: this command is how people find out what is broken
  sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.json else render_text(info))
  return 0

if __name__ == "__main__": sys.exit(main())
