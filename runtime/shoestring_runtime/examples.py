# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Deterministic example values for JSON Schemas, for tests and handler stubs.

`example_for(schema)` returns the same valid instance every time: the first enum value, a fixed
UUID and date, every property of an object (optional ones too, so they get exercised). It covers
the schemas the spec compiles to (compact field types and plain full-form schemas); for anything
it cannot satisfy (an arbitrary `pattern`), give the field an `examples` entry in the spec.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_STRINGS = {
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date-time": "2024-05-01T12:30:00Z",
    "date": "2024-05-01",
    "decimal": "12.50",
    "email": "someone@example.com",
    "uri": "https://example.com/",
}


def example_for(schema: Any, name: str = "") -> Any:
    """A valid instance of `schema`; `name` (the property name) makes strings readable."""
    if schema is True or not isinstance(schema, dict) or not schema:
        return name or "example"
    if "const" in schema:
        return schema["const"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return next((value for value in schema["enum"] if value is not None), schema["enum"][0])
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            choices = [choice for choice in schema[keyword] if _types(choice) != ["null"]]
            return example_for((choices or schema[keyword])[0], name)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return example_for(merged, name)

    types = _types(schema)
    kind = next((t for t in types if t != "null"), types[0] if types else _guess(schema))
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: example_for(sub, key) for key, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_for(schema.get("items", {}), name) for _ in range(count)]
    if kind == "integer":
        return _number(schema, 1)
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _types(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def _guess(schema: dict[str, Any]) -> str:
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _number(schema: dict[str, Any], preferred: float) -> Any:
    value = preferred
    if "minimum" in schema:
        value = max(value, schema["minimum"])
    if "exclusiveMinimum" in schema:
        value = max(value, schema["exclusiveMinimum"] + 1)
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    if "exclusiveMaximum" in schema:
        value = min(value, schema["exclusiveMaximum"] - 1)
    return int(value) if isinstance(preferred, int) else value


def _string(schema: dict[str, Any], name: str) -> str:
    if schema.get("format") in EXAMPLE_STRINGS:
        return EXAMPLE_STRINGS[schema["format"]]
    text = name or "example"
    minimum, maximum = schema.get("minLength", 0), schema.get("maxLength")
    if len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    if maximum is not None:
        text = text[:maximum]
    return text
