"""Synchronous calls to peers: token, trace, timeout, Idempotency-Key, retries only where safe,
the breaker, and the declared schemas, against a scripted peer on 127.0.0.1.

The calls are declared here (not in this service's spec), the way `_generated/service.json`
holds the spec's `peers: <peer>: calls:`; the client is the runtime class the generated typed
clients extend.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from types import MappingProxyType, SimpleNamespace
from typing import Any

import jwt
import pytest

from shoestring_runtime.breaker import CLOSED, OPEN
from shoestring_runtime.context import Context
from shoestring_runtime.peers import (
    Connector,
    PeerCallInvalid,
    PeerClient,
    PeerRejected,
    PeerResponseInvalid,
    PeerUnavailable,
    retry_after_seconds,
)

from .peer_servers import Reply, ScriptedPeer, free_port, serve
from .shop import settings_for

PEER = "peer_x"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
THING = {
    "type": "object",
    "properties": {"thing_id": {"type": "string"}, "status": {"enum": ["made", "queued"]}},
    "required": ["thing_id"],
}
MODEL = {
    "service": {"name": "caller"},
    "peers": {
        PEER: {
            "url_env": "PEER_X_URL",
            "scopes": ["x:read"],
            "calls": {
                "create_thing": {
                    "method": "POST", "path": "/v1/things", "path_params": [],
                    "scopes": ["x:write"],
                    "request": {
                        "type": "object",
                        "properties": {"name": {"type": "string"},
                                       "size": {"type": ["integer", "null"]}},
                        "required": ["name"], "additionalProperties": False,
                    },
                    "response": THING,
                },
                "get_thing": {
                    "method": "GET", "path": "/v1/things/{thing_id}", "path_params": ["thing_id"],
                    "scopes": ["x:read"],
                    "request": {
                        "type": "object",
                        "properties": {"thing_id": {"type": "string"},
                                       "verbose": {"type": "boolean"}},
                        "required": ["thing_id"], "additionalProperties": False,
                    },
                    "response": THING,
                },
            },
        }
    },
}
MADE = Reply(201, {"thing_id": "t-1", "status": "made", "added_later": True})


class ThingClient(PeerClient):
    peer = PEER

    def create_thing(self, **data: Any) -> Any:
        key = data.pop("idempotency_key", None)
        timeout = data.pop("timeout", None)
        return self.call("create_thing", data, optional=("size",), idempotency_key=key,
                         timeout=timeout)

    def get_thing(self, **data: Any) -> Any:
        return self.call("get_thing", data)


@pytest.fixture
def calls(database_url, db):
    """`calls(url, **settings)`: a client of a peer at `url`, as a handler with request id
    `req-1` would have it; the peer's breaker starts closed."""
    made: list[Connector] = []

    def client(url: str, request_id: str = "req-1", **overrides: str) -> ThingClient:
        defaults = {"PEER_MAX_ATTEMPTS": "3", "BREAKER_FAILURE_THRESHOLD": "3",
                    "BREAKER_OPEN_SECONDS": "5"}
        settings = settings_for(database_url, **{**defaults, **overrides})
        settings = dataclasses.replace(
            settings, values=MappingProxyType({**settings.values, "PEER_X_URL": url})
        )
        connector = Connector(settings, service=MODEL)
        if not made:
            connector.breakers.reset(PEER)
        made.append(connector)
        ctx = SimpleNamespace(
            request_id=request_id, traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01"
        )
        return ThingClient(connector, ctx)

    yield client
    for connector in made:
        connector.breakers.reset(PEER)


def test_a_call_carries_the_token_trace_request_id_and_an_idempotency_key(calls):
    peer = ScriptedPeer(MADE)
    with serve(peer) as url:
        answer = calls(url).create_thing(name="a")
    assert answer == {"thing_id": "t-1", "status": "made", "added_later": True}
    (sent,) = peer.received
    assert (sent.method, sent.path, sent.json()) == ("POST", "/v1/things", {"name": "a"})
    token = sent.headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == PEER and claims["scope"] == "x:write"
    assert claims["sub"] == "caller"  # the calling service, by its name
    assert claims["exp"] - claims["iat"] <= 300
    assert sent.headers["Traceparent"].split("-")[1] == TRACE_ID
    assert sent.headers["X-Request-Id"] == "req-1"
    assert len(sent.headers["Idempotency-Key"]) == 64


def test_a_rerun_of_the_same_work_sends_the_same_keys_and_other_calls_other_keys(calls):
    peer = ScriptedPeer(MADE)
    with serve(peer) as url:
        first = calls(url)
        first.create_thing(name="a")
        first.create_thing(name="a")  # a second, separate call of the same handler run
        calls(url).create_thing(name="a")  # the handler runs again for the same request
        calls(url, request_id="req-2").create_thing(name="a")
        first.create_thing(name="b", idempotency_key="chosen-by-the-handler")
    keys = [request.headers["Idempotency-Key"] for request in peer.received]
    assert keys[0] != keys[1] and keys[2] == keys[0] and keys[3] not in keys[:3]
    assert keys[4] == "chosen-by-the-handler"


def test_unavailable_answers_are_retried_with_the_same_key_until_one_succeeds(calls):
    peer = ScriptedPeer(Reply(503), Reply(502), MADE)
    with serve(peer) as url:
        client = calls(url)
        assert client.create_thing(name="a")["thing_id"] == "t-1"
    assert len(peer.received) == 3
    assert len({request.headers["Idempotency-Key"] for request in peer.received}) == 1
    assert client.connector.breaker(PEER).state().failures == 0  # the success forgot them


