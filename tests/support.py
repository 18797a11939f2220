"""Helpers shared by this repo's tests: runtime modules, databases and served services."""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "runtime" / "shoestring_runtime"


def chassis_module(name: str) -> Any:
    """The runtime's module `shoestring_runtime.<name>`."""
    return importlib.import_module(f"shoestring_runtime.{name}")


def start_server(
    command: list[str], *, cwd: Path, env: dict[str, str], name: str, url: str
) -> subprocess.Popen:
    """Start a server process and wait until its /livez answers (30 s at most)."""
    server = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"{name} exited: {server.stderr.read().decode()}")
        try:
            requests.get(url + "/livez", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_server(server)
    raise AssertionError(f"{name} did not answer at {url} within 30 s")


def stop_server(server: subprocess.Popen | None) -> None:
    """Stop a server started by `start_server`: SIGTERM, then SIGKILL after 10 s."""
    if server is not None and server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# The engines the chassis' database code runs on in unit tests: SQLite; MariaDB as it is
# (INSERT ... RETURNING); and the same server seen as MySQL 8, which has no RETURNING, so the
# MySQL-only paths run here too.
DATABASE_KINDS = [
    "sqlite",
    pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("mysql8", marks=pytest.mark.mysql),
]


def chassis_database(request: Any, tmp_path: Path, *migrations: str) -> Any:
    """A chassis `Database` of the kind `request.param` names (see DATABASE_KINDS), with the
    chassis migrations `migrations` (file names) applied. Close it after the test."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chassis.db'}"
    else:
        url = request.getfixturevalue("mysql_database")
    db = chassis_module("db").Database(url)
    if request.param == "mysql8":
        db.dialect  # noqa: B018 - connects once, learning the server
        db._dialect = chassis_module("dialect").MySQLDialect("mysql", (8, 0, 36))
        assert db.dialect.returning_sql(["x"]) is None
    for name in migrations:
        apply_migration(db, name)
    return db


def apply_migration(db: Any, name: str) -> None:
    """Apply the chassis migration file `name` for the database's engine."""
    path = RUNTIME / "migrations" / db.dialect.name / name
    for statement in chassis_module("migrate").split_statements(path.read_text()):
        with db.transaction() as conn:
            conn.execute(statement)


def no_purges_by_chance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests purge old rate limit and idempotency rows now and then, at random; call this in
    a test that counts rows, so that only the purges it asks for run."""
    for name in ("ratelimit", "idempotency"):
        monkeypatch.setattr(chassis_module(name), "PURGE_PROBABILITY", 0)


def free_port() -> int:
    """A TCP port nobody listens on right now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query_mysql(database_url: str, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    """Rows of `sql` as dicts, read with a connection of its own from the database of a
    mysql:// URL (what a service wrote, seen from outside it)."""
    from conftest import _connect

    conn = _connect(database_url, database_url.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            columns = [column[0] for column in cursor.description or ()]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        conn.close()


# An identity for the commits tests make (a machine may have none configured).
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def shoestring(*args: str, expect: int = 0) -> Any:
    """Run the `shoestring` CLI in this process (click's runner); assert its exit code."""
    from click.testing import CliRunner
    from shoestring.cli import main

    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == expect, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        + (f"\n{result.exception!r}" if result.exception else "")
    )
    return result


def scaffold_service(
    root: Path,
    spec: str,
    handlers: dict[str, str],
    migrations: dict[str, str],
    migration_name: str,
) -> Path:
    """Generate a service from the spec text `spec` into `root` (`shoestring new`, in a
    subprocess as a user runs it), write its handlers ({module name: source}) and one app
    migration per engine ({"mysql": sql, "sqlite": sql}) named `migration_name`. Returns the
    folder of its handlers."""
    from conftest import run_shoestring

    spec_file = root.parent / f"{root.name}.yaml"
    spec_file.write_text(spec)
    run_shoestring("new", str(spec_file), "-o", str(root))
    handlers_dir = next(path.parent for path in root.glob("*/handlers/__init__.py"))
    for name, source in handlers.items():
        (handlers_dir / f"{name}.py").write_text(source)
    for engine, sql in migrations.items():
        folder = root / "migrations" / engine
        folder.mkdir(parents=True, exist_ok=True)
        (folder / migration_name).write_text(sql)
    return handlers_dir


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` by its relative path, with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# The oldest and the newest Python a generated service supports, as pyenv names them.
OLDEST_AND_NEWEST_PYTHON = ("3.10.13", "3.13.0")


def pyenv_python(version: str) -> str:
    """The path of pyenv's Python `version`: skipped where it is missing, a failure in CI."""
    minor = ".".join(version.split(".")[:2])
    found = subprocess.run(
        [f"python{minor}", "-c", "import sys; print(sys.executable)"],
        env={**os.environ, "PYENV_VERSION": version},
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        message = f"Python {version} is not installed (pyenv install {version}): {found.stderr}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found.stdout.strip()


@functools.cache
def runtime_wheelhouse() -> Path:
    """A folder holding the wheel of runtime/ as it is in this checkout, built once per test
    process the way `--vendor-runtime` builds it (from a copy: the checkout gets no build/):
    what `--find-links` needs to install shoestring-runtime, which is on no index."""
    from shoestring.vendor import VENDOR_DIR, vendor_runtime

    folder = Path(tempfile.mkdtemp(prefix="runtime-wheel-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    vendor_runtime(folder)
    return folder / VENDOR_DIR


def service_virtualenv(version: str, where: Path) -> Path:
    """A virtualenv of Python `version` with what a generated service's tests need, installed
    from the template's lock (requirements-dev.txt) as a user installs it, the runtime from a
    wheel of this checkout's; returns its python."""
    subprocess.run([pyenv_python(version), "-m", "venv", str(where)], check=True)
    python = where / "bin" / "python"
    lock = REPO / "template" / "requirements-dev.txt"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(lock)]
        + ["--find-links", str(runtime_wheelhouse())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def run_service_suite(
    root: Path,
    database_url: str | None = None,
    *,
    python: str | Path = sys.executable,
    args: tuple[str, ...] = (),
) -> str:
    """Run a generated service's own test suite as its developer runs it: on SQLite, or on the
    database of `database_url` (TEST_DATABASE_URL). Fails with the suite's output when it
    fails; returns what it printed."""
    environ = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
    if database_url is not None:
        environ["TEST_DATABASE_URL"] = database_url
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (
        f"the tests of the service in {root} failed (TEST_DATABASE_URL="
        f"{database_url or 'unset: SQLite'}, {python}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout
