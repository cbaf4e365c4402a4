"""Sessions: `tests` (every package plus the cross-package tests; what CI runs), one session per package (a fresh venv holding only
that package and its declared dependencies), `build` (wheels and sdists of all six, metadata checked), `lint` (ruff) and `demo`.

Pass pytest options after `--`: `nox -s tests -- -x -k dtype`, `nox -s uop -- packages/tg-uop/tests/test_import.py`."""
import os, pathlib, shutil, sys, tarfile, zipfile
import nox

if sys.version_info < (3, 11): raise SystemExit(f"tg needs Python >= 3.11 but nox runs on {sys.version.split()[0]}: install nox with a newer Python")

ROOT = pathlib.Path(__file__).resolve().parent
# package -> (import name, the local tg packages it depends on, the nox session that tests it alone)
PACKAGES: dict[str, tuple[str, tuple[str, ...], str]] = {
  "tg-uop": ("tg_uop", (), "uop"),
  "tg-codegen": ("tg_codegen", ("tg-uop",), "codegen"),
  "tg-tensor": ("tg_tensor", ("tg-uop", "tg-codegen"), "tensor"),
  "tg-driver-nv": ("tg_driver_nv", ("tg-uop",), "driver_nv"),
  "tg-driver-amd": ("tg_driver_amd", ("tg-uop",), "driver_amd"),
  "tg-usb": ("tg_usb", ("tg-uop",), "usb"),
}
# the main job that `nox -s demo` runs, on the default device
DEMO = ["python", "examples/demo.py"]

nox.options.sessions = ["tests"]
# sessions test what pip installed, never a source tree that PYTHONPATH happens to point at
os.environ.pop("PYTHONPATH", None)

def _path(pkg: str, extra: str = "") -> str:
  """pip requirement for the local package `pkg`, with an optional extra (`packages/tg-uop[test]`)."""
  return f"./packages/{pkg}" + (f"[{extra}]" if extra else "")

def _env(session: nox.Session) -> dict[str, str]:
  """Environment for runs: no stray bytecode, and tg's caches (compiled programs, BEAM results) in a fresh throwaway folder."""
  cache = pathlib.Path(session.create_tmp()) / "xdg-cache"
  shutil.rmtree(cache, ignore_errors=True)
  cache.mkdir()
  return {"PYTHONDONTWRITEBYTECODE": "1", "XDG_CACHE_HOME": str(cache)}

def _pytest(session: nox.Session, default_paths: list[str]) -> None:
  """Run pytest on `default_paths`, or on the paths given after `--`; other arguments after `--` are passed through."""
  paths = [a for a in session.posargs if not a.startswith("-") and os.path.exists(a.split("::")[0])]
  opts = [a for a in session.posargs if a not in paths]
  session.run("pytest", "-q", "--import-mode=importlib", *opts, *(paths or default_paths), env=_env(session))

@nox.session
def tests(session: nox.Session) -> None:
  """Every package with its test extras, plus the cross-package tests in tests/, in one venv."""
  # hatchling lets tests/test_packaging.py build wheels without downloading a build backend each time
  session.install(*(_path(p, "test") for p in PACKAGES), "hatchling")
  # PyTorch is the reference many tests compare against; they skip (saying so) where it can't be installed
  try: session.install("torch==2.13.0")
  except Exception as e: session.warn(f"torch==2.13.0 not installed ({e}): tests comparing against PyTorch will be skipped")
  _pytest(session, [f"packages/{p}/tests" for p in PACKAGES] + ["tests"])

def _package_session(pkg: str) -> None:
  """Register the session that installs `pkg` alone (its local tg dependencies first, so pip never looks them up on PyPI)."""
  _, deps, name = PACKAGES[pkg]
  def session_fn(session: nox.Session) -> None:
    session.install(*(_path(d) for d in deps), _path(pkg, "test"))
    _pytest(session, [f"packages/{pkg}/tests"])
  session_fn.__doc__ = f"{pkg} alone in a fresh venv with only its declared dependencies, running its own tests."
  nox.session(name=name)(session_fn)

