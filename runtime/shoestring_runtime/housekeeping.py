# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Housekeeping: finished messages are deleted after the retention period, a little at a time.

DONE rows of the queue and the outbox are kept for MESSAGE_RETENTION_DAYS (for looking back at
what happened), then deleted in small batches, each its own short transaction, so a purge never
holds many locks or a long transaction while workers claim. Dead letters (FAILED) are kept until
someone requeues or purges them (`dead-letters` command).

The request path's own tables are purged the same way: rate limit buckets whose quota is full
again and idempotency keys past their retention. Requests delete a few now and then; the worker
catches up when traffic stops.
"""

from __future__ import annotations

from collections.abc import Callable

from .claim import OUTBOX, QUEUE, Table
from .db import Database, retry_on_deadlock
from .idempotency import TABLE as IDEMPOTENCY_TABLE
from .idempotency import IdempotencyKeys
from .ratelimit import TABLE as RATE_LIMIT_TABLE
from .ratelimit import DatabaseStorage

PURGE_BATCH = 500
PURGE_MAX_BATCHES = 20  # at most 10,000 rows per table per run; the next run does the rest


def purge_finished(
    db: Database,
    table: Table,
    *,
    older_than_seconds: float,
    status: str = "DONE",
    batch_size: int = PURGE_BATCH,
    max_batches: int = PURGE_MAX_BATCHES,
) -> int:
    """Delete `status` rows of `table` that finished more than `older_than_seconds` ago; return
    how many went."""
    if status not in ("DONE", "FAILED"):
        raise ValueError(f"only finished rows may be purged, not {status} ones")
    total = 0
    for _ in range(max_batches):

        def purge_batch() -> int:
            with db.transaction() as conn:
                dialect = conn.dialect
                # For a finished row, available_at is when it finished, so this is a range of the
                # (status, ...available_at) index. No ORDER BY: the outbox index has the
                # destination in between, and any old rows will do.
                rows = conn.fetchall(
                    f"SELECT id FROM {table.name} WHERE status = %s "
                    f"AND available_at <= {dialect.now_plus_seconds_sql()} LIMIT %s",
                    (status, -older_than_seconds, batch_size),
                )
                ids = [row["id"] for row in rows]
                if ids:
                    marks = ", ".join(["%s"] * len(ids))
                    # The status check again: a dead letter requeued since the SELECT stays.
                    conn.execute(
                        f"DELETE FROM {table.name} WHERE id IN ({marks}) AND status = %s",
                        (*ids, status),
                    )
                return len(ids)

        deleted = retry_on_deadlock(purge_batch, db.dialect)
        total += deleted
        if deleted < batch_size:
            break
    return total


def purge_done(db: Database, retention_days: float) -> dict[str, int]:
    """Delete DONE rows older than `retention_days` from the queue and the outbox."""
    seconds = retention_days * 86400
    return {
        table.name: purge_finished(db, table, older_than_seconds=seconds)
        for table in (QUEUE, OUTBOX)
    }


def purge_request_state(
    db: Database, batch_size: int = PURGE_BATCH, max_batches: int = PURGE_MAX_BATCHES
) -> dict[str, int]:
    """Delete rate limit buckets that decide like missing ones and idempotency keys past their
    retention (or a dead request's lease), a batch per transaction; return how many went."""
    purges: dict[str, Callable[[], int]] = {
        RATE_LIMIT_TABLE: lambda: DatabaseStorage(db).purge(batch=batch_size),
        IDEMPOTENCY_TABLE: lambda: IdempotencyKeys(db).purge(batch_size),
    }
    purged = {}
    for table, purge in purges.items():
        total = 0
        for _ in range(max_batches):
            deleted = retry_on_deadlock(purge, db.dialect)
            total += deleted
            if deleted < batch_size:
                break
        purged[table] = total
    return purged
