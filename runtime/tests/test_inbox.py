"""The inbox: peers deliver batches of CloudEvents; each message is accepted, a duplicate or
rejected with its reason, and only what this service subscribes to, from its sender, is stored.

The catalog is the test one of messaging_helpers (not this service's spec): it subscribes to
test.ping v1 from peer_a. The receiver trusts peer_a and peer_b as issuers whose pinned key is
the session's, so a test plays a peer by minting that peer's own token (iss == sub).
"""

from __future__ import annotations

import json

import pytest

from shoestring_runtime import inbox
from shoestring_runtime.events import envelope
from shoestring_runtime.keys import KeyStore, mint_token
from shoestring_runtime.testing import peer_issuers

from .messaging_helpers import TRACEPARENT, catalog, effects, record_effect, rows
from .messaging_helpers import make_worker as worker_for
from .shop import SERVICE, bearer, create_app, settings_for

BATCH = {"Content-Type": inbox.BATCH_CONTENT_TYPE}


PEERS = peer_issuers("peer_a", "peer_b")


@pytest.fixture(scope="module")
def receiver(database_url, db):
    app = create_app(settings_for(database_url, TRUSTED_ISSUERS=PEERS))
    app.extensions[inbox.EXTENSION] = catalog()  # subscribes to test.ping v1 from peer_a
    return app.test_client()


def ping(n: int = 1, source: str = "peer_a", **changes) -> dict:
    event = envelope(
        source=source, type_="test.ping", version=1, data={"n": n},
        dataschema="urn:test:ping.v1", traceparent=TRACEPARENT,
    )
    event.update(changes)
    return event


def deliver(client, events, sender: str = "peer_a", scopes=(inbox.DELIVER_SCOPE,), **kwargs):
    token = bearer(scopes, subject=sender, issuer=sender)
    headers = {**token, **BATCH, **kwargs.pop("headers", {})}
    return client.post(inbox.INBOX_PATH, data=json.dumps(events), headers=headers, **kwargs)


def test_accepted_messages_are_queued_once_and_answered_per_message(receiver, mdb):
    first, second = ping(1), ping(2)
    response = deliver(receiver, [first, second])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"results": [
        {"index": 0, "id": first["id"], "status": "accepted"},
        {"index": 1, "id": second["id"], "status": "accepted"},
    ]}
    stored = rows(mdb)
    assert [(row["message_id"], row["source"], row["status"]) for row in stored] == [
        (first["id"], "peer_a", "NEW"), (second["id"], "peer_a", "NEW"),
    ]
    assert stored[0]["payload"] == first  # the whole envelope, as sent


def test_a_message_delivered_again_is_a_duplicate_and_stored_once(receiver, mdb):
    event = ping()
    deliver(receiver, [event])
    again = deliver(receiver, [event, event]).get_json()["results"]
    assert [result["status"] for result in again] == ["duplicate", "duplicate"]
    assert len(rows(mdb)) == 1


def test_the_same_message_twice_in_one_batch_is_stored_once(receiver, mdb):
    event = ping()
    results = deliver(receiver, [event, event]).get_json()["results"]
    assert [result["status"] for result in results] == ["accepted", "duplicate"]
    assert len(rows(mdb)) == 1


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (ping(n="one"), "/n must be of type integer"),
        (ping(source="peer_b"), "source 'peer_b' is not the sender"),
        (ping(type="test.pong.v1"), "does not subscribe to test.pong v1 from peer_a"),
        (ping(type="test.ping"), "carries no major version"),
        (ping(specversion="0.3"), "specversion must be '1.0'"),
        (ping(id=""), "id must be a non-empty string"),
        (ping(id="x" * 65), "at most 64 characters"),
        (ping(datacontenttype="text/plain"), "datacontenttype must be application/json"),
        ("not an object", "must be a JSON object"),
    ],
    ids=["data", "source", "unsubscribed", "no-version", "specversion", "no-id",
         "long-id", "content-type", "not-an-object"],
)
def test_a_bad_message_is_rejected_with_its_reason_and_the_others_pass(
    receiver, mdb, event, reason
):
    good = ping(7)
    results = deliver(receiver, [event, good]).get_json()["results"]
    assert results[0]["status"] == "rejected" and reason in results[0]["detail"], results[0]
    assert results[1] == {"index": 1, "id": good["id"], "status": "accepted"}
    assert [row["message_id"] for row in rows(mdb)] == [good["id"]]


