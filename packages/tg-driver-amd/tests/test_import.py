"""tg-driver-amd imports, its `__version__` agrees with its pyproject.toml and installed metadata, and its plugin module imports cheaply."""
import pathlib
from tg_uop.testing.package import PackageConformance

class TestTgDriverAmdPackage(PackageConformance):
  dist, module, plugin = "tg-driver-amd", "tg_driver_amd", "tg_driver_amd.plugin"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"amd": "tg_driver_amd.plugin"}}