def test_a_500_is_not_retried_and_raises_with_the_peers_problem(calls):
    peer = ScriptedPeer(Reply(500, {"detail": "the ledger is closed"}))
    with serve(peer) as url, pytest.raises(PeerRejected) as refused:
        calls(url).create_thing(name="a")
    assert len(peer.received) == 1
    assert refused.value.peer_status == 500 and refused.value.status == 502
    assert refused.value.peer_problem == {"detail": "the ledger is closed"}
    assert "the ledger is closed" in str(refused.value)


def test_a_get_sends_path_parameters_and_the_query_and_passes_a_404_on(calls):
    peer = ScriptedPeer(Reply(404, {"detail": "no such thing"}))
    with serve(peer) as url, pytest.raises(PeerRejected) as refused:
        calls(url).get_thing(thing_id="a/b", verbose=True)
    (sent,) = peer.received
    assert (sent.method, sent.uri) == ("GET", "/v1/things/a%2Fb?verbose=true")
    assert "Idempotency-Key" not in sent.headers  # GET is idempotent by itself
    assert refused.value.peer_status == 404


def test_a_429_is_retried_after_its_retry_after_and_not_without_one(calls):
    peer = ScriptedPeer(Reply(429, headers={"Retry-After": "1"}), MADE)
    with serve(peer) as url:
        started = time.monotonic()
        assert calls(url).create_thing(name="a")["status"] == "made"
        assert time.monotonic() - started >= 1.0
    bare = ScriptedPeer(Reply(429))
    with serve(bare) as url, pytest.raises(PeerUnavailable):
        calls(url).create_thing(name="a")
    assert len(bare.received) == 1


def test_a_retry_after_longer_than_the_callers_patience_fails_at_once_and_opens_the_breaker(
    calls,
):
    peer = ScriptedPeer(Reply(503, {"detail": "maintenance"}, {"Retry-After": "30"}))
    with serve(peer) as url, pytest.raises(PeerUnavailable) as unavailable:
        client = calls(url, PEER_TIMEOUT_SECONDS="1")
        client.create_thing(name="a")
    assert len(peer.received) == 1
    assert unavailable.value.retry_after == 30 and unavailable.value.headers["Retry-After"] == "30"
    assert unavailable.value.status == 503
    assert client.connector.breaker(PEER).state().state == OPEN


def test_a_slow_peer_times_out_and_every_try_has_a_timeout(calls):
    peer = ScriptedPeer(Reply(201, {"thing_id": "late"}, delay=1.0))
    with serve(peer) as url, pytest.raises(PeerUnavailable) as unavailable:
        started = time.monotonic()
        calls(url, PEER_TIMEOUT_SECONDS="0.2", PEER_MAX_ATTEMPTS="2").create_thing(name="a")
    assert time.monotonic() - started < 1.5
    assert "Timeout" in str(unavailable.value) and len(peer.received) == 2


def test_an_open_breaker_fails_calls_at_once_without_calling(calls):
    client = calls(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PeerUnavailable):
        client.create_thing(name="a")  # three refused connections: the breaker opens
    assert client.connector.breaker(PEER).state().state == OPEN
    started = time.monotonic()
    with pytest.raises(PeerUnavailable) as unavailable:
        client.create_thing(name="a")
    assert time.monotonic() - started < 0.5
    assert "circuit breaker is open" in str(unavailable.value)
    assert int(unavailable.value.headers["Retry-After"]) >= 1


def test_the_trial_after_the_cool_down_closes_the_breaker(calls):
    port = free_port()
    client = calls(f"http://127.0.0.1:{port}", BREAKER_OPEN_SECONDS="0.3")
    with pytest.raises(PeerUnavailable):
        client.create_thing(name="a")
    time.sleep(0.4)
    with serve(ScriptedPeer(MADE), port=port):
        assert client.create_thing(name="a")["thing_id"] == "t-1"
    assert client.connector.breaker(PEER).state().state == CLOSED


def test_data_that_breaks_the_declared_request_is_refused_before_anything_is_sent(calls):
    peer = ScriptedPeer(MADE)
    with serve(peer) as url, pytest.raises(PeerCallInvalid) as invalid:
        calls(url).create_thing(name="a", colour="red")
    assert "/colour" in str(invalid.value) and peer.received == []


def test_an_answer_that_breaks_the_declared_response_is_refused(calls):
    peer = ScriptedPeer(Reply(201, {"thing_id": 5}))
    with serve(peer) as url, pytest.raises(PeerResponseInvalid) as invalid:
        calls(url).create_thing(name="a")
    assert "/thing_id" in str(invalid.value) and invalid.value.status == 502


def test_a_409_while_the_peer_still_runs_an_earlier_try_is_waited_for(calls):
    peer = ScriptedPeer(Reply(409, {"detail": "in progress"}, {"Retry-After": "0"}), MADE)
    with serve(peer) as url:
        assert calls(url).create_thing(name="a")["thing_id"] == "t-1"
    assert len(peer.received) == 2


def test_retry_after_is_read_as_seconds_or_as_a_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_ctx_peers_names_what_to_declare_for_an_unknown_peer(settings):
    ctx = Context(db=None, log=logging.getLogger("test.peers"),  # type: ignore[arg-type]
                  request_id="r", trace_id=TRACE_ID, identity=None, settings=settings)
    with pytest.raises(AttributeError) as missing:
        _ = ctx.peers.nobody_we_know
    assert "peers: nobody_we_know: calls:" in str(missing.value)
    assert ctx.peers is ctx.peers  # one set of clients per handler run
