"""The worker: handlers run in one transaction with their message's completion, failures are
retried with backoff and end as dead letters, a poison message never blocks or repeats others."""

from __future__ import annotations

import datetime as dt
import threading
import time

from shoestring_runtime import deadletters, queue
from shoestring_runtime.claim import OUTBOX, QUEUE
from shoestring_runtime.events import envelope

from .messaging_helpers import (
    TRACEPARENT,
    catalog,
    effects,
    enqueue,
    make_worker,
    record_effect,
    rows,
)

LOCAL = ("test.local", 1)


def test_handler_effects_and_completion_commit_together(mdb, settings, method):
    events = enqueue(mdb, [{"n": n} for n in range(5)])
    stats = make_worker(mdb, settings, {LOCAL: record_effect}, method=method).run(max_seconds=10)
    assert stats.handled == 5 and stats.batches == 1  # five messages, one transaction
    assert effects(mdb) == {event["id"]: n for n, event in enumerate(events)}
    assert {(row["status"], row["retry_count"]) for row in rows(mdb)} == {("DONE", 0)}


def test_a_poison_message_costs_a_retry_but_the_batch_is_handled_once(mdb, settings, method):
    def handler(ctx, data):
        record_effect(ctx, data)
        if data["n"] == 3:
            raise ValueError("cannot handle 3")

    events = enqueue(mdb, [{"n": n} for n in range(6)])
    stats = make_worker(mdb, settings, {LOCAL: handler}, method=method).run(once=True)
    assert (stats.handled, stats.retried) == (5, 1)
    # The batch's first run was rolled back; re-run one by one, each good message took effect
    # exactly once (test_effects has message_id as primary key) and the poison one not at all.
    assert effects(mdb) == {event["id"]: n for n, event in enumerate(events) if n != 3}
    poison = next(row for row in rows(mdb) if row["message_id"] == events[3]["id"])
    assert poison["status"] == "NEW" and poison["retry_count"] == 1
    assert "ValueError: cannot handle 3" in poison["last_error"]


def test_always_failing_handler_is_spaced_by_backoff_then_dead_lettered(mdb, settings, method):
    calls = []

    def handler(ctx, data):
        calls.append(db_time(ctx))
        raise RuntimeError("downstream is broken")

    enqueue(mdb, [{"n": 1}])
    worker = make_worker(mdb, settings, {LOCAL: handler}, method=method)
    due_times = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        worker.run(once=True)
        (row,) = rows(mdb)
        if row["status"] == "FAILED":
            break
        if len(due_times) < row["retry_count"]:
            due_times.append(row["available_at"])
        time.sleep(0.05)
    (row,) = rows(mdb)
    policy = catalog().retry_policy(*LOCAL)  # 3 attempts, 0.2 s base, 0.4 s cap
    assert row["status"] == "FAILED" and row["retry_count"] == len(calls) == policy.max_attempts
    for due, call in zip(due_times, calls[1:]):
        assert call >= due  # no attempt before its backoff was over
    assert "RuntimeError: downstream is broken" in row["last_error"]
    assert "Traceback" in row["last_error"]  # with where it happened
    assert [entry["attempt"] for entry in row["attempt_log"]] == [1, 2, 3]

    requeued = deadletters.requeue(mdb, [QUEUE], deadletters.Selection(ids=[row["id"]]))
    assert requeued == 1
    (row,) = rows(mdb)
    assert (row["status"], row["retry_count"]) == ("NEW", 0)  # attempts reset


def db_time(ctx):
    value = ctx.db.fetchvalue(f"SELECT {ctx.db.dialect.now_sql} AS now", ())
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def receive(mdb, data, type_="test.ping", version=1):
    """Store a message as the inbox would, without validating it."""
    event = envelope(source="peer_a", type_=type_, version=version, data=data,
                     dataschema="urn:test", traceparent=TRACEPARENT)
    with mdb.transaction() as conn:
        queue.accept(conn, [event])
    return event


def test_a_message_that_breaks_its_schema_is_dead_lettered_at_once(mdb, settings):
    called = []
    receive(mdb, {"n": "three"})
    worker = make_worker(mdb, settings, {("test.ping", 1): lambda ctx, data: called.append(data)})
    stats = worker.run(max_seconds=10)
    assert stats.dead == 1 and called == []
    (row,) = rows(mdb)
    assert row["status"] == "FAILED" and row["retry_count"] == 1
    assert "/n must be of type integer" in row["last_error"]


def test_a_message_without_handler_is_dead_lettered_at_once(mdb, settings):
    receive(mdb, {"n": 1}, version=2)
    make_worker(mdb, settings, {("test.ping", 1): record_effect}).run(max_seconds=10)
    (row,) = rows(mdb)
    assert row["status"] == "FAILED" and "no handler for test.ping v2" in row["last_error"]


