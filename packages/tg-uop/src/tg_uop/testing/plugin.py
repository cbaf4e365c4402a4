"""The tg pytest plugin (entry point `pytest11: tg_uop = "tg_uop.testing.plugin"`): `--tg-device` and fixtures for backend tests.

Loaded in every pytest session of an environment where tg-uop is installed, so it imports nothing heavy at module level.
"""
from __future__ import annotations
from typing import Any
import pytest

def pytest_addoption(parser: Any) -> None:
  group = parser.getgroup("tg", "tg backend conformance")
  group.addoption("--tg-device", action="store", default=None, help="device the tg fixtures use (default: $TG_TEST_DEVICE or NULL)")

@pytest.fixture(scope="session")
def tg_device_name(request: Any) -> str:
  """The device name from --tg-device, else $TG_TEST_DEVICE, else "NULL"."""
  import os
  return request.config.getoption("--tg-device") or os.environ.get("TG_TEST_DEVICE") or "NULL"

@pytest.fixture
def tg_device(tg_device_name: str) -> Any:
  """The opened device (a `Compiled`) named by --tg-device."""
  from tg_uop.device import Device
  return Device[tg_device_name]

@pytest.fixture(params=None)
def tg_program(request: Any) -> Any:
  """Each conformance program in turn (parametrized over tg_uop.testing.programs.PROGRAMS)."""
  from tg_uop.testing.programs import get_program
  return get_program(request.param)

def pytest_generate_tests(metafunc: Any) -> None:
  # parametrize lazily so that collecting a test module that doesn't use tg_program never builds the programs
  if "tg_program" in metafunc.fixturenames:
    from tg_uop.testing.programs import PROGRAMS
    metafunc.parametrize("tg_program", list(PROGRAMS), indirect=True)

@pytest.fixture
def tg_run(tg_device: Any) -> Any:
  """A function running a conformance program on the fixture device: `tg_run(prog) -> {buffer index: numpy array}`."""
  from tg_uop.testing.programs import run_program
  return lambda prog: run_program(tg_device, prog)

@pytest.fixture
def tg_check(tg_device: Any) -> Any:
  """A function asserting a program's results on the fixture device match numpy (render+compile only if it doesn't execute)."""
  from tg_uop.testing.programs import check_results, compile_program, run_program
  def check(prog: Any) -> None:
    if not getattr(tg_device, "executes", True):
      compile_program(tg_device, prog)
      return
    err = check_results(prog, run_program(tg_device, prog))
    assert err is None, err
  return check
