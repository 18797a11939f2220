"""The OpenAPI 3.1 document generated from a spec: valid, and complete enough to call the service
from it alone (schemas, scopes, rate-limit and idempotency headers, every problem response).

Checked for the example specs and for the spec that uses every part of the format; the
documents are built from the specs here, so the test does not depend on committed output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from shoestring.openapi import HEADERS, PROBLEMS, openapi_document
from shoestring.spec import example_for, load_spec

REPO = Path(__file__).resolve().parents[1]
SPECS = {
    "orders": REPO / "examples" / "orders" / "service.yaml",
    "payments": REPO / "examples" / "payments" / "service.yaml",
    "everything": REPO / "tests" / "specs" / "valid" / "everything.yaml",
    "minimal": REPO / "tests" / "specs" / "valid" / "minimal.yaml",
}
METHODS = ("get", "put", "post", "delete", "patch")


def spec_of(name: str) -> dict[str, Any]:
    result = load_spec(SPECS[name])
    assert result.spec is not None, result.problems
    return result.spec


def document_of(name: str) -> dict[str, Any]:
    return openapi_document(spec_of(name), version="test")


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    return {
        operation["operationId"]: (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its local $ref points at."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.mark.parametrize("name", list(SPECS))
def test_the_document_is_valid_openapi_3_1(name):
    document = document_of(name)
    validate_openapi(document)  # raises with the offending path when invalid
    assert document["openapi"] == "3.1.0"


@pytest.mark.parametrize("name", list(SPECS))
def test_every_schema_is_valid_json_schema_2020_12(name):
    for schema in document_of(name)["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the keyword


@pytest.mark.parametrize("name", list(SPECS))
def test_every_endpoint_is_an_operation_with_its_scopes_as_security(name):
    spec = spec_of(name)
    found = operations(document_of(name))
    assert set(found) == {endpoint["name"] for endpoint in spec["endpoints"]}
    for endpoint in spec["endpoints"]:
        method, path, operation = found[endpoint["name"]]
        assert (method, path) == (endpoint["method"].lower(), endpoint["path"])
        assert operation["security"] == [{"bearer": endpoint["scopes"]}]
        for scope in endpoint["scopes"]:
            assert f"`{scope}`" in operation["description"]


@pytest.mark.parametrize("name", list(SPECS))
def test_the_bearer_scheme_says_how_to_get_a_token_and_lists_the_scopes(name):
    document = document_of(name)
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for endpoint in spec_of(name)["endpoints"]:
        for scope in endpoint["scopes"]:
            assert f"`{scope}`" in scheme["description"]


@pytest.mark.parametrize("name", list(SPECS))
def test_an_example_request_is_valid_against_the_documented_request(name):
    document = document_of(name)
    for endpoint in spec_of(name)["endpoints"]:
        _, _, operation = operations(document)[endpoint["name"]]
        data = example_for(endpoint["request"])
        parameters = {(p["name"], p["in"]): p for p in operation.get("parameters", [])}
        body = {}
        for field, value in data.items():
            if (field, "path") in parameters or (field, "query") in parameters:
                where = "path" if (field, "path") in parameters else "query"
                schema = parameters[(field, where)]["schema"]
                assert Draft202012Validator(schema).is_valid(value), (endpoint["name"], field)
            else:
                body[field] = value
        if "requestBody" in operation:
            content = operation["requestBody"]["content"]["application/json"]
            schema = resolve(document, content["schema"])
            assert list(Draft202012Validator(schema).iter_errors(body)) == []
        else:
            assert body == {}, f"{endpoint['name']}: fields with nowhere to go: {body}"


@pytest.mark.parametrize("name", list(SPECS))
def test_every_operation_documents_its_problems_as_problem_json(name):
    document = document_of(name)
    for endpoint in spec_of(name)["endpoints"]:
        _, _, operation = operations(document)[endpoint["name"]]
        expected = {"400", "401", "403", "422", "500", "503"}
        if endpoint["path_params"]:
            expected.add("404")
        if endpoint["method"] not in ("GET", "DELETE"):
            expected |= {"413", "415"}
        if endpoint["idempotent"]:
            expected.add("409")
        if endpoint["rate_limit"]:
            expected.add("429")
        documented = {status for status in operation["responses"] if status.startswith(("4", "5"))}
        assert documented == expected, endpoint["name"]
        for status in documented:
            response = resolve(document, operation["responses"][status])
            content = response["content"]
            assert list(content) == ["application/problem+json"]
            assert content["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
            assert "X-Request-Id" in response["headers"]


def test_the_problem_schema_accepts_what_the_chassis_sends_and_refuses_what_it_never_does():
    problem = document_of("orders")["components"]["schemas"]["Problem"]
    validator = Draft202012Validator(problem)
    sent = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": "the request does not match what create_order accepts",
        "instance": "/v1/orders",
        "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "errors": [{"pointer": "/amount_cents", "detail": "is required"}],
    }
    assert validator.is_valid(sent)
    assert not validator.is_valid({key: value for key, value in sent.items() if key != "detail"})
    assert not validator.is_valid({**sent, "errors": [{"pointer": "/x"}]})
    documented = {"400", "401", "403", "404", "409", "413", "415", "422", "429", "500", "503"}
    assert set(PROBLEMS) == documented


def test_rate_limited_operations_document_the_ratelimit_headers_and_retry_after():
    document = document_of("orders")
    _, _, create = operations(document)["create_order"]
    success = create["responses"]["201"]
    assert set(success["headers"]) == {
        "X-Request-Id",
        "RateLimit-Policy",
        "RateLimit",
        "Idempotent-Replayed",
    }
    too_many = resolve(document, create["responses"]["429"])
    assert {"Retry-After", "RateLimit-Policy", "RateLimit"} <= set(too_many["headers"])
    assert create["x-rate-limit"] == {
        "policy": "per_client_60m",
        "limit": 60,
        "per": "minute",
        "key": "client",
    }
    assert "60 requests per minute" in create["description"]
    for header in [*success["headers"].values(), *too_many["headers"].values()]:
        assert resolve(document, header)["schema"]
    assert set(document["components"]["headers"]) == set(HEADERS)


def test_idempotent_operations_require_the_idempotency_key_header():
    document = document_of("orders")
    found = operations(document)
    _, _, create = found["create_order"]
    key = next(p for p in create["parameters"] if p["in"] == "header")
    assert (key["name"], key["required"]) == ("Idempotency-Key", True)
    pattern = Draft202012Validator(key["schema"])
    assert pattern.is_valid("3fa85f64-5717-4562-b3fc-2c963f66afa6")
    for unusable in ("", " padded ", "x" * 256, "caf\u00e9", "tab\there"):
        assert not pattern.is_valid(unusable), unusable
    for name, (_, _, operation) in found.items():
        if name != "create_order":
            headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
            assert headers == [], name
            success = next(iter(operation["responses"].values()))
            assert "Idempotent-Replayed" not in success["headers"], name


def test_a_declared_max_length_reaches_the_document():
    spec = spec_of("orders")
    spec["endpoints"][0]["request"]["properties"]["note"] = {"type": "string", "maxLength": 10}
    document = openapi_document(spec, version="test")
    validate_openapi(document)
    body = document["components"]["schemas"]["create_order.request"]
    assert body["properties"]["note"]["maxLength"] == 10


def body_spec() -> dict[str, Any]:
    """The orders spec with three more POSTs: no request fields, a path parameter only, and
    optional fields only."""
    spec = spec_of("orders")
    base = {key: value for key, value in spec["endpoints"][0].items() if key != "request"}
    empty = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    optional = {**empty, "properties": {"note": {"type": ["string", "null"]}}}
    path_only = {
        **empty,
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    }
    spec["endpoints"] += [
        {**base, "name": "ping", "path": "/v1/ping", "request": empty, "path_params": []},
        {**base, "name": "annotate", "path": "/v1/notes", "request": optional, "path_params": []},
        {
            **base,
            "name": "cancel",
            "path": "/v1/orders/{order_id}/cancel",
            "request": path_only,
            "path_params": ["order_id"],
        },
    ]
    return spec


def test_a_body_is_required_only_when_it_has_required_fields():
    # The chassis reads a missing body as {}: required fields then get 422, none is fine.
    document = openapi_document(body_spec(), version="test")
    validate_openapi(document)
    found = operations(document)
    required = {
        name: operation["requestBody"]["required"]
        for name, (_, _, operation) in found.items()
        if "requestBody" in operation
    }
    assert required == {"create_order": True, "ping": False, "annotate": False, "cancel": False}
    _, _, cancel = found["cancel"]
    body = resolve(document, cancel["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"] == {} and body["required"] == []  # the path carries order_id