def test_messages_published_by_a_handler_commit_with_it_or_not_at_all(mdb, settings, method):
    def handler(ctx, data):
        record_effect(ctx, data)
        ctx.publish("test.ping", 1, {"n": data["n"]})
        if data["n"] == 2:
            raise RuntimeError("rolled back after publishing")

    events = enqueue(mdb, [{"n": 1}, {"n": 2}])
    make_worker(mdb, settings, {LOCAL: handler}, method=method).run(once=True)
    published = rows(mdb, "outbox")
    assert sorted(row["payload"]["data"]["n"] for row in published) == [1, 1]  # two peers
    # The published message continues the trace of the message being handled.
    assert {row["payload"]["traceparent"].split("-")[1] for row in published} == {
        TRACEPARENT.split("-")[1]
    }
    assert list(effects(mdb)) == [events[0]["id"]]


def test_run_ends_within_its_time_budget(mdb, settings):
    def slow(ctx, data):
        time.sleep(0.05)

    enqueue(mdb, [{"n": n} for n in range(100)])
    worker = make_worker(mdb, settings, {LOCAL: slow}, batch_size=5)
    started = time.monotonic()
    stats = worker.run(max_seconds=1.5)
    assert time.monotonic() - started < 1.5
    assert 0 < stats.handled < 100  # it stopped early, leaving the rest for the next run


def test_forever_stops_cleanly_after_the_batch_in_hand(mdb, settings):
    worker = make_worker(mdb, settings, {LOCAL: record_effect})
    thread = threading.Thread(target=worker.run, kwargs={"forever": True, "poll_seconds": 0.05})
    thread.start()
    try:
        enqueue(mdb, [{"n": 1}])
        deadline = time.monotonic() + 5
        while not effects(mdb) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(effects(mdb)) == 1


def test_a_drained_run_purges_done_rows_past_retention(mdb, settings):
    enqueue(mdb, [{"n": 1}, {"n": 2}])
    worker = make_worker(mdb, settings, {LOCAL: record_effect}, retention_days=0)
    stats = worker.run(max_seconds=10)
    assert stats.handled == 2 and stats.purged == 2
    assert rows(mdb) == [] and len(effects(mdb)) == 2


def test_housekeeping_purges_expired_rate_limit_buckets_and_idempotency_keys(mdb, settings):
    past = dt.datetime(2000, 1, 1)
    with mdb.transaction() as conn:
        for table in ("rate_limit_buckets", "idempotency_keys"):
            conn.execute(f"DELETE FROM {table}")
        # A bucket whose quota is full again (tat in the past) and one still counting.
        conn.execute(
            "INSERT INTO rate_limit_buckets (bucket, tat_us, last_allowed) VALUES "
            "(%s, %s, 1), (%s, %s, 1)",
            ("old", 1, "live", int((time.time() + 3600) * 1_000_000)),
        )
        for key, until in (("expired", past), ("kept", dt.datetime(2999, 1, 1))):
            conn.execute(
                "INSERT INTO idempotency_keys (client, idempotency_key, owner, endpoint, "
                "fingerprint, state, created_at, reclaimable_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                ("sub:a", key, "o", "e", "f", "DONE", past, until),
            )
    make_worker(mdb, settings, {LOCAL: record_effect}).run(max_seconds=5)
    with mdb.transaction() as conn:
        assert conn.fetchall("SELECT bucket FROM rate_limit_buckets") == [{"bucket": "live"}]
        assert conn.fetchall("SELECT idempotency_key FROM idempotency_keys") == [
            {"idempotency_key": "kept"}
        ]


def test_dead_letters_can_be_listed_shown_requeued_and_purged_by_type_and_age(mdb, settings):
    receive(mdb, {"n": "bad"})
    receive(mdb, {"n": 1}, version=3)
    make_worker(mdb, settings, {("test.ping", 1): record_effect}).run(max_seconds=10)
    everything = deadletters.Selection()
    listed = deadletters.list_dead(mdb, [QUEUE, OUTBOX], everything)
    assert len(listed) == 2 and {row["table"] for row in listed} == {"queue"}
    assert "no handler" in deadletters.format_list(listed)
    shown = deadletters.show(mdb, QUEUE, listed[0]["id"])
    assert shown["payload"]["type"].startswith("test.ping.v")
    assert "attempts:" in deadletters.format_row(QUEUE, shown)

    old = deadletters.Selection(older_than_seconds=deadletters.parse_age("1h"))
    assert deadletters.list_dead(mdb, [QUEUE], old) == []  # both failed just now
    assert deadletters.purge(mdb, [QUEUE], old) == 0
    by_type = deadletters.Selection(message_type="test.ping")
    assert deadletters.requeue(mdb, [QUEUE, OUTBOX], by_type) == 2
    assert {row["status"] for row in rows(mdb)} == {"NEW"}
    make_worker(mdb, settings, {("test.ping", 1): record_effect}).run(max_seconds=10)
    assert deadletters.purge(mdb, [QUEUE], everything) == 2
    assert rows(mdb) == []
