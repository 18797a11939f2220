# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The worker: runs the handlers of queued messages, and relays the outbox through transports.

    python -m <package> worker --max-seconds 55    # from cron, every minute (overlaps are safe)
    python -m <package> worker --forever           # on a VPS, under systemd; stops on SIGTERM
    python -m <package> worker --once              # one batch, for tests and debugging

Delivery is at least once; the effect is exactly once. For each batch the worker:

1. claims up to `batch_size` rows (claim.py: a short transaction, leases with an expiry);
2. dead-letters at once the rows it can never handle: no handler for their (type, version), data
   that breaks the subscription's schema, or attempts used up by workers that died on them;
3. runs the other rows' handlers in ONE transaction that first completes the rows (fenced on the
   lease), then calls `handle(ctx, data)` for each, then writes what they published: the rows are
   DONE exactly when their handlers' writes commit;
4. when any handler raises, rolls that transaction back and runs the rows one by one, each in its
   own transaction, so one poison message costs time but never blocks or repeats the others;
5. a row whose handler raises is retried later (the subscription's retry policy: exponential
   backoff with full jitter) and becomes a dead letter (FAILED) after its last attempt.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .claim import (
    QUEUE,
    Claimed,
    LeaseLost,
    claim,
    claim_method,
    complete,
    describe_exception,
    fail,
)
from .context import Context
from .db import Connection, Database, retry_on_deadlock
from .events import Catalog, MessageError
from .housekeeping import purge_done, purge_request_state
from .logs import bound_ids, new_trace_id, trace_id_from
from .outbox import Outgoing, pending, relay_batch
from .settings import Settings
from .transports import Transport

Handler = Callable[[Context, Any], Any]

DEFAULT_BATCH_SIZE = 200
DEFAULT_LEASE_SECONDS = 120.0
DEFAULT_POLL_SECONDS = 1.0
HOUSEKEEPING_EVERY_SECONDS = 300.0
# Stop claiming when the time left is less than this many times the slowest batch so far (and a
# floor), so that a run under cron ends before its budget and before the next run's leases.
BUDGET_SAFETY_FACTOR = 2.0
BUDGET_FLOOR_SECONDS = 1.0


@dataclass
class Job:
    """A claimed row that can be handled: its handler and its validated data."""

    row: Claimed
    handler: Handler
    data: Any


