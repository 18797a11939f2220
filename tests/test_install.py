"""Installs as users make them: from locks, into empty virtualenvs, on every supported Python.

- shoestring installed from a built wheel (not a checkout) creates a service: the template
  ships inside the distribution.
- The sdist carries the runtime's sources, and so does a wheel built from it: the runtime's
  wheel vendored from either is the one vendored from the checkout, byte for byte.
- A service made with `--vendor-runtime` by that installation installs on a machine that
  reaches only PyPI: `pip install -r requirements.txt` takes shoestring-runtime, which is on no
  public index, from the wheel in the service's vendor/; it migrates, serves and answers.
- A generated service installs from its own lock (the template's `requirements-dev.txt`) and
  passes its own suite on the oldest and the newest supported Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from shoestring import __version__
from shoestring.vendor import vendor_runtime
from support import (
    OLDEST_AND_NEWEST_PYTHON,
    free_port,
    run_service_suite,
    start_server,
    stop_server,
)

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


@pytest.fixture(scope="module")
def installed_shoestring(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shoestring installed from a wheel built from this checkout into an empty virtualenv,
    as a user installs it; returns the virtualenv's bin folder."""
    where = tmp_path_factory.mktemp("installed")
    dist = where / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist)]
        + [str(REPO)],
        cwd=where,
    )
    (wheel,) = dist.glob("shoestring-*.whl")
    bin_dir = virtualenv(sys.executable, where / "venv")
    # Its dependencies at the versions of this repository's lock, never a fresh resolution.
    run(
        [str(bin_dir / "pip"), "install", "-q", "-c", str(REPO / "requirements-test.txt")]
        + [str(wheel)],
        cwd=where,
    )
    return bin_dir


def test_a_wheel_installed_in_an_empty_virtualenv_creates_a_service(
    installed_shoestring: Path, tmp_path: Path
):
    bin_dir = installed_shoestring
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


def test_the_sdist_and_a_wheel_built_from_it_carry_the_runtime_sources(tmp_path: Path):
    build_sdist = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    run([sys.executable, "-c", build_sdist, str(tmp_path / "sdist")], cwd=REPO)
    (sdist,) = (tmp_path / "sdist").glob("shoestring-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    assert (unpacked / "runtime" / "shoestring_runtime" / "__init__.py").is_file()
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "dist"), str(unpacked)],
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("shoestring-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = [name for name in archive.namelist() if name.startswith("shoestring/_runtime/")]
        archive.extractall(tmp_path / "installed", members=shipped)
    assert "shoestring/_runtime/pyproject.toml" in shipped
    assert not [name for name in shipped if "/tests/" in name or "__pycache__" in name]

    from_checkout = vendor_runtime(tmp_path / "a", sources=REPO / "runtime").wheel
    from_sdist = vendor_runtime(tmp_path / "b", sources=unpacked / "runtime").wheel
    from_wheel = vendor_runtime(
        tmp_path / "c", sources=tmp_path / "installed" / "shoestring" / "_runtime"
    ).wheel
    assert from_sdist.read_bytes() == from_checkout.read_bytes()
    assert from_wheel.read_bytes() == from_checkout.read_bytes()


def test_a_service_with_its_runtime_vendored_installs_from_its_lock_and_pypi_alone(
    installed_shoestring: Path, tmp_path: Path
):
    # Made by the installed wheel, from a folder with no checkout around it: the runtime's
    # sources can only come from the wheel.
    work = tmp_path / "work"
    work.mkdir()
    spec = work / "service.yaml"
    shutil.copy(EXAMPLE / "service.yaml", spec)
    service = work / "orders"
    shoestring = str(installed_shoestring / "shoestring")
    run([shoestring, "new", str(spec), "-o", str(service), "--vendor-runtime"], cwd=work)
    wheel = service / "vendor" / f"shoestring_runtime-{__version__}-py3-none-any.whl"
    assert [path.name for path in (service / "vendor").iterdir()] == [wheel.name]
    vendored = wheel.read_bytes()

    # A second machine: an empty virtualenv, the lock and nothing else (no --find-links of
    # ours, from another folder): the lock's `--find-links vendor` finds the runtime.
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("PIP_FIND_LINKS")
    }
    machine = virtualenv(sys.executable, tmp_path / "machine")
    installed = run(
        [str(machine / "pip"), "install", "-r", str(service / "requirements.txt")],
        cwd=tmp_path,
        env=environment,
    )
    assert f"shoestring_runtime-{__version__}-py3-none-any.whl" in installed.stdout

    python = str(machine / "python")
    port = free_port()
    (tmp_path / "orders-var").mkdir(mode=0o700)
    environment = {
        **environment,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'orders.db'}",
        "SERVICE_VAR_DIR": str(tmp_path / "orders-var"),
        "PAYMENTS_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
    }
    run([python, "-m", "orders", "migrate"], cwd=service, env=environment)
    run([python, "-m", "orders", "keys", "generate"], cwd=service, env=environment)
    token = run(
        [python, "-m", "orders", "token", "--scope", "orders:write"], cwd=service, env=environment
    ).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    server = start_server(
        [python, "-m", "orders", "serve", "--port", str(port)],
        cwd=service,
        env=environment,
        name="orders",
        url=url,
    )
    try:
        ready = requests.get(url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        created = requests.post(
            url + "/v1/orders",
            json={"customer_id": str(uuid.uuid4()), "amount_cents": 1250, "currency": "EUR"},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            timeout=10,
        )
        assert created.status_code == 201, created.text
    finally:
        stop_server(server)

    # Vendoring again with the same runtime changes nothing.
    again = run([shoestring, "generate", "--vendor-runtime"], cwd=service)
    assert f"up to date vendor/{wheel.name}" in again.stdout
    assert wheel.read_bytes() == vendored


@pytest.mark.parametrize("version", OLDEST_AND_NEWEST_PYTHON)
def test_the_example_service_installs_from_its_lock_and_passes_its_suite(
    version: str, tmp_path: Path, service_python
):
    service = tmp_path / "orders"
    shutil.copytree(EXAMPLE, service, ignore=shutil.ignore_patterns("__pycache__", "var"))
    run_service_suite(service, python=service_python(version))
