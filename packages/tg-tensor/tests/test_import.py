"""tg-tensor imports, its `__version__` agrees with its pyproject.toml and installed metadata, and its plugin module imports cheaply."""
import pathlib
from tg_uop.testing.package import PackageConformance

class TestTgTensorPackage(PackageConformance):
  dist, module, plugin = "tg-tensor", "tg_tensor", "tg_tensor.plugin"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"tensor": "tg_tensor.plugin"}}
