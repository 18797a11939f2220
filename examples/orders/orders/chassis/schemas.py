"""The generated description of this service (`<package>/_generated/`), loaded and checked.

`service.json` is the spec model written by `shoestring generate` from `service.yaml`: the
endpoint table with compiled request/response JSON Schemas, messages, subscriptions and the
settings the spec adds. This module reads it once and validates data against its schemas.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SERVICE_ROOT = PACKAGE_DIR.parent
GENERATED_DIR = PACKAGE_DIR / "_generated"


class GeneratedCodeMissing(RuntimeError):
    """`_generated/` is absent or unreadable: the generator has not run in this service."""


@functools.cache
def load_service(path: Path = GENERATED_DIR / "service.json") -> dict[str, Any]:
    """The spec model from `_generated/service.json` (read once per process)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GeneratedCodeMissing(
            f"{path} is missing: run `shoestring generate` in {SERVICE_ROOT} "
            "(it writes the endpoint table and schemas from service.yaml)"
        ) from None
    except (OSError, ValueError) as exc:
        raise GeneratedCodeMissing(
            f"{path} cannot be read ({exc}): run `shoestring generate` to rewrite it"
        ) from exc


@dataclass(frozen=True)
class Endpoint:
    """One row of the endpoint table."""

    name: str
    method: str
    path: str
    status: int
    request: dict[str, Any]
    response: dict[str, Any]
    description: str = ""
    scopes: tuple[str, ...] = ()
    rate_limit: str | None = None
    idempotent: bool = False
    audit: bool = False
    path_params: tuple[str, ...] = ()
    request_validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    response_validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: validators are built once here rather than per request.
        object.__setattr__(self, "request_validator", Draft202012Validator(self.request))
        object.__setattr__(self, "response_validator", Draft202012Validator(self.response))

    @classmethod
    def from_model(cls, model: dict[str, Any]) -> Endpoint:
        return cls(
            name=model["name"],
            method=model["method"].upper(),
            path=model["path"],
            status=int(model.get("status", 200)),
            request=model.get("request") or {"type": "object"},
            response=model.get("response") or {"type": "object"},
            description=model.get("description") or "",
            scopes=tuple(model.get("scopes") or ()),
            rate_limit=model.get("rate_limit"),
            idempotent=bool(model.get("idempotent", False)),
            audit=bool(model.get("audit", False)),
            path_params=tuple(model.get("path_params") or ()),
        )

    @property
    def flask_rule(self) -> str:
        """The path as a Flask rule: `/v1/orders/{order_id}` -> `/v1/orders/<order_id>`.

        Parameters use the plain string converter whatever their type, so that a malformed value
        reaches validation (422 naming the field) instead of falling through to 404.
        """
        rule = self.path
        for name in self.path_params:
            rule = rule.replace("{" + name + "}", f"<{name}>")
        return rule

    @property
    def has_body(self) -> bool:
        """Whether request data comes from a JSON body (else from the query string)."""
        return self.method not in ("GET", "DELETE", "HEAD")


def endpoints(service: dict[str, Any] | None = None) -> list[Endpoint]:
    """The endpoint table, in spec order."""
    service = load_service() if service is None else service
    return [Endpoint.from_model(model) for model in service.get("endpoints", [])]


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 pointer to a location in a document: ("lines", 0, "sku") -> /lines/0/sku."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def validation_errors(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    """Every way `instance` breaks the schema, as {"pointer", "detail"}, one entry per field.

    Missing and unexpected properties point at the field itself (/customer_id), not at the
    object that lacks or carries it, so a client can attach each message to its input.
    """
    found: list[dict[str, str]] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        found.extend(_describe(error))
    unique = {(entry["pointer"], entry["detail"]): entry for entry in found}
    return sorted(unique.values(), key=lambda entry: entry["pointer"])


def _describe(error: ValidationError) -> list[dict[str, str]]:
    where = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        return [
            {"pointer": json_pointer([*where, name]), "detail": "is required"}
            for name in error.validator_value
            if name not in instance
        ]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        allowed = ", ".join(sorted(known)) or "none"
        return [
            {
                "pointer": json_pointer([*where, name]),
                "detail": f"is not a known field (known fields: {allowed})",
            }
            for name in sorted(set(instance) - known)
        ]
    return [{"pointer": json_pointer(where), "detail": _friendly(error)}]


_FORMAT_EXAMPLES = {
    "uuid": "a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date-time": "an RFC 3339 date-time such as 2024-05-01T12:30:00Z",
    "date": "a date such as 2024-05-01",
    "decimal": 'a decimal number written as a string, such as "12.50"',
}


def _friendly(error: ValidationError) -> str:
    """jsonschema's message, except where it would quote a regular expression at the reader."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "pattern" and schema.get("format") in _FORMAT_EXAMPLES:
        return f"must be {_FORMAT_EXAMPLES[schema['format']]}"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(choice) for choice in error.validator_value)
        return f"must be one of {choices}"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be of type {expected}, not {json.dumps(error.instance)}"
    return error.message


def to_jsonable(value: Any) -> Any:
    """A handler's return value with Python types turned into their JSON forms, so handlers may
    return UUIDs, datetimes (naive ones are UTC) and Decimals as they come from the database."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value
