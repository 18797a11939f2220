"""Rate limits: every endpoint that names a policy in service.yaml counts its callers in the
database, answers with RateLimit headers, and refuses the request over the limit with 429.

The HTTP tests run the shop's endpoints with each policy scaled down to two requests,
so a refusal comes after a few calls whatever the real limit is. Each test is a new client (its
own token subject and address), so tests never eat into each other's quota.
"""

from __future__ import annotations

import pytest

from shoestring_runtime import ratelimit
from shoestring_runtime.db import Database
from shoestring_runtime.examples import example_for
from shoestring_runtime.schemas import Endpoint, endpoints
from shoestring_runtime.testing import new_address, new_subject

from .shop import SERVICE, bearer, create_app, request_headers

LIMITED = [endpoint for endpoint in endpoints(SERVICE.model) if endpoint.rate_limit]
POLICIES = SERVICE.model.get("rate_limits") or {}


def by_name(endpoint: Endpoint) -> str:
    return endpoint.name


def new_client() -> tuple[str, str]:
    """A token subject and an address nobody else uses."""
    return new_subject(), new_address()


def send(app, endpoint: Endpoint, subject: str, address: str, **headers: str):
    """Call `endpoint` with valid example data as `subject` from `address`."""
    data = example_for(endpoint.request)
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace("{" + name + "}", str(data.pop(name)))
    all_headers = {
        **request_headers(endpoint), **bearer(endpoint.scopes, subject=subject), **headers
    }
    body = {"json": data} if endpoint.has_body else {"query_string": data}
    return app.test_client().open(
        path, method=endpoint.method, headers=all_headers,
        environ_base={"REMOTE_ADDR": address}, **body,
    )


def app_limited_to(settings, db: Database, limit: int, storage=None):
    """The app, with every policy of the spec scaled down to `limit` requests."""
    app = create_app(settings)
    policies = {
        name: ratelimit.Policy(name, limit, spec["per"], spec["key"])
        for name, spec in POLICIES.items()
    }
    storage = storage or ratelimit.DatabaseStorage(app.extensions["chassis"].db)
    ratelimit.install(app, ratelimit.RateLimiter(policies, storage))
    return app


@pytest.mark.parametrize("endpoint", LIMITED, ids=by_name)
def test_responses_carry_the_ratelimit_headers_of_the_policy(settings, db, endpoint):
    app = create_app(settings)
    policy = ratelimit.Policy.from_spec(endpoint.rate_limit, POLICIES[endpoint.rate_limit])
    response = send(app, endpoint, *new_client())
    assert response.status_code != 429
    assert response.headers["RateLimit-Policy"] == policy.header
    assert response.headers["RateLimit"] == (
        f'"{policy.name}";r={policy.limit - 1};t={response.headers["RateLimit"].split("t=")[1]}'
    )


@pytest.mark.parametrize("endpoint", LIMITED, ids=by_name)
def test_the_request_over_the_limit_gets_429_with_retry_after(settings, db, endpoint):
    app = app_limited_to(settings, db, 2)
    subject, address = new_client()
    first, second, third = (send(app, endpoint, subject, address) for _ in range(3))
    assert first.status_code != 429 and second.status_code != 429
    assert third.status_code == 429
    assert third.mimetype == "application/problem+json"
    problem = third.get_json()
    assert problem["status"] == 429 and "retry in" in problem["detail"]
    assert third.headers["Retry-After"].isdigit() and int(third.headers["Retry-After"]) >= 1
    assert third.headers["RateLimit"].startswith(f'"{endpoint.rate_limit}";r=0;')


LIMITED_IDEMPOTENT = [endpoint for endpoint in LIMITED if endpoint.idempotent]


@pytest.mark.parametrize("endpoint", LIMITED_IDEMPOTENT, ids=by_name)
def test_refused_requests_count_too(settings, db, endpoint):
    # An idempotent request is counted when it claims its key; one refused before that (no
    # Idempotency-Key: 400) must count all the same, or retrying bad requests would be free.
    app = app_limited_to(settings, db, 2)
    subject, address = new_client()
    no_key = {"Idempotency-Key": ""}
    assert send(app, endpoint, subject, address, **no_key).status_code == 400
    assert send(app, endpoint, subject, address, **no_key).status_code == 400
    assert send(app, endpoint, subject, address).status_code == 429


@pytest.mark.parametrize("endpoint", LIMITED, ids=by_name)
def test_one_client_over_the_limit_leaves_another_unaffected(settings, db, endpoint):
    app = app_limited_to(settings, db, 1)
    greedy = new_client()
    send(app, endpoint, *greedy)
    assert send(app, endpoint, *greedy).status_code == 429
    assert send(app, endpoint, *new_client()).status_code != 429


@pytest.mark.parametrize("endpoint", LIMITED, ids=by_name)
def test_made_up_forwarded_for_headers_do_not_reset_the_limit(settings, db, endpoint):
    # No proxy is trusted (TRUSTED_PROXY_HOPS=0), so X-Forwarded-For is never read.
    app = app_limited_to(settings, db, 2)
    subject, address = new_client()
    statuses = [
        send(app, endpoint, subject, address, **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(3)
    ]
    assert statuses[-1] == 429


def test_when_the_counter_storage_is_down_requests_pass_or_get_503_as_configured(settings, db):
    endpoint = LIMITED[0]
    down = ratelimit.DatabaseStorage(Database("mysql://nobody@127.0.0.1:1/nothing"))
    app = app_limited_to(settings, db, 1, storage=down)  # fails open: the default
    assert all(send(app, endpoint, *new_client()).status_code != 429 for _ in range(2))
    app.extensions["ratelimit"].fail_open = False
    refused = send(app, endpoint, *new_client())
    assert refused.status_code == 503
    assert refused.headers["Retry-After"].isdigit()
    assert "RATE_LIMIT_FAIL_OPEN=false" in refused.get_json()["detail"]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_no_second_burst_right_after_a_window_boundary(db):
    # A fixed window admits the limit just before a minute turns and again just after it.
    clock = Clock(1_700_000_039.9)  # 0.1 s before a whole minute
    policy = ratelimit.Policy("burst_test", 10, "minute", "client")
    limiter = ratelimit.RateLimiter(
        {policy.name: policy}, ratelimit.DatabaseStorage(db), clock=clock
    )
    subject = new_subject()
    assert all(limiter.check(policy.name, subject, "x").allowed for _ in range(10))
    clock.now += 0.2
    assert not any(limiter.check(policy.name, subject, "x").allowed for _ in range(10))
    clock.now += 6  # one interval (60 s / 10): room for exactly one more
    assert [limiter.check(policy.name, subject, "x").allowed for _ in range(2)] == [True, False]
