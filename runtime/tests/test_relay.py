"""The relay: the outbox goes to each peer's inbox over real HTTP, behind the peer's breaker.

The sender is this service playing `testsvc` (its outbox is in the session's database); the
receiver is a second instance of this service on a database of its own, served on 127.0.0.1 and
playing `peer_a`, which lists `testsvc` in TRUSTED_ISSUERS (with the session's key), as two
services that trust each other do.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shoestring_runtime import inbox, outbox
from shoestring_runtime.breaker import CLOSED, OPEN, BreakerStore
from shoestring_runtime.db import Database
from shoestring_runtime.events import Catalog
from shoestring_runtime.migrate import migrate
from shoestring_runtime.peers import Connector
from shoestring_runtime.relay import PeerTransport, destinations
from shoestring_runtime.testing import fresh_database, peer_issuers
from shoestring_runtime.worker import Worker

from .messaging_helpers import TRACEPARENT, clean_tables, rows
from .peer_servers import Reply, ScriptedPeer, free_port, serve
from .shop import SERVICE, create_app, settings_for

PEER = "peer_a"
ISSUER = "testsvc"  # the sender: a delivery token names its issuer as its subject
PING = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["n"],
}
SENDING = Catalog.load({
    "service": {"name": "testsvc"},
    "messages": {
        **{
            name: {"to": [PEER], "versions": {"1": {"schema": PING}}}
            for name in ("test.ping", "test.pong", "test.extra")
        },
        # test.pong v2 is published with v1 beside it (publish_also); the receiver reads v1.
        "test.pong": {"to": [PEER], "versions": {
            "1": {"schema": PING}, "2": {"schema": PING, "publish_also": [1]}}},
    },
    "subscriptions": [],
    "retry_policies": {"default": {"max_attempts": 5, "base_seconds": 0.05, "max_seconds": 0.1}},
})
# The receiver takes test.ping (n at most 100) and test.pong from testsvc; not test.extra.
RECEIVING = Catalog.load({
    "service": {"name": PEER},
    "messages": {},
    "subscriptions": [
        {"message": "test.ping", "version": 1, "from": "testsvc", "retry": "default",
         "schema": {**PING, "properties": {**PING["properties"], "n": {"type": "integer",
                                                                        "maximum": 100}}}},
        {"message": "test.pong", "version": 1, "from": "testsvc", "retry": "default",
         "schema": PING},
    ],
    "retry_policies": {},
})
LOG = logging.getLogger("test.relay")


@pytest.fixture(scope="module")
def receiver_db(tmp_path_factory, database_server) -> Iterator[Database]:
    with fresh_database(tmp_path_factory.mktemp("receiver"), database_server) as url:
        database = Database(url)
        migrate(database, SERVICE.root)
        yield database
        database.close()


def receiving_app(receiver_db: Database, **overrides: str) -> Any:
    settings = settings_for(receiver_db.url, TRUSTED_ISSUERS=peer_issuers(ISSUER),
                            SERVICE_AUDIENCE=PEER, **overrides)
    app = create_app(settings)
    app.extensions[inbox.EXTENSION] = RECEIVING
    return app


@pytest.fixture(scope="module")
def receiver(receiver_db) -> Iterator[str]:
    with serve(receiving_app(receiver_db)) as url:
        yield url


@pytest.fixture
def mdb(db, receiver_db):
    with receiver_db.transaction() as conn:
        conn.execute("DELETE FROM message_queue")
    yield from clean_tables(db)


@pytest.fixture
def sender(database_url, mdb) -> Iterator[Any]:
    """The sender's settings: a fast breaker that starts closed (the transport signs as
    `testsvc`, the issuer peer_a trusts)."""
    settings = settings_for(
        database_url, BREAKER_FAILURE_THRESHOLD="2",
        BREAKER_OPEN_SECONDS="0.5", BREAKER_MAX_OPEN_SECONDS="2",
    )
    BreakerStore(settings.database_url, settings.root).reset(PEER)
    yield settings
    BreakerStore(settings.database_url, settings.root).reset(PEER)


def transport(settings: Any, url: str, *, sender: str = ISSUER, **options: Any) -> PeerTransport:
    connector = Connector(settings, service={"service": {"name": sender}, "peers": {}})
    return PeerTransport(PEER, connector, base_url=url, **options)


def worker(db: Database, settings: Any, deliver: PeerTransport) -> Worker:
    return Worker(db, subscribers={}, catalog=SENDING, settings=settings, log=LOG,
                  transports={PEER: deliver})


def publish(db: Database, *messages: tuple[str, dict]) -> list[dict]:
    outgoing = outbox.Outgoing()
    events = [outbox.publish(outgoing, SENDING, type_, 1, data, traceparent=TRACEPARENT)
              for type_, data in messages]
    with db.transaction() as conn:
        outgoing.flush(conn)
    return events


def outbox_rows(db: Database) -> dict[str, dict]:
    return {row["message_id"]: row for row in rows(db, "outbox")}


def received(receiver_db: Database) -> list[str]:
    return [row["message_id"] for row in rows(receiver_db)]


def test_the_relay_posts_the_batch_and_marks_what_the_peer_took_delivered(
    mdb, receiver_db, receiver, sender
):
    events = publish(mdb, *[("test.ping", {"n": n}) for n in range(5)])
    assert worker(mdb, sender, transport(sender, receiver)).work_once() == 5
    assert {row["status"] for row in outbox_rows(mdb).values()} == {"DONE"}
    assert sorted(received(receiver_db)) == sorted(event["id"] for event in events)
    assert {row["source"] for row in rows(receiver_db)} == {"testsvc"}


def test_the_peers_rejections_are_dead_lettered_at_once_with_its_reason(
    mdb, receiver_db, receiver, sender
):
    good, too_big, unwanted = publish(
        mdb, ("test.ping", {"n": 1}), ("test.ping", {"n": 1000}), ("test.extra", {"n": 1})
    )
    worker(mdb, sender, transport(sender, receiver)).work_once()
    stored = outbox_rows(mdb)
    assert stored[good["id"]]["status"] == "DONE"
    for event, reason in ((too_big, "/n"), (unwanted, "does not subscribe to test.extra v1")):
        row = stored[event["id"]]
        assert row["status"] == "FAILED" and row["retry_count"] == 1, row
        assert f"{PEER} rejected the message" in row["last_error"] and reason in row["last_error"]
    assert received(receiver_db) == [good["id"]]


def test_both_versions_of_a_migration_are_delivered_and_the_peer_keeps_the_one_it_reads(
    mdb, receiver_db, receiver, sender
):
    outgoing = outbox.Outgoing()
    converters = {("test.pong", 2, 1): lambda data: {"n": data["n"]}}
    new = outbox.publish(outgoing, SENDING, "test.pong", 2, {"n": 3, "note": "v2"},
                         traceparent=TRACEPARENT, converters=converters)
    with mdb.transaction() as conn:
        outgoing.flush(conn)
    stored = outbox_rows(mdb)
    assert sorted(row["version"] for row in stored.values()) == [1, 2]
    worker(mdb, sender, transport(sender, receiver)).work_once()
    assert {row["status"] for row in outbox_rows(mdb).values()} == {"DONE"}  # none dead
    [kept] = rows(receiver_db)
    assert kept["message_type"] == "test.pong" and kept["version"] == 1
    assert kept["payload"]["data"] == {"n": 3} and kept["message_id"] != new["id"]


def test_a_message_the_peer_already_has_counts_as_delivered(mdb, receiver_db, receiver, sender):
    (event,) = publish(mdb, ("test.ping", {"n": 1}))
    relay = worker(mdb, sender, transport(sender, receiver))
    relay.work_once()
    # The peer's answer was lost (the sender died before recording it): the row comes back.
    with mdb.transaction() as conn:
        conn.execute("UPDATE outbox SET status = 'NEW', available_at = %s", ("2000-01-01",))
    relay.work_once()
    assert outbox_rows(mdb)[event["id"]]["status"] == "DONE"
    assert received(receiver_db) == [event["id"]]  # stored once


def test_a_peer_that_is_down_opens_the_breaker_and_its_rows_wait_without_spending_attempts(
    mdb, receiver_db, sender
):
    port = free_port()
    deliver = transport(sender, f"http://127.0.0.1:{port}")
    relay = worker(mdb, sender, deliver)
    events = publish(mdb, *[("test.ping", {"n": n}) for n in range(3)])
    deadline = time.monotonic() + 10
    while deliver.breaker.state().state != OPEN:
        assert time.monotonic() < deadline, "the breaker never opened"
        relay.work_once()
        time.sleep(0.12)  # past the rows' backoff (at most 0.1 s)
    spent = {id_: row["retry_count"] for id_, row in outbox_rows(mdb).items()}
    assert max(spent.values()) <= 2  # BREAKER_FAILURE_THRESHOLD failed calls at most
    for _ in range(5):  # open: nothing is claimed, nothing is spent
        assert relay.work_once() == 0
    assert {id_: row["retry_count"] for id_, row in outbox_rows(mdb).items()} == spent
    # The peer comes back; once the cool-down is over, one probe closes the breaker.
    with serve(receiving_app(receiver_db), port=port):
        deadline = time.monotonic() + 10
        while any(row["status"] != "DONE" for row in outbox_rows(mdb).values()):
            assert time.monotonic() < deadline, outbox_rows(mdb)
            relay.work_once()
            time.sleep(0.1)
    assert sorted(received(receiver_db)) == sorted(event["id"] for event in events)
    assert deliver.breaker.state().state == CLOSED
    assert {id_: row["retry_count"] for id_, row in outbox_rows(mdb).items()} == spent


def test_a_peers_retry_after_keeps_the_breaker_open_that_long(mdb, sender):
    peer = ScriptedPeer(Reply(503, {"detail": "maintenance"}, {"Retry-After": "3"}))
    with serve(peer) as url:
        deliver = transport(sender, url)
        (event,) = publish(mdb, ("test.ping", {"n": 1}))
        worker(mdb, sender, deliver).work_once()
    row = outbox_rows(mdb)[event["id"]]
    assert row["status"] == "NEW" and "503 (maintenance)" in row["last_error"]
    assert deliver.breaker.state().state == OPEN  # at once, below the failure threshold
    assert not deliver.ready()
    assert len(peer.received) == 1


def test_a_type_the_peer_fails_on_does_not_hold_up_the_others(mdb, receiver_db, sender):
    app = receiving_app(receiver_db)

    def fails_on_pong(environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if b'"test.pong.v1"' in body:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"the pong handler is broken"]
        environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    with serve(fails_on_pong) as url:
        deliver = transport(sender, url)
        events = publish(mdb, ("test.ping", {"n": 1}), ("test.pong", {"n": 2}),
                         ("test.ping", {"n": 3}), ("test.pong", {"n": 4}))
        worker(mdb, sender, deliver).work_once()
    stored = outbox_rows(mdb)
    pings = [event["id"] for event in events if event["type"] == "test.ping.v1"]
    pongs = [event["id"] for event in events if event["type"] == "test.pong.v1"]
    assert [stored[id_]["status"] for id_ in pings] == ["DONE", "DONE"]
    for id_ in pongs:
        assert stored[id_]["status"] == "NEW" and stored[id_]["retry_count"] == 1
        assert "answered 500 for test.pong v1" in stored[id_]["last_error"]
    assert sorted(received(receiver_db)) == sorted(pings)
    assert deliver.breaker.state().state == CLOSED  # the peer is up: it answered


def test_batches_are_split_to_fit_the_size_limit(mdb, receiver_db, sender):
    app = receiving_app(receiver_db)
    requests: list[int] = []

    def counting(environ, start_response):
        requests.append(int(environ.get("CONTENT_LENGTH") or 0))
        return app(environ, start_response)

    with serve(counting) as url:
        publish(mdb, *[("test.ping", {"n": n, "note": "x" * 200}) for n in range(10)])
        worker(mdb, sender, transport(sender, url, max_batch_bytes=1024)).work_once()
    assert {row["status"] for row in outbox_rows(mdb).values()} == {"DONE"}
    assert len(requests) >= 3 and max(requests) <= 1024
    assert len(received(receiver_db)) == 10


def test_a_message_larger_than_the_peer_accepts_is_rejected_and_the_rest_delivered(
    mdb, receiver_db, sender
):
    with serve(receiving_app(receiver_db, MAX_BODY_BYTES="2048")) as url:
        small = publish(mdb, *[("test.ping", {"n": n, "note": "x" * 600}) for n in range(4)])
        (huge,) = publish(mdb, ("test.ping", {"n": 9, "note": "x" * 4000}))
        worker(mdb, sender, transport(sender, url)).work_once()
    stored = outbox_rows(mdb)
    assert [stored[event["id"]]["status"] for event in small] == ["DONE"] * 4
    assert stored[huge["id"]]["status"] == "FAILED"
    assert "too large" in stored[huge["id"]]["last_error"]


def test_a_sender_the_peer_does_not_trust_delivers_nothing_and_loses_nothing(
    mdb, receiver_db, receiver, database_url, caplog
):
    stranger = settings_for(database_url, BREAKER_FAILURE_THRESHOLD="2")
    deliver = transport(stranger, receiver, sender="not-trusted-there")
    BreakerStore(stranger.database_url, stranger.root).reset(PEER)
    publish(mdb, ("test.ping", {"n": 1}))
    with caplog.at_level(logging.ERROR):
        worker(mdb, stranger, deliver).work_once()
    (row,) = outbox_rows(mdb).values()
    assert row["status"] == "NEW" and "401" in row["last_error"]
    assert "TRUSTED_ISSUERS" in row["last_error"]
    assert received(receiver_db) == []
    assert deliver.breaker.state().failures == 1
    BreakerStore(stranger.database_url, stranger.root).reset(PEER)


def test_every_peer_in_a_to_list_gets_a_transport():
    assert destinations(SENDING) == [PEER]


def test_the_trial_after_the_cool_down_is_an_empty_batch_that_costs_no_attempt(mdb, sender):
    peer = ScriptedPeer(
        Reply(503, {"detail": "restarting"}, {"Retry-After": "1"}),
        Reply(500, {"detail": "answers, if oddly"}),  # up: the breaker closes
    )
    with serve(peer) as url:
        deliver = transport(sender, url)
        (event,) = publish(mdb, ("test.ping", {"n": 1}))
        worker(mdb, sender, deliver).work_once()
        assert deliver.breaker.state().state == OPEN and not deliver.ready()
        time.sleep(1.1)
        assert deliver.ready()
    probe = peer.received[1]
    assert (probe.method, probe.path, probe.json()) == ("POST", "/v1/inbox", [])
    assert probe.headers["Authorization"].startswith("Bearer ")
    assert deliver.breaker.state().state == CLOSED
    assert outbox_rows(mdb)[event["id"]]["retry_count"] == 1  # the probe spent nothing
