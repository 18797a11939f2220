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
    "description": (
        "An RFC 9457 problem (application/problem+json): `detail` says what went wrong and how "
        "to fix the call; `errors` points at each bad field of the request."
    ),
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The path of the request."},
        "request_id": {
            "type": "string",
            "description": "The request's id, as in X-Request-Id: quote it when reporting.",
        },
        "errors": {
            "type": "array",
            "description": "One entry per bad place in the request data.",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {
                        "type": "string",
                        "description": "RFC 6901 JSON pointer into the request data.",
                    },
                    "detail": {"type": "string"},
                },
                "required": ["pointer", "detail"],
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}

# The problems the chassis answers with, by status (see its routes, jsonbody, auth,
# idempotency and ratelimit modules). Each operation lists those that can happen to it.
PROBLEMS: dict[str, str] = {
    "400": (
        "The request is malformed: a body that is not JSON this service accepts (a syntax error, "
        "a duplicate key, NaN or Infinity, a number beyond 64 bits, nesting deeper than 64 "
        "levels; `errors` points at each place), a number in the path or the query string "
        "beyond those same bounds (an integer outside the signed 64-bit range, a number over 100 "
        "characters or beyond a double), or an unusable Idempotency-Key header."
    ),
    "401": "The bearer token is missing, expired or not valid for this service.",
    "403": "The token lacks a scope this operation requires.",
    "404": "No resource has this identifier.",
    "409": (
        "A request with the same Idempotency-Key is still being processed: retry after the "
        "seconds in Retry-After."
    ),
    "413": "The request body is larger than the service accepts (MAX_BODY_BYTES).",
    "415": "The request body is not JSON: send it as UTF-8 with Content-Type: application/json.",
    "422": (
        "The request data does not match the request schema, or holds a value the service "
        "cannot store (`errors` names each bad field); or its Idempotency-Key was used before "
        "for a different request."
    ),
    "429": "Too many requests: retry after the seconds in Retry-After.",
    "500": "The service failed; the problem's request_id finds the cause in its log.",
    "503": (
        "The service cannot serve the request right now (its database or a service it calls is "
        "unreachable): retry after the seconds in Retry-After."
    ),
}
# The headers responses carry; operations refer to them by name.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's id (the caller's own when it sent a valid one).",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Policy": {
        "description": (
            "The operation's rate limit (draft-ietf-httpapi-ratelimit-headers): "
            '`"<policy>";q=<requests>;w=<window in seconds>`.'
        ),
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": (
            "What is left of the rate limit: "
            '`"<policy>";r=<requests remaining>;t=<seconds until the quota is full again>`.'
        ),
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": (
            "`true` when this is the stored response of an earlier request with the same "
            "Idempotency-Key; the operation did not run again."
        ),
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {
        "description": "The Bearer challenge (RFC 6750), naming the scopes needed on a 403.",
        "schema": {"type": "string"},
    },
}
# Which headers each problem response carries besides X-Request-Id.
PROBLEM_HEADERS: dict[str, list[str]] = {
    "401": ["WWW-Authenticate"],
    "403": ["WWW-Authenticate"],
    "409": ["Retry-After"],
    "429": ["Retry-After", "RateLimit-Policy", "RateLimit"],
    "503": ["Retry-After"],
}
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": (
        "A unique key per intended operation (a UUID): a retry with the same key replays the "
        "stored response (with Idempotent-Replayed: true) instead of repeating the operation. "
        "Printable ASCII, at most 255 characters; kept for a day."
    ),
    # Printable ASCII without leading or trailing spaces (the service strips them).
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
}
BEARER_DESCRIPTION = (
    "A JWT (`Authorization: Bearer <token>`) signed by an issuer the service trusts: the "
    "service itself (`python -m <package> token --scope ...`) or one of its TRUSTED_ISSUERS. "
    "Its `aud` must name the service; its `scope` (space-delimited) or `scp` claim must grant "
    "every scope the operation lists. A missing or invalid token gets 401, a missing scope 403."
)


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
    scopes = sorted({scope for e in spec.get("endpoints", []) for scope in e.get("scopes", [])})
    bearer = BEARER_DESCRIPTION
    if scopes:
        bearer += " Scopes of this service: " + ", ".join(f"`{scope}`" for scope in scopes) + "."
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
            "headers": HEADERS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": bearer,
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
    policy = rate_limits.get(endpoint["rate_limit"], {}) if endpoint.get("rate_limit") else None

    parameters = [
        _parameter(field, "path", properties.get(field, {}), required=True) for field in path_params
    ]
    operation: dict[str, Any] = {"operationId": name}
    if endpoint.get("description"):
        operation["summary"] = endpoint["description"]
    operation["description"] = _description(endpoint, policy)
    other_fields = [field for field in properties if field not in path_params]
    if endpoint["method"] in QUERY_METHODS:
        parameters += [
            _parameter(field, "query", properties[field], required=field in required)
            for field in other_fields
        ]
    else:
        # The chassis reads an absent body as `{}`: the body is required exactly when the
        # object has required fields (without one, the answer is 422 naming each of them).
        body = _without(request, path_params)
        schemas[f"{name}.request"] = body
        operation["requestBody"] = {
            "required": bool(body.get("required")),
            "content": {"application/json": {"schema": _ref(f"{name}.request")}},
        }
    if endpoint.get("idempotent"):
        parameters.append(copy.deepcopy(IDEMPOTENCY_KEY))
    if parameters:
        operation["parameters"] = parameters

    status = str(endpoint.get("status", 200))
    success: dict[str, Any] = {"description": endpoint.get("description") or f"{name} succeeded."}
    headers = ["X-Request-Id"]
    if policy is not None:
        headers += ["RateLimit-Policy", "RateLimit"]
    if endpoint.get("idempotent"):
        headers.append("Idempotent-Replayed")
    success["headers"] = {header: _header_ref(header) for header in headers}
    if status != "204":  # No Content: the chassis sends no body whatever the handler returns
        schemas[f"{name}.response"] = endpoint.get("response") or {"type": "object"}
        success["content"] = {"application/json": {"schema": _ref(f"{name}.response")}}
    responses: dict[str, Any] = {status: success}
    for problem in _problems_of(endpoint):
        responses[problem] = {"$ref": f"#/components/responses/Problem{problem}"}
    operation["responses"] = responses
    operation["security"] = [{"bearer": list(endpoint.get("scopes", []))}]
    if policy is not None:
        operation["x-rate-limit"] = {"policy": endpoint["rate_limit"], **policy}
    return operation


