# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Errors as RFC 9457 problem details (`application/problem+json`).

Every error this service returns has this shape, whatever went wrong:

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "the request does not match the schema of create_order",
     "instance": "/v1/orders", "request_id": "...",
     "errors": [{"pointer": "/amount_cents", "detail": "is required"}]}

`detail` says what the client can do about it; nothing internal (tracebacks, SQL) ever appears.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Response, g, json, request

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in request handling to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _title(status)
        self.type = type
        self.errors = errors
        self.headers = headers or {}
        self.extensions = extensions

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if request:
            body["instance"] = request.path
        request_id = g.get("request_id") if g else None
        if request_id:
            body["request_id"] = request_id
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


# RFC 9110's names, which older Pythons' http.HTTPStatus does not have yet.
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def _title(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(problem: Problem) -> Response:
    """The HTTP response for a problem."""
    response = Response(json.dumps(problem.to_dict()), status=problem.status, mimetype=PROBLEM_JSON)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def problem(status: int, detail: str, **kwargs: Any) -> Response:
    """Shortcut: `return problem(404, "no order 42")`."""
    return problem_response(Problem(status, detail, **kwargs))
