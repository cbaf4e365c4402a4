"""tg-driver-nv imports, its `__version__` agrees with its pyproject.toml and installed metadata, and its plugin module imports cheaply."""
import pathlib
from tg_uop.testing.package import PackageConformance

class TestTgDriverNvPackage(PackageConformance):
  dist, module, plugin = "tg-driver-nv", "tg_driver_nv", "tg_driver_nv.plugin"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"nv": "tg_driver_nv.plugin"}}
