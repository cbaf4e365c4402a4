"""tg-uop imports, and its `__version__` agrees with its pyproject.toml and, when installed, with its installed metadata."""
import importlib, importlib.metadata as md, json, os, pathlib, re, subprocess, sys, tomllib
import pytest

DIST, MOD = "tg-uop", "tg_uop"
ENTRY_POINTS = {'tg.plugins': {'null': 'tg_uop.null'}, 'pytest11': {'tg_uop': 'tg_uop.testing.plugin'}}
PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
# modules an entry point must not pull in at import time: they cost hundreds of milliseconds or are optional dependencies
HEAVY = ("numpy", "llvmlite", "z3", "torch")

def _installed_dist() -> md.Distribution | None:
  """The installed distribution that owns the module we import, or None when it comes from a source tree (PYTHONPATH, editable)."""
  here = pathlib.Path(importlib.import_module(MOD).__file__).resolve()
  try: dist = md.distribution(DIST)
  except md.PackageNotFoundError: return None
  return dist if any(pathlib.Path(dist.locate_file(f)).resolve() == here for f in dist.files or ()) else None

def _fresh_import(stmt: str) -> dict:
  """Run `stmt` in a fresh interpreter with this process's sys.path and return the JSON it prints."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
  out = subprocess.run([sys.executable, "-c", stmt], env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  return json.loads(out.stdout)

def test_imports_and_exposes_a_version():
  assert re.fullmatch(r"\d+\.\d+\.\d+\S*", importlib.import_module(MOD).__version__)

def test_version_matches_pyproject():
  if not PYPROJECT.exists(): pytest.skip("no pyproject.toml next to tests/")
  assert importlib.import_module(MOD).__version__ == tomllib.loads(PYPROJECT.read_text())["project"]["version"]

def test_version_matches_installed_metadata():
  if (dist := _installed_dist()) is None: pytest.skip(f"{MOD} is imported from a source tree, not from an installed {DIST}")
  assert dist.version == importlib.import_module(MOD).__version__

def test_entry_points_are_registered_when_installed():
  if (dist := _installed_dist()) is None: pytest.skip(f"{MOD} is imported from a source tree, not from an installed {DIST}")
  got = {g: {ep.name: ep.value for ep in dist.entry_points if ep.group == g} for g in ENTRY_POINTS}
  assert got == ENTRY_POINTS

def test_import_loads_no_plugin_and_no_optional_dependency():
  stmt = ("import json, sys, tg_uop; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
          f"{HEAVY + ('pluggy', 'tg_codegen', 'tg_tensor', 'tg_driver_nv', 'tg_driver_amd', 'tg_usb')!r} or m == 'tg_uop.null')))")
  assert _fresh_import(stmt) == []
