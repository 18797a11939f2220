"""Checking a spec's shape against schema.json, in words a spec author can act on.

The JSON Schema is the single description of the format (editors use it too); this module runs
it and rewrites each error: located at the offending key or value, naming the endpoint or message
it belongs to, with a did-you-mean or an example of the right form. Fields (`fields:`,
`request:`, `response:`) are left to `fields.py`, which knows the compact type syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .document import Node, locate
from .problems import Problem, suggestion

_SECTIONS = {
    "messages": "message",
    "rate_limits": "rate limit",
    "retry_policies": "retry policy",
    "peers": "peer",
}
_MISSING_HINTS = {
    ("shoestring",): "start the file with `shoestring: 1` (the spec format version)",
    ("service",): "add `service: {name: my-service, description: ...}`",
    ("name",): "add `name: ...`",
    ("method",): "add `method: GET` (or POST, PUT, PATCH, DELETE)",
    ("path",): "add `path: /v1/...`",
    ("versions",): "add `versions: {1: {fields: {...}}}`",
    ("fields",): "add `fields: {...}` (use `fields: {}` for a message without data)",
    ("message",): "add `message: <type>`, e.g. message: payment.captured",
    ("version",): "add `version: 1`",
    ("from",): "add `from: <peer>`, the peer that publishes the message",
    ("retry",): "add `retry: <policy>`, a name under retry_policies:",
    ("limit",): "add `limit: 60` (requests per window)",
    ("per",): "add `per: minute` (second, minute, hour or day)",
    ("key",): "add `key: client` (client, ip or client_ip)",
    ("max_attempts",): "add `max_attempts: 10`",
    ("base_seconds",): "add `base_seconds: 2`",
    ("max_seconds",): "add `max_seconds: 3600`",
    ("url_env",): "add `url_env: PEER_URL`, the setting that holds the peer's base URL",
}
_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of service.yaml, as shipped in the package."""
    return json.loads(schema_text())


@cache
def schema_text() -> str:
    """schema.json exactly as shipped (what `shoestring schema` prints)."""
    return resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")


def is_fields_path(path: list[str | int] | tuple) -> bool:
    """True for a path at or inside a mapping of fields (checked by fields.py instead)."""
    steps = list(path)
    return (
        (len(steps) >= 5 and steps[0] == "messages" and steps[2] == "versions"
         and steps[4] == "fields")
        or (len(steps) >= 3 and steps[0] == "subscriptions" and steps[2] == "fields")
        or (len(steps) >= 3 and steps[0] == "endpoints" and steps[2] in ("request", "response"))
        or (len(steps) >= 5 and steps[0] == "peers" and steps[2] == "calls"
            and steps[4] in ("request", "response"))
    )


def check_structure(file: str, root: Node) -> list[Problem]:
    """Every way the document departs from schema.json, one problem each, fields excepted."""
    validator = Draft202012Validator(schema())
    problems: list[Problem] = []
    seen: set[tuple[int, int, str]] = set()
    for error in validator.iter_errors(root.value):
        for problem in _translate(file, root, error):
            key = (problem.line, problem.col, problem.message)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return problems


def describe(root: Node, path: list[str | int] | tuple) -> tuple[str, list[str | int]]:
    """Name the spec entry a path is in (`endpoint 'create_order'`) and the steps left inside it."""
    steps = list(path)
    data = root.value
    if not steps:
        return "the spec", []
    head = steps[0]
    if head in _SECTIONS and len(steps) >= 2:
        name = f"{_SECTIONS[head]} '{steps[1]}'"
        if head == "messages" and len(steps) >= 4 and steps[2] == "versions":
            return f"{name} version {steps[3]}", steps[4:]
        if head == "peers" and len(steps) >= 4 and steps[2] == "calls":
            return f"call '{steps[3]}' to {name}", steps[4:]
        return name, steps[2:]
    if head in ("endpoints", "subscriptions") and len(steps) >= 2 and isinstance(steps[1], int):
        entries = data.get(head) if isinstance(data, dict) else None
        entry = entries[steps[1]] if isinstance(entries, list) and steps[1] < len(entries) else {}
        entry = entry if isinstance(entry, dict) else {}
        if head == "endpoints":
            label = entry.get("name")
            name = f"endpoint '{label}'" if isinstance(label, str) else f"endpoint #{steps[1] + 1}"
        else:
            label, version = entry.get("message"), entry.get("version")
            name = (f"subscription to '{label}'" if isinstance(label, str)
                    else f"subscription #{steps[1] + 1}")
            if isinstance(label, str) and isinstance(version, int) \
                    and not isinstance(version, bool):
                name += f" v{version}"
        return name, steps[2:]
    if head == "service":
        return "service", steps[1:]
    return "the spec", steps


