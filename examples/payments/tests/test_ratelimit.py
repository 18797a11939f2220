"""Rate limits as service.yaml declares them, endpoint by endpoint: every endpoint that names a
policy answers with that policy's RateLimit headers, and refuses the request over its limit with
429.

The 429 test runs each endpoint with every policy scaled down to two requests, so a refusal comes
after a few calls whatever the real limit is. Each test is a new client (its own token subject
and address), so tests never eat into each other's quota. How the limits count (buckets,
storage, proxies, purges) is the runtime's, and is tested with it.
"""

from __future__ import annotations

import pytest
from shoestring_runtime import ratelimit
from shoestring_runtime.db import Database
from shoestring_runtime.examples import example_for
from shoestring_runtime.schemas import Endpoint, endpoints

from conftest import bearer, new_address, new_subject, request_headers
from payments import SERVICE
from payments.app import create_app

LIMITED = [endpoint for endpoint in endpoints(SERVICE.model) if endpoint.rate_limit]
POLICIES = SERVICE.model.get("rate_limits") or {}
needs_limited = pytest.mark.skipif(
    not LIMITED, reason="no endpoint of service.yaml names a rate_limit"
)


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


def app_limited_to(settings, db: Database, limit: int):
    """The app, with every policy of the spec scaled down to `limit` requests."""
    app = create_app(settings)
    policies = {
        name: ratelimit.Policy(name, limit, spec["per"], spec["key"])
        for name, spec in POLICIES.items()
    }
    storage = ratelimit.DatabaseStorage(app.extensions["chassis"].db)
    ratelimit.install(app, ratelimit.RateLimiter(policies, storage))
    return app


@needs_limited
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


@needs_limited
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
