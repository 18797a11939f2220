"""The quick schema check agrees with jsonschema wherever it answers: it must never call an
invalid value valid (requests, responses and messages are checked with it first)."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from support import chassis_module

schemas_module = chassis_module("schemas")

VALUES = [None, True, False, 0, 1, -1, 1.0, 1.5, 2, 10, 10.5, 11, "", "a", "ab", "abc", "é" * 3,
          "🙂🙂", [], ["a"], {}, {"a": 1}, {"a": "x"}, {"a": None}]

SCHEMAS = [
    {"type": "string", "minLength": 2},
    {"type": "string", "maxLength": 2},
    {"minLength": 1, "maxLength": 3},
    {"type": "integer", "minimum": 0, "maximum": 10},
    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10.5},
    {"minimum": 1},
    {"enum": ["a", "b", None]},
    {"type": ["string", "null"], "enum": ["a", None]},
    {"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "null"}]},
    {"anyOf": [{"type": "integer", "minimum": 2}, {"type": "string", "minLength": 3}]},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
     "required": ["a"], "additionalProperties": False},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda schema: str(sorted(schema)))
def test_the_quick_check_answers_as_jsonschema_does(schema):
    quick = schemas_module.compile_check(schema)
    assert quick is not None, schema
    full = Draft202012Validator(schema)
    for value in VALUES:
        assert quick(value) == full.is_valid(value), (schema, value)


def test_keywords_it_does_not_know_leave_the_answer_to_jsonschema():
    for schema in ({"type": "number", "multipleOf": 2}, {"enum": [1, 2]}, {"minimum": True},
                   {"anyOf": []}, {"oneOf": [{"type": "string"}]}):
        assert schemas_module.compile_check(schema) is None, schema
