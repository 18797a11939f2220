"""Fields: the compact form of a spec (`amount_cents: int`, `note: str?`) compiled to JSON Schema.

Compact types: `int`, `float`, `str`, `bool`, `uuid`, `decimal`, `datetime`, `date`,
`enum[a, b]`, `list[T]` or a one-item YAML list `[T]` (the way to write a list of objects:
`lines: [{sku: str, quantity: int}]`), a nested mapping for an object, and a trailing `?` for an
optional field (it may be omitted or null). The full form `{schema: {...}, optional: true,
description: ...}` takes any JSON Schema (draft 2020-12).

Every object compiles to `{"type": "object", "properties": ..., "required": [...],
"additionalProperties": false}`. String formats carry a `pattern` as well as a `format`, so a
validator enforces their form without the optional format-checker packages; the service also
checks that a `date` or `datetime` exists (no 2026-02-31, no leap second), which no pattern can
say.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .problems import did_you_mean

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 64  # MySQL's limit for a column name
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DATE_PATTERN = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
DATETIME_PATTERN = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
    ":([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
DECIMAL_PATTERN = "^-?[0-9]+(\\.[0-9]+)?$"

SCALARS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "uuid": {"type": "string", "format": "uuid", "pattern": UUID_PATTERN},
    "decimal": {"type": "string", "format": "decimal", "pattern": DECIMAL_PATTERN},
    "datetime": {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN},
    "date": {"type": "string", "format": "date", "pattern": DATE_PATTERN},
}
# Names people reach for from other languages, and the compact type they mean.
_ALIASES = {
    "string": "str", "text": "str", "integer": "int", "long": "int", "number": "float",
    "double": "float", "boolean": "bool", "timestamp": "datetime", "date-time": "datetime",
    "date_time": "datetime", "time": "datetime", "guid": "uuid", "money": "decimal",
    "array": "list[T]", "object": "a nested mapping of fields",
}
_ENUM_VALUE = re.compile(r"^[^\s\[\],?]+( [^\s\[\],?]+)*$")
FULL_FORM_KEYS = {"schema", "optional", "description"}

# The keywords of JSON Schema draft 2020-12; an unknown one in a full-form schema is a typo.
_KEYWORDS = {
    "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$comment", "$defs", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "dependentSchemas", "prefixItems", "items", "contains", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "unevaluatedItems", "unevaluatedProperties", "type",
    "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains",
    "minContains", "maxProperties", "minProperties", "required", "dependentRequired", "title",
    "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "format",
    "contentEncoding", "contentMediaType", "contentSchema",
}
_SUBSCHEMA = {"not", "if", "then", "else", "items", "contains", "additionalProperties",
              "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
_SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_SUBSCHEMA_MAPS = {"properties", "patternProperties", "dependentSchemas", "$defs"}
# References would resolve against the generated document a field schema is embedded in.
_REFUSED_KEYWORDS = {"$ref", "$dynamicRef", "$id", "$schema", "$anchor", "$dynamicAnchor"}


@dataclass(frozen=True)
class FieldIssue:
    """A problem in a field declaration, at `path` relative to the mapping of fields."""

    path: tuple[str | int, ...]
    message: str
    hint: str
    code: str = "bad-field"
    at_key: bool = False


class FieldSpecError(ValueError):
    """Raised by `compile_fields` for a declaration that does not compile; lists every issue."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(_describe(issue) for issue in issues))


def _describe(issue: FieldIssue) -> str:
    where = ".".join(str(step) for step in issue.path)
    text = f"{where}: {issue.message}" if where else issue.message
    return f"{text} ({issue.hint})" if issue.hint else text


