"""Shared pieces of the queue, outbox and worker tests: a catalog of test messages (independent of
this service's spec, so the tests run whatever service.yaml says), clean tables, small helpers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shoestring_runtime import outbox, queue
from shoestring_runtime.claim import SKIP_LOCKED
from shoestring_runtime.db import Database
from shoestring_runtime.events import Catalog
from shoestring_runtime.settings import Settings
from shoestring_runtime.worker import Worker

PING = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["n"],
    "additionalProperties": False,
}
MODEL = {
    "service": {"name": "testsvc"},
    "messages": {
        "test.ping": {"to": ["peer_a", "peer_b"], "versions": {"1": {"schema": PING}}},
        "test.local": {"to": [], "versions": {"1": {"schema": PING}}},
        "test.nobody": {"to": [], "versions": {"1": {"schema": PING}}},
    },
    "subscriptions": [
        {"message": "test.ping", "version": 1, "from": "peer_a", "retry": "fast", "schema": PING},
        {"message": "test.local", "version": 1, "from": "testsvc", "retry": "fast",
         "schema": PING},
    ],
    "retry_policies": {"fast": {"max_attempts": 3, "base_seconds": 0.2, "max_seconds": 0.4}},
}
EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS test_effects ("
    " message_id VARCHAR(64) NOT NULL PRIMARY KEY, n INT NOT NULL)"
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def catalog() -> Catalog:
    return Catalog.load(MODEL)


def clean_tables(db: Database) -> Iterator[Database]:
    """Fixture `mdb`: the session's database with empty message tables and an empty
    `test_effects` table, where test handlers record what they did (message_id is its primary
    key: a second handling of the same message could not commit)."""
    with db.transaction() as conn:
        conn.execute(EFFECTS_DDL)
    with db.transaction() as conn:
        for table in ("message_queue", "outbox", "test_effects"):
            conn.execute(f"DELETE FROM {table}")
    yield db


CLAIM_METHODS = ["skip_locked", "compare_and_set"]


def each_claim_method(request: pytest.FixtureRequest, db: Database) -> str:
    """Fixture `method` (params=CLAIM_METHODS): each claim method the database can run (SKIP
    LOCKED only where the server has it)."""
    if request.param == SKIP_LOCKED and not db.dialect.supports_skip_locked:
        pytest.skip(f"{db.dialect!r} has no SKIP LOCKED")
    return request.param


def enqueue(
    db: Database, items: list[dict[str, Any]], type_: str = "test.local", delay: float = 0
) -> list[dict[str, Any]]:
    """Enqueue one job per item in one transaction, as a handler's ctx.enqueue would."""
    outgoing = outbox.Outgoing()
    events = [
        queue.enqueue(outgoing, catalog(), type_, 1, item, traceparent=TRACEPARENT,
                      delay_seconds=delay)
        for item in items
    ]
    with db.transaction() as conn:
        outgoing.flush(conn)
    return events


def rows(db: Database, table: str = "message_queue") -> list[dict[str, Any]]:
    with db.transaction(readonly=True) as conn:
        found = conn.fetchall(f"SELECT * FROM {table} ORDER BY id")
    for row in found:
        for column in ("payload", "attempt_log"):
            if isinstance(row[column], (str, bytes)):
                row[column] = json.loads(row[column])
    return found


def effects(db: Database) -> dict[str, int]:
    with db.transaction(readonly=True) as conn:
        return {r["message_id"]: r["n"] for r in conn.fetchall("SELECT * FROM test_effects")}


def db_now(db: Database) -> Any:
    """The database clock (the one leases and backoff are measured on)."""
    with db.transaction(readonly=True) as conn:
        now = conn.fetchvalue(f"SELECT {conn.dialect.now_sql} AS now", ())
    return dt.datetime.fromisoformat(now) if isinstance(now, str) else now


def make_worker(
    db: Database, settings: Settings, subscribers: dict, method: str = "auto", **options: Any
) -> Worker:
    return Worker(
        db, subscribers=subscribers, catalog=catalog(), settings=settings,
        log=logging.getLogger("test.worker"), method=method, **options,
    )


def record_effect(ctx: Any, data: dict[str, Any]) -> None:
    """A handler with an effect in the service's database: one row per message handled."""
    ctx.db.execute(
        "INSERT INTO test_effects (message_id, n) VALUES (%s, %s)", (ctx.request_id, data["n"])
    )
