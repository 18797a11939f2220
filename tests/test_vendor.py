"""`--vendor-runtime`: the wheel of the runtime this shoestring ships with, in a service's vendor/.

The end-to-end proof (a service installed on a machine that reaches only PyPI, its runtime from
vendor/) is in test_install.py; these tests pin what vendor/ holds and the errors.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_shoestring
from shoestring import __version__

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "orders"
WHEEL = f"shoestring_runtime-{__version__}-py3-none-any.whl"


def copy_example(where: Path) -> Path:
    service = where / "orders"
    shutil.copytree(EXAMPLE, service, ignore=shutil.ignore_patterns("__pycache__", "var"))
    return service


def installed_without_a_checkout(where: Path, runtime_version: str | None) -> Path:
    """A folder holding the `shoestring` package as an installation holds it, with no checkout
    around it: with the runtime's sources as `_runtime/` of version `runtime_version`, or
    without them (None). Returns the folder to put on PYTHONPATH."""
    site = where / "site"
    package = site / "shoestring"
    shutil.copytree(
        REPO / "generator" / "shoestring", package, ignore=shutil.ignore_patterns("__pycache__")
    )
    if runtime_version is not None:
        runtime = package / "_runtime"
        shutil.copytree(
            REPO / "runtime", runtime, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
        pyproject = runtime / "pyproject.toml"
        text = re.sub(
            r'^version = ".*"$',
            f'version = "{runtime_version}"',
            pyproject.read_text(),
            count=1,
            flags=re.MULTILINE,
        )
        pyproject.write_text(text)
    return site


def run_installed(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`shoestring ARGS` from the package in `site` (first on the path, before the checkout's
    editable install)."""
    done = subprocess.run(
        [sys.executable, "-m", "shoestring", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    # The package that ran is the copy in `site`, not the checkout's: errors name its folder.
    assert str(site / "shoestring" / "_runtime") in done.stderr, done.stderr
    return done


def test_vendor_runtime_writes_the_runtime_wheel_replacing_older_ones_and_reruns_change_nothing(
    tmp_path: Path,
) -> None:
    sources_before = sorted((REPO / "runtime").iterdir())
    service = copy_example(tmp_path)
    vendor = service / "vendor"
    vendor.mkdir()
    (vendor / "shoestring_runtime-0.0.9-py3-none-any.whl").write_bytes(b"an older runtime")
    (vendor / "somelib-1.0-py3-none-any.whl").write_bytes(b"another wheel the user put here")

    first = run_shoestring("generate", str(service), "--vendor-runtime")

    assert f"vendored vendor/{WHEEL}" in first.stdout
    assert "removed vendor/shoestring_runtime-0.0.9-py3-none-any.whl" in first.stdout
    assert sorted(path.name for path in vendor.iterdir()) == sorted(
        [WHEEL, "somelib-1.0-py3-none-any.whl"]
    )
    with zipfile.ZipFile(vendor / WHEEL) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"shoestring_runtime-{__version__}.dist-info/METADATA").decode()
    assert "Name: shoestring-runtime" in metadata
    assert f"Version: {__version__}" in metadata
    assert "shoestring_runtime/__init__.py" in names
    assert "shoestring_runtime/migrations/mysql/0003_outbox.sql" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    built = (vendor / WHEEL).read_bytes()
    stat = (vendor / WHEEL).stat()

    # Again, and from scratch: the same bytes, and an identical wheel is not even rewritten.
    second = run_shoestring("generate", str(service), "--vendor-runtime")
    assert f"up to date vendor/{WHEEL}" in second.stdout
    assert (vendor / WHEEL).stat().st_mtime_ns == stat.st_mtime_ns
    (vendor / WHEEL).unlink()
    run_shoestring("generate", str(service), "--vendor-runtime")
    assert (vendor / WHEEL).read_bytes() == built
    # The runtime's sources in the checkout are left as they were (the build ran on a copy): no
    # build/ or *.egg-info appeared. (An editable install of the runtime has its own egg-info.)
    assert sorted((REPO / "runtime").iterdir()) == sources_before


def test_new_with_vendor_runtime_creates_the_service_with_its_runtime_wheel(
    tmp_path: Path,
) -> None:
    out = tmp_path / "orders"
    result = run_shoestring("new", str(EXAMPLE / "service.yaml"), "-o", str(out),
                            "--vendor-runtime")
    assert [path.name for path in (out / "vendor").iterdir()] == [WHEEL]
    assert "shoestring generate --vendor-runtime" not in result.stdout
    # The service's .gitignore keeps vendor/: it is committed and uploaded with the service.
    subprocess.run(["git", "init", "-q"], cwd=out, check=True)
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", f"vendor/{WHEEL}"], cwd=out, check=False
    )
    assert ignored.returncode == 1, "the service's .gitignore excludes vendor/"


def test_new_without_vendor_runtime_says_how_to_vendor_it(tmp_path: Path) -> None:
    out = tmp_path / "orders"
    result = run_shoestring("new", str(EXAMPLE / "service.yaml"), "-o", str(out))
    assert not (out / "vendor").exists()
    assert "shoestring generate --vendor-runtime" in result.stdout


def test_vendor_runtime_refuses_a_runtime_of_another_version(tmp_path: Path) -> None:
    site = installed_without_a_checkout(tmp_path, runtime_version="9.9.9")
    service = copy_example(tmp_path)

    done = run_installed(site, "generate", str(service), "--vendor-runtime", cwd=tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert f"is shoestring-runtime 9.9.9, but this shoestring is {__version__}" in done.stderr
    assert f"pip install --force-reinstall shoestring=={__version__}" in done.stderr
    assert not (service / "vendor").exists()


def test_vendor_runtime_without_the_runtime_sources_says_what_to_install(tmp_path: Path) -> None:
    site = installed_without_a_checkout(tmp_path, runtime_version=None)
    service = copy_example(tmp_path)

    done = run_installed(site, "generate", str(service), "--vendor-runtime", cwd=tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "carries no sources of shoestring-runtime" in done.stderr
    assert f"pip install --force-reinstall shoestring=={__version__}" in done.stderr
    assert not (service / "vendor").exists()


@pytest.mark.parametrize("option", ["--check", "--dry-run"])
def test_vendor_runtime_does_not_go_with_options_that_write_nothing(
    tmp_path: Path, option: str
) -> None:
    service = copy_example(tmp_path)
    done = run_shoestring("generate", str(service), option, "--vendor-runtime", check=False)
    assert done.returncode == 2
    assert "--vendor-runtime writes vendor/" in done.stderr
    assert not (service / "vendor").exists()


def test_vendor_runtime_warns_when_the_lock_pins_another_runtime(tmp_path: Path) -> None:
    # A service whose lock pins another runtime that reads the same registry format (a runtime
    # too old for it is refused by generate before anything is written: test_registry_format).
    service = copy_example(tmp_path)
    lock = service / "requirements.txt"
    lock.write_text(lock.read_text().replace(f"shoestring-runtime=={__version__}",
                                             "shoestring-runtime==9.0.0"))

    done = run_shoestring("generate", str(service), "--vendor-runtime")

    assert (service / "vendor" / WHEEL).is_file()
    assert (
        f"warning: requirements.txt pins shoestring-runtime==9.0.0, but vendor/{WHEEL} is "
        f"{__version__}: bring the service's locks to this shoestring with `copier update`"
    ) in done.stderr
    assert "warning" not in run_shoestring("generate", str(copy_example(tmp_path / "b")),
                                           "--vendor-runtime").stderr
