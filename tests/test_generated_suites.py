"""A service generated from any valid spec passes its own test suite straight away.

The specs here are the shapes that once broke a generated suite: rate limits of one request per
minute shared by every endpoint and one per second per address (tests that shared a caller got
429s from each other), idempotent endpoints read from the query string, optional integers, only
GETs, no messages, no endpoints at all. Each service is generated with `shoestring new` and its
suite runs in a subprocess, as its developer runs it, on SQLite and on the MariaDB/MySQL server.
The suite's JUnit report must list no failure and no error, and where the spec limits an
endpoint, the suite's own proof that the limit refuses the request over it must have run.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_shoestring
from support import OLDEST_AND_NEWEST_PYTHON, run_service_suite

SPECS = Path(__file__).resolve().parent / "specs" / "valid"
# The example services, everything.yaml and local_jobs.yaml run in test_new_end_to_end.py.
# tiny_limits also holds accents, emoji, quotes and a backslash in every description, and optional
# ints: its suite runs under the oldest and the newest supported Python (a virtualenv from the
# service's lock), the others' under the Python running these tests.
RUNS = [("tiny_limits", version) for version in OLDEST_AND_NEWEST_PYTHON] + [
    (name, None) for name in ("reads_by_address", "query_shapes", "minimal")
]
# The contract test of the generated suite that proves a limit: one case per rate-limited
# endpoint, in <package>/_generated/test_contract.py.
PROOF_OF_LIMITS = "test_the_request_over_the_limit_gets_429_with_retry_after"
CONTRACT_TESTS = "._generated.test_contract"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Service:
    root: Path
    python: str  # the interpreter its suite runs with


@pytest.fixture(
    scope="module",
    params=RUNS,
    ids=[name + (f"-py{version}" if version else "") for name, version in RUNS],
)
def service(request: pytest.FixtureRequest, tmp_path_factory, service_python) -> Service:
    """The service generated from the spec, shared by its SQLite and its MariaDB run."""
    name, version = request.param
    root = tmp_path_factory.mktemp(name) / "service"
    run_shoestring("new", str(SPECS / f"{name}.yaml"), "-o", str(root))
    return Service(root, str(service_python(version)) if version else sys.executable)


def run_suite(service: Service, database_url: str | None) -> list[ET.Element]:
    """Run the service's own tests; returns the test cases of its JUnit report."""
    report = service.root / "report.xml"
    run_service_suite(
        service.root, database_url, python=service.python, args=(f"--junitxml={report}",)
    )
    cases = list(ET.parse(report).getroot().iter("testcase"))
    broken = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in cases
        if case.find("failure") is not None or case.find("error") is not None
    ]
    assert cases and not broken, f"{service.root}: {broken or 'no tests ran'}"
    return cases


def assert_limits_were_proven(service: Service, cases: list[ET.Element]) -> None:
    """Each rate-limited endpoint of the spec got its 429 in the suite (ran, not skipped)."""
    # The endpoints as the generated service reads them.
    table = next(service.root.glob("*/_generated/service.json"))
    endpoints = json.loads(table.read_text())["endpoints"]
    limited = [endpoint["name"] for endpoint in endpoints if endpoint.get("rate_limit")]
    proven = [
        case.get("name").split("[", 1)[1].rstrip("]")
        for case in cases
        if case.get("classname", "").endswith(CONTRACT_TESTS)
        and case.get("name").startswith(PROOF_OF_LIMITS + "[")
        and case.find("skipped") is None
    ]
    assert sorted(proven) == sorted(limited)


def test_the_generated_suite_passes_on_sqlite(service: Service) -> None:
    assert_limits_were_proven(service, run_suite(service, None))


@pytest.mark.mysql
def test_the_generated_suite_passes_on_mariadb(service: Service, mysql_url: str) -> None:
    # The suite creates a database of its own on the server and drops it afterwards.
    assert_limits_were_proven(service, run_suite(service, mysql_url))
