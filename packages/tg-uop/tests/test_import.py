"""tg-uop imports, its `__version__` agrees with its pyproject.toml and installed metadata, and importing it loads no plugin."""
import pathlib
from tg_uop.testing.package import PackageConformance, fresh_import

class TestTgUopPackage(PackageConformance):
  dist, module = "tg-uop", "tg_uop"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"null": "tg_uop.null"}, "pytest11": {"tg_uop": "tg_uop.testing.plugin"}}

  def test_import_loads_no_plugin_and_no_optional_dependency(self):
    others = self.heavy + ("pluggy", "tg_codegen", "tg_tensor", "tg_driver_nv", "tg_driver_amd", "tg_usb")
    stmt = f"import json, sys, tg_uop; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {others!r} or m == 'tg_uop.null')))"
    assert fresh_import(stmt) == []
