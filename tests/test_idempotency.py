"""Idempotency keys (shoestring_runtime/idempotency.py) against real SQLite and MariaDB.

These tests drive the module directly, with a controllable clock where a test is about time.
The HTTP tests (real servers, concurrent requests, rows counted) are in test_idempotency_http.py.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path
from typing import Any

import flask
import pytest
from support import (
    DATABASE_KINDS,
    apply_migration,
    chassis_database,
    chassis_module,
    no_purges_by_chance,
)

idempotency = chassis_module("idempotency")
ratelimit = chassis_module("ratelimit")

db_module = chassis_module("db")
Problem = chassis_module("problems").Problem


@pytest.fixture(autouse=True)
def no_random_purges(monkeypatch):
    no_purges_by_chance(monkeypatch)


@pytest.fixture(params=DATABASE_KINDS)
def database(request, tmp_path: Path):
    """A real database with the idempotency table and an `orders` table for side effects."""
    db = chassis_database(request, tmp_path, "0011_idempotency_keys.sql")
    with db.transaction() as conn:
        conn.execute("CREATE TABLE orders (id INTEGER NOT NULL, note VARCHAR(20) NOT NULL)")
    yield db
    db.close()


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, 12, 0, 0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(database, clock):
    return idempotency.IdempotencyKeys(database, ttl_seconds=3600, lease_seconds=30, clock=clock)


BODY = b'{"customer_id": "c-1", "amount_cents": 1200}'
FINGERPRINT = idempotency.fingerprint("POST", "/v1/orders", "", BODY)


def claim(keys: Any, key: str = "k-1", client: str = "sub:alice", fingerprint: str = FINGERPRINT):
    return keys.claim(client=client, key=key, endpoint="create_order", fingerprint=fingerprint)


def place_order(keys: Any, db: Any, held: Any, order_id: int) -> None:
    """A handler's transaction: the side effect and the stored response commit together."""
    with db.transaction() as conn:
        conn.execute("INSERT INTO orders (id, note) VALUES (%s, %s)", (order_id, "placed"))
        keys.complete(conn, held, 201, {"Content-Type": "application/json"}, f'{{"id": {order_id}}}')


def count_orders(db: Any) -> int:
    with db.transaction() as conn:
        return conn.fetchvalue("SELECT COUNT(*) FROM orders")


def test_first_use_claims_and_a_retry_replays_the_stored_response(keys, database):
    held = claim(keys)
    assert isinstance(held, idempotency.Claim)
    place_order(keys, database, held, 1)
    replay = claim(keys)
    assert replay == idempotency.Replay(201, {"Content-Type": "application/json"}, '{"id": 1}')
    assert count_orders(database) == 1


def test_same_json_in_another_key_order_is_the_same_request(keys, database):
    place_order(keys, database, claim(keys), 1)
    reordered = idempotency.fingerprint(
        "POST", "/v1/orders", "", b'{"amount_cents":1200,  "customer_id":"c-1"}'
    )
    assert isinstance(claim(keys, fingerprint=reordered), idempotency.Replay)


def test_same_key_with_a_different_body_path_or_method_is_422(keys, database):
    place_order(keys, database, claim(keys), 1)
    for other in (
        idempotency.fingerprint("POST", "/v1/orders", "", b'{"amount_cents": 1}'),
        idempotency.fingerprint("POST", "/v1/refunds", "", BODY),
        idempotency.fingerprint("PUT", "/v1/orders", "", BODY),
        idempotency.fingerprint("POST", "/v1/orders", "dry_run=1", BODY),
    ):
        with pytest.raises(Problem) as refused:
            claim(keys, fingerprint=other)
        assert refused.value.status == 422
        assert "new key for a new request" in refused.value.detail


def test_same_key_while_the_first_request_runs_is_409_with_retry_after(keys):
    assert isinstance(claim(keys), idempotency.Claim)
    with pytest.raises(Problem) as conflict:
        claim(keys)
    assert conflict.value.status == 409
    assert conflict.value.headers["Retry-After"] == "1"


