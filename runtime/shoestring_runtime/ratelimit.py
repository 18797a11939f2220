# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Rate limits: the spec's named policies, counted where every process of the service sees them.

    rate_limits: {per_client_60m: {limit: 60, per: minute, key: client}}
    endpoints: [{name: create_order, ..., rate_limit: per_client_60m}]

Passenger (and any pre-forking server) runs several processes, so counters kept in memory would
let each process admit the full limit. The counts live in the service's database instead (table
`rate_limit_buckets`, migration 0010), or in Redis when RATE_LIMIT_STORAGE=redis://... names one.
Redis goes through the `limits` library, which has no SQL storage of its own (memory, Redis,
Memcached and MongoDB only), hence the database storage here.

The algorithm is GCRA (the generic cell rate algorithm, a leaky bucket kept as one timestamp per
client): `limit` requests may come at once, after which one more is admitted every
period / limit. Unlike a fixed window it never admits a second full burst just because a
window boundary passed. One upsert per check decides and records the request; why that is
safe under concurrency is told at `DatabaseStorage._sql`.

Keys: `client` is the token's subject and issuer (anonymous callers count by address), `ip` the
connection's address (X-Forwarded-For is believed only for TRUSTED_PROXY_HOPS proxies; IPv6
addresses count per /64, the block one subscriber usually holds), `client_ip` both.

Responses carry the IETF RateLimit-Policy and RateLimit headers; a refused request gets 429 with
an integer Retry-After. When the storage does not answer, RATE_LIMIT_FAIL_OPEN decides whether
requests pass (default) or get 503, and the failure is logged.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, request

from .db import Connection, Database, Result
from .problems import Problem

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
KEY_KINDS = ("client", "ip", "client_ip")
TABLE = "rate_limit_buckets"
EXTENSION = "ratelimit"
MICROSECONDS = 1_000_000
# Bucket names are ASCII and fit the column; anything longer or non-ASCII is hashed.
MAX_BUCKET_LENGTH = 255
# Rows whose quota is full again are deleted in small batches now and then, on the request
# path, so the table stays the size of the set of recently active clients without a cron job.
PURGE_PROBABILITY = 1 / 200
PURGE_BATCH = 200
# A storage outage is logged at most this often per process, not once per request.
OUTAGE_LOG_INTERVAL_SECONDS = 10.0

log = logging.getLogger(__name__)