for _pkg in PACKAGES: _package_session(_pkg)

def _check_archives(session: nox.Session, dist: pathlib.Path) -> None:
  """Each sdist carries its sources and tests, each wheel its import package; fail the session naming what is missing."""
  for pkg, (mod, _, _) in PACKAGES.items():
    sdists, wheels = list(dist.glob(f"{mod}-*.tar.gz")), list(dist.glob(f"{mod}-*.whl"))
    if len(sdists) != 1 or len(wheels) != 1: session.error(f"expected one sdist and one wheel of {pkg} in {dist}, found {sdists + wheels}")
    with tarfile.open(sdists[0]) as tf: names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for need in (f"src/{mod}/__init__.py", "tests/test_import.py", "pyproject.toml", "README.md"):
      if need not in names: session.error(f"{sdists[0].name} lacks {need}: check [tool.hatch.build.targets.sdist] in packages/{pkg}/pyproject.toml")
    with zipfile.ZipFile(wheels[0]) as zf:
      if f"{mod}/__init__.py" not in zf.namelist(): session.error(f"{wheels[0].name} lacks {mod}/__init__.py")
  session.log(f"{len(PACKAGES)} sdists carry their tests, {len(PACKAGES)} wheels their packages")

@nox.session
def build(session: nox.Session) -> None:
  """Wheels and sdists of all six packages into dist/ (each wheel built from its sdist), then `twine check --strict`."""
  session.install("build", "hatchling", "twine")
  dist = ROOT / "dist"
  shutil.rmtree(dist, ignore_errors=True)
  for pkg in PACKAGES: session.run("python", "-m", "build", "--no-isolation", "--outdir", str(dist), f"packages/{pkg}", silent=True)
  session.run("twine", "check", "--strict", *sorted(str(p) for p in dist.iterdir()))
  _check_archives(session, dist)

@nox.session
def lint(session: nox.Session) -> None:
  """ruff over the whole repository (config in ruff.toml)."""
  session.install("ruff>=0.6")
  session.run("ruff", "check", *(session.posargs or ["."]))

@nox.session
def demo(session: nox.Session) -> None:
  """Install every package and run the main job (DEMO above) on the default device."""
  session.install(*(_path(p, "llvm" if p == "tg-codegen" else "") for p in PACKAGES), "scikit-learn")
  session.run(*DEMO, env=_env(session))

def _bench_install(session: nox.Session) -> None:
  """tg's packages, numpy and matplotlib, then the peers PyTorch and tinygrad, each skipped (the run says so) if it fails to install."""
  session.install(*(_path(p) for p in PACKAGES), "numpy", "matplotlib")
  for peer in ("torch==2.13.0", "tinygrad==0.14.0"):
    try: session.install(peer)
    except nox.command.CommandFailed: session.warn(f"could not install {peer}: the benchmark runs without it and says so")

@nox.session
def bench(session: nox.Session) -> None:
  """Side-by-side CPU benchmarks (bench/run.py): tg vs numpy, PyTorch and tinygrad; writes bench/results/cpu. BEAM results stay in
  the tg cache dir (~/.cache/tg), so later runs skip the search. Options after `--` go to bench/run.py (`-- --quick`)."""
  _bench_install(session)
  session.run("python", "bench/run.py", "--out", "bench/results/cpu", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})

@nox.session(venv_backend="none")
def bench_gpu(session: nox.Session) -> None:
  """The same benchmarks on tg's GPU device (NV, else CUDA; `-- --device CUDA` picks one) into bench/results/gpu. It runs in the
  current Python (which needs numpy and PyTorch with CUDA) from this source tree, so it also works on a GPU machine with no package
  index; when no tg GPU device opens it says why and exits 0."""
  src = os.pathsep.join(str(ROOT / "packages" / p / "src") for p in PACKAGES)
  dev = [] if any(a.startswith("--device") for a in session.posargs) else ["--device", "NV,CUDA"]
  session.run("python", "bench/run.py", *dev, "--out", "bench/results/gpu", *session.posargs,
              env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": src})