def test_another_clients_same_key_is_independent(keys, database):
    place_order(keys, database, claim(keys, client="sub:alice"), 1)
    bobs = claim(keys, client="sub:bob", fingerprint="0" * 64)
    assert isinstance(bobs, idempotency.Claim)
    place_order(keys, database, bobs, 2)
    assert claim(keys, client="sub:alice").body == '{"id": 1}'
    assert claim(keys, client="sub:bob", fingerprint="0" * 64).body == '{"id": 2}'


def test_keys_are_case_sensitive(keys):
    assert isinstance(claim(keys, key="Key"), idempotency.Claim)
    assert isinstance(claim(keys, key="key"), idempotency.Claim)


def test_an_expired_key_is_reusable_for_a_new_request(keys, database, clock):
    place_order(keys, database, claim(keys), 1)
    clock.advance(3599)
    assert isinstance(claim(keys), idempotency.Replay)
    clock.advance(2)  # past the TTL
    other = idempotency.fingerprint("POST", "/v1/orders", "", b'{"amount_cents": 5}')
    held = claim(keys, fingerprint=other)
    assert isinstance(held, idempotency.Claim)
    place_order(keys, database, held, 2)
    assert claim(keys, fingerprint=other).body == '{"id": 2}'


def test_a_failed_handler_releases_the_key_for_an_immediate_retry(keys, database):
    held = claim(keys)
    with pytest.raises(RuntimeError), database.transaction() as conn:
        conn.execute("INSERT INTO orders (id, note) VALUES (%s, %s)", (1, "placed"))
        raise RuntimeError("the handler failed")
    keys.release(held)
    assert count_orders(database) == 0
    retry = claim(keys)
    assert isinstance(retry, idempotency.Claim)
    place_order(keys, database, retry, 1)
    assert count_orders(database) == 1


def test_a_crashed_requests_key_is_claimable_after_its_lease(keys, clock):
    assert isinstance(claim(keys), idempotency.Claim)  # ... and the process dies here
    clock.advance(29)
    with pytest.raises(Problem):
        claim(keys)
    clock.advance(2)  # the 30 s lease ran out
    assert isinstance(claim(keys), idempotency.Claim)


def test_a_request_that_outlived_its_lease_cannot_complete_and_rolls_back(keys, database, clock):
    slow = claim(keys)
    clock.advance(31)
    retry = claim(keys)
    assert isinstance(retry, idempotency.Claim)
    with pytest.raises(idempotency.ClaimLost) as lost:
        place_order(keys, database, slow, 1)
    assert lost.value.status == 409
    assert count_orders(database) == 0  # the slow request's effect rolled back with it
    place_order(keys, database, retry, 2)
    assert count_orders(database) == 1
    assert claim(keys).body == '{"id": 2}'


def test_a_request_whose_expired_claim_was_purged_completes_once_and_keeps_its_response(
    keys, database, clock
):
    slow = claim(keys)
    clock.advance(31)  # the lease ran out and no retry came, but the purge did
    assert keys.purge() == 1
    place_order(keys, database, slow, 1)
    assert count_orders(database) == 1
    assert claim(keys).body == '{"id": 1}'  # the key is back, with the response


def test_release_never_deletes_a_key_another_request_took_over(keys, clock):
    slow = claim(keys)
    clock.advance(31)
    retry = claim(keys)
    keys.release(slow)
    with pytest.raises(Problem):  # the retry still holds it
        claim(keys)
    keys.release(retry)
    assert isinstance(claim(keys), idempotency.Claim)


def test_purge_deletes_expired_keys_and_dead_leases_only(keys, database, clock):
    place_order(keys, database, claim(keys, key="done-old"), 1)
    claim(keys, key="running-dead")
    clock.advance(1800)
    place_order(keys, database, claim(keys, key="done-recent"), 2)
    clock.advance(1801)  # done-old is past its TTL, running-dead long past its lease
    claim(keys, key="running-live")
    assert keys.purge() == 2
    with database.transaction() as conn:
        left = sorted(r["idempotency_key"] for r in conn.fetchall(
            "SELECT idempotency_key FROM idempotency_keys"))
    assert left == ["done-recent", "running-live"]


