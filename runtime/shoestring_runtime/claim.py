# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Claim, lease, complete, retry, dead-letter: the one mechanism behind the queue and the outbox.

A row's life (the columns: migrations/mysql/0002_message_queue.sql and 0003_outbox.sql):

    NEW --claim--> IN_PROGRESS --complete--> DONE
                        |--fail--> NEW, available_at pushed back by the retry policy
                        |--fail, last attempt--> FAILED (a dead letter)
                        `--lease runs out--> claimed again by anyone, retry_count + 1

A claim is one short transaction that leases a batch of rows to one owner until an expiry. Work
on the rows happens afterwards, in other transactions, and every later change of a row is fenced
on its lease (`WHERE id = ... AND lease_owner = ...`): when a worker is too slow or dies, its
lease runs out, another worker claims the rows, and the first one can no longer complete them.

Two ways to claim, chosen by `claim_method()`:

- SKIP LOCKED (MariaDB >= 10.6, MySQL >= 8.0.1): the candidates are selected with
  `FOR UPDATE SKIP LOCKED`, so concurrent claimers take disjoint batches without waiting.
- compare-and-set (older servers, and SQLite): the candidates are read without locks and the
  lease is written with an UPDATE that repeats the claimable condition; a row another claimer
  took in the meantime no longer matches, and the claimer reads back only what it owns.

Times come from the database clock (`dialect.now_sql`), so workers on several hosts agree on
when a lease has run out.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .db import Connection, Database, retry_on_deadlock, utcnow
from .dialect import Dialect

SKIP_LOCKED = "skip_locked"
COMPARE_AND_SET = "compare_and_set"
CLAIM_METHODS = ("auto", SKIP_LOCKED, COMPARE_AND_SET)

# Compare-and-set claimers read this many times more candidates than they need and lease a random
# sample of them, so that workers starting together do not all race for the same first rows.
CANDIDATE_SPREAD = 4
# A compare-and-set claim that lost every candidate to other claimers tries again this often.
CLAIM_ROUNDS = 3
# The attempt log keeps the latest entries only; last_error keeps the full latest traceback.
ATTEMPT_LOG_LIMIT = 25
ERROR_TEXT_LIMIT = 60_000  # below TEXT's 64 KiB, leaving room for multi-byte characters

LEASE_EXPIRED = "lease expired before the worker finished (worker killed, or slower than the lease)"


@dataclass(frozen=True)
class Table:
    """A table with the claim lifecycle: the message queue or the outbox."""

    name: str
    #: The column naming the other end of the message: `source` (queue) or `destination`.
    peer_column: str
    #: Claims filter on this column by equality when set (the outbox claims per destination).
    partition_column: str | None = None


QUEUE = Table("message_queue", peer_column="source")
OUTBOX = Table("outbox", peer_column="destination", partition_column="destination")
TABLES = {"queue": QUEUE, "outbox": OUTBOX}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing message is tried again (spec: retry_policies)."""

    max_attempts: int = 10
    base_seconds: float = 2.0
    max_seconds: float = 3600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential backoff
        with full jitter, so messages that failed together do not all come back together."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def gives_up_after(self, attempt: int) -> bool:
        """True when attempt number `attempt` was the last one allowed."""
        return attempt >= self.max_attempts

    @classmethod
    def from_spec(cls, policy: dict[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=int(policy["max_attempts"]),
            base_seconds=float(policy["base_seconds"]),
            max_seconds=float(policy["max_seconds"]),
        )


DEFAULT_POLICY = RetryPolicy()


@dataclass
class Claimed:
    """A row leased to `owner`: what a worker or relay needs to process it."""

    table: Table
    id: int
    message_id: str
    message_type: str
    version: int
    peer: str  # source (queue) or destination (outbox)
    envelope: dict[str, Any]
    retry_count: int
    owner: str
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    payload_text: str = ""  # the envelope as stored, to parse afresh for a second run

    @property
    def attempt(self) -> int:
        """The number of the attempt this claim is (1 for a message never tried before)."""
        return self.retry_count + 1

    @property
    def data(self) -> Any:
        return self.envelope.get("data")

    def __repr__(self) -> str:
        return (
            f"<{self.table.name} #{self.id} {self.message_type} v{self.version} "
            f"attempt {self.attempt}>"
        )


class LeaseLost(Exception):
    """Rows are no longer leased to us: the lease ran out and another worker claimed them."""

    def __init__(self, table: Table, ids: Sequence[int], owner: str) -> None:
        self.ids = list(ids)
        super().__init__(
            f"{table.name} rows {self.ids} are not all leased to {owner} any more: a lease ran out "
            "and another worker took the row over; the work done here is rolled back (raise the "
            "lease, or make batches smaller, if this happens often)"
        )


def claim_method(dialect: Dialect, setting: str = "auto") -> str:
    """The claim method to use: `setting` (CLAIM_METHOD) unless "auto", then SKIP LOCKED where the
    server has it and compare-and-set elsewhere."""
    if setting not in CLAIM_METHODS:
        raise ValueError(f"CLAIM_METHOD={setting!r}: use one of {', '.join(CLAIM_METHODS)}")
    if setting == "auto":
        return SKIP_LOCKED if dialect.supports_skip_locked else COMPARE_AND_SET
    if setting == SKIP_LOCKED and dialect.name == "mysql" and not dialect.supports_skip_locked:
        raise ValueError(
            f"CLAIM_METHOD=skip_locked, but {dialect!r} has no SKIP LOCKED (MariaDB >= 10.6 and "
            "MySQL >= 8.0.1 have it): set CLAIM_METHOD=auto or compare_and_set"
        )
    return setting


def new_owner() -> str:
    """A lease owner unique to one claim: host and pid for the reader, a random part so that the
    same process claiming a row again (after its own lease ran out) is a different owner."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


# -- claiming ---------------------------------------------------------------------------------


def claim(
    db: Database,
    table: Table,
    *,
    limit: int,
    lease_seconds: float,
    method: str,
    partition: str | None = None,
) -> list[Claimed]:
    """Lease up to `limit` claimable rows of `table` (of `partition`, for the outbox) to a new
    owner for `lease_seconds`; return them, oldest first. Retried when it loses a deadlock."""
    if table.partition_column and partition is None:
        raise ValueError(f"claiming from {table.name} needs a {table.partition_column}")
    owner = new_owner()

    def select_and_lock() -> list[Claimed]:
        with db.transaction() as conn:
            return _select_and_lock(conn, table, owner, limit, lease_seconds, method, partition)

    return retry_on_deadlock(select_and_lock, db.dialect)


def _select_and_lock(
    conn: Connection,
    table: Table,
    owner: str,
    limit: int,
    lease_seconds: float,
    method: str,
    partition: str | None,
) -> list[Claimed]:
    for _round in range(1 if method == SKIP_LOCKED else CLAIM_ROUNDS):
        # Rows whose lease ran out first: they are the oldest work and were already tried.
        expired = _select_candidates(conn, table, "IN_PROGRESS", limit, method, partition)
        fresh = _select_candidates(conn, table, "NEW", limit - len(expired), method, partition)
        if not expired and not fresh:
            return []
        _lock_candidates(conn, table, owner, lease_seconds, fresh, expired)
        if method == SKIP_LOCKED:
            # The locking SELECT read the rows whole; the UPDATE changed only their lease (and
            # counted the attempt whose lease ran out), so no second read is needed.
            claimed = [
                _claimed(table, owner, row, retry_count=row["retry_count"] + 1) for row in expired
            ]
            claimed += [_claimed(table, owner, row) for row in fresh]
        else:
            claimed = _read_owned(conn, table, owner, _ids(expired + fresh))
        if claimed:
            reclaimed = set(_ids(expired))
            _log_lost_leases(conn, table, [row for row in claimed if row.id in reclaimed])
            return claimed
        # Compare-and-set only: other claimers took every candidate first; look again.
    return []


def _select_candidates(
    conn: Connection,
    table: Table,
    status: str,
    limit: int,
    method: str,
    partition: str | None,
) -> list[dict[str, Any]]:
    """Rows of `status` whose available_at has come (a NEW row's backoff or delay is over, an
    IN_PROGRESS row's lease has run out), oldest first."""
    if limit <= 0:
        return []
    dialect = conn.dialect
    where, params = _claimable(dialect, table, status, partition)
    if method == SKIP_LOCKED:
        # Safe under concurrency: FOR UPDATE locks each row it returns until this transaction
        # commits, and SKIP LOCKED passes over rows another claimer has locked instead of waiting,
        # so concurrent claimers get disjoint batches. Under READ COMMITTED InnoDB locks only the
        # rows it returns (no gap locks), so inserts into the queue never wait for a claim.
        # The range of the (status, [destination,] available_at) index holds only claimable rows:
        # finished rows are never read.
        sql = (
            f"SELECT {_columns(table)} FROM {table.name} WHERE {where} "
            f"ORDER BY available_at LIMIT %s {dialect.for_update_skip_locked}"
        )
        return conn.fetchall(sql, (*params, limit))
    # Compare-and-set: a plain read that takes no locks; _lock_candidates re-checks each row.
    # Where writers run one at a time (SQLite's BEGIN IMMEDIATE) nobody can race us, so the
    # oldest rows are taken in order; elsewhere a random sample of a wider window spreads
    # concurrent claimers over different rows.
    spread = 1 if dialect.serializes_writers else CANDIDATE_SPREAD
    sql = f"SELECT id FROM {table.name} WHERE {where} ORDER BY available_at LIMIT %s"
    rows = conn.fetchall(sql, (*params, limit * spread))
    if len(rows) > limit:
        rows = sorted(random.sample(rows, limit), key=lambda row: row["id"])
    return rows


def _claimable(
    dialect: Dialect, table: Table, status: str, partition: str | None
) -> tuple[str, list[Any]]:
    params: list[Any] = [status]
    partition_clause = ""
    if table.partition_column:
        partition_clause = f"{table.partition_column} = %s AND "
        params.append(partition)
    return f"status = %s AND {partition_clause}available_at <= {dialect.now_sql}", params


def _lock_candidates(
    conn: Connection,
    table: Table,
    owner: str,
    lease_seconds: float,
    fresh: list[dict[str, Any]],
    expired: list[dict[str, Any]],
) -> None:
    """Lease the candidates to `owner` until now + lease_seconds."""
    dialect = conn.dialect
    until = dialect.now_plus_seconds_sql()
    for status, rows, extra in (
        ("NEW", fresh, ""),
        # A lease that ran out is an attempt that did not finish: counted, so that a message
        # that kills its worker every time ends among the dead letters instead of looping.
        ("IN_PROGRESS", expired, ", retry_count = retry_count + 1, last_error = %s"),
    ):
        if not rows:
            continue
        ids = _ids(rows)
        marks = ", ".join(["%s"] * len(ids))
        # Safe under concurrency, in both claim methods: the WHERE repeats the claimable condition,
        # and an UPDATE evaluates it on the latest committed version of the row while holding the
        # row's lock. With SKIP LOCKED we already hold the locks and the condition holds. With
        # compare-and-set, a row another claimer leased after our unlocked read no longer matches
        # (its status or available_at changed) and is left alone; if that claimer has not
        # committed yet we wait for it, then re-check. Rows are locked in primary key order, so
        # two claimers wait for each other instead of deadlocking (a deadlock is retried anyway).
        # If the process dies after COMMIT, the lease runs out and the rows come back.
        sql = (
            f"UPDATE {table.name} SET status = 'IN_PROGRESS', lease_owner = %s, "
            f"lease_expires_at = {until}, available_at = {until}, updated_at = {dialect.now_sql}"
            f"{extra} WHERE id IN ({marks}) AND status = %s AND available_at <= {dialect.now_sql}"
        )
        params: list[Any] = [owner, lease_seconds, lease_seconds]
        if extra:
            params.append(LEASE_EXPIRED)
        conn.execute(sql, (*params, *ids, status))


def _columns(table: Table) -> str:
    return (
        f"id, message_id, message_type, version, {table.peer_column} AS peer, payload, "
        "retry_count, attempt_log"
    )


def _read_owned(conn: Connection, table: Table, owner: str, ids: list[int]) -> list[Claimed]:
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    # Read back only what this claim owns: with compare-and-set, some candidates may have gone to
    # another claimer. Primary key lookups; the rows are locked by our UPDATE until commit.
    rows = conn.fetchall(
        f"SELECT {_columns(table)} FROM {table.name} "
        f"WHERE id IN ({marks}) AND lease_owner = %s ORDER BY id",
        (*ids, owner),
    )
    return [_claimed(table, owner, row) for row in rows]


def _claimed(
    table: Table, owner: str, row: dict[str, Any], retry_count: int | None = None
) -> Claimed:
    return Claimed(
        table=table,
        id=int(row["id"]),
        message_id=row["message_id"],
        message_type=row["message_type"],
        version=int(row["version"]),
        peer=row["peer"],
        envelope=_json(row["payload"]) or {},
        retry_count=int(row["retry_count"] if retry_count is None else retry_count),
        owner=owner,
        attempt_log=_json(row["attempt_log"]) or [],
        payload_text=_text(row["payload"]),
    )


def _log_lost_leases(conn: Connection, table: Table, rows: list[Claimed]) -> None:
    """Add the lease that ran out to each reclaimed row's attempt log (rare: a worker died)."""
    for row in rows:
        row.attempt_log = _append_log(row.attempt_log, row.retry_count, "-", LEASE_EXPIRED)
        # Fenced on our lease, taken in this same transaction.
        conn.execute(
            f"UPDATE {table.name} SET attempt_log = %s WHERE id = %s AND lease_owner = %s",
            (json.dumps(row.attempt_log), row.id, row.owner),
        )


# -- finishing --------------------------------------------------------------------------------


def complete(conn: Connection, rows: Sequence[Claimed]) -> int:
    """Mark `rows` DONE in the caller's transaction; return how many were still ours.

    Call it first in the transaction that does the rows' work, and roll back (`LeaseLost`) when
    the count falls short: the UPDATE locks the rows, so the work and the completion then commit
    together or not at all.
    """
    if not rows:
        return 0
    table, owner = rows[0].table, rows[0].owner
    ids = [row.id for row in rows]
    marks = ", ".join(["%s"] * len(ids))
    dialect = conn.dialect
    # Fenced on the lease: a worker whose lease ran out (and whose rows someone else claimed)
    # matches nothing here. The UPDATE locks the rows until the caller commits, so while the work
    # runs, a SKIP LOCKED claimer skips them and a compare-and-set claimer waits, then sees DONE.
    return conn.execute(
        f"UPDATE {table.name} SET status = 'DONE', lease_owner = NULL, lease_expires_at = NULL, "
        f"available_at = {dialect.now_sql}, updated_at = {dialect.now_sql} "
        f"WHERE id IN ({marks}) AND lease_owner = %s AND status = 'IN_PROGRESS'",
        (*ids, owner),
    )


def fail(
    conn: Connection,
    row: Claimed,
    error: str,
    *,
    retry_in: float | None,
) -> bool:
    """Record a failed attempt of `row`: back to NEW after `retry_in` seconds, or FAILED (a dead
    letter) when `retry_in` is None. Returns False when the row is no longer ours."""
    dialect = conn.dialect
    summary = error.strip().splitlines()[-1] if error.strip() else "unknown error"
    log = _append_log(row.attempt_log, row.attempt, row.owner, summary)
    if retry_in is None:
        status, available, params = "FAILED", dialect.now_sql, []
    else:
        status, available, params = "NEW", dialect.now_plus_seconds_sql(), [retry_in]
    # Fenced on the lease, like complete(): a worker whose lease ran out cannot push back or
    # dead-letter a row another worker now owns.
    changed = conn.execute(
        f"UPDATE {row.table.name} SET status = %s, retry_count = retry_count + 1, "
        f"available_at = {available}, lease_owner = NULL, lease_expires_at = NULL, "
        f"last_error = %s, attempt_log = %s, updated_at = {dialect.now_sql} "
        "WHERE id = %s AND lease_owner = %s AND status = 'IN_PROGRESS'",
        (status, *params, error[-ERROR_TEXT_LIMIT:], json.dumps(log), row.id, row.owner),
    )
    return changed == 1


def describe_exception(exc: BaseException) -> str:
    """The text stored as last_error: the traceback, ending with the exception line."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).strip()


def _append_log(
    log: list[dict[str, Any]], attempt: int, worker: str, error: str
) -> list[dict[str, Any]]:
    entry = {
        "attempt": attempt,
        "at": utcnow().isoformat(sep=" ", timespec="seconds"),
        "worker": worker,
        "error": error[:500],
    }
    return [*log, entry][-ATTEMPT_LOG_LIMIT:]


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return [int(row["id"]) for row in rows]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return value if isinstance(value, str) else json.dumps(value)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    return json.loads(value)