def compile_fields(fields: Any) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an object with these fields.

    >>> compile_fields({"n": "int?"})["properties"]["n"]
    {'type': ['integer', 'null']}

    Raises `FieldSpecError` when a declaration is wrong.
    """
    schema, issues = compile_fields_checked(fields)
    if issues:
        raise FieldSpecError(issues)
    return schema


def compile_fields_checked(fields: Any) -> tuple[dict[str, Any], list[FieldIssue]]:
    """Compile a mapping of fields; returns the schema and every issue found (maybe none)."""
    issues: list[FieldIssue] = []
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        issues.append(FieldIssue((), f"fields must be a mapping of name: type, not {_kind(fields)}",
                                 "write one `name: type` per line, e.g. `order_id: uuid`"))
        return _object({}, []), issues
    return _compile_object(fields, (), issues), issues


def _compile_object(fields: dict[str, Any], path: tuple, issues: list[FieldIssue]) -> dict:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, spec in fields.items():
        if len(name) > MAX_NAME:
            issues.append(FieldIssue((*path, name), f"field name '{name[:20]}...' is longer than "
                                     f"{MAX_NAME} characters", "use a shorter name (it may "
                                     "become a database column)", "bad-name", at_key=True))
            continue
        if not FIELD_NAME.match(name):
            fixed = re.sub(r"\W", "_", name)
            fixed = f"_{fixed}" if fixed[:1].isdigit() else fixed
            issues.append(FieldIssue(
                (*path, name), f"field name '{name}' is not an identifier",
                f"use letters, digits and _ (not starting with a digit), e.g. '{fixed}'",
                "bad-name", at_key=True))
            continue
        schema, optional = _compile_field(spec, (*path, name), issues)
        properties[name] = schema
        if not optional:
            required.append(name)
    return _object(properties, required)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def _compile_field(spec: Any, path: tuple, issues: list[FieldIssue]) -> tuple[dict, bool]:
    """The schema of one field and whether it is optional."""
    if isinstance(spec, str):
        try:
            return parse_type(spec)
        except _TypeError as exc:
            issues.append(FieldIssue(path, exc.message, exc.hint))
            return {}, False
    if isinstance(spec, dict):
        if _is_full_form(spec):
            return _compile_full_form(spec, path, issues)
        return _compile_object(spec, path, issues), False
    if isinstance(spec, list):
        if len(spec) != 1:
            issues.append(FieldIssue(
                path, f"a list type is written [T] with exactly one item, not {len(spec)} items",
                "e.g. [str] or [{sku: str, quantity: int}]; for a choice of values use enum[a, b]"))
            return {}, False
        item = spec[0]
        if isinstance(item, str) and item.strip().endswith("?"):
            issues.append(FieldIssue((*path, 0), "list items cannot be optional",
                                     f"write [{item.strip()[:-1].strip()}]"))
            return {}, False
        items, _ = _compile_field(item, (*path, 0), issues)
        return {"type": "array", "items": items}, False
    name = path[-1] if path else "field"
    issues.append(FieldIssue(
        path, f"field '{name}' has no type" if spec is None
        else f"field '{name}' has type {_kind(spec)}, which is not a type",
        "write a compact type such as `str`, `int?`, `uuid`, `enum[a, b]`, `[str]` or a nested "
        "mapping"))
    return {}, False


def _is_full_form(spec: dict[str, Any]) -> bool:
    # A nested object may have a field called `schema`; it is the full form only when `schema`
    # holds a mapping and nothing but the full form's keys sits beside it.
    return isinstance(spec.get("schema"), dict) and set(spec) <= FULL_FORM_KEYS


def _compile_full_form(spec: dict[str, Any], path: tuple, issues: list[FieldIssue]) -> tuple[dict, bool]:
    schema = copy.deepcopy(spec["schema"])
    optional = spec.get("optional", False)
    description = spec.get("description")
    before = len(issues)
    if not isinstance(optional, bool):
        issues.append(FieldIssue((*path, "optional"), "'optional' must be true or false",
                                 "write optional: true"))
    if description is not None and not isinstance(description, str):
        issues.append(FieldIssue((*path, "description"), "'description' must be text",
                                 'quote it: description: "..."'))
    _check_keywords(schema, (*path, "schema"), issues)
    if len(issues) == before:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            issues.append(_schema_issue((*path, "schema", *exc.path), exc))
    if len(issues) > before:
        return {}, False
    if optional is True:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if description:
        schema["description"] = description
    return schema, optional is True


def _schema_issue(path: tuple, error: SchemaError) -> FieldIssue:
    """Say what is wrong in a full-form schema, with the right spelling of a misspelt type."""
    if path[-1] == "type" and isinstance(error.instance, str):
        types = ["string", "integer", "number", "boolean", "object", "array", "null"]
        match = did_you_mean(error.instance, types)
        return FieldIssue(path, f"'{error.instance}' is not a JSON Schema type",
                          f"did you mean '{match}'?" if match else "types: " + ", ".join(types),
                          "bad-schema")
    return FieldIssue(path, f"invalid JSON Schema: {error.message}",
                      "see https://json-schema.org/draft/2020-12 for the keyword's form",
                      "bad-schema")


def _check_keywords(schema: Any, path: tuple, issues: list[FieldIssue]) -> None:
    """Refuse typos (`maxLenght`) and references in a full-form schema, recursively."""
    if not isinstance(schema, dict):
        return  # check_schema reports non-schemas; booleans are valid schemas
    for key, value in schema.items():
        where = (*path, key)
        if key in _REFUSED_KEYWORDS:
            issues.append(FieldIssue(
                where, f"'{key}' is not supported in a field schema",
                "inline the schema: field schemas are embedded in generated documents where "
                "references and ids would not resolve", "bad-schema", at_key=True))
        elif key not in _KEYWORDS and not key.startswith("x-"):
            match = did_you_mean(key, _KEYWORDS)
            issues.append(FieldIssue(
                where, f"'{key}' is not a JSON Schema keyword",
                f"did you mean '{match}'?" if match else "custom annotations start with 'x-'",
                "bad-schema", at_key=True))
        elif key in _SUBSCHEMA:
            _check_keywords(value, where, issues)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            for index, item in enumerate(value):
                _check_keywords(item, (*where, index), issues)
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, item in value.items():
                _check_keywords(item, (*where, name), issues)


class _TypeError(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


_GENERIC = re.compile(r"^(\w+)\s*\[(.*)\]$", re.DOTALL)


def parse_type(text: str) -> tuple[dict[str, Any], bool]:
    """Compile one compact type (`int`, `str?`, `list[uuid]`, `enum[a, b]`); returns (schema, optional).

    Optional fields accept null as well: their `type` gains "null" (and their `enum`, None).
    """
    source = text.strip()
    optional = source.endswith("?")
    if optional:
        source = source[:-1].rstrip()
    schema = _parse_base(source, text)
    if optional:
        schema = dict(schema)
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema, optional


def _parse_base(source: str, original: str) -> dict[str, Any]:
    if source in SCALARS:
        return dict(SCALARS[source])
    generic = _GENERIC.match(source)
    if generic:
        name, inner = generic.group(1), generic.group(2).strip()
        if name == "list":
            if inner.endswith("?"):
                raise _TypeError("list items cannot be optional",
                                 f"write list[{inner[:-1].strip()}] or list[{inner[:-1].strip()}]?")
            if not inner:
                raise _TypeError("list[] needs an item type", "e.g. list[str]")
            return {"type": "array", "items": _parse_base(inner, original)}
        if name == "enum":
            return {"type": "string", "enum": _enum_values(inner)}
        hint = f"did you mean '{did_you_mean(name, ['list', 'enum'])}[...]'?" \
            if did_you_mean(name, ["list", "enum"]) else "only list[T] and enum[a, b] take brackets"
        raise _TypeError(f"unknown type '{name}[...]'", hint)
    if not source:
        raise _TypeError("the type is empty", "write a type such as str or int?")
    if "?" in source:
        raise _TypeError(f"'{original.strip()}' is not a type", "'?' goes at the very end: str?")
    known = [*SCALARS, "list", "enum"]
    alias = _ALIASES.get(source.lower())
    match = did_you_mean(source, known)
    if alias:
        hint = f"did you mean '{alias}'?"
    elif match:
        hint = f"did you mean '{match}'?"
    else:
        hint = "types are " + ", ".join(SCALARS) + ", enum[a, b], list[T], [T] or a nested mapping"
    raise _TypeError(f"unknown type '{source}'", hint)


def _enum_values(inner: str) -> list[str]:
    values = [value.strip() for value in inner.split(",")]
    if not inner or any(not value for value in values):
        raise _TypeError("enum[...] needs values separated by commas, none empty",
                         "e.g. enum[pending, paid]")
    for value in values:
        if not _ENUM_VALUE.match(value):
            raise _TypeError(f"enum value '{value}' holds brackets, '?' or a comma",
                             "use plain words; for other values use the full form with a schema")
    duplicates = sorted({value for value in values if values.count(value) > 1})
    if duplicates:
        raise _TypeError(f"enum repeats {', '.join(repr(value) for value in duplicates)}",
                         "list each value once")
    return values


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text '{value}'"
    if isinstance(value, dict):
        return "a mapping"
    return "empty"