# -- the header -------------------------------------------------------------------------------


def test_header_values_are_parsed_or_refused_with_400():
    assert idempotency.parse_key("8e03978e-40d5-43e8-bc93-6894a57f9324") == (
        "8e03978e-40d5-43e8-bc93-6894a57f9324"
    )
    assert idempotency.parse_key('"8e03978e-40d5"') == "8e03978e-40d5"  # structured field string
    assert idempotency.parse_key("k" * 255) == "k" * 255
    for bad, reason in (
        (None, "send an Idempotency-Key header"),
        ("", "is empty"),
        ('""', "is empty"),
        ("   ", "is empty"),
        ("k" * 256, "at most 255"),
        ("caf\u00e9", "printable ASCII"),
        ("a\tb", "printable ASCII"),
    ):
        with pytest.raises(Problem) as refused:
            idempotency.parse_key(bad)
        assert refused.value.status == 400
        assert reason in refused.value.detail


def test_client_scope_keeps_anonymous_callers_apart_by_address():
    assert idempotency.client_scope("42 iss:orders", "192.0.2.1") == "sub:42 iss:orders"
    assert idempotency.client_scope(None, "192.0.2.1") == "ip:192.0.2.1"
    assert idempotency.client_scope("x" * 300, "192.0.2.1").startswith("sha256:")


# -- concurrency: several processes claim one key ------------------------------------------------


def _claim_in_process(url: str, key: str, start: Any, results: Any) -> None:
    db = db_module.Database(url)
    keys = idempotency.IdempotencyKeys(db, lease_seconds=30)
    start.wait()
    try:
        outcome = keys.claim(
            client="sub:alice", key=key, endpoint="create_order", fingerprint=FINGERPRINT
        )
        results.put(type(outcome).__name__)
    except Problem as problem:
        results.put(problem.status)
    except Exception as exc:  # noqa: BLE001  # reported to the test, which fails with it
        results.put(repr(exc))


@pytest.mark.mysql
def test_concurrent_claims_of_one_key_from_several_processes_admit_one(mysql_database):
    db = db_module.Database(mysql_database)
    apply_migration(db, "0011_idempotency_keys.sql")
    context = multiprocessing.get_context("fork")
    for round_number in range(3):
        start = context.Event()
        results = context.Queue()
        workers = [
            context.Process(
                target=_claim_in_process, args=(mysql_database, f"k-{round_number}", start, results)
            )
            for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        start.set()
        outcomes = sorted(str(results.get(timeout=60)) for _ in workers)
        for worker in workers:
            worker.join(timeout=30)
        assert outcomes == ["409"] * 5 + ["Claim"], outcomes


def test_a_claim_the_rate_limit_refuses_leaves_the_key_untouched(database, keys):
    # The count and the claim travel in one batch; the claim takes the key only when the
    # count admitted the request.
    apply_migration(database, "0010_rate_limits.sql")
    policy = ratelimit.Policy("writes", 1, "minute", "client")
    storage = ratelimit.DatabaseStorage(database)
    bucket = "writes|sub:alice"

    def admission(now: float) -> Any:
        return ratelimit.Admission(policy, bucket, now, storage,
                                   storage.statements(policy, bucket, now))

    with flask.Flask(__name__).app_context():
        first = keys.claim(client="alice", key="k-1", endpoint="create_order",
                           fingerprint=FINGERPRINT, admission=admission(1_700_000_000.0))
        assert isinstance(first, idempotency.Claim)
        with pytest.raises(Problem) as refused:
            keys.claim(client="alice", key="k-2", endpoint="create_order",
                       fingerprint=FINGERPRINT, admission=admission(1_700_000_001.0))
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1
    with database.transaction() as conn:
        claimed = conn.fetchall("SELECT idempotency_key FROM idempotency_keys")
    assert claimed == [{"idempotency_key": "k-1"}]