def _parse_hops(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(
            "must be the number of proxies in front of the service, e.g. 0 (none) or 1"
        ) from None
    if not 0 <= value <= 10:
        raise ValueError("must be from 0 to 10 proxies")
    return value


def _parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _parse_storage(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith(("redis://", "rediss://", "redis+unix://")):
        raise ValueError(
            "must be empty (count in the database) or a Redis URL such as redis://127.0.0.1:6379/0"
        )
    return value


# (name, default, parser, meaning, secret), added to the settings by `Service.setting_rules`.
RATE_LIMIT_SETTINGS: list[tuple[str, str, Callable[[str], Any], str, bool]] = [
    (
        "TRUSTED_PROXY_HOPS",
        "0",
        _parse_hops,
        (
            "proxies in front of the service that append to X-Forwarded-For (0: the header is "
            "ignored; behind one reverse proxy: 1)"
        ),
        False,
    ),
    (
        "RATE_LIMIT_FAIL_OPEN",
        "true",
        _parse_flag,
        "when the rate limit storage is down: true lets requests through, false answers 503",
        False,
    ),
    (
        "RATE_LIMIT_STORAGE",
        "",
        _parse_storage,
        (
            "empty to count rate limits in the database, or redis://host:6379/0 to count them "
            "in Redis (needs `pip install 'limits[redis]'`)"
        ),
        True,
    ),
]


@dataclass(frozen=True)
class Policy:
    """One named rate limit of the spec: `limit` requests per `per`, counted per `key`."""

    name: str
    limit: int
    per: str  # second | minute | hour | day
    key: str  # client | ip | client_ip

    @classmethod
    def from_spec(cls, name: str, data: Mapping[str, Any]) -> Policy:
        policy = cls(name, int(data["limit"]), str(data["per"]), str(data["key"]))
        if policy.limit < 1:
            raise ValueError(f"rate limit {name!r}: limit must be at least 1, not {policy.limit}")
        if policy.per not in PERIOD_SECONDS:
            raise ValueError(
                f"rate limit {name!r}: per must be one of {', '.join(PERIOD_SECONDS)}, "
                f"not {policy.per!r}"
            )
        if policy.key not in KEY_KINDS:
            raise ValueError(
                f"rate limit {name!r}: key must be one of {', '.join(KEY_KINDS)}, "
                f"not {policy.key!r}"
            )
        return policy

    @property
    def period_seconds(self) -> int:
        return PERIOD_SECONDS[self.per]

    @functools.cached_property
    def header(self) -> str:
        """The RateLimit-Policy field value: quota `q` per window of `w` seconds."""
        return f"{self.quoted_name};q={self.limit};w={self.period_seconds}"

    @functools.cached_property
    def quoted_name(self) -> str:
        """The name as a Structured Field string, as the headers carry it."""
        return _sf_string(self.name)


@dataclass(frozen=True)
class Decision:
    """The outcome of one check, with the numbers the response headers report."""

    policy: Policy
    allowed: bool
    remaining: int  # requests that would still be admitted right now
    reset_seconds: int  # until the full quota is available again
    retry_after: int = 0  # when refused: seconds until the next request may pass

    def headers(self) -> dict[str, str]:
        """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers), and Retry-After
        when the request was refused."""
        headers = {
            "RateLimit-Policy": self.policy.header,
            "RateLimit": f"{self.policy.quoted_name};r={self.remaining};t={self.reset_seconds}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class StorageUnavailable(Exception):
    """The rate limit storage did not answer and RATE_LIMIT_FAIL_OPEN is false."""

    retry_after = 5


class Storage(Protocol):
    def hit(self, policy: Policy, bucket: str, now: float) -> Decision:
        """Count one request against `bucket` at time `now` (Unix seconds) and decide it."""
        ...


class DatabaseStorage:
    """GCRA counters in the service's database (MySQL/MariaDB or SQLite)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._statements: str | None = None

    def hit(self, policy: Policy, bucket: str, now: float) -> Decision:
        """Count and decide in a transaction of its own: one round trip, the COMMIT included."""
        statements = self.statements(policy, bucket, now)
        results = self.db.run_in_transaction(lambda conn: conn.batch(statements, commit=True))
        if random.random() < PURGE_PROBABILITY:
            self.purge(now, PURGE_BATCH)
        return self.decide(policy, now, results)

    def hit_in(self, conn: Connection, policy: Policy, bucket: str, now: float) -> Decision:
        """Count and decide inside the caller's open transaction `conn`; the count commits with
        it (a refusal changes nothing, so rolling it back loses nothing)."""
        statements = self.statements(policy, bucket, now)
        decision = self.decide(policy, now, conn.batch(statements))
        if random.random() < PURGE_PROBABILITY:
            # In the same transaction: a statement of its own would need a second connection.
            self.purge_in(conn, now, PURGE_BATCH)
        return decision

    def statements(self, policy: Policy, bucket: str, now: float) -> list[tuple[str, Any]]:
        """The statements that count one request against `bucket` (for `Connection.batch`,
        possibly beside others); `decide` reads their results. The last one leaves the bucket's
        row, so a later statement of the same batch may read `last_allowed` from it."""
        period, interval, now_us = _timing(policy, now)
        params = {
            "bucket": bucket,
            "now": now_us,
            "first_tat": now_us + interval,
            # The latest theoretical arrival time that still admits a request: `limit`
            # requests fit in the period, the one being decided included.
            "admit_until": now_us + period - interval,
            "interval": interval,
        }
        return [(self._sql(), params)]

    def admitted_sql(self) -> str:
        """A `FROM ... WHERE ...` clause selecting one row when the count of `statements`, run
        just before in the same transaction, admitted the request, and none when it refused: an
        INSERT ... SELECT later in the batch then writes only for admitted requests. It may use
        the parameter `%(bucket)s`."""
        dialect = self.db.dialect
        reported = dialect.last_reported_sql()
        if reported is not None:  # the upsert reported tat_us * 2 + last_allowed: no row to read
            return f"FROM DUAL WHERE MOD({reported}, 2) = 1"
        return f"FROM {dialect.quote(TABLE)} WHERE bucket = %(bucket)s AND last_allowed = 1"

    def decide(self, policy: Policy, now: float, results: Sequence[Result]) -> Decision:
        """The decision from the results of `statements` (the first results of a batch)."""
        period, interval, now_us = _timing(policy, now)
        upserted = results[0]
        if upserted.rows:  # RETURNING tat_us, last_allowed
            allowed, tat = bool(upserted.rows[0]["last_allowed"]), int(upserted.rows[0]["tat_us"])
        else:  # reported as one number: tat_us * 2 + last_allowed
            if not upserted.lastrowid:  # cannot happen: the upsert always reports it
                raise RuntimeError("the rate limit upsert reported nothing")
            allowed, tat = bool(upserted.lastrowid & 1), upserted.lastrowid >> 1
        return _decision(policy, allowed, tat, now_us, period, interval)

    def _sql(self) -> str:
        """The check's upsert: it leaves the bucket's row and tells its new tat_us and
        last_allowed, as a row (RETURNING) or, where the server can, as one number reported
        with the statement's answer (cheaper to read than a result set). Built once: it
        depends only on the dialect."""
        if self._statements is None:
            dialect = self.db.dialect
            # Why this is safe under concurrency: the upsert is one statement that inserts the
            # row or locks it (InnoDB row lock; SQLite's write lock from BEGIN IMMEDIATE) before
            # reading tat_us, so concurrent checks of one bucket are applied one after another,
            # each to the value the previous one left, and what it tells is this statement's
            # result. Both assignments read only tat_us, which is written last (MySQL evaluates
            # the list left to right, SQLite on the old row).
            allowed = "CASE WHEN tat_us <= %(admit_until)s THEN 1 ELSE 0 END"
            new_tat = (
                "CASE WHEN tat_us <= %(admit_until)s "
                "THEN (CASE WHEN tat_us > %(now)s THEN tat_us ELSE %(now)s END) "
                "+ %(interval)s ELSE tat_us END"
            )
            # Reported: last_allowed is the low bit of the number, tat_us the rest.
            report_first = dialect.reported_sql("%(first_tat)s * 2 + 1")
            report_next = dialect.reported_sql(f"({new_tat}) * 2 + {allowed}")
            first_allowed = f"MOD({report_first}, 2)" if report_first else "1"
            next_allowed = f"MOD({report_next}, 2)" if report_next else allowed
            upsert = dialect.upsert_computed_sql(
                TABLE,
                {"bucket": "%(bucket)s", "tat_us": "%(first_tat)s", "last_allowed": first_allowed},
                ["bucket"],
                {"last_allowed": next_allowed, "tat_us": new_tat},
            )
            if report_first is None:
                upsert = f"{upsert} {dialect.returning_sql(['tat_us', 'last_allowed'])}"
            self._statements = upsert
        return self._statements

    def purge(self, now: float | None = None, batch: int = 1000) -> int:
        """Delete up to `batch` rows whose quota is full again; returns how many went.

        Such a row decides exactly like a missing one, so deleting it races with nothing.
        """
        with self.db.transaction() as conn:
            return self.purge_in(conn, time.time() if now is None else now, batch)

    def purge_in(self, conn: Connection, now: float, batch: int) -> int:
        sql = self.db.dialect.delete_batch_sql(TABLE, "tat_us < %s", batch)
        return conn.execute(sql, (int(now * MICROSECONDS),))


def _timing(policy: Policy, now: float) -> tuple[int, int, int]:
    """(period, one request's share of it, now), in microseconds."""
    period = policy.period_seconds * MICROSECONDS
    return period, max(1, period // policy.limit), int(now * MICROSECONDS)


def _decision(
    policy: Policy, allowed: bool, tat: int, now: int, period: int, interval: int
) -> Decision:
    """The numbers for the headers, from the bucket's theoretical arrival time after the check."""
    reset = max(0, math.ceil((tat - now) / MICROSECONDS))
    if allowed:
        remaining = min(policy.limit, max(0, (now + period - tat) // interval))
        return Decision(policy, True, remaining, reset)
    # The next request passes once tat <= then + period - interval.
    wait = tat - (period - interval) - now
    retry_after = max(1, math.ceil(wait / MICROSECONDS))
    return Decision(policy, False, 0, reset, retry_after)


class RedisStorage:
    """Counters in Redis through the `limits` library (sliding window counter), for a team that
    has Redis and would rather keep this traffic off the database."""

    def __init__(self, url: str, namespace: str) -> None:
        # Imported here, not at the top: `limits` is an optional requirement that only
        # services with RATE_LIMIT_STORAGE=redis://... install.
        try:
            import limits
            import limits.storage
            import limits.strategies
        except ImportError as exc:
            raise RuntimeError(
                f"RATE_LIMIT_STORAGE={url.split('@')[-1]!r} needs the `limits` package with Redis "
                "support: pip install 'limits[redis]>=4.1' (or leave RATE_LIMIT_STORAGE empty "
                "to count in the database)"
            ) from exc
        self._items = {
            "second": limits.RateLimitItemPerSecond,
            "minute": limits.RateLimitItemPerMinute,
            "hour": limits.RateLimitItemPerHour,
            "day": limits.RateLimitItemPerDay,
        }
        self.namespace = namespace
        self.limiter = limits.strategies.SlidingWindowCounterRateLimiter(
            limits.storage.storage_from_string(url)
        )

    def hit(self, policy: Policy, bucket: str, now: float) -> Decision:
        item = self._items[policy.per](policy.limit)
        # The namespace keeps services that share one Redis from sharing counters.
        allowed = self.limiter.hit(item, self.namespace, bucket)
        stats = self.limiter.get_window_stats(item, self.namespace, bucket)
        reset = max(0, math.ceil(stats.reset_time - now))
        if allowed:
            return Decision(policy, True, stats.remaining, reset)
        return Decision(policy, False, 0, reset, max(1, reset))


class RateLimiter:
    """Checks requests against the spec's policies. One per application."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        storage: Storage,
        *,
        fail_open: bool = True,
        trusted_proxy_hops: int = 0,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = dict(policies)
        self.storage = storage
        self.fail_open = fail_open
        self.trusted_proxy_hops = trusted_proxy_hops
        self.log = log or logging.getLogger(__name__)
        self.clock = clock
        self._last_outage_log = -math.inf

    @classmethod
    def from_spec(
        cls,
        rate_limits: Mapping[str, Mapping[str, Any]],
        db: Database,
        *,
        storage_url: str = "",
        namespace: str = "",
        fail_open: bool = True,
        trusted_proxy_hops: int = 0,
        log: logging.Logger | None = None,
    ) -> RateLimiter:
        """The limiter for the spec's `rate_limits`, counting in the database unless
        `storage_url` (RATE_LIMIT_STORAGE) names Redis."""
        policies = {name: Policy.from_spec(name, data) for name, data in rate_limits.items()}
        storage: Storage
        if storage_url:
            try:
                _parse_storage(storage_url)
            except ValueError as exc:
                raise ValueError(f"RATE_LIMIT_STORAGE {exc}") from None
            storage = RedisStorage(storage_url, namespace)
        else:
            storage = DatabaseStorage(db)
        return cls(
            policies, storage, fail_open=fail_open, trusted_proxy_hops=trusted_proxy_hops, log=log
        )

    def check(
        self,
        policy_name: str,
        client: str | None,
        address: str,
        conn: Connection | None = None,
    ) -> Decision | None:
        """Count one request under `policy_name` for the caller (`client` from `client_id`, None
        when anonymous; `address` from `client_address`).

        With `conn`, an open transaction of the database the counters live in (see
        `counts_in`), the count is made in it (one commit fewer for the request); a database
        failure there belongs to that transaction and propagates. Otherwise returns the
        decision, or None when the storage failed and the limiter fails open, and raises
        StorageUnavailable when it fails closed.
        """
        policy = self.policies[policy_name]
        bucket = bucket_name(policy, client, address)
        now = self.clock()
        if conn is not None and isinstance(self.storage, DatabaseStorage):
            return self.storage.hit_in(conn, policy, bucket, now)
        try:
            return self.storage.hit(policy, bucket, now)
        except Exception as exc:  # any storage failure: a server down, a timeout, a lost socket
            self._log_outage(exc)
            if self.fail_open:
                return None
            raise StorageUnavailable(str(exc)) from exc

    def counts_in(self, db: Database) -> bool:
        """Whether the counters live in `db`, so a transaction of `db` may count a request."""
        return isinstance(self.storage, DatabaseStorage) and self.storage.db.url == db.url

    def _log_outage(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_outage_log < OUTAGE_LOG_INTERVAL_SECONDS:
            return
        self._last_outage_log = now
        outcome = (
            "requests pass unchecked (RATE_LIMIT_FAIL_OPEN=true)"
            if self.fail_open
            else "requests get 503 (RATE_LIMIT_FAIL_OPEN=false)"
        )
        self.log.error(
            "rate limit storage unavailable: %s: %s; %s until it answers",
            type(exc).__name__,
            exc,
            outcome,
        )


def client_id(identity: Any) -> str | None:
    """The caller as the limits and idempotency keys know it: its token's subject, qualified by
    the issuer (two trusted issuers may both have a subject "42"); None when anonymous."""
    subject = getattr(identity, "subject", None) if identity is not None else None
    if not subject:
        return None
    issuer = getattr(identity, "issuer", None)
    return f"{subject} iss:{issuer}" if issuer else str(subject)


def uses_address(policy: Policy, client: str | None) -> bool:
    """Whether `policy` counts `client`'s requests by the caller's address (see bucket_name):
    the address is worked out only then."""
    return policy.key != "client" or not client


def bucket_name(policy: Policy, client: str | None, address: str) -> str:
    """`<policy>|<key>`: who the request counts against. Anonymous callers of a `client` policy
    count by address, so a policy never lumps every anonymous caller into one bucket."""
    if policy.key == "ip" or (policy.key == "client" and not client):
        key = f"ip:{address}"
    elif policy.key == "client":
        key = f"sub:{client}"
    else:  # client_ip
        key = f"sub:{client or ''}|ip:{address}"
    name = f"{policy.name}|{key}"
    if len(name) > MAX_BUCKET_LENGTH or not name.isascii():
        name = f"{policy.name}|sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return name


def client_address(
    remote_addr: str | None, forwarded_for: str | None, trusted_hops: int, group_ipv6: bool = True
) -> str:
    """The caller's address as the rate limits count it.

    X-Forwarded-For is believed only as far as `trusted_hops` proxies we run wrote it: each
    appends the address it received from, so the client is the `trusted_hops`-th entry from the
    right. Entries further left are whatever the client sent and are ignored; a client that
    rotates made-up values there keeps its one address. With no trusted proxies (the default)
    the header is not read at all. With `group_ipv6`, an IPv6 address stands for its /64, since
    one subscriber usually holds a whole /64 and could otherwise rotate through it.
    """
    address = (remote_addr or "").strip()
    if trusted_hops > 0 and forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        # Fewer entries than trusted proxies: the request did not come through all of them,
        # so the header proves nothing and the connection's address stands.
        if len(hops) >= trusted_hops:
            address = hops[-trusted_hops]
    return normalize_address(address, group_ipv6)


@functools.lru_cache(maxsize=4096)  # pure, and the same few callers come back all the time
def normalize_address(address: str, group_ipv6: bool = True) -> str:
    """A canonical text form: IPv4-mapped IPv6 as IPv4, IPv6 optionally as its /64."""
    candidate = address
    if candidate.startswith("[") and "]" in candidate:  # "[2001:db8::1]:443"
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # "192.0.2.1:443"
        candidate = candidate.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(candidate.split("%", 1)[0])  # drop an IPv6 zone ("%eth0")
    except ValueError:
        # Not an address (a unix socket, a proxy's "unknown"): count it as the text it is.
        return address[:100] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and group_ipv6:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# -- Flask wiring --------------------------------------------------------------------------------


def install(app: Flask, limiter: RateLimiter | None = None) -> RateLimiter:
    """Give `app` its limiter (by default the spec's policies with the app's settings); every
    response of a limited endpoint then carries the RateLimit headers, whatever its status."""
    if limiter is None:
        state = app.extensions["chassis"]  # the Runtime: settings, db, log, service
        service = state.service
        limiter = RateLimiter.from_spec(
            service.get("rate_limits") or {},
            state.db,
            storage_url=state.settings.get("RATE_LIMIT_STORAGE", ""),
            namespace=service.get("service", {}).get("name", ""),
            fail_open=state.settings.get("RATE_LIMIT_FAIL_OPEN", True),
            trusted_proxy_hops=state.settings.get("TRUSTED_PROXY_HOPS", 0),
            log=state.log,
        )
        unknown = sorted(
            f"{endpoint['name']} uses {endpoint['rate_limit']!r}"
            for endpoint in service.get("endpoints", [])
            if endpoint.get("rate_limit") and endpoint["rate_limit"] not in limiter.policies
        )
        if unknown:
            raise ValueError(
                f"rate limits not defined in the spec's rate_limits: {'; '.join(unknown)} "
                "(define them in service.yaml and run `shoestring generate`)"
            )
    app.extensions[EXTENSION] = limiter
    # For the WSGI server: waitress must keep X-Forwarded-For when proxies are trusted.
    app.config["TRUSTED_PROXY_HOPS"] = limiter.trusted_proxy_hops
    app.after_request(_add_headers)
    return limiter


def enforce(policy_name: str | None, conn: Connection | None = None) -> None:
    """Count the current request under `policy_name` (an endpoint's `rate_limit`, None for
    none); raise a 429 problem when it is over the limit. With `conn`, count inside that open
    transaction (see `RateLimiter.check`).

    Call it after authentication, which sets `g.identity`: a `client` policy counts per token.
    """
    if policy_name is None:
        return
    limiter: RateLimiter = current_app.extensions[EXTENSION]
    client = client_id(g.get("identity"))
    if conn is not None and not limiter.counts_in(current_app.extensions["chassis"].db):
        conn = None  # the counters live elsewhere (Redis): count there, on their own
    policy = limiter.policies[policy_name]
    address = request_address() if uses_address(policy, client) else ""
    try:
        decision = limiter.check(policy_name, client, address, conn)
    except StorageUnavailable:
        raise Problem(
            503,
            "the rate limit cannot be checked right now and this service refuses requests it "
            f"cannot count (RATE_LIMIT_FAIL_OPEN=false): retry in {StorageUnavailable.retry_after} "
            "seconds",
            headers={"Retry-After": str(StorageUnavailable.retry_after)},
        ) from None
    if decision is not None:  # None: storage down, failing open (already logged)
        _apply(decision)


@dataclass
class Admission:
    """The current request's count under a policy, as statements for a batch of the app's
    database (`Connection.batch`), so that it shares a round trip with other work (the claim of
    an Idempotency-Key). `bucket` is the row the statements leave, `admit` applies the outcome."""

    policy: Policy
    bucket: str
    now: float
    storage: DatabaseStorage
    statements: list[tuple[str, Any]]

    def admit(self, results: Sequence[Result]) -> None:
        """Apply the decision in the batch's first results: a 429 problem when over the limit.
        Call it after the batch's transaction ended (it may purge old rows in one of its own)."""
        if random.random() < PURGE_PROBABILITY:
            try:
                self.storage.purge(self.now, PURGE_BATCH)
            except Exception as exc:  # noqa: BLE001  # housekeeping must never fail a request
                log.warning("ratelimit.purge_failed", extra={"reason": str(exc)})
        _apply(self.storage.decide(self.policy, self.now, results))


def admission(policy_name: str) -> Admission | None:
    """The current request's count under `policy_name` as an `Admission`, or None when the
    counters do not live in the app's database (count with `enforce` then)."""
    extensions = current_app.extensions
    limiter: RateLimiter = extensions[EXTENSION]
    storage = limiter.storage
    if not isinstance(storage, DatabaseStorage) or not limiter.counts_in(
        extensions["chassis"].db
    ):
        return None
    policy = limiter.policies[policy_name]
    client = client_id(g.get("identity"))
    address = request_address() if uses_address(policy, client) else ""
    bucket = bucket_name(policy, client, address)
    now = limiter.clock()
    return Admission(policy, bucket, now, storage, storage.statements(policy, bucket, now))


def _apply(decision: Decision) -> None:
    """Remember the decision for the response headers; a 429 problem when it refuses."""
    g.rate_limit = decision
    if not decision.allowed:
        policy = decision.policy
        who = {"client": "client", "ip": "address", "client_ip": "client and address"}[policy.key]
        raise Problem(
            429,
            f"rate limit {policy.name!r} allows {policy.limit} requests per {policy.per} "
            f"per {who}: retry in {decision.retry_after} second(s)",
            headers=decision.headers(),
        )


@contextmanager
def counting_refusals(policy_name: str | None) -> Iterator[None]:
    """Count the current request under `policy_name` when the block raises: a request refused
    before the step that would have counted it (an idempotent request with a bad key or body)
    still counts, and a 429 replaces the block's error once the client is over the limit."""
    try:
        yield
    except Exception:
        enforce(policy_name)
        raise


def request_address(group_ipv6: bool = True) -> str:
    """The current request's client address, trusting TRUSTED_PROXY_HOPS proxies."""
    limiter: RateLimiter | None = current_app.extensions.get(EXTENSION)
    hops = limiter.trusted_proxy_hops if limiter is not None else 0
    environ = request.environ
    return client_address(
        environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), hops, group_ipv6
    )


def _add_headers(response: Response) -> Response:
    decision: Decision | None = g.get("rate_limit")
    if decision is not None:
        headers = response.headers
        # A 429 carries them already. Looked up by hand: Headers' own lookups of a missing
        # name (`in`, get, setdefault) raise and catch an exception each time.
        present = {name.lower() for name in headers.keys()}
        for name, value in decision.headers().items():
            if name.lower() not in present:
                headers[name] = value
    return response


def _sf_string(value: str) -> str:
    """A Structured Field string (RFC 8941): quoted, with backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
