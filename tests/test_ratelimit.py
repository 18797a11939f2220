"""Rate limiting (shoestring_runtime/ratelimit.py) against real SQLite, MariaDB and Redis.

These tests drive the module directly, with a controllable clock where a test is about time, so
they are exact and fast. The HTTP tests (several server processes against one MariaDB database)
are in test_ratelimit_http.py.
"""

from __future__ import annotations

import socket
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import DATABASE_KINDS, chassis_database, chassis_module, no_purges_by_chance

ratelimit = chassis_module("ratelimit")
db_module = chassis_module("db")


@pytest.fixture(autouse=True)
def no_random_purges(monkeypatch):
    no_purges_by_chance(monkeypatch)


@pytest.fixture(params=DATABASE_KINDS)
def database(request, tmp_path: Path):
    """A real database with the rate limit table."""
    db = chassis_database(request, tmp_path, "0010_rate_limits.sql")
    yield db
    db.close()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_040.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def limiter_for(db: Any, clock: Clock, **policies: tuple[int, str, str]) -> Any:
    return ratelimit.RateLimiter(
        {
            name: ratelimit.Policy(name, limit, per, key)
            for name, (limit, per, key) in policies.items()
        },
        ratelimit.DatabaseStorage(db),
        clock=clock,
    )


def hits(limiter: Any, policy: str, count: int, client: str | None = "alice",
         address: str = "192.0.2.1") -> list[Any]:
    return [limiter.check(policy, client, address) for _ in range(count)]


# -- the algorithm --------------------------------------------------------------------------------


def test_the_request_after_the_limit_is_refused_with_retry_after(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(60, "minute", "client"))
    decisions = hits(limiter, "per_client", 61)
    assert [d.allowed for d in decisions] == [True] * 60 + [False]
    assert [d.remaining for d in decisions[:3]] == [59, 58, 57]
    assert decisions[59].remaining == 0
    refused = decisions[60]
    # 60 per minute: the next request fits one second (one interval) later.
    assert refused.retry_after == 1
    assert refused.headers() == {
        "RateLimit-Policy": '"per_client";q=60;w=60',
        "RateLimit": '"per_client";r=0;t=60',
        "Retry-After": "1",
    }
    clock.now += 0.9
    assert not limiter.check("per_client", "alice", "192.0.2.1").allowed
    clock.now += 0.1
    assert limiter.check("per_client", "alice", "192.0.2.1").allowed


def test_retry_after_is_a_whole_number_of_seconds_rounded_up(database):
    clock = Clock()
    limiter = limiter_for(database, clock, hourly=(2, "hour", "client"))
    first, second, refused = hits(limiter, "hourly", 3)
    assert first.allowed and second.allowed and not refused.allowed
    assert refused.retry_after == 1800  # one interval of 3600 s / 2
    clock.now += 0.5
    refused = limiter.check("hourly", "alice", "192.0.2.1")
    assert refused.retry_after == 1800  # 1799.5 rounded up, never 0
    assert isinstance(refused.retry_after, int)


def test_no_second_burst_right_after_a_window_boundary(database):
    # A fixed window admits `limit` just before the minute turns and `limit` again just after:
    # twice the limit within a fraction of a second. GCRA refills one request per interval.
    clock = Clock(start=1_700_000_039.9)  # 0.1 s before a minute boundary (a multiple of 60)
    limiter = limiter_for(database, clock, per_client=(10, "minute", "client"))
    assert all(d.allowed for d in hits(limiter, "per_client", 10))
    clock.now += 0.2  # across the boundary
    assert not any(d.allowed for d in hits(limiter, "per_client", 10))
    # Then one request per interval (6 s), never a burst.
    admitted = 0
    for _ in range(60):  # the next minute, a try every second
        clock.now += 1
        admitted += limiter.check("per_client", "alice", "192.0.2.1").allowed
    assert admitted == 10


def test_the_full_quota_returns_after_a_quiet_period(database):
    clock = Clock()
    limiter = limiter_for(database, clock, burst=(5, "second", "client"))
    assert [d.allowed for d in hits(limiter, "burst", 6)] == [True] * 5 + [False]
    clock.now += 1.0
    decisions = hits(limiter, "burst", 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]


def test_one_clients_exhaustion_leaves_another_unaffected(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(3, "minute", "client"))
    assert [d.allowed for d in hits(limiter, "per_client", 4, client="alice")] == [
        True, True, True, False,
    ]
    # Same address (one office behind one NAT), another token: its own quota.
    bob = hits(limiter, "per_client", 3, client="bob")
    assert all(d.allowed for d in bob)
    assert bob[0].remaining == 2


def test_client_keys_are_case_sensitive(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(1, "minute", "client"))
    assert limiter.check("per_client", "Alice", "192.0.2.1").allowed
    assert limiter.check("per_client", "alice", "192.0.2.1").allowed
    assert not limiter.check("per_client", "Alice", "192.0.2.1").allowed


