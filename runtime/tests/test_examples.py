"""example_for builds a valid instance of every schema a spec compiles to (the shop's among
them), the same each time."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from shoestring_runtime.examples import example_for

from .shop import SERVICE

UUID = {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F-]{36}$"}
SCHEMAS = {
    "int": {"type": "integer"},
    "optional float": {"type": ["number", "null"]},
    "bool": {"type": "boolean"},
    "uuid": UUID,
    "datetime": {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-.*Z$"},
    "decimal": {"type": "string", "format": "decimal", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"},
    "optional enum": {"type": ["string", "null"], "enum": ["a", "b", None]},
    "full-form optional": {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "null"}]},
    "bounded string": {"type": "string", "minLength": 12, "maxLength": 14},
    "list of objects": {
        "type": "array",
        "minItems": 2,
        "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
            "required": ["sku", "quantity"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=list(SCHEMAS))
def test_the_example_is_valid_and_deterministic(schema):
    example = example_for(schema)
    assert list(Draft202012Validator(schema).iter_errors(example)) == []
    assert example_for(schema) == example


def test_optional_fields_get_a_value_not_null():
    assert example_for({"type": ["integer", "null"]}) == 1
    assert example_for({"anyOf": [{"type": "string"}, {"type": "null"}]}, "note") == "note"


def test_every_schema_of_the_shop_has_a_valid_example():
    service = SERVICE.model
    schemas = [e["request"] for e in service.get("endpoints", [])]
    schemas += [e["response"] for e in service.get("endpoints", [])]
    for message in service.get("messages", {}).values():
        schemas += [version["schema"] for version in message.get("versions", {}).values()]
    schemas += [subscription["schema"] for subscription in service.get("subscriptions", [])]
    for schema in schemas:
        assert list(Draft202012Validator(schema).iter_errors(example_for(schema))) == []
