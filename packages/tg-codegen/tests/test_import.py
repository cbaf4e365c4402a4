"""tg-codegen imports, its `__version__` agrees with its pyproject.toml and installed metadata, and its plugin module imports cheaply."""
import pathlib
from tg_uop.testing.package import PackageConformance

class TestTgCodegenPackage(PackageConformance):
  dist, module, plugin = "tg-codegen", "tg_codegen", "tg_codegen.plugin"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"codegen": "tg_codegen.plugin"}}
