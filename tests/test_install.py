"""Installs as users make them: from locks, into empty virtualenvs, on every supported Python.

- shoestring installed from a built wheel (not a checkout) creates a service: the template
  ships inside the distribution.
- A generated service installs from its own lock (the template's `requirements-dev.txt`) and
  passes its own suite on the oldest and the newest supported Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import OLDEST_AND_NEWEST_PYTHON, run_service_suite

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "orders"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done


def virtualenv(python: str, where: Path) -> Path:
    run([python, "-m", "venv", str(where)])
    return where / "bin"


def test_a_wheel_installed_in_an_empty_virtualenv_creates_a_service(tmp_path: Path):
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist)]
        + [str(REPO)],
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("shoestring-*.whl")
    bin_dir = virtualenv(sys.executable, tmp_path / "venv")
    # Its dependencies at the versions of this repository's lock, never a fresh resolution.
    run(
        [str(bin_dir / "pip"), "install", "-q", "-c", str(REPO / "requirements-test.txt")]
        + [str(wheel)],
        cwd=tmp_path,
    )

    # Run from a folder with no checkout around it: the template can only come from the wheel.
    service = tmp_path / "work" / "orders"
    service.parent.mkdir()
    spec = service.parent / "service.yaml"
    shutil.copy(EXAMPLE / "service.yaml", spec)
    run([str(bin_dir / "shoestring"), "new", str(spec), "-o", str(service)], cwd=service.parent)

    made = sorted(
        path.relative_to(service).as_posix() for path in service.rglob("*") if path.is_file()
    )
    listed = run(["git", "ls-files", "-z", "."], cwd=EXAMPLE).stdout
    committed = sorted(name for name in listed.split("\0") if name)
    assert made == committed
    for name in made:
        if name != ".copier-answers.yml":  # records where the template came from
            assert (service / name).read_bytes() == (EXAMPLE / name).read_bytes(), name
    run([str(bin_dir / "shoestring"), "generate", "--check", str(service)], cwd=service)


@pytest.mark.parametrize("version", OLDEST_AND_NEWEST_PYTHON)
def test_the_example_service_installs_from_its_lock_and_passes_its_suite(
    version: str, tmp_path: Path, service_python
):
    service = tmp_path / "orders"
    shutil.copytree(EXAMPLE, service, ignore=shutil.ignore_patterns("__pycache__", "var"))
    run_service_suite(service, python=service_python(version))
