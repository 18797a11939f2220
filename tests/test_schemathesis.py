"""Property-based testing of a generated service from its own OpenAPI document (schemathesis).

The orders example is generated into a temporary folder, migrated, given a signing key and served
by waitress on 127.0.0.1; schemathesis reads `/openapi.json` from it and sends what it derives
from the document, valid and invalid (examples, coverage of each keyword's edges, random
fuzzing, and chains of operations), with a token granting every scope of the spec. Two checks
must hold for every response:

- `not_a_server_error`: no 5xx, whatever the input;
- `response_schema_conformance`: each response, errors included, matches the schema the document
  gives for its status (problem+json for the errors).

The run is bounded (examples per operation, a fixed seed so a failure reproduces, a timeout).
Set SCHEMATHESIS_SEED to explore with another seed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import EXAMPLES, _connect, run_shoestring
from support import free_port

pytestmark = [pytest.mark.slow]

SEED = os.environ.get("SCHEMATHESIS_SEED", "20240501")
MAX_EXAMPLES = 30
CHECKS = "not_a_server_error,response_schema_conformance"
RUN_TIMEOUT_SECONDS = 120
SCHEMATHESIS = "from schemathesis.cli import schemathesis; schemathesis()"


def run_service(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "orders", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"orders {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schemathesis") / "orders"
    run_shoestring("new", str(EXAMPLES / "orders" / "service.yaml"), "-o", str(root))
    return root


@pytest.fixture(
    params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)],
)
def database_url(request: pytest.FixtureRequest, orders: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{orders / 'var' / f'schemathesis-{time.time_ns()}.db'}"
        return
    server_url = request.getfixturevalue("mysql_url")
    name = f"ss_schemathesis_{time.time_ns()}"
    server = _connect(server_url)
    with server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    parts = urlsplit(server_url)
    try:
        yield f"{parts.scheme}://{parts.netloc}/{name}"
    finally:
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()


def test_no_input_gets_a_server_error_or_a_response_that_breaks_its_schema(
    orders: Path, database_url: str, tmp_path: Path
):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PAYMENTS_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
        "SERVICE_KEYS_DIR": str(tmp_path / "keys"),
    }
    run_service(orders, env, "migrate")
    run_service(orders, env, "keys", "generate")
    service = json.loads((orders / "orders" / "_generated" / "service.json").read_text())
    scopes = sorted({scope for e in service["endpoints"] for scope in e["scopes"]})
    token = run_service(orders, env, "token", "--scope", " ".join(scopes), "--ttl", "600")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "orders", "serve", "--port", str(port), "--threads", "4"],
            cwd=orders,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                requests.get(f"{base}/livez", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)

        run = subprocess.run(
            [
                sys.executable,
                "-c",
                SCHEMATHESIS,
                "run",
                f"{base}/openapi.json",
                "--url",
                base,
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                CHECKS,
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                SEED,
                # One worker: with two, schemathesis runs its phases in two threads, and
                # CPython 3.11 keeps the AST constructor's recursion depth per interpreter, not
                # per thread, so parsing in both at once fails now and then with "SystemError:
                # AST constructor recursion depth mismatch" (CPython gh-106905).
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "No issues found" in output, output
    # Every operation was exercised with the token (not only refused as unauthenticated).
    assert "Authentication failed" not in output, output
    assert "Traceback" not in log.read_text(), log.read_text()
