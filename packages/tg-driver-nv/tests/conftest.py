"""Registers the `gpu` marker also when these tests run from the repository root (whose pytest.ini doesn't list it)."""

def pytest_configure(config):
  config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with its driver; skipped elsewhere")
