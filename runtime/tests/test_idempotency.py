"""Idempotency keys: every endpoint of the shop (specs/shop.yaml) marked `idempotent: true`
runs its handler once per Idempotency-Key and replays the stored response to retries.

The handler is wrapped so that each run writes an audit row in its transaction: counting the
rows counts the side effects that committed.

A retry must come from the client that sent the key, and the spec's rate limit may rightly
refuse it (one request per minute per client leaves no room for a retry): these tests lift the
limits of the app they call (`lift_rate_limits`). A service's tests prove its limits, and that an
idempotent request counts even when it is refused; its generated contract tests check the
replay, the 422 for another request and the 400 without a key on each idempotent endpoint.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest

from shoestring_runtime import audit, idempotency, ratelimit
from shoestring_runtime import create_app as create_runtime_app
from shoestring_runtime.contract import another_request
from shoestring_runtime.examples import example_for
from shoestring_runtime.schemas import Endpoint, endpoints

from .shop import SERVICE, bearer, settings_for

IDEMPOTENT = [endpoint for endpoint in endpoints(SERVICE.model) if endpoint.idempotent]
pytestmark = pytest.mark.skipif(not IDEMPOTENT, reason="no endpoint of service.yaml is idempotent")


def by_name(endpoint: Endpoint) -> str:
    return endpoint.name


def counted_app(settings, endpoint: Endpoint, action: str, before=None):
    """The app, with `endpoint`'s handler recording one `action` audit row per run; `before`
    runs first (to sleep or fail)."""
    real = SERVICE.registry.HANDLERS[endpoint.name]

    def counting(ctx, data):
        audit.record(ctx.db, action=action)
        if before is not None:
            before()
        return real(ctx, data)

    handlers = {**SERVICE.registry.HANDLERS, endpoint.name: counting}
    app = create_runtime_app(SERVICE, settings, handlers=handlers)
    lift_rate_limits(app)
    return app


def lift_rate_limits(app) -> None:
    """Let every caller of `app` send as many requests as a test needs."""
    limiter = app.extensions[ratelimit.EXTENSION]
    for name, policy in limiter.policies.items():
        limiter.policies[name] = dataclasses.replace(policy, limit=1_000_000)


def runs(db, action: str) -> int:
    with db.transaction() as conn:
        return conn.fetchvalue("SELECT COUNT(*) FROM audit_log WHERE action = %s", (action,))


def send(
    app,
    endpoint: Endpoint,
    key: str | None,
    subject: str = "tests",
    data: dict | None = None,
    query: dict | None = None,
):
    """Call `endpoint` with `data` (by default its example request) and `query` besides."""
    data = dict(example_for(endpoint.request) if data is None else data)
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace("{" + name + "}", str(data.pop(name)))
    headers = bearer(endpoint.scopes, subject=subject)
    if key is not None:
        headers["Idempotency-Key"] = key
    if endpoint.has_body:
        body = {"json": data, "query_string": query or {}}
    else:  # the request is the query string
        body = {"query_string": {**data, **(query or {})}}
    return app.test_client().open(path, method=endpoint.method, headers=headers, **body)


def new_action() -> str:
    return f"idempotency_test_{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_a_retry_with_the_same_key_replays_the_response_and_runs_once(settings, db, endpoint):
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings, endpoint, action)
    first = send(app, endpoint, key)
    retry = send(app, endpoint, key)
    assert first.status_code == endpoint.status, first.get_data(as_text=True)
    assert retry.status_code == first.status_code
    assert retry.get_data() == first.get_data()
    assert "Idempotent-Replayed" not in first.headers
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert runs(db, action) == 1


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_the_same_key_for_a_different_request_is_422(settings, db, endpoint):
    other_request = another_request(endpoint)
    if other_request is None:
        pytest.skip(f"{endpoint.name} takes no request fields: every request is the same")
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings, endpoint, action)
    assert send(app, endpoint, key).status_code == endpoint.status
    other = send(app, endpoint, key, data=other_request[0], query=other_request[1])
    assert other.status_code == 422
    assert other.mimetype == "application/problem+json"
    assert "different request" in other.get_json()["detail"]
    assert runs(db, action) == 1


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "send an Idempotency-Key header"), ("", "is empty"), ("k" * 256, "at most 255")],
)
def test_a_missing_empty_or_overlong_key_is_400(settings, db, endpoint, key, reason):
    action = new_action()
    response = send(counted_app(settings, endpoint, action), endpoint, key)
    assert response.status_code == 400
    assert reason in response.get_json()["detail"]
    assert runs(db, action) == 0


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_another_client_may_use_the_same_key(settings, db, endpoint):
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings, endpoint, action)
    mine = send(app, endpoint, key, subject="alice")
    theirs = send(app, endpoint, key, subject="bob")
    assert mine.status_code == theirs.status_code == endpoint.status
    assert "Idempotent-Replayed" not in theirs.headers
    assert runs(db, action) == 2


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_a_failed_request_frees_its_key_for_the_retry(settings, db, endpoint):
    action, key = new_action(), str(uuid.uuid4())
    failures = [RuntimeError("the first attempt fails")]

    def fail_once():
        if failures:
            raise failures.pop()

    app = counted_app(settings, endpoint, action, before=fail_once)
    assert send(app, endpoint, key).status_code == 500
    assert runs(db, action) == 0  # rolled back, and nothing stored for the key
    retry = send(app, endpoint, key)
    assert retry.status_code == endpoint.status
    assert "Idempotent-Replayed" not in retry.headers
    assert runs(db, action) == 1


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_concurrent_requests_with_one_key_run_the_handler_once(settings, db, endpoint):
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings, endpoint, action, before=lambda: time.sleep(0.5))
    responses = []

    def request() -> None:
        responses.append(send(app, endpoint, key))

    first = threading.Thread(target=request)
    first.start()
    time.sleep(0.2)  # the first request holds the key
    second = threading.Thread(target=request)
    second.start()
    first.join()
    second.join()
    statuses = sorted(response.status_code for response in responses)
    # MySQL answers the second request 409 at once; on SQLite, which has one writer at a time,
    # it waits for the first to commit and gets the replay.
    assert statuses in ([endpoint.status, 409], [endpoint.status, endpoint.status]), statuses
    for response in responses:
        if response.status_code == 409:
            assert response.headers["Retry-After"] == "1"
    assert runs(db, action) == 1


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_an_expired_key_may_be_used_again(database_url, db, endpoint):
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings_for(database_url, IDEMPOTENCY_TTL_SECONDS="1"), endpoint, action)
    assert send(app, endpoint, key).status_code == endpoint.status
    time.sleep(1.1)
    data, query = another_request(endpoint) or (None, None)  # even for another request
    again = send(app, endpoint, key, data=data, query=query)
    assert again.status_code == endpoint.status
    assert "Idempotent-Replayed" not in again.headers
    assert runs(db, action) == 2


@pytest.mark.parametrize("endpoint", IDEMPOTENT, ids=by_name)
def test_an_expired_key_purged_while_it_is_used_again_is_taken_not_refused(
    database_url, db, endpoint, monkeypatch
):
    # Any request purges expired keys now and then, here every time: the purge runs between
    # the claim's INSERT (which finds the expired row) and its take-over (which finds none).
    action, key = new_action(), str(uuid.uuid4())
    app = counted_app(settings_for(database_url, IDEMPOTENCY_TTL_SECONDS="1"), endpoint, action)
    assert send(app, endpoint, key).status_code == endpoint.status
    time.sleep(1.1)
    monkeypatch.setattr(idempotency, "PURGE_PROBABILITY", 1.0)
    again = send(app, endpoint, key)
    assert again.status_code == endpoint.status
    assert "Idempotent-Replayed" not in again.headers
    assert runs(db, action) == 2
