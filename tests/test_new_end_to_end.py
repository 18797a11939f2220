"""End to end: `shoestring new` on each example spec, then the new service's own test suite.

The generated service must pass its tests straight after generation, against SQLite (its
default) and against the MariaDB/MySQL server of this repository's tests. Its suite runs in a
subprocess from the service's root, as its developer would run it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import run_service_suite

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


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=_name)
def test_new_service_passes_its_own_tests_on_sqlite(new_service, spec: Path) -> None:
    run_service_suite(new_service(spec), None, args=("-x",))


@pytest.mark.mysql
@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=_name)
def test_new_service_passes_its_own_tests_on_mariadb(
    new_service, mysql_database: str, spec: Path
) -> None:
    run_service_suite(new_service(spec), mysql_database, args=("-x",))
