"""The compact field form compiles to JSON Schema; `example_for` builds values those schemas accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES
from jsonschema import Draft202012Validator
from shoestring.spec import FieldSpecError, compile_fields, example_for, load_spec
from shoestring.spec.fields import (
    DATE_PATTERN,
    DATETIME_PATTERN,
    DECIMAL_PATTERN,
    UUID_PATTERN,
    compile_fields_checked,
)

SPECS = Path(__file__).parent / "specs"


def field(spec: object) -> dict:
    return compile_fields({"f": spec})["properties"]["f"]


def required(spec: object) -> bool:
    return compile_fields({"f": spec})["required"] == ["f"]


@pytest.mark.parametrize(
    ("compact", "schema"),
    [
        ("int", {"type": "integer"}),
        ("float", {"type": "number"}),
        ("str", {"type": "string"}),
        ("bool", {"type": "boolean"}),
        ("uuid", {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}),
        ("decimal", {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN}),
        ("datetime", {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}),
        ("date", {"type": "string", "format": "date", "pattern": DATE_PATTERN}),
        ("enum[a, b]", {"type": "string", "enum": ["a", "b"]}),
        ("enum[ EUR,USD , GBP ]", {"type": "string", "enum": ["EUR", "USD", "GBP"]}),
        ("list[int]", {"type": "array", "items": {"type": "integer"}}),
        ("list[list[str]]", {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}),
        ("list[enum[x, y]]", {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}}),
        ("  int  ", {"type": "integer"}),
    ],
)
def test_compact_type_compiles(compact: str, schema: dict) -> None:
    assert field(compact) == schema
    assert required(compact)


def test_trailing_question_mark_makes_a_field_optional_and_nullable() -> None:
    assert field("int?") == {"type": ["integer", "null"]}
    assert not required("int?")
    assert field("enum[a, b]?") == {"type": ["string", "null"], "enum": ["a", "b", None]}
    assert field("list[uuid]?")["type"] == ["array", "null"]
    assert field("uuid?")["pattern"] == UUID_PATTERN


def test_one_item_yaml_list_is_a_list_of_that_item() -> None:
    assert field(["str"]) == {"type": "array", "items": {"type": "string"}}
    assert field([{"sku": "str", "quantity": "int"}]) == {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
            "required": ["sku", "quantity"],
            "additionalProperties": False,
        },
    }


def test_nested_mapping_is_a_closed_object_with_required_fields() -> None:
    assert field({"street": "str", "zip": "str?"}) == {
        "type": "object",
        "properties": {"street": {"type": "string"}, "zip": {"type": ["string", "null"]}},
        "required": ["street"],
        "additionalProperties": False,
    }


def test_empty_or_missing_fields_compile_to_an_empty_closed_object() -> None:
    empty = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    assert compile_fields({}) == empty
    assert compile_fields(None) == empty


def test_full_form_takes_any_json_schema() -> None:
    schema = {"type": "string", "minLength": 2}
    assert field({"schema": schema}) == schema
    assert required({"schema": schema})
    optional = field({"schema": schema, "optional": True, "description": "Two or more."})
    assert optional == {"anyOf": [schema, {"type": "null"}], "description": "Two or more."}
    assert not required({"schema": schema, "optional": True})


def test_a_nested_field_called_schema_is_not_the_full_form() -> None:
    assert field({"schema": "str", "name": "str"})["properties"] == {
        "schema": {"type": "string"}, "name": {"type": "string"}}


def test_string_formats_are_enforced_by_pattern_without_format_checkers() -> None:
    schema = compile_fields({"id": "uuid", "at": "datetime", "on": "date", "amount": "decimal"})
    validator = Draft202012Validator(schema)  # no format_checker: patterns must do the work
    good = {"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "at": "2026-03-04T05:06:07.5+01:00",
            "on": "2026-12-31", "amount": "-12.50"}
    assert validator.is_valid(good)
    for key, bad in (("id", "not-a-uuid"), ("at", "2026-03-04"), ("on", "2026-13-01"),
                     ("amount", "1e5"), ("amount", "12.")):
        assert not validator.is_valid({**good, key: bad}), (key, bad)


@pytest.mark.parametrize(
    ("spec", "message", "hint"),
    [
        ("integer", "unknown type 'integer'", "did you mean 'int'?"),
        ("strng", "unknown type 'strng'", "did you mean 'str'?"),
        ("Bool", "unknown type 'Bool'", "did you mean 'bool'?"),
        ("timestamp", "unknown type 'timestamp'", "did you mean 'datetime'?"),
        ("zzz", "unknown type 'zzz'", "types are int, float"),
        ("lst[int]", "unknown type 'lst[...]'", "did you mean 'list[...]'?"),
        ("map[str]", "unknown type 'map[...]'", "only list[T] and enum[a, b]"),
        ("enum[]", "needs values", "enum[pending, paid]"),
        ("enum[a,,b]", "needs values", ""),
        ("enum[a, a]", "enum repeats 'a'", "once"),
        ("list[]", "list[] needs an item type", "list[str]"),
        ("list[int?]", "list items cannot be optional", "list[int]?"),
        ("str??", "'str??' is not a type", "at the very end"),
        ("", "the type is empty", ""),
        (None, "field 'f' has no type", "compact type"),
        (5, "has type the number 5", ""),
        (True, "has type true", ""),
        ([], "exactly one item, not 0 items", ""),
        (["int", "str"], "exactly one item, not 2 items", "enum[a, b]"),
        (["int?"], "list items cannot be optional", "[int]"),
    ],
)
def test_bad_declaration_is_explained(spec: object, message: str, hint: str) -> None:
    _, issues = compile_fields_checked({"f": spec})
    assert len(issues) == 1
    assert message in issues[0].message
    assert hint in issues[0].hint
    with pytest.raises(FieldSpecError, match="f"):
        compile_fields({"f": spec})


def test_every_bad_field_is_reported_with_its_path() -> None:
    _, issues = compile_fields_checked(
        {"ok": "int", "bad-name": "int", "nested": {"deep": [{"x": "nope"}]}, "y": "flot"})
    assert [(issue.path, issue.at_key) for issue in issues] == [
        (("bad-name",), True),
        (("nested", "deep", 0, "x"), False),
        (("y",), False),
    ]


@pytest.mark.parametrize(
    ("schema", "path", "message", "hint"),
    [
        ({"type": "strin"}, ("f", "schema", "type"), "'strin' is not a JSON Schema type",
         "did you mean 'string'?"),
        ({"type": "string", "maxLenght": 3}, ("f", "schema", "maxLenght"),
         "'maxLenght' is not a JSON Schema keyword", "did you mean 'maxLength'?"),
        ({"type": "object", "properties": {"a": {"minimun": 1}}},
         ("f", "schema", "properties", "a", "minimun"), "not a JSON Schema keyword",
         "did you mean 'minimum'?"),
        ({"$ref": "#/x"}, ("f", "schema", "$ref"), "'$ref' is not supported", "inline"),
        ({"type": "string", "minLength": -1}, ("f", "schema", "minLength"),
         "invalid JSON Schema", "json-schema.org"),
        ({"type": "string", "pattern": "["}, ("f", "schema", "pattern"), "is not a 'regex'", ""),
    ],
)
def test_full_form_schema_is_checked_with_a_located_error(
        schema: dict, path: tuple, message: str, hint: str) -> None:
    _, issues = compile_fields_checked({"f": {"schema": schema}})
    assert [issue.path for issue in issues] == [path]
    assert message in issues[0].message
    assert hint in issues[0].hint


def test_full_form_allows_x_annotations() -> None:
    assert field({"schema": {"type": "string", "x-label": "Name"}})["x-label"] == "Name"


def test_full_form_optional_must_be_a_boolean() -> None:
    _, issues = compile_fields_checked({"f": {"schema": {"type": "string"}, "optional": "yes"}})
    assert issues[0].path == ("f", "optional")


# -- example_for ---------------------------------------------------------------------------------


def test_example_values_are_fixed_and_readable() -> None:
    schema = compile_fields({
        "id": "uuid", "at": "datetime", "on": "date", "amount": "decimal", "n": "int",
        "x": "float", "ok": "bool", "name": "str", "state": "enum[pending, paid]",
        "tags": "list[str]", "note": "str?", "kind": "enum[a, b]?",
        "lines": [{"sku": "str"}],
    })
    assert example_for(schema) == {
        "id": "00000000-0000-4000-8000-000000000000", "at": "2026-01-01T00:00:00Z",
        "on": "2026-01-01", "amount": "1.00", "n": 1, "x": 1.5, "ok": True, "name": "string",
        "state": "pending", "tags": ["string"], "note": "string", "kind": "a",
        "lines": [{"sku": "string"}],
    }
    assert example_for(schema) == example_for(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 10, "maximum": 20},
        {"type": "integer", "exclusiveMaximum": 0},
        {"type": "number", "exclusiveMinimum": 5},
        {"type": "string", "minLength": 10},
        {"type": "string", "maxLength": 3},
        {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["ABC"]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 3},
        {"const": "fixed"},
        {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "string", "format": "email"},
        {},
    ],
)
def test_example_satisfies_constrained_full_form_schemas(schema: dict) -> None:
    assert Draft202012Validator(schema).is_valid(example_for(schema))


@pytest.mark.parametrize(
    "spec",
    [*sorted(EXAMPLES.glob("*/service.yaml")), SPECS / "valid" / "everything.yaml"],
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_example_for_every_schema_of_a_valid_spec_validates(spec: Path) -> None:
    model = load_spec(spec).spec
    assert model is not None
    schemas = [version["schema"] for message in model["messages"].values()
               for version in message["versions"].values()]
    schemas += [subscription["schema"] for subscription in model["subscriptions"]]
    schemas += [endpoint[part] for endpoint in model["endpoints"]
                for part in ("request", "response")]
    assert schemas
    for schema in schemas:
        Draft202012Validator.check_schema(schema)
        example = example_for(schema)
        errors = [error.message for error in Draft202012Validator(schema).iter_errors(example)]
        assert errors == [], (schema, example)
