"""`--vendor-runtime`: the wheel of shoestring-runtime, in the service's `vendor/` folder.

A service's lock pins `shoestring-runtime==<version>`, which is on no public index yet, and says
`--find-links vendor` (pip reads that folder relative to the lock). With the runtime's wheel in
`vendor/`, `pip install -r requirements.txt` works on any machine that reaches PyPI: a cPanel
account, a VPS.

The wheel is built from the runtime's sources that ship with this generator, so that the service
runs the runtime its `_generated/` code was written for: the checkout's `runtime/` for an
editable install, else the copy a shoestring wheel carries as `shoestring/_runtime/` (setup.py
puts it there). It is built by setuptools' standard PEP 517 backend in a subprocess, from a copy
of the sources (the backend writes `build/` and `*.egg-info` beside them), with a fixed
SOURCE_DATE_EPOCH, so that the same sources give the same bytes; an identical wheel already in
`vendor/` is left untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .generate import project_version

VENDOR_DIR = "vendor"
DISTRIBUTION = "shoestring-runtime"
# The wheel's name without its version: `shoestring_runtime-<version>-py3-none-any.whl`.
WHEEL_PREFIX = "shoestring_runtime-"
# What the runtime's sources never need to build its wheel (caches of tools run in a checkout,
# the leftovers of earlier builds, its tests).
NOT_RUNTIME = (
    "__pycache__",
    "*.py[cod]",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "*.egg-info",
    "build",
    "dist",
    "tests",
)
# Every file of the wheel is dated 1980-01-01 (the earliest date a zip can hold), whatever the
# clock says: the same sources give a byte-identical wheel.
REPRODUCIBLE_EPOCH = "315532800"
# The backend the runtime's pyproject.toml names, called as a build frontend calls it.
_BUILD_WHEEL = (
    "import sys\n"
    "from setuptools import build_meta\n"
    "print(build_meta.build_wheel(sys.argv[1]))\n"
)


class VendorError(Exception):
    """The runtime cannot be vendored; the message says what to do instead."""


@dataclass(frozen=True)
class Vendored:
    wheel: Path  # the wheel in vendor/
    changed: bool  # False when an identical wheel was there already
    removed: tuple[Path, ...]  # older runtime wheels it replaced


def find_runtime_sources(package_dir: Path | None = None) -> Path:
    """The sources of the runtime that ships with the shoestring package in `package_dir`
    (default: this one): its checkout's `runtime/`, else the package's `_runtime/` copy."""
    package = package_dir or Path(__file__).resolve().parent
    for candidate in (package.parents[1] / "runtime", package / "_runtime"):
        if (candidate / "pyproject.toml").is_file() and (
            candidate / "shoestring_runtime" / "__init__.py"
        ).is_file():
            return candidate
    raise VendorError(
        f"this installation of shoestring carries no sources of {DISTRIBUTION} (neither "
        f"{package.parents[1] / 'runtime'} nor {package / '_runtime'}), so it cannot vendor "
        f"the runtime: reinstall shoestring from its wheel or sdist (pip install --force-reinstall "
        f"shoestring=={__version__}), or install it from a checkout (pip install -e .)"
    )


def runtime_version(sources: Path) -> str:
    """The version in the runtime's pyproject.toml: the version of the wheel it builds."""
    version = project_version(sources)
    if version is None:
        raise VendorError(f"{sources / 'pyproject.toml'} names no version of {DISTRIBUTION}")
    return version


def check_runtime_version(sources: Path, generator_version: str = __version__) -> str:
    """The runtime's version, when it equals the generator's: a service's `_generated/` code
    and its lock are for the runtime of its generator's version. Refuses any other."""
    version = runtime_version(sources)
    if version != generator_version:
        raise VendorError(
            f"the runtime at {sources} is {DISTRIBUTION} {version}, but this shoestring is "
            f"{generator_version}: a service runs the runtime of its generator's version. "
            f"Install the two together (pip install --force-reinstall shoestring=="
            f"{generator_version}); in a checkout, give runtime/pyproject.toml and "
            f"runtime/shoestring_runtime/__init__.py the version of pyproject.toml and "
            f"generator/shoestring/__init__.py"
        )
    return version


def vendor_runtime(service: Path, sources: Path | None = None) -> Vendored:
    """Put the wheel of the runtime (`sources`, default: the one shipped with this shoestring)
    into `service/vendor/`, replacing older runtime wheels there."""
    sources = sources or find_runtime_sources()
    version = check_runtime_version(sources)
    vendor = service / VENDOR_DIR
    with tempfile.TemporaryDirectory(prefix="shoestring-runtime-") as scratch:
        built = build_wheel(sources, Path(scratch))
        expected = f"{WHEEL_PREFIX}{version}-py3-none-any.whl"
        if built.name != expected:
            raise VendorError(f"building {sources} gave {built.name}, not {expected}")
        vendor.mkdir(parents=True, exist_ok=True)
        target = vendor / built.name
        changed = not (target.is_file() and target.read_bytes() == built.read_bytes())
        if changed:
            shutil.copyfile(built, target)
    removed = tuple(
        sorted(old for old in vendor.glob(f"{WHEEL_PREFIX}*.whl") if old.name != target.name)
    )
    for old in removed:
        old.unlink()
    return Vendored(wheel=target, changed=changed, removed=removed)


def build_wheel(sources: Path, out: Path) -> Path:
    """Build the runtime's wheel from `sources` into `out` with setuptools' PEP 517 backend;
    returns the wheel. The sources themselves are left untouched (the build runs on a copy)."""
    tree = out / "sources"
    shutil.copytree(sources, tree, ignore=shutil.ignore_patterns(*NOT_RUNTIME))
    wheels = out / "wheels"
    wheels.mkdir()
    environment = {**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _BUILD_WHEEL, str(wheels)],
            cwd=tree,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise VendorError(f"could not run {sys.executable} to build the runtime: {exc}") from exc
    if done.returncode != 0:
        if "No module named 'setuptools'" in done.stderr:
            raise VendorError(
                f"building the wheel of {DISTRIBUTION} needs setuptools in the environment "
                f"shoestring runs in: {sys.executable} -m pip install 'setuptools>=69'"
            )
        raise VendorError(
            f"building the wheel of {DISTRIBUTION} from {sources} failed (it needs "
            f"setuptools>=69: {sys.executable} -m pip install 'setuptools>=69'):\n"
            f"{done.stderr[-3000:]}"
        )
    # build_wheel's last line of output is the wheel's file name (the backend prints its log
    # before it).
    return wheels / done.stdout.strip().splitlines()[-1]
