"""Authentication as service.yaml declares it, endpoint by endpoint: every endpoint that names
scopes refuses a request without a token with 401 and a token that lacks one of its scopes with
403, each with its Bearer challenge.

How tokens are verified (signatures, issuers, audiences, expiry, the service's keys and their
rotation, peers' JWKS) is the runtime's, and is tested with it; these tests prove that each
endpoint of this spec asks for it.
"""

from __future__ import annotations

import re

import pytest
from shoestring_runtime.examples import example_for
from shoestring_runtime.schemas import Endpoint, endpoints

from conftest import bearer, endpoint_url, new_subject, request_headers
from orders import SERVICE

NAME = SERVICE.model["service"]["name"]  # the realm of the challenge: this service's audience
SCOPED = [endpoint for endpoint in endpoints(SERVICE.model) if endpoint.scopes]
SPEC_SCOPES = sorted({scope for endpoint in SCOPED for scope in endpoint.scopes})
# Each endpoint with each scope it requires: refused to a token granting every other scope.
REQUIRED = [(endpoint, scope) for endpoint in SCOPED for scope in endpoint.scopes]
needs_scoped = pytest.mark.skipif(not SCOPED, reason="no endpoint of service.yaml names scopes")


def by_name(endpoint: Endpoint) -> str:
    return endpoint.name


def send(client, endpoint: Endpoint, headers: dict[str, str]):
    """Call `endpoint` with valid example data and these headers."""
    data = example_for(endpoint.request)
    body = {}
    if endpoint.has_body:
        body["json"] = {k: v for k, v in data.items() if k not in endpoint.path_params}
    return client.open(
        endpoint_url(endpoint, data), method=endpoint.method, headers=headers, **body
    )


def assert_problem(response, status: int) -> str:
    """The response is a problem+json refusal with this status; returns its challenge."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == status
    return response.headers["WWW-Authenticate"]


@needs_scoped
@pytest.mark.parametrize("endpoint", SCOPED, ids=by_name)
def test_a_request_without_a_token_gets_401(client, endpoint):
    headers = request_headers(endpoint)
    del headers["Authorization"]
    challenge = assert_problem(send(client, endpoint, headers), 401)
    assert challenge == f'Bearer realm="{NAME}"'


@needs_scoped
@pytest.mark.parametrize(
    ("endpoint", "scope"), REQUIRED, ids=[f"{e.name}-{scope}" for e, scope in REQUIRED]
)
def test_a_token_without_one_of_its_scopes_gets_403_naming_the_scopes(client, endpoint, scope):
    others = [granted for granted in SPEC_SCOPES if granted != scope]
    headers = {**request_headers(endpoint), **bearer(others, subject=new_subject())}
    challenge = assert_problem(send(client, endpoint, headers), 403)
    assert challenge.startswith(f'Bearer realm="{NAME}"')
    assert 'error="insufficient_scope"' in challenge
    named = re.search(r'scope="([^"]*)"', challenge)
    assert named and scope in named.group(1).split()
