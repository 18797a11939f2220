"""Deterministic example values for compiled schemas.

Handler stubs return `example_for(response_schema)`, so a freshly generated service answers with
valid data, and the tests of a generated service call each endpoint with
`example_for(request_schema)`. Every compact type yields a value its schema accepts; for a
full-form schema the example is best effort (its `examples`, `const`, `default` or `enum` first),
and the spec checks refuse a schema whose example does not validate.
"""

from __future__ import annotations

import copy
from typing import Any

EXAMPLE_UUID = "00000000-0000-4000-8000-000000000000"
EXAMPLE_DATETIME = "2026-01-01T00:00:00Z"
EXAMPLE_DATE = "2026-01-01"
# Examples stay small: a schema demanding more (minItems: 1000000) gets a short example that
# fails validation, and the spec check asks for an explicit `examples` entry instead.
_MAX_REPEAT = 1000
_FORMATS = {
    "uuid": EXAMPLE_UUID,
    "date-time": EXAMPLE_DATETIME,
    "date": EXAMPLE_DATE,
    "decimal": "1.00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "time": "00:00:00Z",
}


def example_for(schema: Any) -> Any:
    """A value that satisfies `schema`: first enum value, 1 for integers, one list item,
    every property of an object (optional ones too), fixed values for uuid and dates."""
    if not isinstance(schema, dict):
        return {}  # `true` (or a malformed schema): anything goes
    for keyword in ("const", "default"):
        if keyword in schema:
            return copy.deepcopy(schema[keyword])
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return copy.deepcopy(schema["examples"][0])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        values = [value for value in schema["enum"] if value is not None] or schema["enum"]
        return copy.deepcopy(values[0])
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            chosen = next((option for option in options if not _is_null(option)), options[0])
            return example_for(chosen)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        return example_for(schema["allOf"][0])
    kind = _first_type(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {name: example_for(sub) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        wanted = schema.get("minItems", 1)
        count = min(max(1, wanted if isinstance(wanted, int) else 1), _MAX_REPEAT)
        if items is None or items is True:
            return []
        return [example_for(items) for _ in range(count)]
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return int(_number(schema, 1))
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return {}


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _first_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
    return kind if isinstance(kind, str) else None


def _string(schema: dict[str, Any]) -> str:
    value = _FORMATS.get(schema.get("format", ""), "string")
    minimum = schema.get("minLength")
    maximum = schema.get("maxLength")
    if isinstance(minimum, int) and len(value) < minimum:
        value = value + "x" * (min(minimum, _MAX_REPEAT) - len(value))
    if isinstance(maximum, int) and len(value) > maximum:
        value = value[:maximum]
    return value


def _number(schema: dict[str, Any], preferred: float) -> float:
    value = preferred
    low = schema.get("minimum")
    if isinstance(low, (int, float)) and value < low:
        value = low
    low = schema.get("exclusiveMinimum")
    if isinstance(low, (int, float)) and value <= low:
        value = low + 1
    high = schema.get("maximum")
    if isinstance(high, (int, float)) and value > high:
        value = high
    high = schema.get("exclusiveMaximum")
    if isinstance(high, (int, float)) and value >= high:
        value = high - 1
    return value
