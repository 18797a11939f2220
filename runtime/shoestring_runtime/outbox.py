# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The outbox: messages this service publishes, written in the same transaction as the change
they announce, delivered to peers afterwards.

    def handle(ctx, data):
        ctx.db.execute("INSERT INTO orders ...", (...))
        ctx.publish("order.created", 1, {"order_id": order_id, ...})   # same transaction

`ctx.publish` validates the data against the message version's schema at once (an invalid
message raises before anything commits, naming the field) and buffers one outbox row per
destination in the spec's `to:` list. The buffer (`Outgoing`) is written with one multi-row
INSERT per table just before the transaction commits, so the change and its messages are stored
together or not at all. A message the service also subscribes to itself (`from:` its own name)
goes into its own queue as well; a message with no destination and no local subscriber is
validated and then has nobody to go to, so nothing is stored. During a migration between
versions, one publish writes several: `publish_also: [1]` on version 2 in the spec makes
`ctx.publish("order.created", 2, data)` publish version 1 too, converted by the user's
`handlers/order_created_v2_to_v1.py`.

Delivery goes through a transport per destination (`transports.Transport`:
`deliver(rows) -> {row id: None | error}`). `relay_batch` claims a destination's rows (the same
claim as the queue, see claim.py), hands them to its transport outside any transaction, and
completes or retries each row on its lease. Rows for a destination with no transport wait, NEW,
until one is configured.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import queue
from .claim import OUTBOX, RetryPolicy, claim, complete, describe_exception, fail
from .db import Connection, Database, retry_on_deadlock
from .dialect import Dialect
from .events import Catalog, MessageError, envelope
from .transports import Transport


class Rejected(str):
    """A transport's answer for a row the peer refused for good (it will never accept the message
    as it is, e.g. its inbox does not subscribe to it): the row becomes a dead letter at once,
    with this text as its error, instead of being retried."""


#: Converts the data of one version of a message to another (see `publish_also` in `publish`).
Converter = Callable[[dict[str, Any]], dict[str, Any]]

# The queue's columns, with `destination` where the queue has `source` (see queue.message_row).
COLUMNS = (queue.COLUMNS[0], "destination", *queue.COLUMNS[2:])


class Outgoing:
    """Messages published and jobs enqueued during one transaction, written by `flush` just
    before it commits. Dropped with the transaction when the work raises."""

    def __init__(self) -> None:
        self.outbox_rows: list[tuple[Any, ...]] = []
        self.queue_rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.outbox_rows) + len(self.queue_rows)

    def add_delivery(self, event: dict[str, Any], destination: str) -> None:
        """Buffer an outbox row taking `event` to `destination`."""
        self.outbox_rows.append(queue.message_row(event, destination))

    def add_job(self, event: dict[str, Any], delay_seconds: float = 0) -> None:
        """Buffer a row of this service's own queue holding `event`."""
        self.queue_rows.append(queue.row_values(event, delay_seconds))

    def flush(self, conn: Connection) -> None:
        """Write the buffered rows in the caller's transaction, in one round trip."""
        statements = self.take_statements(conn.dialect)
        if statements:
            conn.batch(statements)

    def take_statements(self, dialect: Dialect) -> list[tuple[str, list[Any]]]:
        """The INSERTs that write the buffered rows (a multi-row INSERT per table), for a
        `Connection.batch` that may carry more; the buffer is emptied."""
        statements = dialect.insert_ignore_statements(
            OUTBOX.name, COLUMNS, ("destination", "message_id"), self.outbox_rows
        ) + queue.insert_statements(dialect, self.queue_rows)
        self.discard()
        return statements

    def discard(self) -> None:
        self.outbox_rows = []
        self.queue_rows = []


def publish(
    outgoing: Outgoing,
    catalog: Catalog,
    type_: str,
    version: int,
    data: Any,
    *,
    traceparent: str,
    converters: Mapping[tuple[str, int, int], Converter] | None = None,
) -> dict[str, Any]:
    """Validate `data` as (type, version) and buffer it for every receiver; return the CloudEvent.

    When the spec lists other versions under the version's `publish_also` (a migration between
    versions), each is published too, in the same transaction: converted from `data` by the
    user's converter (`_generated/converters.py`, which the catalog loads, unless `converters`
    is given) and validated against its own schema. Only the version asked for is returned.

    Raises `events.InvalidMessage` naming the field when the data (or a converted version)
    breaks the schema, and `events.UnknownMessage` when the spec does not declare the message
    version.
    """
    event = _publish_one(outgoing, catalog, type_, version, data, traceparent=traceparent)
    for target in publish_also(catalog, type_, version):
        table = _converters(catalog) if converters is None else converters
        convert = table.get((type_, version, target))
        if convert is None:
            raise MessageError(
                f"{type_} v{version} is also published as v{target} (publish_also), but no "
                f"converter is registered for it: run `shoestring generate`"
            )
        converted = convert(copy.deepcopy(event["data"]))
        _publish_one(outgoing, catalog, type_, target, converted, traceparent=traceparent)
    return event


