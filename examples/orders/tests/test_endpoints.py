"""Every endpoint of service.yaml, called the way a client calls it.

A valid request is built from the request schema (`example_for`): it must reach the handler and
get its response, with the endpoint's status and a body valid against the response schema. When
a handler needs data to exist first (reading one order), give that case a fixture that creates
it, and keep the invalid-request tests as they are.
"""

from __future__ import annotations

import pytest
from conftest import request_headers
from shoestring_runtime.examples import example_for
from shoestring_runtime.schemas import Endpoint, endpoints

from orders import SERVICE

ENDPOINTS = endpoints(SERVICE.model)
WITH_BODY = [endpoint for endpoint in ENDPOINTS if endpoint.has_body]


def by_name(endpoint: Endpoint) -> str:
    return endpoint.name


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=by_name)
def test_a_valid_request_gets_the_handlers_response(call, endpoint):
    response = call(endpoint, example_for(endpoint.request))
    assert response.status_code == endpoint.status, response.get_data(as_text=True)
    if endpoint.status != 204:
        assert response.mimetype == "application/json"
        errors = list(endpoint.response_validator.iter_errors(response.get_json()))
        assert errors == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=by_name)
def test_an_invalid_request_gets_422_naming_the_field(call, endpoint):
    data = example_for(endpoint.request)
    required = [
        name for name in endpoint.request.get("required", []) if name not in endpoint.path_params
    ]
    if required:  # leave out a required field
        field = required[0]
        del data[field]
        expected = {"pointer": f"/{field}", "detail": "is required"}
    else:  # send one nobody declared
        field = "no_such_field"
        data[field] = "1"
        expected = {"pointer": f"/{field}"}
    body = assert_problem(call(endpoint, data), 422)
    assert any(expected.items() <= error.items() for error in body["errors"]), body["errors"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=by_name)
def test_a_value_of_the_wrong_type_gets_422_naming_the_field(call, endpoint):
    data = example_for(endpoint.request)
    properties = endpoint.request.get("properties", {})
    typed = [
        name
        for name, schema in properties.items()
        if name in data and _wrong_value(schema) is not None
    ]
    if not typed:
        pytest.skip("no field with a type a string can break")
    field = typed[0]
    data[field] = _wrong_value(properties[field])
    body = assert_problem(call(endpoint, data), 422)
    assert f"/{field}" in [error["pointer"] for error in body["errors"]]


def _wrong_value(schema: dict):
    """A value of the wrong type for `schema` that survives the trip through a URL."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "integer" in types or "number" in types or "boolean" in types:
        return "not-a-number"
    if "format" in schema or "enum" in schema:
        return "@@@"
    return None


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=by_name)
def test_malformed_json_gets_400(client, endpoint):
    headers = {**request_headers(endpoint), "Content-Type": "application/json"}
    url = _url(endpoint)
    response = client.open(url, method=endpoint.method, data=b'{"a": ', headers=headers)
    body = assert_problem(response, 400)
    assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=by_name)
def test_a_body_that_is_not_json_gets_415(client, endpoint):
    headers = {**request_headers(endpoint), "Content-Type": "text/plain"}
    response = client.open(_url(endpoint), method=endpoint.method, data=b"hello", headers=headers)
    assert_problem(response, 415)


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=by_name)
def test_a_body_over_max_body_bytes_gets_413(client, app, endpoint):
    limit = app.config["MAX_CONTENT_LENGTH"]
    oversized = b'{"padding": "' + b"x" * limit + b'"}'
    headers = {**request_headers(endpoint), "Content-Type": "application/json"}
    response = client.open(_url(endpoint), method=endpoint.method, data=oversized, headers=headers)
    body = assert_problem(response, 413)
    assert str(limit) in body["detail"]


def _url(endpoint: Endpoint) -> str:
    path = endpoint.path
    for name in endpoint.path_params:
        value = example_for(endpoint.request["properties"][name])
        path = path.replace("{" + name + "}", str(value))
    return path
