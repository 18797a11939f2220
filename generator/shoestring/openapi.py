"""The OpenAPI 3.1 document of a service's endpoints, built from the spec model.

OpenAPI 3.1 schemas are JSON Schema 2020-12, the dialect the spec compiles fields to, so the
endpoint schemas go in unchanged. Request data has three sources (see the spec model): path
parameters, then the query string for GET and DELETE or the JSON body otherwise; the document
splits the endpoint's request schema accordingly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
QUERY_METHODS = frozenset({"GET", "DELETE"})

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem: `detail` says what went wrong and how to fix the call.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["title", "status"],
}

# The problems the chassis answers with, by status (see its routes, auth, idempotency and
# ratelimit modules). Each operation lists those that can happen to it.
PROBLEMS: dict[str, str] = {
    "400": "The request is malformed: a body that is not JSON, or an unusable header.",
    "401": "The bearer token is missing, expired or not valid for this service.",
    "403": "The token lacks a scope this operation requires.",
    "404": "No resource has this identifier.",
    "409": (
        "A request with the same Idempotency-Key is still being processed: retry after the "
        "seconds in Retry-After."
    ),
    "413": "The request body is too large.",
    "415": "The request body is not JSON (send Content-Type: application/json).",
    "422": (
        "The request data does not match the request schema (`errors` names each bad field), "
        "or its Idempotency-Key was used before for a different request."
    ),
    "429": "Too many requests: retry after the seconds in Retry-After.",
}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 0},
}


def openapi_document(spec: Mapping[str, Any], *, version: str) -> dict[str, Any]:
    """The OpenAPI document of `spec`'s endpoints; `version` is the document's info.version."""
    service = spec["service"]
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in spec.get("endpoints", []):
        operation = _operation(endpoint, schemas, spec.get("rate_limits", {}))
        paths.setdefault(endpoint["path"], {})[endpoint["method"].lower()] = operation
    info: dict[str, Any] = {"title": service["name"], "version": version}
    if service.get("description"):
        info["description"] = service["description"]
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": info,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                f"Problem{status}": _problem_response(status, text)
                for status, text in PROBLEMS.items()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "A JWT signed by an issuer the service trusts; each operation lists "
                        "the scopes the token must carry."
                    ),
                }
            },
        },
    }


def _operation(
    endpoint: Mapping[str, Any], schemas: dict[str, Any], rate_limits: Mapping[str, Any]
) -> dict[str, Any]:
    name = endpoint["name"]
    request = endpoint.get("request") or {"type": "object"}
    properties: Mapping[str, Any] = request.get("properties", {})
    required = set(request.get("required", []))
    path_params = list(endpoint.get("path_params", []))

    parameters = [
        _parameter(field, "path", properties.get(field, {}), required=True) for field in path_params
    ]
    operation: dict[str, Any] = {"operationId": name}
    if endpoint.get("description"):
        operation["summary"] = endpoint["description"]
    other_fields = [field for field in properties if field not in path_params]
    if endpoint["method"] in QUERY_METHODS:
        parameters += [
            _parameter(field, "query", properties[field], required=field in required)
            for field in other_fields
        ]
    elif other_fields or not properties:
        body = _without(request, path_params)
        schemas[f"{name}.request"] = body
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(f"{name}.request")}},
        }
    if endpoint.get("idempotent"):
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": (
                    "A unique key per intended operation (a UUID): a retry with the same key "
                    "replays the stored response instead of repeating the operation."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if parameters:
        operation["parameters"] = parameters

    status = str(endpoint.get("status", 200))
    success: dict[str, Any] = {"description": endpoint.get("description") or f"{name} succeeded."}
    if status != "204":  # No Content: the chassis sends no body whatever the handler returns
        schemas[f"{name}.response"] = endpoint.get("response") or {"type": "object"}
        success["content"] = {"application/json": {"schema": _ref(f"{name}.response")}}
    responses: dict[str, Any] = {status: success}
    for problem in _problems_of(endpoint):
        responses[problem] = {"$ref": f"#/components/responses/Problem{problem}"}
    operation["responses"] = responses
    operation["security"] = [{"bearer": list(endpoint.get("scopes", []))}]
    if endpoint.get("rate_limit"):
        policy = rate_limits.get(endpoint["rate_limit"], {})
        operation["x-rate-limit"] = {"policy": endpoint["rate_limit"], **policy}
    return operation


def _problems_of(endpoint: Mapping[str, Any]) -> list[str]:
    problems = ["400", "401", "403", "422"]
    if endpoint.get("path_params"):
        problems.append("404")
    if endpoint["method"] not in QUERY_METHODS:
        problems += ["413", "415"]
    if endpoint.get("idempotent"):
        problems.append("409")
    if endpoint.get("rate_limit"):
        problems.append("429")
    return sorted(problems)


def _parameter(name: str, where: str, schema: Any, *, required: bool) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": where, "required": required}
    if isinstance(schema, Mapping) and schema.get("description"):
        parameter["description"] = schema["description"]
    parameter["schema"] = schema
    return parameter


def _problem_response(status: str, description: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }
    if status in ("409", "429"):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def _without(schema: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    """`schema` (an object schema) without the properties `fields` (path parameters)."""
    result = copy.deepcopy(dict(schema))
    if not fields:
        return result
    properties = {k: v for k, v in result.get("properties", {}).items() if k not in fields}
    result["properties"] = properties
    if "required" in result:
        result["required"] = [field for field in result["required"] if field not in fields]
    return result


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