def _description(endpoint: Mapping[str, Any], policy: Mapping[str, Any] | None) -> str:
    """What a client must know to call the operation: token scopes, rate limit, idempotency."""
    scopes = endpoint.get("scopes", [])
    lines = [
        "Needs a bearer token granting "
        + (", ".join(f"`{scope}`" for scope in scopes) if scopes else "no particular scope")
        + "."
    ]
    if policy is not None:
        who = {"client": "client (token)", "ip": "address", "client_ip": "client and address"}
        lines.append(
            f"Rate limit `{endpoint['rate_limit']}`: {policy.get('limit')} requests per "
            f"{policy.get('per')} per {who.get(str(policy.get('key')), policy.get('key'))}; "
            "over it, 429 with Retry-After."
        )
    if endpoint.get("idempotent"):
        lines.append(
            "Idempotent: send an Idempotency-Key header; a retry with the same key and request "
            "gets the first response again (Idempotent-Replayed: true)."
        )
    lines.append("Errors are RFC 9457 problem details (application/problem+json).")
    return "\n\n".join(lines)


def _problems_of(endpoint: Mapping[str, Any]) -> list[str]:
    problems = ["400", "401", "403", "422", "500", "503"]
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
    headers = ["X-Request-Id", *PROBLEM_HEADERS.get(status, [])]
    return {
        "description": description,
        "headers": {header: _header_ref(header) for header in headers},
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


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
