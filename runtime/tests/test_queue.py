"""The message queue and its claim: enqueue, deduplication, leases, fencing, backoff, cleanup.

These run on SQLite by default and on MySQL/MariaDB with TEST_DATABASE_URL, where both claim
methods (SKIP LOCKED and compare-and-set) are exercised.
"""

from __future__ import annotations

import time

import pytest

from shoestring_runtime import claim as claims
from shoestring_runtime import housekeeping, outbox, queue
from shoestring_runtime.claim import QUEUE, RetryPolicy
from shoestring_runtime.events import MessageError, envelope

from .messaging_helpers import (
    PING,
    TRACEPARENT,
    catalog,
    db_now,
    enqueue,
    rows,
)
from .shop import SERVICE


def test_enqueue_writes_a_cloudevent_row_from_this_service(mdb):
    (event,) = enqueue(mdb, [{"n": 1}])
    (row,) = rows(mdb)
    assert row["status"] == "NEW" and row["retry_count"] == 0
    assert (row["message_id"], row["source"]) == (event["id"], "testsvc")
    assert (row["message_type"], row["version"]) == ("test.local", 1)
    payload = row["payload"]
    assert payload["specversion"] == "1.0"
    assert payload["type"] == "test.local.v1"  # the type carries the major version
    assert payload["traceparent"] == TRACEPARENT
    assert payload["data"] == {"n": 1}
    assert {"id", "source", "time", "dataschema", "datacontenttype"} <= set(payload)


def test_enqueue_refuses_a_job_nobody_handles_and_says_how_to_fix_it():
    with pytest.raises(MessageError, match="add a subscription"):
        queue.enqueue(outbox.Outgoing(), catalog(), "test.nobody", 1, {"n": 1},
                      traceparent=TRACEPARENT)


def test_enqueue_validates_the_data_naming_the_field(mdb):
    with pytest.raises(MessageError, match="/n must be of type integer"):
        enqueue(mdb, [{"n": "one"}])
    assert rows(mdb) == []


def test_a_message_received_twice_is_stored_once(mdb):
    event = envelope(source="peer_a", type_="test.ping", version=1, data={"n": 1},
                     dataschema="urn:test", traceparent=TRACEPARENT)
    with mdb.transaction() as conn:
        assert queue.accept(conn, [event]) == 1
    with mdb.transaction() as conn:
        assert queue.accept(conn, [event, dict(event)]) == 0
    assert len(rows(mdb)) == 1


def test_claim_leases_each_row_to_one_claimer(mdb, method):
    enqueue(mdb, [{"n": n} for n in range(5)])
    first = claims.claim(mdb, QUEUE, limit=3, lease_seconds=60, method=method)
    second = claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method)
    assert len(first) == 3 and len(second) == 2
    assert not {row.id for row in first} & {row.id for row in second}
    assert claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method) == []
    leased = {row["id"]: row for row in rows(mdb)}
    for row in first:
        assert leased[row.id]["status"] == "IN_PROGRESS"
        assert leased[row.id]["lease_owner"] == row.owner
        assert leased[row.id]["lease_expires_at"] > db_now(mdb)


def test_claim_takes_the_oldest_rows_first(mdb, method):
    for n in range(12):
        enqueue(mdb, [{"n": n}])
    claimed = claims.claim(mdb, QUEUE, limit=2, lease_seconds=60, method=method)
    exact = method == claims.SKIP_LOCKED or mdb.dialect.serializes_writers
    # Concurrent compare-and-set claimers sample the oldest rows (a window CANDIDATE_SPREAD
    # times the batch) so that they do not all race for the same ones.
    window = 2 if exact else 2 * claims.CANDIDATE_SPREAD
    assert len(claimed) == 2 and all(row.data["n"] < window for row in claimed)


def test_delayed_job_is_not_claimed_before_its_time(mdb, method):
    enqueue(mdb, [{"n": 1}], delay=0.5)
    assert claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method) == []
    time.sleep(0.6)
    assert len(claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method)) == 1


def test_killed_worker_rows_return_after_lease_expires(mdb, method):
    enqueue(mdb, [{"n": 1}, {"n": 2}])
    lost = claims.claim(mdb, QUEUE, limit=10, lease_seconds=0.3, method=method)
    assert claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method) == []
    time.sleep(0.4)
    back = claims.claim(mdb, QUEUE, limit=10, lease_seconds=60, method=method)
    assert sorted(row.id for row in back) == sorted(row.id for row in lost)
    for row in back:
        # The attempt that died is counted and written down.
        assert row.retry_count == 1
        assert "lease expired" in row.attempt_log[-1]["error"]


def test_completion_is_fenced_on_the_lease(mdb, method):
    enqueue(mdb, [{"n": 1}])
    (late,) = claims.claim(mdb, QUEUE, limit=1, lease_seconds=0.2, method=method)
    time.sleep(0.3)
    (current,) = claims.claim(mdb, QUEUE, limit=1, lease_seconds=60, method=method)
    with mdb.transaction() as conn:
        assert claims.complete(conn, [late]) == 0  # the late worker completes nothing
        assert not claims.fail(conn, late, "boom", retry_in=1)  # nor can it push it back
    with mdb.transaction() as conn:
        assert claims.complete(conn, [current]) == 1
    (row,) = rows(mdb)
    assert row["status"] == "DONE" and row["lease_owner"] is None