def publish_also(catalog: Catalog, type_: str, version: int) -> list[int]:
    """The other versions published whenever (type, version) is (the spec's `publish_also`)."""
    versions = (catalog.messages.get(type_) or {}).get("versions") or {}
    return [int(target) for target in (versions.get(str(version)) or {}).get("publish_also", [])]


def _converters(catalog: Catalog) -> Mapping[tuple[str, int, int], Converter]:
    """The user's converters of the catalog's service (`Service.converters`); none when the
    catalog was built without them."""
    return catalog.converters() if catalog.converters is not None else {}


def _publish_one(
    outgoing: Outgoing,
    catalog: Catalog,
    type_: str,
    version: int,
    data: Any,
    *,
    traceparent: str,
) -> dict[str, Any]:
    data = catalog.check_published(type_, version, data)
    event = envelope(
        source=catalog.service,
        type_=type_,
        version=version,
        data=data,
        dataschema=catalog.dataschema(type_, version),
        traceparent=traceparent,
    )
    for destination in catalog.destinations(type_):
        outgoing.add_delivery(event, destination)
    if catalog.local_subscription(type_, version):
        outgoing.add_job(event)
    return event


@dataclass
class RelayResult:
    """What one `relay_batch` did."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0


def relay_batch(
    db: Database,
    destination: str,
    transport: Transport,
    *,
    policy: RetryPolicy,
    batch_size: int,
    lease_seconds: float,
    method: str,
    log: logging.Logger,
) -> RelayResult:
    """Claim up to `batch_size` of `destination`'s outbox rows, deliver them with `transport`,
    and record the outcome of each on its lease."""
    rows = claim(
        db,
        OUTBOX,
        limit=batch_size,
        lease_seconds=lease_seconds,
        method=method,
        partition=destination,
    )
    result = RelayResult(claimed=len(rows))
    if not rows:
        return result
    # No transaction is open while the peer is called: a slow peer holds no locks, only leases.
    try:
        answers = dict(transport.deliver(rows))
    except Exception as exc:  # noqa: BLE001  # the transport failed: every row failed with it
        error = describe_exception(exc)
        answers = {row.id: error for row in rows}
    delivered = [row for row in rows if row.id in answers and answers[row.id] is None]
    failed = [
        (row, answers.get(row.id) or f"the {destination} transport did not report on this row")
        for row in rows
        if row not in delivered
    ]

    def record() -> None:
        with db.transaction() as conn:
            # A row whose lease ran out during delivery stays with whoever claimed it since
            # (it reaches the peer twice, and the peer's inbox drops the copy by message id).
            result.delivered = complete(conn, delivered)
            result.retried = result.dead = 0
            for row, error in failed:
                last = policy.gives_up_after(row.attempt) or isinstance(error, Rejected)
                if fail(conn, row, error, retry_in=None if last else policy.delay(row.attempt)):
                    if last:
                        result.dead += 1
                    else:
                        result.retried += 1

    retry_on_deadlock(record, db.dialect)
    if failed:
        log.warning(
            "outbox.delivery_failed",
            extra={
                "destination": destination,
                "failed": len(failed),
                "batch": len(rows),
                "dead_lettered": result.dead,
                "error": _last_line(failed[0][1]),
            },
        )
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def pending(conn: Connection, destinations: list[str] | None = None) -> dict[str, int]:
    """Outbox rows waiting for delivery, by destination."""
    rows = conn.fetchall(
        "SELECT destination, COUNT(*) AS waiting FROM outbox "
        "WHERE status IN ('NEW', 'IN_PROGRESS') GROUP BY destination",
        (),
    )
    counts = {row["destination"]: int(row["waiting"]) for row in rows}
    if destinations is not None:
        counts = {name: count for name, count in counts.items() if name in destinations}
    return counts
