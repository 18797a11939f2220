"""The runtime's own tests: they run on services generated from specs/ (services.py), through
the plugin every service's tests use (shoestring_runtime.testing), on SQLite and on the
MariaDB/MySQL server of SHOESTRING_MYSQL_URL (default mysql://root@127.0.0.1:3306/test).

A test that uses a database (`database_url`, `fresh_database_url`, `settings`, `db`, `app`,
`client`, ...) runs once per engine; a test that uses none runs once.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pymysql
import pytest

from shoestring_runtime import Service

from .messaging_helpers import CLAIM_METHODS, clean_tables, each_claim_method
from .shop import SERVICE

pytest_plugins = ["shoestring_runtime.testing"]

MYSQL_URL = os.environ.get("SHOESTRING_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def service() -> Service:
    """The service most tests run on: endpoints with scopes, idempotency and rate limits,
    messages published and subscribed, a peer (specs/shop.yaml)."""
    return SERVICE


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]
)
def database_server(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: SQLite files (""), then databases on the MariaDB/MySQL server; that
    one is skipped with instructions where no server answers, and fails in CI."""
    if request.param == "sqlite":
        return ""
    parts = urlsplit(MYSQL_URL)
    try:
        pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=3,
        ).close()
    except (OSError, pymysql.MySQLError) as exc:
        message = (
            f"no MariaDB/MySQL server answers at {MYSQL_URL} ({exc}): start one, or set "
            "SHOESTRING_MYSQL_URL=mysql://user:password@host:3306/database to a server where "
            "that user may create and drop databases"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return MYSQL_URL


@pytest.fixture
def mdb(db):
    """The session's database with the messaging tables emptied before and after the test (the
    queue, outbox, worker and relay tests)."""
    yield from clean_tables(db)


@pytest.fixture(params=CLAIM_METHODS)
def method(request, db):
    """Each claim method in turn (SKIP LOCKED, compare-and-set), where the database has it."""
    return each_claim_method(request, db)