def test_a_version_it_does_not_read_of_a_message_it_reads_is_ignored(receiver, mdb):
    # During a migration the sender publishes test.ping v2 beside v1 (publish_also); this
    # service reads v1 only: v2 is acknowledged, so the sender does not dead-letter it.
    results = deliver(receiver, [ping(type="test.ping.v2")]).get_json()["results"]
    assert results[0]["status"] == "ignored"
    assert "does not subscribe to test.ping v2" in results[0]["detail"]
    assert rows(mdb) == []


def test_a_peer_may_deliver_only_what_the_subscription_expects_from_it(receiver, mdb):
    # test.ping v1 is subscribed from peer_a: peer_b's own test.ping is refused.
    event = ping(source="peer_b")
    results = deliver(receiver, [event], sender="peer_b").get_json()["results"]
    assert results[0]["status"] == "rejected"
    assert "does not subscribe to test.ping v1 from peer_b" in results[0]["detail"]
    assert rows(mdb) == []


def test_without_a_token_or_its_scope_nothing_is_stored(receiver, mdb):
    event = ping()
    missing = receiver.post(inbox.INBOX_PATH, data=json.dumps([event]), headers=BATCH)
    assert missing.status_code == 401 and missing.mimetype == "application/problem+json"
    no_scope = deliver(receiver, [event], scopes=("orders:write",))
    assert no_scope.status_code == 403
    assert 'scope="inbox:deliver"' in no_scope.headers["WWW-Authenticate"]
    assert rows(mdb) == []


def test_a_sender_whose_issuer_is_not_trusted_cannot_deliver(receiver, mdb, tmp_path):
    stranger = KeyStore(tmp_path / "stranger-keys")
    stranger.generate()
    name = SERVICE.model["service"]["name"]
    token = mint_token(stranger, issuer="stranger", audience=name, subject="peer_a",
                       scopes=[inbox.DELIVER_SCOPE])
    response = receiver.post(
        inbox.INBOX_PATH, data=json.dumps([ping()]),
        headers={"Authorization": f"Bearer {token}", **BATCH},
    )
    assert response.status_code == 401
    assert "not trusted" in response.get_json()["detail"]
    assert rows(mdb) == []


def test_an_empty_batch_is_a_probe_answered_when_the_database_answers(receiver, mdb):
    response = deliver(receiver, [])
    assert response.status_code == 200 and response.get_json() == {"results": []}


def test_a_body_that_is_not_a_batch_is_a_400_problem(receiver, mdb):
    response = deliver(receiver, {"id": "1"})
    assert response.status_code == 400
    assert "JSON array of CloudEvents" in response.get_json()["detail"]
    headers = {**bearer([inbox.DELIVER_SCOPE], subject="peer_a", issuer="peer_a"), **BATCH}
    assert receiver.post(inbox.INBOX_PATH, data="[{", headers=headers).status_code == 400


def test_a_batch_larger_than_max_body_bytes_is_refused_whole(database_url, db, mdb):
    app = create_app(settings_for(database_url, MAX_BODY_BYTES="2048", TRUSTED_ISSUERS=PEERS))
    app.extensions[inbox.EXTENSION] = catalog()
    response = deliver(app.test_client(), [ping(n) for n in range(30)])
    assert response.status_code == 413
    assert rows(mdb) == []


def test_accepted_messages_are_handled_by_the_worker_exactly_once(receiver, mdb, settings):
    events = [ping(n) for n in range(5)]
    deliver(receiver, events)
    deliver(receiver, events)  # a sender that never got the first answer tries again
    worker = worker_for(mdb, settings, {("test.ping", 1): record_effect})
    worker.run()
    assert effects(mdb) == {event["id"]: event["data"]["n"] for event in events}
    assert all(row["status"] == "DONE" for row in rows(mdb))


def test_the_inbox_needs_no_endpoint_in_the_spec(receiver):
    # It is the chassis's route: present in every service, listed by nobody's spec.
    rules = {rule.rule: rule.methods for rule in receiver.application.url_map.iter_rules()}
    assert "POST" in rules[inbox.INBOX_PATH]


def test_a_trusted_peer_cannot_deliver_as_another_peer(receiver, mdb):
    # peer_b is trusted, but its token names peer_a as subject: the sender is the issuer, and a
    # token whose subject differs from its issuer is refused before anything is read.
    headers = {**bearer([inbox.DELIVER_SCOPE], subject="peer_a", issuer="peer_b"), **BATCH}
    response = receiver.post(inbox.INBOX_PATH, data=json.dumps([ping(1)]), headers=headers)
    assert response.status_code == 403
    assert "subject" in response.get_json()["detail"]
    assert rows(mdb) == []
