"""The command line: `python -m <package> ...`, run as a user runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from shoestring_runtime.db import Database
from shoestring_runtime.migrate import migrate, pending
from shoestring_runtime.schemas import endpoints

from .shop import SERVICE, service_environment


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", SERVICE.package, *args],
        cwd=SERVICE.root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_routes_lists_every_endpoint():
    result = run("routes")
    assert result.returncode == 0, result.stderr
    for endpoint in endpoints(SERVICE.model):
        assert f"{endpoint.method}" in result.stdout and endpoint.path in result.stdout


def test_migrate_dry_run_lists_pending_migrations_and_applies_nothing(fresh_database_url):
    result = run("migrate", "--dry-run", env={"DATABASE_URL": fresh_database_url})
    assert result.returncode == 0, result.stderr
    assert "pending runtime/0001_init" in result.stdout
    waiting = pending(Database(fresh_database_url), SERVICE.root)
    assert [m.name for m in waiting][0] == "runtime/0001_init"


def test_migrate_list_names_every_migration_applied_or_pending(fresh_database_url):
    env = {"DATABASE_URL": fresh_database_url}
    names = [m.name for m in pending(Database(fresh_database_url), SERVICE.root)]
    before = run("migrate", "--list", env=env)
    assert before.returncode == 0, before.stderr
    assert [f"pending {name}" for name in names] == before.stdout.splitlines()[:-1]
    migrate(Database(fresh_database_url), SERVICE.root)
    after = run("migrate", "--list", env=env)
    assert [f"applied {name}" for name in names] == after.stdout.splitlines()[:-1]
    assert after.stdout.splitlines()[-1] == "0 pending migration(s)"


def test_check_passes_on_a_migrated_database_and_fails_before(fresh_database_url):
    env = service_environment(fresh_database_url)
    before = run("check", env=env)
    assert before.returncode == 1
    assert "pending" in before.stderr and "migrate" in before.stderr
    migrate(Database(fresh_database_url), SERVICE.root)
    after = run("check", env=env)
    assert after.returncode == 0, after.stderr
    assert after.stdout.rstrip().endswith("schema up to date")


def test_serve_answers_http_on_the_given_port(settings, db):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", SERVICE.package, "serve", "--port", str(port)],
        cwd=SERVICE.root,
        env={**os.environ, **service_environment(settings.database_url)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    assert answer.status == 200
                    assert answer.headers["Content-Type"] == "application/health+json"
                    assert json.load(answer)["status"] == "pass"
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stderr.read().decode() if server.stderr else ""
                    raise AssertionError(f"serve did not answer: {output}") from None
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(10)