def test_policies_count_separately(database):
    clock = Clock()
    limiter = limiter_for(
        database, clock, writes=(1, "minute", "client"), reads=(2, "minute", "client")
    )
    assert limiter.check("writes", "alice", "192.0.2.1").allowed
    assert not limiter.check("writes", "alice", "192.0.2.1").allowed
    assert limiter.check("reads", "alice", "192.0.2.1").allowed


def test_ip_policy_counts_per_address_and_client_ip_per_both(database):
    clock = Clock()
    limiter = limiter_for(
        database, clock, per_ip=(1, "minute", "ip"), per_pair=(1, "minute", "client_ip")
    )
    assert limiter.check("per_ip", "alice", "192.0.2.1").allowed
    assert not limiter.check("per_ip", "bob", "192.0.2.1").allowed  # same address
    assert limiter.check("per_ip", "alice", "192.0.2.2").allowed
    assert limiter.check("per_pair", "alice", "192.0.2.1").allowed
    assert limiter.check("per_pair", "alice", "192.0.2.2").allowed
    assert limiter.check("per_pair", "bob", "192.0.2.1").allowed
    assert not limiter.check("per_pair", "alice", "192.0.2.1").allowed


def test_anonymous_callers_of_a_client_policy_count_by_address(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(1, "minute", "client"))
    assert limiter.check("per_client", None, "192.0.2.1").allowed
    assert not limiter.check("per_client", None, "192.0.2.1").allowed
    assert limiter.check("per_client", None, "192.0.2.2").allowed


def test_long_and_non_ascii_clients_get_their_own_hashed_buckets(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(1, "minute", "client"))
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    for client in (long_a, long_b, "zoë", "zoe"):
        assert limiter.check("per_client", client, "192.0.2.1").allowed, client
    assert not limiter.check("per_client", long_a, "192.0.2.1").allowed
    assert not limiter.check("per_client", "zoë", "192.0.2.1").allowed
    policy = limiter.policies["per_client"]
    assert ratelimit.bucket_name(policy, long_a, "x").startswith("per_client|sha256:")
    assert len(ratelimit.bucket_name(policy, long_a, "x")) < 255


def test_purge_deletes_only_rows_whose_quota_is_full_again(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(2, "minute", "client"))
    hits(limiter, "per_client", 2, client="busy")
    clock.now += 40
    hits(limiter, "per_client", 1, client="recent")
    clock.now += 25  # busy's bucket refilled at +60; recent's refills at +70
    storage = limiter.storage
    assert storage.purge(clock.now) == 1
    with database.transaction() as conn:
        left = [row["bucket"] for row in conn.fetchall("SELECT bucket FROM rate_limit_buckets")]
    assert left == ["per_client|sub:recent"]
    # The purged client starts from a full quota, exactly as if its row had been kept.
    assert [d.allowed for d in hits(limiter, "per_client", 3, client="busy")] == [True, True, False]


def test_purge_works_in_batches(database):
    clock = Clock()
    limiter = limiter_for(database, clock, per_client=(1, "second", "client"))
    for n in range(7):
        limiter.check("per_client", f"client-{n}", "192.0.2.1")
    clock.now += 5
    assert limiter.storage.purge(clock.now, batch=3) == 3
    assert limiter.storage.purge(clock.now, batch=3) == 3
    assert limiter.storage.purge(clock.now, batch=3) == 1
    assert limiter.storage.purge(clock.now, batch=3) == 0


# -- when the storage is down ---------------------------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_storage_down_fails_open_and_logs_once(caplog):
    db = db_module.Database(f"mysql://root@127.0.0.1:{closed_port()}/nowhere?connect_timeout=1")
    policy = ratelimit.Policy("per_client", 1, "minute", "client")
    limiter = ratelimit.RateLimiter(
        {"per_client": policy}, ratelimit.DatabaseStorage(db), fail_open=True
    )
    with caplog.at_level("ERROR"):
        assert limiter.check("per_client", "alice", "192.0.2.1") is None
        assert limiter.check("per_client", "alice", "192.0.2.1") is None
    outages = [r for r in caplog.records if "rate limit storage unavailable" in r.getMessage()]
    assert len(outages) == 1  # not once per request
    assert "RATE_LIMIT_FAIL_OPEN=true" in outages[0].getMessage()


def test_storage_down_fails_closed_when_configured(caplog):
    db = db_module.Database(f"mysql://root@127.0.0.1:{closed_port()}/nowhere?connect_timeout=1")
    policy = ratelimit.Policy("per_client", 1, "minute", "client")
    limiter = ratelimit.RateLimiter(
        {"per_client": policy}, ratelimit.DatabaseStorage(db), fail_open=False
    )
    with caplog.at_level("ERROR"), pytest.raises(ratelimit.StorageUnavailable):
        limiter.check("per_client", "alice", "192.0.2.1")
    assert "RATE_LIMIT_FAIL_OPEN=false" in caplog.text


