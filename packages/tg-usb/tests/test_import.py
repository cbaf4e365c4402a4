"""tg-usb imports, its `__version__` agrees with its pyproject.toml and installed metadata, and its plugin module imports cheaply."""
import pathlib
from tg_uop.testing.package import PackageConformance

class TestTgUsbPackage(PackageConformance):
  dist, module, plugin = "tg-usb", "tg_usb", "tg_usb.plugin"
  pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
  entry_points = {"tg.plugins": {"usb": "tg_usb.plugin"}}