def _label(steps: list[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _subject(root: Node, path: list[str | int]) -> str:
    where, rest = describe(root, path)
    if not rest:
        return where
    if where == "the spec":
        return f"'{_label(rest)}'"
    return f"{where}: {_label(rest)}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "empty"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text '{value}'" if len(value) <= 60 else f"the text '{value[:57]}...'"
    return str(value)


def _type_hint(expected: list[str], value: Any) -> str:
    if "integer" in expected or "number" in expected:
        if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return f"remove the quotes: write {value.strip()}, not '{value}'"
        if isinstance(value, (float, bool)) and "integer" in expected:
            return "write a whole number, e.g. 1"
    if "object" in expected and isinstance(value, list):
        return "write `key: value` entries, not a list of '- ' items"
    if "array" in expected:
        if isinstance(value, str):
            return f"write a list: [{value}]"
        if isinstance(value, dict):
            return "write a list of '- ' items, not `key: value` entries"
    if "string" in expected and not isinstance(value, (dict, list)):
        return "quote the value to make it text"
    if "boolean" in expected:
        return "write true or false"
    fallbacks = {
        "object": "write indented `key: value` lines under it (check the indentation)",
        "array": "write a list: [a, b], or one '- item' per line",
        "string": "write text on the same line; quote it if it holds ': ', ' #' or brackets",
        "integer": "write a whole number, e.g. 1",
        "number": "write a number, e.g. 2",
    }
    return next((fallbacks[name] for name in expected if name in fallbacks), "")


def _translate(file: str, root: Node, error: ValidationError) -> Iterator[Problem]:
    path = list(error.absolute_path)
    if is_fields_path(path):
        return
    kind = error.validator
    value = error.instance
    subject = _subject(root, path)

    def at(where: list[str | int], message: str, hint: str, code: str, *, at_key: bool = False):
        line, col = locate(root, where, at_key=at_key)
        return Problem(file, line, col, message, hint, code)

    if "propertyNames" in error.schema_path:
        # The key itself is wrong: error.instance is the key and the path is its mapping.
        section = path[0] if path else ""
        what = "version" if path[-1:] == ["versions"] else _SECTIONS.get(str(section), "key")
        hint = _sentence(error.schema.get("patternErrorMessage", ""))
        if what == "version":
            message = f"{describe(root, path)[0]} has version '{value}', not a positive whole number"
        else:
            message = f"{what} name '{value}' is not valid"
        yield at([*path, value], message, hint, "bad-name", at_key=True)
    elif kind == "additionalProperties" and isinstance(value, dict):
        allowed = list(error.schema.get("properties", {}))
        patterns = [re.compile(pattern) for pattern in error.schema.get("patternProperties", {})]
        where = "at the top of the spec" if not path else f"in {describe(root, path)[0]}"
        if path and describe(root, path)[1]:
            where = f"in {subject}"
        for key in value:
            if key not in allowed and not any(pattern.search(key) for pattern in patterns):
                hint = suggestion(key, allowed, fallback="allowed keys: " + ", ".join(allowed))
                yield at([*path, key], f"unknown key '{key}' {where}", hint, "unknown-key",
                         at_key=True)
    elif kind == "required" and isinstance(value, dict):
        for name in error.validator_value:
            if name not in value:
                hint = _MISSING_HINTS.get((name,), f"add `{name}: ...`")
                owner = "the spec" if not path else subject
                yield at(path, f"{owner} is missing '{name}'", hint, "missing-key")
    elif kind == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) \
            else [error.validator_value]
        words = " or ".join(_TYPE_WORDS.get(name, name) for name in expected if name != "null")
        if not path:
            yield at(path, f"the spec must be a mapping of keys (shoestring:, service:, ...), "
                           f"not {_show(value)}", "start with `shoestring: 1`", "wrong-type")
        else:
            yield at(path, f"{subject} must be {words}, not {_show(value)}",
                     _type_hint(expected, value), "wrong-type")
    elif kind == "const":
        hint = "this generator reads spec format 1: write `shoestring: 1`" \
            if path == ["shoestring"] else ""
        yield at(path, f"{subject} must be {json.dumps(error.validator_value)}, not {_show(value)}",
                 hint, "wrong-value")
    elif kind == "enum":
        choices = [str(choice) for choice in error.validator_value]
        fallback = f"write one of them, e.g. {choices[0]}"
        hint = suggestion(value, choices, fallback=fallback) if isinstance(value, str) \
            else fallback
        yield at(path, f"{subject} must be one of {', '.join(choices)}, not {_show(value)}",
                 hint, "wrong-value")
    elif kind == "pattern":
        hint = _sentence(error.schema.get("patternErrorMessage", ""))
        message = f"{subject} '{value}' is not valid"
        if len(path) == 3 and path[0] == "endpoints" and path[2] == "path":
            message = f"{subject} '{value}' {path_problem(str(value))}"
        yield at(path, message, hint, "bad-name" if path[-1:] != ["path"] else "bad-path")
    elif kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = error.validator_value
        words = {"minimum": f"at least {bound}", "exclusiveMinimum": f"more than {bound}",
                 "maximum": f"at most {bound}", "exclusiveMaximum": f"less than {bound}"}[kind]
        hint = "versions start at 1" if path[-1:] == ["version"] else ""
        if path[-1:] == ["status"]:
            hint = "a success status: 200, 201, 202 or 204"
        yield at(path, f"{subject} must be {words}, not {_show(value)}", hint, "wrong-value")
    elif kind == "minProperties":
        hint = "add `1: {fields: {...}}`" if path[-1:] == ["versions"] else ""
        yield at(path, f"{subject} must not be empty", hint, "wrong-value")
    elif kind == "uniqueItems":
        yield at(path, f"{subject} lists the same entry twice", "list each entry once",
                 "duplicate")
    elif kind == "maxLength":
        yield at(path, f"{subject} is longer than {error.validator_value} characters",
                 "use a shorter name", "bad-name")
    else:
        yield at(path, f"{subject}: {error.message}", "", "invalid")


def _sentence(text: str) -> str:
    """A schema's sentence as a hint: lowercase start, no final period."""
    text = text.rstrip(".")
    return text[:1].lower() + text[1:]


def path_problem(path: str) -> str:
    """Say what is wrong with an endpoint path that does not match the path pattern."""
    if not path.startswith("/"):
        return "must start with '/' and a version segment, like /v1/orders"
    segments = path.split("/")[1:]
    if not segments[0].startswith("v") or not segments[0][1:].isdigit() or segments[0][1] == "0":
        return "must start with a version segment like /v1/ (the API major version)"
    for segment in segments[1:]:
        if segment == "":
            return "has an empty segment ('//' or a trailing '/')"
        if "{" in segment or "}" in segment:
            inner = segment[1:-1] if segment.startswith("{") and segment.endswith("}") else None
            if inner is None:
                return f"has segment '{segment}': a parameter fills a whole segment, like {{id}}"
            return f"has parameter '{segment}' whose name is not an identifier"
    return "holds characters a URL path segment cannot have (use letters, digits, . _ ~ -)"
