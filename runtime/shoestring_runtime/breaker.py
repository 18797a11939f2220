# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Circuit breakers: one per peer, shared by every process of the service through the database.

    breaker = Breaker(store, "payments", policy)
    permit = breaker.allow()              # raises BreakerOpen while the peer is known to be down
    try:
        answer = send(...)                # with a timeout, always
    except requests.ConnectionError as exc:
        breaker.failed(permit, str(exc))
        raise
    breaker.succeeded(permit)

The relay (outbox delivery) and the typed peer clients (`ctx.peers`) use the same breaker for a
peer, so a peer that is down is found out once for the whole service, and stops costing time and
message attempts everywhere at once. The states, in table `circuit_breakers`:

    closed --BREAKER_FAILURE_THRESHOLD failed calls in a row, or a Retry-After--> open
    open --cool-down over: ONE process wins the trial (a conditional UPDATE)--> half_open
    half_open --the trial call succeeds--> closed
    half_open --the trial call fails--> open again, with the cool-down doubled (up to a maximum)
    half_open --the trial's process says nothing by trial_expires_at--> another process may try

Why not pybreaker: it keeps the state in each process (four web processes and a cron worker
would each need their own run of failures before they stop calling a dead peer, and each would
make its own trial call), and its shared storage (`CircuitRedisStorage`) is a set of separate
get/set calls on Redis keys, with no compare-and-set for the open -> half-open step, so every
process that sees the cool-down end makes a trial call. There is no Redis on shared hosting, and
the database already gives the atomic step: an UPDATE whose WHERE repeats the condition. Its
timeout is also fixed per breaker, where a peer's `Retry-After` should set it.

Where the state lives: on MySQL, in the service's database, through a connection of its own (a
handler that calls a peer holds its transaction open on the other one, and the breaker's writes
must commit whatever that transaction does). SQLite has one writer at a time and that handler's
transaction holds the write lock, so there the breakers live in a small database file of their
own next to the main one (`var/orders.db` -> `var/orders.breakers.db`), created on first use.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .claim import new_owner
from .db import Connection, Database, retry_on_deadlock, utcnow

log = logging.getLogger(__name__)

TABLE = "circuit_breakers"
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# A peer's Retry-After is honoured up to this; a longer one is most likely a mistake, and an hour
# without trying keeps a typo from silencing a peer for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
ERROR_TEXT_LIMIT = 2000

# The table on SQLite, in the breakers' own file (see the module docstring); on MySQL the chassis
# migration 0030_circuit_breakers.sql creates it in the service's database. Same columns.
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS circuit_breakers (
    name TEXT NOT NULL PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures INTEGER NOT NULL DEFAULT 0,
    trips INTEGER NOT NULL DEFAULT 0,
    open_until DATETIME NULL,
    trial_owner TEXT NULL,
    trial_expires_at DATETIME NULL,
    opened_at DATETIME NULL,
    last_error TEXT NULL,
    updated_at DATETIME NOT NULL DEFAULT (datetime('now'))
)
"""


class BreakerOpen(Exception):
    """The peer's circuit breaker is open: the call was not made. `retry_in` says when the next
    trial may happen (seconds, None when a trial is in progress)."""

    def __init__(self, name: str, retry_in: float | None, reason: str | None) -> None:
        self.name = name
        self.retry_in = retry_in
        self.reason = reason
        when = (
            f"the next try is in {max(retry_in, 0):.0f}s"
            if retry_in is not None
            else "another process is making the trial call now"
        )
        cause = f" (last failure: {reason})" if reason else ""
        super().__init__(
            f"{name} is not called: its circuit breaker is open after repeated failures{cause}; "
            f"{when}. Calls resume by themselves once {name} answers again"
        )


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open (settings BREAKER_*)."""

    failure_threshold: int = 3  # failed calls in a row that open a closed breaker
    open_seconds: float = 10.0  # the first cool-down
    max_open_seconds: float = 300.0  # the cool-down doubles after each failed trial, up to this
    # A trial call must report within this time; after it, another process may make one (the
    # first one's process died, or hangs). Longer than the slowest call's timeout.
    trial_seconds: float = 60.0

    def cool_down(self, trips: int) -> float:
        """Seconds to stay open after opening for the (trips + 1)-th time since last closed."""
        return min(self.max_open_seconds, self.open_seconds * 2 ** max(0, trips))


@dataclass(frozen=True)
class Permit:
    """Leave to make one call, from `Breaker.allow`; hand it back to `succeeded` or `failed`."""

    name: str
    trial: bool = False  # this process makes the half-open trial call
    owner: str | None = None  # the trial's owner token (fences its outcome)
    failures: int = 0  # consecutive failures seen when the permit was given
    trips: int = 0  # times opened since last closed, seen when the permit was given


@dataclass(frozen=True)
class BreakerState:
    """One breaker as the health check, the CLI and tests see it."""

    name: str
    state: str
    failures: int
    trips: int
    open_until: Any
    opened_at: Any
    last_error: str | None


