"""The plain data that plugins hand to the core: what a device, interface, renderer or frontend is and how to load it."""
from __future__ import annotations
import re
from dataclasses import dataclass, field
from typing import Any, Callable

def _usable() -> str | None: return None

def _check_names(kind: str, name: str, upper: tuple[str, ...] = (), **tuples: tuple) -> None:
  # specs come from third-party code, so a bad one must say which spec and which field is wrong
  if not isinstance(name, str) or not name: raise TypeError(f"{kind}.name must be a non-empty str, got {name!r}")
  for fname, v in tuples.items():
    if not isinstance(v, tuple) or not all(isinstance(x, str) for x in v):
      raise TypeError(f"{kind}({name!r}).{fname} must be a tuple of str, got {v!r}")
  # device strings are upper-cased when parsed (DEV=nv means NV), so the names they are looked up by must be upper case too
  for fname in upper:
    for v in ((name,) if fname == "name" else tuples[fname]):
      if not re.fullmatch(r"[A-Z][A-Z0-9_]*", v):
        raise ValueError(f"{kind}({name!r}).{fname}: {v!r} must be upper case letters, digits and '_', starting with a letter (e.g. 'NV')")

@dataclass(frozen=True)
class DeviceSpec:
  """A device a plugin provides: `loader()` returns the device class, `probe()` returns None when usable, else why not."""
  name: str
  loader: Callable[[], type] = field(repr=False)
  probe: Callable[[], str | None] = field(default=_usable, repr=False)
  priority: int = 0
  renderers: tuple[str, ...] = ()  # preferred renderer names in order; () means any renderer (NULL)
  description: str = ""
  def __post_init__(self): _check_names("DeviceSpec", self.name, ("name", "renderers"), renderers=self.renderers)

@dataclass(frozen=True)
class RendererSpec:
  """A renderer a plugin provides: `loader()` returns a `Renderer` subclass, instantiated as `cls(arch)`."""
  name: str
  loader: Callable[[], type] = field(repr=False)
  devices: tuple[str, ...] = ()
  archs: tuple[str, ...] = ()  # () means any architecture the renderer accepts
  description: str = ""
  def __post_init__(self): _check_names("RendererSpec", self.name, ("name", "devices"), devices=self.devices, archs=self.archs)

@dataclass(frozen=True)
class InterfaceSpec:
  """A transport (e.g. "USB") for a device it does not own: `loader()` returns what the device receives as `interface=`."""
  name: str
  device: str
  loader: Callable[[], Any] = field(repr=False)
  probe: Callable[[], str | None] = field(default=_usable, repr=False)
  description: str = ""
  def __post_init__(self): _check_names("InterfaceSpec", self.name, ("name", "device"), device=(self.device,))

@dataclass(frozen=True)
class FrontendSpec:
  """A model or file loader (ONNX, safetensors, ...) for the given file extensions: `loader()` returns the load function."""
  name: str
  extensions: tuple[str, ...]
  loader: Callable[[], Callable] = field(repr=False)
  description: str = ""
  def __post_init__(self): _check_names("FrontendSpec", self.name, extensions=self.extensions)
