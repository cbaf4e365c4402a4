"""`PackageConformance`: checks every tg package (first- or third-party) should pass: it imports, its version agrees with its
pyproject.toml and installed metadata, its entry points are registered, and its plugin module imports cheaply.

Subclass it in a test module: `class TestMyPackage(PackageConformance): dist, module, plugin = "tg-mydev", "tg_mydev", ...`."""
from __future__ import annotations
import importlib, importlib.metadata as md, json, os, pathlib, re, subprocess, sys
from typing import Any

def installed_dist(dist: str, module: str) -> md.Distribution | None:
  """The installed distribution owning `module`, or None when it is imported from a source tree (PYTHONPATH, editable)."""
  here = pathlib.Path(importlib.import_module(module).__file__).resolve()
  try: d = md.distribution(dist)
  except md.PackageNotFoundError: return None
  return d if any(pathlib.Path(d.locate_file(f)).resolve() == here for f in d.files or ()) else None

def fresh_import(stmt: str) -> Any:
  """Run `stmt` in a fresh interpreter with this process's sys.path and return the JSON it prints."""
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
  out = subprocess.run([sys.executable, "-c", stmt], env=env, capture_output=True, text=True)
  if out.returncode != 0: raise AssertionError(f"`{stmt}` failed in a fresh interpreter:\n{out.stderr}")
  return json.loads(out.stdout)

class PackageConformance:
  """Set `dist`, `module`, `pyproject` (path), `entry_points` ({group: {name: value}}) and optionally `plugin` and `heavy`."""
  dist: str = ""
  module: str = ""
  pyproject: pathlib.Path | None = None
  entry_points: dict[str, dict[str, str]] = {}
  plugin: str | None = None
  # modules an entry point must not pull in at import time: they cost hundreds of milliseconds or are optional dependencies
  heavy: tuple[str, ...] = ("numpy", "llvmlite", "z3", "torch")

  def _skip_unless_installed(self) -> md.Distribution:
    import pytest
    if (d := installed_dist(self.dist, self.module)) is None:
      pytest.skip(f"{self.module} is imported from a source tree, not an installed {self.dist}")
    return d
  def test_imports_and_exposes_a_version(self):
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", importlib.import_module(self.module).__version__)
  def test_version_matches_pyproject(self):
    import pytest, tomllib
    if self.pyproject is None or not self.pyproject.exists(): pytest.skip("no pyproject.toml next to tests/")
    assert importlib.import_module(self.module).__version__ == tomllib.loads(self.pyproject.read_text())["project"]["version"]
  def test_version_matches_installed_metadata(self):
    assert self._skip_unless_installed().version == importlib.import_module(self.module).__version__
  def test_entry_points_are_registered_when_installed(self):
    d = self._skip_unless_installed()
    assert {g: {ep.name: ep.value for ep in d.entry_points if ep.group == g} for g in self.entry_points} == self.entry_points
  def test_plugin_module_declares_api_version_and_imports_cheaply(self):
    import pytest
    if self.plugin is None: pytest.skip("no plugin module")
    stmt = (f"import json, sys, {self.plugin} as p; print(json.dumps({{'api': list(p.TG_API_VERSION), "
            f"'heavy': sorted(m for m in sys.modules if m.split('.')[0] in {self.heavy!r})}}))")
    got = fresh_import(stmt)
    assert got["api"][0] == 1 and got["heavy"] == []