class BreakerStore:
    """The database the breakers live in (see the module docstring for why it is separate)."""

    def __init__(self, database_url: str, root: Path) -> None:
        main = Database(database_url, base_dir=root)
        if main.dialect.serializes_writers and main.config.path is not None:
            path = main.config.path
            sidecar = path.with_name(f"{path.stem}.breakers{path.suffix or '.db'}")
            self.db = Database(f"sqlite:///{sidecar}", base_dir=root)
            self._schema = SQLITE_SCHEMA
        else:
            self.db = main  # its own instance: its own connections, its own transactions
            self._schema = None
        self._ready = False
        self._lock = threading.Lock()

    def transaction(self, readonly: bool = False) -> Any:
        if not self._ready:
            with self._lock:
                if not self._ready and self._schema is not None:
                    with self.db.transaction() as conn:
                        conn.execute(self._schema)
                self._ready = True
        return self.db.transaction(readonly=readonly)

    def run(self, work: Any, readonly: bool = False) -> Any:
        """`work(conn)` in one transaction of the store, again if it loses a deadlock."""

        def attempt() -> Any:
            with self.transaction(readonly=readonly) as conn:
                return work(conn)

        return retry_on_deadlock(attempt, self.db.dialect)

    def states(self) -> list[BreakerState]:
        """Every breaker that has ever failed, by name."""
        rows = self.run(
            lambda conn: conn.fetchall(
                f"SELECT name, state, failures, trips, open_until, opened_at, last_error "
                f"FROM {TABLE} ORDER BY name"
            ),
            readonly=True,
        )
        return [_state(row) for row in rows]

    def reset(self, name: str) -> bool:
        """Close a breaker by hand (an operator knows the peer is back); True if it existed."""
        now = self.db.dialect.now_sql
        changed = self.run(
            lambda conn: conn.execute(
                f"UPDATE {TABLE} SET state = 'closed', failures = 0, trips = 0, "
                "open_until = NULL, trial_owner = NULL, trial_expires_at = NULL, "
                f"last_error = NULL, updated_at = {now} WHERE name = %s",
                (name,),
            )
        )
        return changed == 1

    def close(self) -> None:
        self.db.close()


