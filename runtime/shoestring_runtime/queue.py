# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The message queue: work this service must do, from peers (through the inbox) or from itself.

    ctx.enqueue("invoice.requested", 1, {"order_id": order_id})             # in a handler
    ctx.enqueue("invoice.requested", 1, {"order_id": order_id}, delay_seconds=600)

Rows are written in the caller's transaction (see `outbox.Outgoing`), so a job exists exactly when
the business change that asked for it committed. The worker (`worker.py`) claims rows through
`claim.py` and runs `SUBSCRIBERS[(type, version)]` on each. A message arriving twice (same
source and id) is stored once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from .claim import QUEUE
from .db import Connection, utcnow
from .dialect import Dialect
from .events import Catalog, MessageError, UnknownMessage, envelope, parse_event_type
from .jsonbody import COMPACT

COLUMNS = (
    "message_id",
    "source",
    "message_type",
    "version",
    "payload",
    "status",
    "retry_count",
    "available_at",
    "created_at",
    "updated_at",
)


def utcnow_ms() -> dt.datetime:
    """Now, truncated to the millisecond: SQLite's clock (`dialect.now_sql`) has milliseconds, so
    a row stamped with microseconds could look a moment in the future to a claim right after."""
    now = utcnow()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def row_values(event: dict[str, Any], delay_seconds: float = 0) -> tuple[Any, ...]:
    """The column values (in COLUMNS order) of a NEW queue row holding the CloudEvent `event`."""
    return message_row(event, event["source"], delay_seconds)


def message_row(event: dict[str, Any], party: str, delay_seconds: float = 0) -> tuple[Any, ...]:
    """A NEW row holding the CloudEvent `event`, in the column order the queue and the outbox
    share; `party` is the second column: the queue's `source`, the outbox's `destination`."""
    type_, version = parse_event_type(event["type"])
    now = utcnow_ms()
    return (
        event["id"],
        party,
        type_,
        version,
        COMPACT.encode(event),
        "NEW",
        0,
        now + dt.timedelta(seconds=max(0.0, delay_seconds)),
        now,
        now,
    )


def insert(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert queue rows (from `row_values`) in one statement; return how many were new.

    A row whose (source, message_id) is already there is dropped, whatever its status: a peer
    that retries a delivery after a lost acknowledgement does not cause a second handling.
    """
    return sum(result.rowcount for result in conn.batch(insert_statements(conn.dialect, rows)))


def insert_statements(
    dialect: Dialect, rows: Sequence[tuple[Any, ...]]
) -> list[tuple[str, list[Any]]]:
    """The multi-row INSERTs of `insert`, for a `Connection.batch` that may carry more."""
    return dialect.insert_ignore_statements(QUEUE.name, COLUMNS, ("source", "message_id"), rows)


def accept(conn: Connection, events: Iterable[dict[str, Any]]) -> int:
    """Store CloudEvents received from peers (already authenticated and validated by the inbox)
    for the worker; return how many were new (the others were duplicates)."""
    return insert(conn, [row_values(event) for event in events])


def enqueue(
    outgoing: Any,
    catalog: Catalog,
    type_: str,
    version: int,
    data: Any,
    *,
    traceparent: str,
    delay_seconds: float = 0,
) -> dict[str, Any]:
    """Validate `data` and add a job for this service's own worker to `outgoing` (an
    `outbox.Outgoing`, written when the transaction commits); return the CloudEvent.

    The job is handled by the subscriber of (type, version), so the spec must subscribe to it.
    """
    if catalog.subscription(type_, version) is None:
        raise MessageError(
            f"{catalog.service} has no handler for {type_} v{version}, so a job of that type "
            "would wait forever: add a subscription `{message: " + type_ + ", version: "
            f"{version}, from: {catalog.service}, retry: default}}` to service.yaml and run "
            "`shoestring generate`"
        )
    if delay_seconds < 0:
        raise ValueError(f"delay_seconds={delay_seconds}: a job cannot run in the past")
    data = catalog.check_received(type_, version, data)
    event = envelope(
        source=catalog.service,
        type_=type_,
        version=version,
        data=data,
        dataschema=_job_dataschema(catalog, type_, version),
        traceparent=traceparent,
    )
    outgoing.add_job(event, delay_seconds)
    return event


def _job_dataschema(catalog: Catalog, type_: str, version: int) -> str:
    try:
        return catalog.dataschema(type_, version)  # a message it publishes and handles itself
    except UnknownMessage:
        return f"urn:shoestring:{catalog.service}:jobs:{type_}.v{version}"
