"""End to end: `shoestring new` on each example spec, then the new service's own test suite.

The generated service must pass its tests straight after generation, against SQLite (its
default) and against the MariaDB/MySQL server of this repository's tests. Its suite runs in a
subprocess from the service's root, as its developer would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The example services, the spec that uses every feature, and a service with local jobs.
EXAMPLE_SPECS = [
    *sorted((REPO / "examples").glob("*/service.yaml")),
    REPO / "tests" / "specs" / "valid" / "everything.yaml",
    REPO / "tests" / "specs" / "valid" / "local_jobs.yaml",
]

pytestmark = pytest.mark.slow


def _name(spec: Path) -> str:
    return spec.parent.name if spec.name == "service.yaml" else spec.stem


def run_service_tests(service: Path, database_url: str | None) -> None:
    environ = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
    if database_url is not None:
        environ["TEST_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"],
        cwd=service,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (
        f"the tests of the service generated in {service} failed "
        f"(TEST_DATABASE_URL={database_url or 'unset: SQLite'}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=_name)
def test_new_service_passes_its_own_tests_on_sqlite(new_service, spec: Path) -> None:
    run_service_tests(new_service(spec), None)


@pytest.mark.mysql
@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=_name)
def test_new_service_passes_its_own_tests_on_mariadb(
    new_service, mysql_database: str, spec: Path
) -> None:
    run_service_tests(new_service(spec), mysql_database)
