# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Idempotency keys: a retried POST has its effect once and gets the first response again.

An endpoint marked `idempotent: true` in the spec requires an `Idempotency-Key` header
(draft-ietf-httpapi-idempotency-key-header; the behaviour follows Stripe's):

- the first request with a key runs the handler; its status and body are stored in the handler's
  own transaction, so the response is kept if and only if the effects committed;
- the same key again, with the same method, path and body, gets the stored response back with
  `Idempotent-Replayed: true`, and the handler does not run;
- the same key with a different method, path or body: 422;
- the same key while the first request is still running: 409 with Retry-After;
- no key, an empty one, or one over 255 characters: 400;
- keys belong to the client (the token's issuer and subject; anonymous callers: their address),
  so two clients never see each other's keys, and are kept for IDEMPOTENCY_TTL_SECONDS (24 h),
  after which the key may be used for a new request.

Concurrency, step by step (table `idempotency_keys`, migration 0011):

1. `claim` inserts the (client, key) row in its own short transaction (which also counts the
   request against the endpoint's rate limit), marking it RUNNING with a lease and a random
   owner token. The primary key makes two concurrent claims of one key serialize on that row;
   the one that comes second finds RUNNING and answers 409. (On SQLite, which has one writer at
   a time, it waits for the first request's transaction to commit and replays its response.)
   A row whose `reclaimable_at` has passed (a dead request's lease, a finished request's
   retention) is taken over by the next claim.
2. The handler's transaction runs the business writes and `complete`, which stores the response
   and marks the row DONE, fenced on the owner token: if the lease ran out and a retry took the
   key over, `complete` fails, the transaction rolls back, and the effect still happens once.
3. A handler that fails rolls back and `release` deletes the claim, so the client may retry with
   the same key at once. A process that dies between 1 and 2 leaves a RUNNING row that becomes
   claimable when its lease (IDEMPOTENCY_LEASE_SECONDS) runs out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, request

from .db import Connection, Database, Result, Row, utcnow
from .jsonbody import CANONICAL
from .problems import Problem
from .ratelimit import Admission, admission, client_id, enforce, request_address

KEY_HEADER = "Idempotency-Key"
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MAX_CLIENT_LENGTH = 255
TABLE = "idempotency_keys"
EXTENSION = "idempotency"
DEFAULT_TTL_SECONDS = 24 * 3600
# Longer than any request should take: a request still running when its lease ends can lose its
# key to a retry (and then rolls back), so the lease must outlast the slowest legitimate request.
DEFAULT_LEASE_SECONDS = 60
# A client that gets 409 asks again this soon: the first request usually finishes well within it.
CONFLICT_RETRY_AFTER_SECONDS = 1
# Expired keys are deleted in small batches now and then, on the request path.
PURGE_PROBABILITY = 1 / 200
PURGE_BATCH = 200
RUNNING = "RUNNING"
DONE = "DONE"

log = logging.getLogger(__name__)


def _parse_seconds(raw: str) -> int:
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ValueError("must be a whole number of seconds, e.g. 86400 for a day") from None
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


# (name, default, parser, meaning, secret), added to the settings by `Service.setting_rules`.
IDEMPOTENCY_SETTINGS: list[tuple[str, str, Callable[[str], Any], str, bool]] = [
    (
        "IDEMPOTENCY_TTL_SECONDS",
        str(DEFAULT_TTL_SECONDS),
        _parse_seconds,
        "how long a stored response is replayed for its Idempotency-Key (default a day)",
        False,
    ),
    (
        "IDEMPOTENCY_LEASE_SECONDS",
        str(DEFAULT_LEASE_SECONDS),
        _parse_seconds,
        (
            "how long a request may hold its Idempotency-Key before a retry may take it over; "
            "longer than the slowest request"
        ),
        False,
    ),
]


# What a key's row holds, read when the key is not (or may not be) this request's.
_ROW_COLUMNS = (
    "owner",
    "fingerprint",
    "state",
    "response_status",
    "response_headers",
    "response_body",
)

# A claimed key's row: this request's, running, with no response yet (parameters of `claim`).
_RUNNING_VALUES = {
    "owner": "%(owner)s",
    "endpoint": "%(endpoint)s",
    "fingerprint": "%(fingerprint)s",
    "state": f"'{RUNNING}'",
    "response_status": "NULL",
    "response_headers": "NULL",
    "response_body": "NULL",
}


@dataclass(frozen=True)
class Claim:
    """This request holds the key: run the handler, then `complete` (or `release` on failure)."""

    client: str
    key: str
    owner: str
    endpoint: str
    fingerprint: str


@dataclass(frozen=True)
class Replay:
    """The stored response of the request that first used the key."""

    status: int
    headers: Mapping[str, str]
    body: str


class ClaimLost(Problem):
    """`complete` found the key taken over: this request's lease ran out and a retry claimed it.
    Raised inside the handler's transaction, it rolls the effects back."""

    def __init__(self, key: str) -> None:
        super().__init__(
            409,
            f"this request took longer than the Idempotency-Key lease and a retry with key "
            f"{key!r} took over; its effects were rolled back: repeat the request with the same "
            "key to get the retry's result",
            headers={"Retry-After": str(CONFLICT_RETRY_AFTER_SECONDS)},
        )


def parse_key(value: str | None) -> str:
    """The key from an `Idempotency-Key` header value; a 400 problem when it is unusable.

    The draft standard sends the key as a Structured Field string (`"8e03978e-..."`); a bare
    token (`8e03978e-...`), as most clients send it, is accepted too.
    """
    if value is None:
        raise Problem(
            400,
            f"this endpoint is idempotent: send an {KEY_HEADER} header with a unique value per "
            f"operation (a UUID, for example) and the same value on every retry of it",
            title="Idempotency-Key Missing",
        )
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key:
        raise Problem(400, f"the {KEY_HEADER} header is empty: send a unique value such as a UUID")
    if len(key) > MAX_KEY_LENGTH:
        raise Problem(
            400,
            f"the {KEY_HEADER} header is {len(key)} characters long; keys may have at most "
            f"{MAX_KEY_LENGTH}: a UUID (36 characters) is the usual choice",
        )
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise Problem(
            400,
            f"the {KEY_HEADER} header may contain only printable ASCII characters: "
            "a UUID is the usual choice",
        )
    return key


def client_scope(client: str | None, address: str) -> str:
    """Whose key it is: the caller's `client_id` (token issuer and subject), or the address of
    an anonymous caller. Keys never cross this boundary: a client cannot see another's
    responses by guessing its keys."""
    scope = f"sub:{client}" if client else f"ip:{address}"
    if len(scope) > MAX_CLIENT_LENGTH:
        scope = "sha256:" + hashlib.sha256(scope.encode()).hexdigest()
    return scope


def fingerprint(method: str, path: str, query: str, body: bytes, parsed: Any = None) -> str:
    """SHA-256 of what makes two requests "the same": method, path, query and body.

    A JSON body is compared by content, so a retry that serializes the same object with other
    key order or spacing is still the same request. `parsed`, when given, is the body as JSON
    already parsed (it saves parsing it again).
    """
    try:
        if not body.strip():
            parsed = None
        elif parsed is None:
            parsed = json.loads(body)
        canonical = CANONICAL.encode(parsed).encode()
    except ValueError:  # not JSON: compare the bytes
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(part + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


@dataclass
class IdempotencyKeys:
    """Claims, completes and replays idempotency keys in the service's database."""

    db: Database
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    clock: Callable[[], dt.datetime] = field(default=utcnow)

    _statements: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def claim(
        self,
        *,
        client: str,
        key: str,
        endpoint: str,
        fingerprint: str,
        admission: Admission | None = None,
    ) -> Claim | Replay:
        """Take the key for this request, or return the stored response of its first use.

        Raises a 422 Problem when the key was first used for a different request, and a 409
        Problem (with Retry-After) while that first request is still running. `admission`,
        when given, is the request's rate limit count: it runs first, in the same round trip
        and transaction, and the key is claimed only when it admits the request (a refused
        request never touches the key); its 429 Problem is raised here.
        """
        now = self.clock()
        owner = secrets.token_hex(16)  # a random claim token
        params: dict[str, Any] = {
            "client": client,
            "key": key,
            "owner": owner,
            "endpoint": endpoint,
            "fingerprint": fingerprint,
            "now": now,
            "lease_until": now + dt.timedelta(seconds=self.lease_seconds),
        }
        statements = list(admission.statements) if admission is not None else []
        if admission is not None:
            params["bucket"] = admission.bucket
        source = admission.storage.admitted_sql() if admission is not None else None
        statements.append((self._sql(source), params))

        results = self.db.run_in_transaction(lambda conn: conn.batch(statements, commit=True))
        if admission is not None:
            admission.admit(results)  # the 429, when refused: the key was left alone
        if random.random() < PURGE_PROBABILITY:
            self._purge_quietly()
        ours = self._inserted(results[-1], owner)
        if not ours:  # the key has a row (the rare case): take it over, or answer from it
            ours, row = self._take_over(params)
            if not ours:
                return self._answer(key, fingerprint, row)
        return Claim(
            client=client, key=key, owner=owner, endpoint=endpoint, fingerprint=fingerprint
        )

    def _sql(self, source: str | None) -> str:
        """The claim's INSERT, which leaves an existing row of the key as it is. Where its
        rowcount tells whether it inserted (MySQL) it returns no rows, else (SQLite) it returns
        the owner it left. With `source` (the rate limit's `admitted_sql`), it inserts only when
        the count earlier in the same transaction admitted the request. Built once per source:
        they depend only on the dialect."""
        cache_key = source or ""
        if cache_key not in self._statements:
            # The primary key makes two concurrent claims of one key serialize on that row
            # (InnoDB row lock; SQLite's write lock): one inserts, the other finds the row.
            # Assigning a key column to itself leaves the row as it was: MySQL counts 0 rows.
            dialect = self.db.dialect
            upsert = dialect.upsert_computed_sql(
                TABLE,
                {
                    "client": "%(client)s",
                    "idempotency_key": "%(key)s",
                    **_RUNNING_VALUES,
                    "created_at": "%(now)s",
                    "reclaimable_at": "%(lease_until)s",
                },
                ["client", "idempotency_key"],
                {"client": "client"},
                source=source,
            )
            if not dialect.upsert_reports_change:
                upsert = f"{upsert} {dialect.returning_sql(['owner'])}"
            self._statements[cache_key] = upsert
        return self._statements[cache_key]

    def _inserted(self, result: Result, owner: str) -> bool:
        """Whether the claim's INSERT (`_sql`) made the key's row, rather than finding one."""
        if self.db.dialect.upsert_reports_change:
            return result.rowcount == 1  # 0: the key has a row already
        return bool(result.rows) and result.rows[0]["owner"] == owner

    def _take_over(self, params: Mapping[str, Any]) -> tuple[bool, Row | None]:
        """Take the key's existing row over when it may be (`reclaimable_at` has passed: the
        lease of a dead request, or the retention of a finished one); else read it. Returns
        (taken, row as it is when not taken).

        The row the claim's INSERT found may be gone by now: expired rows are purged now and
        then, by any request (`purge`). The key is free then, and the claim inserts its row
        again, in this transaction."""
        assignments = ", ".join(f"{column} = {value}" for column, value in _RUNNING_VALUES.items())
        owner = params["owner"]

        def attempt(conn: Connection) -> tuple[bool, Row | None]:
            taken = conn.execute(
                f"UPDATE {TABLE} SET {assignments}, created_at = %(now)s, "
                "reclaimable_at = %(lease_until)s "
                "WHERE client = %(client)s AND idempotency_key = %(key)s "
                "AND reclaimable_at <= %(now)s",
                params,
            )
            if taken:
                return True, None
            row = conn.fetchone(
                f"SELECT {', '.join(_ROW_COLUMNS)} FROM {TABLE} "
                "WHERE client = %(client)s AND idempotency_key = %(key)s",
                params,
            )
            if row is None and self._inserted(conn.batch([(self._sql(None), params)])[0], owner):
                return True, None
            return False, row

        return self.db.run_in_transaction(attempt)

    @staticmethod
    def _answer(key: str, fingerprint: str, row: Row | None) -> Replay:
        """What a request gets for a key another request holds or held: the stored response of
        the same request, or a 422 (another request) or 409 (still running) problem."""
        if row is None:  # freed by a purge, and taken by another request since
            raise _in_use(key)
        if row["fingerprint"] != fingerprint:
            raise Problem(
                422,
                f"Idempotency-Key {key!r} was already used for a different request (another "
                "method, path or body): send a new key for a new request, and the same request "
                "with the same key only to retry it",
                title="Idempotency-Key Reused",
            )
        if row["state"] == DONE:
            return Replay(
                status=int(row["response_status"]),
                headers=json.loads(row["response_headers"] or "{}"),
                body=row["response_body"] or "",
            )
        raise _in_use(key)

    def complete(
        self,
        conn: Connection,
        claim: Claim,
        status: int,
        headers: Mapping[str, str],
        body: str,
        pending: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Store the response in the handler's transaction `conn`, mark the key DONE and commit;
        the statements `pending` (the handler's messages) run first. On MySQL all of it is one
        round trip.

        Raises ClaimLost (409), rolling the handler's effects back with the transaction, when
        the key is no longer this request's.
        """
        now = self.clock()
        params = {
            "client": claim.client,
            "key": claim.key,
            "owner": claim.owner,
            "endpoint": claim.endpoint,
            "fingerprint": claim.fingerprint,
            "status": status,
            "headers": json.dumps(dict(headers), sort_keys=True),
            "body": body,
            "now": now,
            "expires": now + dt.timedelta(seconds=self.ttl_seconds),
        }
        try:
            conn.batch([*pending, (self._complete_sql(), params)], commit=True)
        except Exception as exc:
            if conn.dialect.is_null_refused(exc, "state"):
                raise ClaimLost(claim.key) from None
            raise

    def _complete_sql(self) -> str:
        """The completion's upsert, fenced on the owner token, built once.

        The row is normally this request's RUNNING claim: it becomes DONE with the response.
        When the row belongs to another request (this request's lease ran out and a retry took
        the key over), the state it would get is NULL, which the NOT NULL column refuses: the
        statement fails, nothing after it runs (the COMMIT neither), and the transaction rolls
        back. So no separate check, and no round trip, is needed to make the commit depend on
        the key being ours. When the row is gone (purged after the lease ran out, and no retry
        came), it is inserted again as DONE: the effect commits once, with its response.
        The UPDATE part assigns `state` first: MySQL applies assignments left to right, and the
        condition must see the row as it was.
        """
        if "complete" not in self._statements:
            values = {
                "client": "%(client)s",
                "idempotency_key": "%(key)s",
                "owner": "%(owner)s",
                "endpoint": "%(endpoint)s",
                "fingerprint": "%(fingerprint)s",
                "state": f"'{DONE}'",
                "response_status": "%(status)s",
                "response_headers": "%(headers)s",
                "response_body": "%(body)s",
                "created_at": "%(now)s",
                "reclaimable_at": "%(expires)s",
            }
            self._statements["complete"] = self.db.dialect.upsert_computed_sql(
                TABLE,
                values,
                ["client", "idempotency_key"],
                {
                    "state": (
                        f"CASE WHEN owner = %(owner)s AND state = '{RUNNING}' "
                        f"THEN '{DONE}' END"
                    ),
                    **{
                        column: values[column]
                        for column in (
                            "response_status",
                            "response_headers",
                            "response_body",
                            "reclaimable_at",
                        )
                    },
                },
            )
        return self._statements["complete"]

    def release(self, claim: Claim) -> None:
        """Give the key up after the handler failed (its transaction rolled back), so the
        client's retry runs at once instead of waiting out the lease."""
        with self.db.transaction() as conn:
            conn.execute(
                f"DELETE FROM {TABLE} "
                "WHERE client = %s AND idempotency_key = %s AND owner = %s AND state = %s",
                (claim.client, claim.key, claim.owner, RUNNING),
            )

    def purge(self, batch: int = 1000, now: dt.datetime | None = None) -> int:
        """Delete up to `batch` keys past their retention (or dead requests' leases); returns how
        many went. A key is deleted only when a new claim could take it over anyway."""
        with self.db.transaction() as conn:
            return conn.execute(
                self.db.dialect.delete_batch_sql(TABLE, "reclaimable_at < %s", batch),
                (now or self.clock(),),
            )

    def _purge_quietly(self) -> None:
        try:
            self.purge(PURGE_BATCH)
        except Exception as exc:  # noqa: BLE001  # housekeeping must never fail the request
            log.warning("idempotency.purge_failed", extra={"reason": str(exc)})


def _in_use(key: str) -> Problem:
    return Problem(
        409,
        f"a request with Idempotency-Key {key!r} is still being processed: retry after "
        f"{CONFLICT_RETRY_AFTER_SECONDS} second(s) to get its result",
        title="Idempotency-Key In Use",
        headers={"Retry-After": str(CONFLICT_RETRY_AFTER_SECONDS)},
    )


# -- Flask wiring --------------------------------------------------------------------------------

# Called inside the handler's transaction with its connection, its response body and the
# statements still to run before it commits (its messages), which it runs with its own.
Finish = Callable[[Connection, Any, Sequence[tuple[str, Any]]], None]


def install(app: Flask, keys: IdempotencyKeys | None = None) -> IdempotencyKeys:
    """Give `app` its idempotency key store (by default in the app's database, with the TTL and
    lease of its settings)."""
    if keys is None:
        state = app.extensions["chassis"]  # the Runtime: settings, db, log, service
        keys = IdempotencyKeys(
            state.db,
            ttl_seconds=state.settings.get("IDEMPOTENCY_TTL_SECONDS", DEFAULT_TTL_SECONDS),
            lease_seconds=state.settings.get("IDEMPOTENCY_LEASE_SECONDS", DEFAULT_LEASE_SECONDS),
        )
    app.extensions[EXTENSION] = keys
    return keys


def request_key() -> str:
    """The current request's Idempotency-Key; a 400 problem when it is missing or unusable."""
    return parse_key(request.headers.get(KEY_HEADER))


def run_once(
    endpoint_name: str,
    status: int,
    key: str,
    run: Callable[[Finish], Any],
    rate_limit: str | None = None,
    parsed_body: Any = None,
) -> Response:
    """Answer the current request at most once per key.

    `run(finish)` runs the handler in its transaction and must call `finish(conn, body)` before
    committing; it returns the response body. A replay returns the stored response instead of
    calling `run`; a failure of `run` releases the key and propagates. The request is counted
    against `rate_limit` (the endpoint's policy) in the round trip and transaction that claim
    the key, and a refused request (429) never touches the key. `parsed_body` is the body as
    JSON when the caller parsed it already.
    """
    keys: IdempotencyKeys = current_app.extensions[EXTENSION]
    counted = admission(rate_limit) if rate_limit else None
    if rate_limit and counted is None:  # the counters live elsewhere (Redis): count first
        enforce(rate_limit)
    current = request._get_current_object()  # type: ignore[attr-defined]
    client = client_id(g.get("identity"))
    outcome = keys.claim(
        admission=counted,
        client=client_scope(client, "" if client else request_address(group_ipv6=False)),
        key=key,
        endpoint=endpoint_name,
        fingerprint=fingerprint(
            current.method,
            current.path,
            current.query_string.decode("latin-1"),
            current.get_data(cache=True),
            parsed_body,
        ),
    )
    if isinstance(outcome, Replay):
        response = Response(outcome.body, status=outcome.status)
        for name, value in outcome.headers.items():
            response.headers[name] = value
        response.headers[REPLAYED_HEADER] = "true"
        return response

    stored: list[str] = []  # the body as stored, sent as it is (one serialization)

    def finish(conn: Connection, body: Any, pending: Sequence[tuple[str, Any]]) -> None:
        text = "" if status == 204 else current_app.json.dumps(body)
        headers = {} if status == 204 else {"Content-Type": "application/json"}
        keys.complete(conn, outcome, status, headers, text, pending)
        stored[:] = [text]

    try:
        body = run(finish)
    except BaseException:
        try:
            keys.release(outcome)
        except Exception as exc:  # noqa: BLE001  # the lease frees the key later
            log.warning("idempotency.release_failed", extra={"key": key, "reason": str(exc)})
        raise
    if status == 204:
        return Response(status=204)
    text = stored[0] if stored else current_app.json.dumps(body)
    return Response(text, status=status, mimetype="application/json")
