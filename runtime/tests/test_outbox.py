"""The outbox: publishing inside the business transaction, and the claim/complete path a
transport uses to deliver."""

from __future__ import annotations

import logging
import uuid

import pytest

from shoestring_runtime import outbox
from shoestring_runtime.claim import RetryPolicy
from shoestring_runtime.context import Context
from shoestring_runtime.events import InvalidMessage, UnknownMessage
from shoestring_runtime.examples import example_for

from .messaging_helpers import (
    TRACEPARENT,
    catalog,
    effects,
    make_worker,
    rows,
)
from .shop import SERVICE

LOG = logging.getLogger("test.outbox")


def publish(outgoing: outbox.Outgoing, type_: str, data: dict) -> dict:
    return outbox.publish(outgoing, catalog(), type_, 1, data, traceparent=TRACEPARENT)


def test_publish_writes_one_row_per_destination_in_the_same_transaction(mdb):
    outgoing = outbox.Outgoing()
    with mdb.transaction() as conn:
        conn.execute("INSERT INTO test_effects (message_id, n) VALUES (%s, %s)", ("order-1", 1))
        events = [publish(outgoing, "test.ping", {"n": n}) for n in range(3)]
        outgoing.flush(conn)
    stored = rows(mdb, "outbox")
    assert len(stored) == 6  # 3 messages x 2 destinations (the spec's `to:`)
    assert {(row["message_id"], row["destination"]) for row in stored} == {
        (event["id"], peer) for event in events for peer in ("peer_a", "peer_b")
    }
    row = stored[0]
    assert row["status"] == "NEW" and row["message_type"] == "test.ping" and row["version"] == 1
    envelope = row["payload"]
    assert envelope["type"] == "test.ping.v1" and envelope["source"] == "testsvc"
    assert envelope["specversion"] == "1.0" and envelope["traceparent"] == TRACEPARENT
    assert envelope["datacontenttype"] == "application/json" and envelope["dataschema"]
    assert envelope["time"].endswith("Z")


def test_publishing_in_a_transaction_that_rolls_back_leaves_no_outbox_row(mdb):
    outgoing = outbox.Outgoing()
    with pytest.raises(RuntimeError), mdb.transaction() as conn:
        conn.execute("INSERT INTO test_effects (message_id, n) VALUES (%s, %s)", ("order-1", 1))
        publish(outgoing, "test.ping", {"n": 1})
        outgoing.flush(conn)
        raise RuntimeError("the business change failed after publishing")
    assert rows(mdb, "outbox") == [] and effects(mdb) == {}


def test_invalid_data_raises_before_anything_is_written_naming_the_field(mdb):
    outgoing = outbox.Outgoing()
    with pytest.raises(InvalidMessage) as caught:
        publish(outgoing, "test.ping", {"n": 1, "colour": "red"})
    assert "/colour" in str(caught.value) and "test.ping v1" in str(caught.value)
    with pytest.raises(InvalidMessage, match="/n is required"):
        publish(outgoing, "test.ping", {})
    assert len(outgoing) == 0


def test_unknown_message_or_version_says_how_to_declare_it():
    with pytest.raises(UnknownMessage, match="declare it under `messages:`"):
        publish(outbox.Outgoing(), "test.unknown", {"n": 1})
    with pytest.raises(UnknownMessage, match="has no version 2"):
        outbox.publish(outbox.Outgoing(), catalog(), "test.ping", 2, {"n": 1},
                       traceparent=TRACEPARENT)


def test_a_message_this_service_subscribes_to_itself_goes_to_its_own_queue(mdb):
    outgoing = outbox.Outgoing()
    with mdb.transaction() as conn:
        event = publish(outgoing, "test.local", {"n": 1})
        publish(outgoing, "test.nobody", {"n": 2})  # no destination, no subscriber: nowhere
        outgoing.flush(conn)
    assert rows(mdb, "outbox") == []
    (job,) = rows(mdb)
    assert job["message_id"] == event["id"] and job["source"] == "testsvc"


