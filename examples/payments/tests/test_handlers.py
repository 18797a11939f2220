"""Tests of what your handlers do. This file is yours: `copier update` leaves it alone.

The contract tests in payments/_generated/ (written by `shoestring generate`) check what
service.yaml promises on every endpoint and message: valid requests answered with the declared
schema, invalid ones refused at the right pointer, idempotency, messages published and received.
Here you test your business logic, with the fixtures of the runtime's plugin
(shoestring_runtime.testing, which ../conftest.py loads):

- `call(endpoint, data)`: send `data` to an endpoint as a client would (a token with its scopes,
  an Idempotency-Key where it is idempotent); `endpoint` comes from `ENDPOINTS` below;
- `client`: a Flask test client of the app, for requests you build yourself, with
  `auth_headers(scopes)` for a token (or `bearer(scopes)` from conftest);
- `db`: the session's migrated database: `with db.transaction() as conn: conn.fetchall(...)`;
- `settings`, `app`: the settings and the app the others are built on.

The example below calls the first endpoint of service.yaml with its example request; replace it
with tests of your own handlers, e.g. that an order created by `create_order` is listed by
`list_orders`.
"""

from __future__ import annotations

import pytest
from shoestring_runtime.testing import endpoints, example_for

from payments import SERVICE

# The endpoints of service.yaml by name: ENDPOINTS["create_order"].
ENDPOINTS = {endpoint.name: endpoint for endpoint in endpoints(SERVICE.model)}


@pytest.mark.skipif(not ENDPOINTS, reason="service.yaml declares no endpoint yet")
def test_the_first_endpoint_answers_its_example_request(call):
    endpoint = next(iter(ENDPOINTS.values()))
    response = call(endpoint, example_for(endpoint.request))
    # A handler that reads one row by its id may rightly find none for the example's id.
    expected = (endpoint.status, 404) if endpoint.path_params else (endpoint.status,)
    assert response.status_code in expected, response.get_data(as_text=True)
    # Then check what the handler wrote, e.g.:
    #     with db.transaction(readonly=True) as conn:
    #         assert conn.fetchvalue("SELECT COUNT(*) FROM orders") == 1