class Breaker:
    """The breaker of one peer (`name`), in `store`."""

    def __init__(self, store: BreakerStore, name: str, policy: BreakerPolicy | None = None):
        self.store = store
        self.name = name
        self.policy = policy or BreakerPolicy()

    # -- before a call --------------------------------------------------------------------

    def allow(self) -> Permit:
        """Leave to call the peer now, or `BreakerOpen`.

        A closed breaker costs one primary-key read. When an open breaker's cool-down is over,
        the first process to ask wins the trial (half-open) and gets a trial permit; everyone
        else keeps getting BreakerOpen until the trial's outcome is known.
        """
        row = self.store.run(self._read, readonly=True)
        if row is None or row["state"] == CLOSED:
            failures = int(row["failures"]) if row else 0
            return Permit(self.name, failures=failures)
        trips = int(row["trips"])
        due = (row["state"] == OPEN and row["due"]) or (row["state"] == HALF_OPEN and row["lapsed"])
        if not due:
            retry_in = None
            if row["state"] == OPEN and row["open_until"] is not None:
                retry_in = (row["open_until"] - utcnow()).total_seconds()
            raise BreakerOpen(self.name, retry_in, row["last_error"])
        owner = new_owner()
        if self.store.run(lambda conn: self._take_trial(conn, owner)):
            log.info("breaker.half_open", extra={"peer": self.name, "trial_owner": owner})
            return Permit(self.name, trial=True, owner=owner, trips=trips)
        raise BreakerOpen(self.name, None, row["last_error"])

    def _read(self, conn: Connection) -> dict[str, Any] | None:
        now = conn.dialect.now_sql
        # Compared in SQL, on the database clock, like every lease of the chassis: processes on
        # several hosts agree on when a cool-down is over.
        return conn.fetchone(
            f"SELECT state, failures, trips, open_until, last_error, "
            f"CASE WHEN open_until IS NOT NULL AND open_until <= {now} THEN 1 ELSE 0 END AS due, "
            f"CASE WHEN trial_expires_at IS NOT NULL AND trial_expires_at <= {now} "
            f"THEN 1 ELSE 0 END AS lapsed FROM {TABLE} WHERE name = %s",
            (self.name,),
        )

    def _take_trial(self, conn: Connection, owner: str) -> bool:
        dialect = conn.dialect
        now = dialect.now_sql
        # Safe under concurrency: the WHERE repeats the condition the read above saw, and an
        # UPDATE evaluates it on the latest committed row while holding the row's lock (MySQL)
        # or the write lock (SQLite). Of many processes racing here, the first one's UPDATE
        # turns the row half_open and every later one matches nothing. A trial whose process
        # died is taken over once trial_expires_at has passed.
        changed = conn.execute(
            f"UPDATE {TABLE} SET state = 'half_open', trial_owner = %s, "
            f"trial_expires_at = {dialect.now_plus_seconds_sql()}, updated_at = {now} "
            f"WHERE name = %s AND ((state = 'open' AND open_until <= {now}) "
            f"OR (state = 'half_open' AND trial_expires_at <= {now}))",
            (owner, self.policy.trial_seconds, self.name),
        )
        return changed == 1

    # -- after a call ---------------------------------------------------------------------

    def succeeded(self, permit: Permit) -> None:
        """The peer answered (whatever it answered: a 4xx is the caller's problem, not the
        peer's health). Closes the breaker after a trial; forgets earlier failures."""
        if permit.trial:
            self.store.run(lambda conn: self._close(conn, permit))
            log.info("breaker.closed", extra={"peer": self.name})
        elif permit.failures:
            # Only when failures were seen: a healthy peer's calls cost no write.
            self.store.run(
                lambda conn: conn.execute(
                    f"UPDATE {TABLE} SET failures = 0, updated_at = {conn.dialect.now_sql} "
                    "WHERE name = %s AND state = 'closed'",
                    (self.name,),
                )
            )

    def _close(self, conn: Connection, permit: Permit) -> None:
        # Fenced on the trial's owner: a trial that outlived trial_expires_at (another process
        # took the trial over) no longer decides.
        conn.execute(
            f"UPDATE {TABLE} SET state = 'closed', failures = 0, trips = 0, open_until = NULL, "
            "trial_owner = NULL, trial_expires_at = NULL, last_error = NULL, "
            f"updated_at = {conn.dialect.now_sql} WHERE name = %s AND trial_owner = %s",
            (self.name, permit.owner),
        )

    def failed(self, permit: Permit, error: str, retry_after: float | None = None) -> bool:
        """The peer could not be reached, timed out, or said it is unavailable. `retry_after`:
        the peer's Retry-After, which opens the breaker at once for exactly that long (capped at
        MAX_RETRY_AFTER_SECONDS). Returns True when this failure opened the breaker."""
        error = error[:ERROR_TEXT_LIMIT]
        wait = None if retry_after is None else min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECONDS)
        # The peer's own word on when to come back wins over the policy's guess.
        if permit.trial:
            cool = self.policy.cool_down(permit.trips) if wait is None else wait
            opened = self.store.run(lambda conn: self._reopen(conn, permit, error, cool))
        else:
            cool = self.policy.cool_down(0) if wait is None else wait
            opened = self.store.run(lambda conn: self._count(conn, error, cool, wait is not None))
        if opened:
            log.warning(
                "breaker.opened",
                extra={"peer": self.name, "open_seconds": round(cool, 3), "reason": error},
            )
        return opened

    def _count(self, conn: Connection, error: str, cool: float, at_once: bool) -> bool:
        dialect = conn.dialect
        now = dialect.now_sql
        # The row exists from a breaker's first failure on (a healthy peer never gets one).
        conn.execute(
            dialect.insert_ignore_sql(TABLE, ("name", "state", "updated_at"), ("name",)),
            (self.name, CLOSED, utcnow()),
        )
        # Two statements in one transaction: the first locks the row (MySQL) or the database
        # (SQLite), so concurrent failures are all counted and exactly one of them opens it.
        conn.execute(
            f"UPDATE {TABLE} SET failures = failures + 1, last_error = %s, updated_at = {now} "
            "WHERE name = %s AND state = 'closed'",
            (error, self.name),
        )
        opened = conn.execute(
            f"UPDATE {TABLE} SET state = 'open', open_until = {dialect.now_plus_seconds_sql()}, "
            f"opened_at = {now}, trips = trips + 1, updated_at = {now} "
            "WHERE name = %s AND state = 'closed' AND (failures >= %s OR %s = 1)",
            (cool, self.name, self.policy.failure_threshold, 1 if at_once else 0),
        )
        return opened == 1

    def _reopen(self, conn: Connection, permit: Permit, error: str, cool: float) -> bool:
        dialect = conn.dialect
        now = dialect.now_sql
        changed = conn.execute(
            f"UPDATE {TABLE} SET state = 'open', open_until = {dialect.now_plus_seconds_sql()}, "
            f"opened_at = {now}, trips = trips + 1, trial_owner = NULL, trial_expires_at = NULL, "
            f"last_error = %s, updated_at = {now} WHERE name = %s AND trial_owner = %s",
            (cool, error, self.name, permit.owner),
        )
        return changed == 1

    def state(self) -> BreakerState:
        """This breaker's state now (closed with no failures when it has no row)."""
        row = self.store.run(
            lambda conn: conn.fetchone(
                f"SELECT name, state, failures, trips, open_until, opened_at, last_error "
                f"FROM {TABLE} WHERE name = %s",
                (self.name,),
            ),
            readonly=True,
        )
        if row is None:
            return BreakerState(self.name, CLOSED, 0, 0, None, None, None)
        return _state(row)


def _state(row: dict[str, Any]) -> BreakerState:
    return BreakerState(
        name=row["name"],
        state=row["state"],
        failures=int(row["failures"]),
        trips=int(row["trips"]),
        open_until=row["open_until"],
        opened_at=row["opened_at"],
        last_error=row["last_error"],
    )