@dataclass
class WorkerStats:
    """What a run did, for its last log line and for tests."""

    batches: int = 0
    handled: int = 0
    retried: int = 0
    dead: int = 0
    delivered: int = 0
    lost_leases: int = 0
    purged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class Worker:
    """Drains the message queue (and the outbox, for destinations that have a transport)."""

    def __init__(
        self,
        db: Database,
        *,
        subscribers: Mapping[tuple[str, int], Handler],
        catalog: Catalog,
        settings: Settings,
        log: logging.Logger,
        transports: Mapping[str, Transport] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        method: str = "auto",
        retention_days: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size}: claim at least 1 message at a time")
        if lease_seconds <= 0:
            raise ValueError(f"lease of {lease_seconds}s: a lease must last a while")
        self.db = db
        self.subscribers = subscribers
        self.catalog = catalog
        self.settings = settings
        self.log = log
        self.transports = dict(transports or {})
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.method = claim_method(db.dialect, method)
        self.retention_days = retention_days
        self.stats = WorkerStats()
        self._stop = threading.Event()

    # -- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop after the batch in hand (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(
        self,
        *,
        max_seconds: float | None = None,
        forever: bool = False,
        once: bool = False,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> WorkerStats:
        """Work until the queue is drained (default), the budget is spent (`max_seconds`), one
        batch is done (`once`) or `stop()` is called (`forever`); return what was done."""
        started = time.monotonic()
        deadline = started + max_seconds if max_seconds else None
        slowest = 0.0
        last_housekeeping = started if forever else None
        while not self.stopping:
            batch_started = time.monotonic()
            worked = self.work_once()
            slowest = max(slowest, time.monotonic() - batch_started)
            if once:
                break
            if deadline is not None:
                left = deadline - time.monotonic()
                if left < max(BUDGET_FLOOR_SECONDS, slowest * BUDGET_SAFETY_FACTOR):
                    break
            if worked:
                continue
            if not forever:
                break  # drained: cron starts the next run
            if last_housekeeping is not None and (
                time.monotonic() - last_housekeeping >= HOUSEKEEPING_EVERY_SECONDS
            ):
                self.housekeeping()
                last_housekeeping = time.monotonic()
            self._stop.wait(poll_seconds)  # returns at once on stop()
        time_left = deadline is None or deadline - time.monotonic() > BUDGET_FLOOR_SECONDS
        if not forever and not once and not self.stopping and time_left:
            self.housekeeping()
        self._note_waiting_outbox()
        # A cron run that found nothing to do says so only at DEBUG: one line a minute is noise.
        level = logging.INFO if any(self.stats.as_dict().values()) else logging.DEBUG
        self.log.log(level, "worker.stopped", extra={"stats": self.stats.as_dict()})
        return self.stats

    def work_once(self) -> int:
        """Process one batch of the queue and one of each relayed destination; return how many
        rows were claimed (0: nothing to do right now)."""
        claimed = self.process_queue_batch()
        for destination, transport in self.transports.items():
            if not transport.ready():
                continue  # the destination is down (a peer's breaker is open): its rows wait
            result = relay_batch(
                self.db,
                destination,
                transport,
                policy=self.catalog.default_policy(),
                batch_size=self.batch_size,
                lease_seconds=self.lease_seconds,
                method=self.method,
                log=self.log,
            )
            claimed += result.claimed
            self.stats.delivered += result.delivered
            self.stats.retried += result.retried
            self.stats.dead += result.dead
        return claimed

    def housekeeping(self) -> None:
        """Purge DONE rows past the retention period (MESSAGE_RETENTION_DAYS), and the request
        path's expired rate limit buckets and idempotency keys."""
        purged = purge_request_state(self.db)
        if self.retention_days is not None:
            messages = purge_done(self.db, self.retention_days)
            self.stats.purged += sum(messages.values())  # messages only
            purged.update(messages)
        if any(purged.values()):
            self.log.info("worker.purged", extra={"purged": purged})

    # -- the queue ------------------------------------------------------------------------

    def process_queue_batch(self) -> int:
        rows = claim(
            self.db,
            QUEUE,
            limit=self.batch_size,
            lease_seconds=self.lease_seconds,
            method=self.method,
        )
        if not rows:
            return 0
        self.stats.batches += 1
        jobs: list[Job] = []
        unusable: list[tuple[Claimed, str]] = []
        for row in rows:
            job = self._prepare(row)
            if isinstance(job, Job):
                jobs.append(job)
            else:
                unusable.append((row, job))
        if unusable:
            self._dead_letter(unusable)
        if len(jobs) == 1:
            self._run_alone(jobs[0])
        elif jobs:
            try:
                self._run_together(jobs)
            except Exception as exc:  # noqa: BLE001  # any failure: find the culprit one by one
                self.log.info(
                    "worker.batch_retried_one_by_one",
                    extra={"size": len(jobs), "reason": f"{type(exc).__name__}: {exc}"},
                )
                for job in jobs:
                    self._run_alone(job)
            else:
                self.stats.handled += len(jobs)
        return len(rows)

    def _prepare(self, row: Claimed) -> Job | str:
        """The row's job, or why it can never be handled."""
        handler = self.subscribers.get((row.message_type, row.version))
        if handler is None:
            return (
                f"no handler for {row.message_type} v{row.version}: {self.catalog.service} does "
                "not subscribe to it; add the subscription to service.yaml, run `shoestring "
                "generate`, then requeue this message"
            )
        policy = self.catalog.retry_policy(row.message_type, row.version)
        if row.retry_count >= policy.max_attempts:  # leases ran out on every attempt
            return f"gave up after {row.retry_count} attempts; the last: {LEASE_EXPIRED_NOTE}"
        try:
            data = self.catalog.check_received(row.message_type, row.version, row.data)
        except MessageError as exc:
            return f"{exc} (fix the sender, then requeue or purge this message)"
        return Job(row, handler, data)

    def _run_together(self, jobs: list[Job]) -> None:
        def attempt() -> None:
            with self.db.transaction() as conn:
                rows = [job.row for job in jobs]
                # First statement of the transaction: the completion locks the rows (see
                # claim.complete), so the handlers' writes and DONE commit together.
                if complete(conn, rows) != len(rows):
                    raise LeaseLost(QUEUE, [row.id for row in rows], rows[0].owner)
                outgoing = Outgoing()
                for job in jobs:
                    self._call(conn, job.row, job.handler, job.data, outgoing)
                outgoing.flush(conn)  # everything the batch published: one INSERT per table

        # No retry here, not even of a deadlock: the handlers may have changed their data, and
        # the one-by-one run that follows any failure retries with data parsed afresh.
        attempt()

    def _run_alone(self, job: Job) -> None:
        def attempt() -> None:
            with self.db.transaction() as conn:
                if complete(conn, [job.row]) != 1:
                    raise LeaseLost(QUEUE, [job.row.id], job.row.owner)
                outgoing = Outgoing()
                self._call(conn, job.row, job.handler, _fresh_data(job), outgoing)
                outgoing.flush(conn)

        try:
            retry_on_deadlock(attempt, self.db.dialect)
        except LeaseLost as exc:
            # Another worker owns the row now and will handle it; nothing here was committed.
            self.stats.lost_leases += 1
            self.log.warning("worker.lease_lost", extra={"reason": str(exc)})
        except Exception as exc:  # noqa: BLE001  # the handler failed: retry later or dead-letter
            self._record_failure(job.row, exc)
        else:
            self.stats.handled += 1

    def _call(
        self, conn: Connection, row: Claimed, handler: Handler, data: Any, outgoing: Outgoing
    ) -> None:
        trace_id = trace_id_from(row.envelope.get("traceparent")) or new_trace_id()
        ctx = Context(
            db=conn,
            log=self.log,
            request_id=row.message_id,
            trace_id=trace_id,
            identity=None,
            settings=self.settings,
            outgoing=outgoing,
            catalog=self.catalog,
        )
        with bound_ids(row.message_id, trace_id):
            handler(ctx, data)

    def _record_failure(self, row: Claimed, exc: BaseException) -> None:
        policy = self.catalog.retry_policy(row.message_type, row.version)
        last = policy.gives_up_after(row.attempt)
        retry_in = None if last else policy.delay(row.attempt)
        error = describe_exception(exc)

        def record() -> bool:
            with self.db.transaction() as conn:
                return fail(conn, row, error, retry_in=retry_in)

        if not retry_on_deadlock(record, self.db.dialect):
            self.stats.lost_leases += 1
            return
        if last:
            self.stats.dead += 1
        else:
            self.stats.retried += 1
        self.log.warning(
            "worker.dead_lettered" if last else "worker.retry_scheduled",
            extra={
                "message_id": row.message_id,
                "message_type": row.message_type,
                "version": row.version,
                "attempt": row.attempt,
                "max_attempts": policy.max_attempts,
                "retry_in_seconds": None if retry_in is None else round(retry_in, 3),
                "error": f"{type(exc).__name__}: {exc}",
            },
        )

    def _dead_letter(self, rows: list[tuple[Claimed, str]]) -> None:
        def record() -> int:
            with self.db.transaction() as conn:
                return sum(fail(conn, row, reason, retry_in=None) for row, reason in rows)

        self.stats.dead += retry_on_deadlock(record, self.db.dialect)
        for row, reason in rows:
            self.log.warning(
                "worker.dead_lettered",
                extra={
                    "message_id": row.message_id,
                    "message_type": row.message_type,
                    "version": row.version,
                    "attempt": row.attempt,
                    "error": reason,
                },
            )

    def _note_waiting_outbox(self) -> None:
        """Say (at debug level) which destinations have messages waiting without a transport."""
        if not self.log.isEnabledFor(logging.DEBUG):
            return
        with self.db.transaction(readonly=True) as conn:
            waiting = pending(conn)
        for destination, count in sorted(waiting.items()):
            if destination not in self.transports:
                self.log.debug(
                    "worker.outbox_waiting",
                    extra={
                        "destination": destination,
                        "waiting": count,
                        "reason": "no transport is configured for this destination yet",
                    },
                )


LEASE_EXPIRED_NOTE = "the lease ran out each time (the worker was killed, or ran out of time)"


def _fresh_data(job: Job) -> Any:
    """The job's data as it was stored: a handler in a failed batch may have changed its copy."""
    if job.row.payload_text:
        return json.loads(job.row.payload_text).get("data")
    return copy.deepcopy(job.data)
