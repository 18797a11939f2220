"""Fixtures shared by this repo's tests: the MariaDB/MySQL server and generated services."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"
MYSQL_URL = os.environ.get("SHOESTRING_MYSQL_URL", DEFAULT_MYSQL_URL)
HOW_TO_PROVIDE = (
    f"no MariaDB/MySQL server answers at {MYSQL_URL}: start one (for example "
    "`start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`) or set "
    "SHOESTRING_MYSQL_URL=mysql://user:password@host:3306/database to a server where that user "
    "may create and drop databases"
)


def _connect(url: str, database: str | None = None):
    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=3,
    )


def _server_error() -> str | None:
    import pymysql

    try:
        _connect(MYSQL_URL).close()
    except (OSError, pymysql.MySQLError) as exc:  # no usable server
        return f"{HOW_TO_PROVIDE} ({exc})"
    return None


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """The server URL; skipped with instructions on a laptop without one, a failure in CI."""
    error = _server_error()
    if error:
        if os.environ.get("CI") == "true":
            pytest.fail(error)
        pytest.skip(error)
    return MYSQL_URL


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@pytest.fixture
def mysql_database(mysql_url: str) -> Iterator[str]:
    """A fresh, empty database on the server, dropped afterwards; yields its URL."""
    name = f"ss_test_{uuid.uuid4().hex[:12]}"
    conn = _connect(mysql_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        yield database_url(mysql_url, name)
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def run_shoestring(
    *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the `shoestring` CLI in a subprocess, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "shoestring", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"shoestring {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@pytest.fixture
def new_service(tmp_path: Path):
    """Factory: `new_service(spec_path)` generates a service with `shoestring new`; returns its dir."""

    def make(spec: Path, name: str = "svc") -> Path:
        out = tmp_path / name
        run_shoestring("new", str(spec), "-o", str(out))
        return out

    return make


@pytest.fixture(scope="session")
def service_python(tmp_path_factory: pytest.TempPathFactory):
    """`service_python(version)`: the python of a virtualenv of pyenv's Python `version` with a
    generated service's locked test requirements, made once per run and shared by the tests."""
    from support import service_virtualenv

    made: dict[str, Path] = {}

    def python(version: str) -> Path:
        if version not in made:
            made[version] = service_virtualenv(version, tmp_path_factory.mktemp("venv") / version)
        return made[version]

    return python