def test_failed_attempt_goes_back_with_backoff_then_dead_letters(mdb, method):
    enqueue(mdb, [{"n": 1}])
    (row,) = claims.claim(mdb, QUEUE, limit=1, lease_seconds=60, method=method)
    before = db_now(mdb)
    with mdb.transaction() as conn:
        assert claims.fail(conn, row, "Traceback ...\nValueError: boom", retry_in=30)
    (stored,) = rows(mdb)
    assert stored["status"] == "NEW" and stored["retry_count"] == 1
    assert 29 <= (stored["available_at"] - before).total_seconds() <= 31
    assert stored["attempt_log"][-1]["error"] == "ValueError: boom"
    assert claims.claim(mdb, QUEUE, limit=1, lease_seconds=60, method=method) == []
    with mdb.transaction() as conn:  # make it due, then fail it for good
        conn.execute(f"UPDATE message_queue SET available_at = {conn.dialect.now_sql}", ())
    (row,) = claims.claim(mdb, QUEUE, limit=1, lease_seconds=60, method=method)
    assert row.attempt == 2
    with mdb.transaction() as conn:
        assert claims.fail(conn, row, "Traceback ...\nValueError: again", retry_in=None)
    (stored,) = rows(mdb)
    assert stored["status"] == "FAILED" and stored["retry_count"] == 2
    assert "ValueError: again" in stored["last_error"]
    assert [entry["attempt"] for entry in stored["attempt_log"]] == [1, 2]


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = RetryPolicy(max_attempts=10, base_seconds=2, max_seconds=60)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (9, 60)]:
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range: full jitter
        assert min(delays) < ceiling * 0.2
    assert not policy.gives_up_after(9) and policy.gives_up_after(10)


def test_claim_method_auto_picks_skip_locked_only_where_the_server_has_it(db):
    expected = claims.SKIP_LOCKED if db.dialect.supports_skip_locked else claims.COMPARE_AND_SET
    assert claims.claim_method(db.dialect, "auto") == expected
    assert claims.claim_method(db.dialect, "compare_and_set") == claims.COMPARE_AND_SET
    with pytest.raises(ValueError, match="use one of"):
        claims.claim_method(db.dialect, "fast")


def test_claim_query_reads_the_status_index_not_the_table(mdb):
    """The claim's range is (status, available_at): finished rows are never read."""
    with mdb.transaction(readonly=True) as conn:
        where = f"status = 'NEW' AND available_at <= {conn.dialect.now_sql}"
        if conn.dialect.name == "sqlite":
            plan = conn.fetchall(
                f"EXPLAIN QUERY PLAN SELECT id FROM message_queue WHERE {where} "
                "ORDER BY available_at LIMIT 100", ())
            detail = " ".join(str(row["detail"]) for row in plan)
            assert "ix_message_queue_status_available" in detail
            assert "TEMP B-TREE" not in detail  # no sort: the index is already in order
        else:
            (plan,) = conn.fetchall(
                f"EXPLAIN SELECT id FROM message_queue WHERE {where} "
                "ORDER BY available_at LIMIT 100", ())
            assert plan["key"] == "ix_message_queue_status_available"
            assert "filesort" not in (plan["Extra"] or "")


def test_done_rows_are_purged_after_retention_in_batches(mdb):
    enqueue(mdb, [{"n": n} for n in range(7)])
    with mdb.transaction() as conn:
        conn.execute(
            "UPDATE message_queue SET status = 'DONE', available_at = "
            f"{conn.dialect.now_plus_seconds_sql()} WHERE id <= (SELECT MIN(id) + 4 FROM "
            "(SELECT id FROM message_queue) AS ids)", (-10 * 86400,))
        conn.execute(
            "UPDATE message_queue SET status = 'FAILED', available_at = "
            f"{conn.dialect.now_plus_seconds_sql()} WHERE status = 'NEW'", (-10 * 86400,))
    old_done = [row["id"] for row in rows(mdb) if row["status"] == "DONE"]
    assert len(old_done) == 5
    purged = housekeeping.purge_finished(mdb, QUEUE, older_than_seconds=7 * 86400, batch_size=2)
    assert purged == 5
    assert {row["status"] for row in rows(mdb)} == {"FAILED"}  # dead letters stay


def test_quick_schema_check_agrees_with_jsonschema():
    """The worker's quick validity check never says yes where jsonschema says no."""
    from jsonschema import Draft202012Validator

    from shoestring_runtime.events import compile_check

    uuid_ = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    schemas = [PING, {"type": ["string", "null"], "enum": ["a", "b"]},
               {"type": "array", "items": {"type": "object", "required": ["x"],
                                           "properties": {"x": {"type": "integer"}}}}]
    spec = SERVICE.model
    for message in (spec.get("messages") or {}).values():
        schemas += [entry["schema"] for entry in message["versions"].values()]
    schemas += [subscription["schema"] for subscription in spec.get("subscriptions") or []]
    values = [None, True, 1, 1.0, 1.5, "", "a", "x" * 3, uuid_, [], [{}], [{"x": 1}],
              [{"x": True}], {}, {"n": 1}, {"n": True}, {"n": 1.0}, {"n": "1"}, {"n": 1, "z": 1},
              {"order_id": uuid_}, {"order_id": "nope"}, {"note": None}]
    for schema in schemas:
        quick = compile_check(schema)
        full = Draft202012Validator(schema)
        candidates = list(values)
        if isinstance(schema, dict) and "properties" in schema:
            from shoestring_runtime.examples import example_for

            good = example_for(schema)
            candidates += [good, {**good, "surplus": 1}]
            candidates += [{k: v for k, v in good.items() if k != key} for key in good]
            candidates += [{**good, key: 12345} for key in good]
        assert quick is not None, schema  # every compiled field type has a quick check
        for value in candidates:
            assert quick(value) == full.is_valid(value), (schema, value)