def test_ctx_publish_uses_the_service_spec_and_the_handlers_transaction(mdb, settings):
    """Every message version in service.yaml: an example publishes to each `to:` peer (with the
    versions its `publish_also` lists, converted); data that breaks the schema is refused
    before commit."""
    spec = SERVICE.catalog
    published = [
        (name, int(version), message.get("to") or [], entry["schema"])
        for name, message in sorted(spec.messages.items())
        for version, entry in sorted((message.get("versions") or {}).items())
    ]
    if not published:
        pytest.skip("this service publishes no messages")
    expected, ids = [], []
    with mdb.transaction() as conn:
        ctx = Context(db=conn, log=LOG, request_id="r1", trace_id=uuid.uuid4().hex,
                      identity=None, settings=settings)
        for name, version, destinations, schema in published:
            with pytest.raises(InvalidMessage, match=name):
                ctx.publish(name, version, [])
            event = ctx.publish(name, version, example_for(schema))
            assert event["type"] == f"{name}.v{version}"
            assert event["traceparent"].split("-")[1] == ctx.trace_id  # the trace goes on
            ids += [event["id"]] if destinations else []
            for sent in (version, *outbox.publish_also(spec, name, version)):
                expected += [(name, sent, peer) for peer in destinations]
        ctx.flush_messages()
    stored = rows(mdb, "outbox")
    assert sorted(
        (row["message_type"], row["version"], row["destination"]) for row in stored
    ) == sorted(expected)
    assert set(ids) <= {row["message_id"] for row in stored}


class RecordingTransport:
    """A transport that accepts every other message and records what it was given."""

    def __init__(self, refuse_odd: bool = False, broken: bool = False, up: bool = True) -> None:
        self.batches: list[list[int]] = []
        self.refuse_odd = refuse_odd
        self.broken = broken
        self.up = up

    def ready(self) -> bool:
        return self.up

    def deliver(self, batch):
        self.batches.append([row.id for row in batch])
        if self.broken:
            raise ConnectionError("peer unreachable")
        return {
            row.id: ("HTTP 503 from peer" if self.refuse_odd and row.data["n"] % 2 else None)
            for row in batch
        }


def fill_outbox(mdb, count: int) -> None:
    outgoing = outbox.Outgoing()
    with mdb.transaction() as conn:
        for n in range(count):
            publish(outgoing, "test.ping", {"n": n})
        outgoing.flush(conn)


FAST = RetryPolicy(max_attempts=3, base_seconds=0.2, max_seconds=0.4)


def relay(mdb, destination, transport, method, policy=FAST):
    return outbox.relay_batch(
        mdb, destination, transport, policy=policy, batch_size=50, lease_seconds=60,
        method=method, log=LOG,
    )


def test_relay_claims_one_destination_and_completes_what_was_delivered(mdb, method):
    fill_outbox(mdb, 4)
    transport = RecordingTransport(refuse_odd=True)
    result = relay(mdb, "peer_a", transport, method)
    assert (result.claimed, result.delivered, result.retried) == (4, 2, 2)
    by_peer = {}
    for row in rows(mdb, "outbox"):
        by_peer.setdefault(row["destination"], []).append(row)
    assert {row["status"] for row in by_peer["peer_b"]} == {"NEW"}  # not its turn
    done = [row for row in by_peer["peer_a"] if row["status"] == "DONE"]
    retry = [row for row in by_peer["peer_a"] if row["status"] == "NEW"]
    assert len(done) == 2 and len(retry) == 2
    assert all(row["retry_count"] == 1 and "HTTP 503" in row["last_error"] for row in retry)


def test_a_broken_transport_fails_the_batch_and_dead_letters_after_the_last_attempt(mdb, method):
    fill_outbox(mdb, 2)
    transport = RecordingTransport(broken=True)
    result = relay(mdb, "peer_a", transport, method, policy=RetryPolicy(1, 0.1, 0.1))
    assert result.dead == 2
    failed = [row for row in rows(mdb, "outbox") if row["destination"] == "peer_a"]
    assert {row["status"] for row in failed} == {"FAILED"}
    assert "ConnectionError: peer unreachable" in failed[0]["last_error"]


def test_worker_leaves_rows_for_destinations_without_a_transport(mdb, settings, method):
    fill_outbox(mdb, 3)
    transport = RecordingTransport()
    worker = make_worker(mdb, settings, {}, method=method, transports={"peer_b": transport})
    stats = worker.run(max_seconds=10)
    assert stats.delivered == 3
    status = {(row["destination"], row["status"]) for row in rows(mdb, "outbox")}
    assert status == {("peer_a", "NEW"), ("peer_b", "DONE")}


def test_worker_claims_nothing_for_a_transport_that_is_not_ready(mdb, settings, method):
    fill_outbox(mdb, 3)
    transport = RecordingTransport(up=False)
    worker = make_worker(mdb, settings, {}, method=method, transports={"peer_b": transport})
    worker.work_once()
    assert transport.batches == []
    waiting = [row for row in rows(mdb, "outbox") if row["destination"] == "peer_b"]
    assert {(row["status"], row["retry_count"]) for row in waiting} == {("NEW", 0)}