# -- who the client is ----------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies():
    assert ratelimit.client_address("203.0.113.7", "198.51.100.1", 0) == "203.0.113.7"


def test_rotating_spoofed_forwarded_for_values_keep_one_address():
    # One trusted proxy appends the address it saw; whatever the client wrote before stays left.
    seen = {
        ratelimit.client_address("10.0.0.1", f"198.51.100.{n}, 203.0.113.7", 1)
        for n in range(50)
    }
    assert seen == {"203.0.113.7"}


def test_two_trusted_hops_take_the_second_entry_from_the_right():
    header = "6.6.6.6, 203.0.113.7, 10.0.0.2"
    assert ratelimit.client_address("10.0.0.1", header, 2) == "203.0.113.7"


def test_fewer_entries_than_trusted_hops_fall_back_to_the_connection():
    assert ratelimit.client_address("10.0.0.1", "203.0.113.7", 2) == "10.0.0.1"


def test_ipv6_addresses_count_per_64_block():
    first = ratelimit.client_address("2001:db8:1:2:aaaa::1", None, 0)
    second = ratelimit.client_address("2001:db8:1:2:bbbb::9", None, 0)
    other = ratelimit.client_address("2001:db8:1:3::1", None, 0)
    assert first == second == "2001:db8:1:2::/64"
    assert other != first
    assert ratelimit.client_address("2001:db8:1:2::1", None, 0, group_ipv6=False) == "2001:db8:1:2::1"


def test_addresses_are_normalised():
    assert ratelimit.client_address("::ffff:192.0.2.1", None, 0) == "192.0.2.1"
    assert ratelimit.client_address("10.0.0.1", "[2001:db8::1]:4711", 1) == "2001:db8::/64"
    assert ratelimit.client_address("10.0.0.1", "192.0.2.9:4711", 1) == "192.0.2.9"
    assert ratelimit.client_address("10.0.0.1", "unknown", 1) == "unknown"
    assert ratelimit.client_address(None, None, 0) == "unknown"


def test_client_id_qualifies_the_subject_by_issuer():
    identity = types.SimpleNamespace(subject="42", issuer="https://id.example.com")
    assert ratelimit.client_id(identity) == "42 iss:https://id.example.com"
    assert ratelimit.client_id(None) is None
    assert ratelimit.client_id(types.SimpleNamespace(subject="", issuer="x")) is None


# -- the policies of the spec ---------------------------------------------------------------------


def test_policies_from_the_spec_are_checked():
    assert ratelimit.Policy.from_spec("p", {"limit": 60, "per": "minute", "key": "client"}).header == (
        '"p";q=60;w=60'
    )
    with pytest.raises(ValueError, match="per must be one of second, minute, hour, day"):
        ratelimit.Policy.from_spec("p", {"limit": 60, "per": "fortnight", "key": "client"})
    with pytest.raises(ValueError, match="key must be one of client, ip, client_ip"):
        ratelimit.Policy.from_spec("p", {"limit": 60, "per": "minute", "key": "user"})
    with pytest.raises(ValueError, match="limit must be at least 1"):
        ratelimit.Policy.from_spec("p", {"limit": 0, "per": "minute", "key": "client"})


def test_storage_other_than_redis_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="must be empty .count in the database. or a Redis URL"):
        ratelimit.RateLimiter.from_spec({}, None, storage_url="memcached://127.0.0.1:11211")


# -- Redis, through the `limits` library ---------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_limiter():
    pytest.importorskip("limits")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis server answers at 127.0.0.1:6379 (start one: redis-server --daemonize yes)")
    return ratelimit.RateLimiter.from_spec(
        {"burst": {"limit": 5, "per": "minute", "key": "client"}},
        None,
        storage_url=REDIS_URL,
        namespace=f"test-{uuid.uuid4().hex}",
    )


def test_redis_storage_refuses_the_request_after_the_limit(redis_limiter):
    decisions = hits(redis_limiter, "burst", 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].remaining == 4
    assert decisions[-1].retry_after >= 1
    assert decisions[-1].headers()["RateLimit-Policy"] == '"burst";q=5;w=60'
    # Another client has its own counter.
    assert redis_limiter.check("burst", "bob", "192.0.2.1").allowed


def test_redis_down_fails_open():
    pytest.importorskip("limits")
    limiter = ratelimit.RateLimiter.from_spec(
        {"burst": {"limit": 5, "per": "minute", "key": "client"}},
        None,
        storage_url=f"redis://127.0.0.1:{closed_port()}/0",
        namespace="test",
    )
    assert limiter.check("burst", "alice", "192.0.2.1") is None
