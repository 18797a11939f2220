# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The API page for people: `GET /docs`, an HTML page rendered here from `_generated/openapi.json`.

It shows what a client developer needs to call the service: how to get and send a token and
which scopes each operation needs, the rate limits and idempotency keys, every parameter and
field with its type and limits, what comes back, and the errors with their meaning.

The page is self-contained: no JavaScript, no stylesheet or font from elsewhere, nothing loaded
from a CDN, so it works offline and behind a strict Content-Security-Policy (sent with it).
Every piece of text from the document is HTML-escaped: descriptions come from service.yaml,
which is the developer's, but the page must stay inert whatever they contain.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response

DOCS_PATH = "/docs"
METHODS = ("get", "post", "put", "patch", "delete")
# Nested schemas are listed to this depth; deeper ones are named, not unfolded.
MAX_DEPTH = 8
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem 2rem;
       color: #1f2328; }
h1 { margin-bottom: 0; } h2 { border-bottom: 1px solid #d0d7de; margin-top: 2.5rem; }
h3 { margin-top: 2rem; } section.op { border-top: 1px solid #eaeef2; }
code { background: #f3f4f6; border-radius: 3px; padding: 0 .25em; font-size: 90%; }
table { border-collapse: collapse; margin: .5rem 0 1rem; width: 100%; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.method { font-family: monospace; font-weight: bold; text-transform: uppercase; }
.muted { color: #59636e; } .version { color: #59636e; margin-top: 0; }
"""


def install(app: Flask, source: Path) -> None:
    """Serve the page at /docs when the service has an OpenAPI document `source` (rendered once
    here)."""
    if not source.is_file():
        return
    page = render(json.loads(source.read_text(encoding="utf-8"))).encode()

    def docs_view() -> Response:
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    app.add_url_rule(DOCS_PATH, "docs", docs_view, methods=["GET"])


def render(document: Mapping[str, Any]) -> str:
    """The whole page for an OpenAPI 3.1 document, as text."""
    info = document.get("info", {})
    title = str(info.get("title", "API"))
    operations = list(_operations(document))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} API</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)} API</h1>",
        f'<p class="version">version {_e(info.get("version", ""))} · machine-readable: '
        '<a href="/openapi.json">openapi.json</a></p>',
    ]
    if info.get("description"):
        parts.append(_paragraphs(info["description"]))
    parts.append("<h2>Operations</h2><ul>")
    for method, path, operation in operations:
        anchor = _anchor(operation, method, path)
        summary = f" — {_e(operation['summary'])}" if operation.get("summary") else ""
        parts.append(
            f'<li><a href="#{anchor}"><span class="method">{_e(method.upper())}</span> '
            f"<code>{_e(path)}</code></a>{summary}</li>"
        )
    parts.append("</ul>")
    parts.append(_authentication(document, operations))
    parts.append(_errors(document))
    parts.append("<h2>Reference</h2>")
    parts.extend(_operation(document, method, path, op) for method, path, op in operations)
    parts.append("</body></html>")
    return "\n".join(parts)


# -- sections ------------------------------------------------------------------------------------


def _authentication(document: Mapping[str, Any], operations: list[tuple[str, str, Any]]) -> str:
    schemes = document.get("components", {}).get("securitySchemes", {})
    parts = ["<h2>Authentication</h2>"]
    for name, scheme in schemes.items():
        kind = f"{scheme.get('type', '')} {scheme.get('scheme', '')}".strip()
        parts.append(f"<p><strong>{_e(name)}</strong> ({_e(kind)})</p>")
        if scheme.get("description"):
            parts.append(_paragraphs(scheme["description"]))
    needed: dict[str, list[str]] = {}
    for method, path, operation in operations:
        for requirement in operation.get("security", []):
            for scopes in requirement.values():
                for scope in scopes:
                    needed.setdefault(scope, []).append(f"{method.upper()} {path}")
    if needed:
        parts.append("<table><tr><th>Scope</th><th>Needed by</th></tr>")
        for scope in sorted(needed):
            users = "<br>".join(f"<code>{_e(user)}</code>" for user in needed[scope])
            parts.append(f"<tr><td><code>{_e(scope)}</code></td><td>{users}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


def _errors(document: Mapping[str, Any]) -> str:
    components = document.get("components", {})
    responses = components.get("responses", {})
    parts = [
        "<h2>Errors</h2>",
        "<p>Every error is an RFC 9457 problem, sent as <code>application/problem+json</code>; "
        "its <code>detail</code> says what to change, and <code>errors</code> points at each bad "
        "field with a JSON pointer.</p>",
    ]
    problem = components.get("schemas", {}).get("Problem")
    if problem:
        parts.append(_fields_table(document, problem))
    statuses = sorted(
        (name.removeprefix("Problem"), response)
        for name, response in responses.items()
        if name.startswith("Problem")
    )
    if statuses:
        parts.append("<table><tr><th>Status</th><th>When</th></tr>")
        for status, response in statuses:
            parts.append(
                f"<tr><td>{_e(status)}</td><td>{_inline(response.get('description', ''))}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def _operation(document: Mapping[str, Any], method: str, path: str, operation: Any) -> str:
    anchor = _anchor(operation, method, path)
    parts = [
        f'<section class="op" id="{anchor}">',
        f'<h3><span class="method">{_e(method.upper())}</span> <code>{_e(path)}</code></h3>',
    ]
    if operation.get("summary"):
        parts.append(f"<p><strong>{_e(operation['summary'])}</strong></p>")
    if operation.get("description"):
        parts.append(_paragraphs(operation["description"]))
    parameters = [_resolve(document, p) for p in operation.get("parameters", [])]
    if parameters:
        parts.append("<h4>Parameters</h4>")
        parts.append(
            "<table><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th>"
            "<th>Description</th></tr>"
        )
        for parameter in parameters:
            schema = _resolve(document, parameter.get("schema", {}))
            described = _described(parameter.get("description"), schema)
            parts.append(
                f"<tr><td><code>{_e(parameter.get('name', ''))}</code></td>"
                f"<td>{_e(parameter.get('in', ''))}</td><td>{_e(_type_of(document, schema))}</td>"
                f"<td>{'yes' if parameter.get('required') else 'no'}</td>"
                f"<td>{described}</td></tr>"
            )
        parts.append("</table>")
    body = operation.get("requestBody")
    if body:
        for media, content in _resolve(document, body).get("content", {}).items():
            parts.append(f'<h4>Request body <span class="muted">({_e(media)})</span></h4>')
            parts.append(_fields_table(document, content.get("schema", {})))
    parts.append("<h4>Responses</h4>")
    errors: list[str] = []
    for status, response in operation.get("responses", {}).items():
        response = _resolve(document, response)
        if str(status).startswith(("4", "5")):
            errors.append(
                f"<tr><td>{_e(status)}</td><td>{_inline(response.get('description', ''))}</td></tr>"
            )
            continue
        parts.append(
            f"<p><strong>{_e(status)}</strong> {_inline(response.get('description', ''))}</p>"
        )
        for media, content in response.get("content", {}).items():
            parts.append(f'<p class="muted">{_e(media)}</p>')
            parts.append(_fields_table(document, content.get("schema", {})))
        headers = response.get("headers", {})
        if headers:
            parts.append("<table><tr><th>Response header</th><th>Meaning</th></tr>")
            for name, header in headers.items():
                header = _resolve(document, header)
                parts.append(
                    f"<tr><td><code>{_e(name)}</code></td>"
                    f"<td>{_inline(header.get('description', ''))}</td></tr>"
                )
            parts.append("</table>")
    if errors:
        parts.append("<table><tr><th>Error</th><th>When</th></tr>")
        parts.extend(errors)
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


# -- schemas as tables ---------------------------------------------------------------------------


def _fields_table(document: Mapping[str, Any], schema: Any) -> str:
    rows = list(_fields(document, _resolve(document, schema), "", 0))
    if not rows:
        return f'<p class="muted">{_e(_type_of(document, _resolve(document, schema)))}</p>'
    parts = ["<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>"]
    for name, field_type, required, described in rows:
        parts.append(
            f"<tr><td><code>{_e(name)}</code></td><td>{_e(field_type)}</td>"
            f"<td>{'yes' if required else 'no'}</td><td>{described}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def _fields(
    document: Mapping[str, Any], schema: Any, prefix: str, depth: int
) -> Iterator[tuple[str, str, bool, str]]:
    """(dotted name, type, required, description as HTML) of each property, nested ones unfolded:
    `lines[].sku` is the `sku` of each item of the list `lines`."""
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return
    required = set(schema.get("required", []))
    for name, child in schema.get("properties", {}).items():
        child = _resolve(document, child)
        full = f"{prefix}{name}"
        description = child.get("description") if isinstance(child, Mapping) else None
        yield full, _type_of(document, child), name in required, _described(description, child)
        for nested, suffix in _nested(document, child):
            yield from _fields(document, nested, f"{full}{suffix}.", depth + 1)


def _nested(document: Mapping[str, Any], schema: Any) -> Iterator[tuple[Any, str]]:
    """The object schemas inside a field (the field's own, its list items', its choices')."""
    if not isinstance(schema, Mapping):
        return
    if schema.get("properties"):
        yield schema, ""
    items = _resolve(document, schema.get("items", {}))
    if isinstance(items, Mapping) and items.get("properties"):
        yield items, "[]"
    for keyword in ("anyOf", "oneOf"):
        for choice in schema.get(keyword, []):
            choice = _resolve(document, choice)
            if isinstance(choice, Mapping) and choice.get("properties"):
                yield choice, ""


def _type_of(document: Mapping[str, Any], schema: Any, depth: int = 0) -> str:
    """A short reading of a schema's type: `string (uuid)`, `list of integer`, `object`, ..."""
    schema = _resolve(document, schema)
    if not isinstance(schema, Mapping) or depth > MAX_DEPTH:
        return "any"
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        return " or ".join(_type_of(document, choice, depth + 1) for choice in choices)
    declared = schema.get("type", [])
    types = [declared] if isinstance(declared, str) else list(declared)
    shown: list[str] = []
    for kind in types:
        if kind == "array":
            shown.append(f"list of {_type_of(document, schema.get('items', {}), depth + 1)}")
        elif kind == "string" and schema.get("format"):
            shown.append(f"string ({schema['format']})")
        else:
            shown.append(str(kind))
    if "enum" in schema:
        shown = ["one of " + ", ".join(json.dumps(choice) for choice in schema["enum"])]
    if not shown:
        shown = ["object"] if "properties" in schema else ["any"]
    return " or ".join(shown)


_LIMITS = {
    "minLength": ("at least", " character(s)"),
    "maxLength": ("at most", " character(s)"),
    "minimum": ("at least", ""),
    "maximum": ("at most", ""),
    "exclusiveMinimum": ("more than", ""),
    "exclusiveMaximum": ("less than", ""),
    "minItems": ("at least", " item(s)"),
    "maxItems": ("at most", " item(s)"),
}


def _described(description: Any, schema: Any) -> str:
    """A field's description and its limits (on a line of their own), as HTML."""
    parts = [_inline(description)] if description else []
    limits = _constraints(schema)
    if limits:
        parts.append(f'<span class="muted">{_inline(limits)}</span>')
    return "<br>".join(parts)


def _constraints(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return ""
    found = [
        f"{word} {schema[key]}{unit}" for key, (word, unit) in _LIMITS.items() if key in schema
    ]
    if "pattern" in schema and "format" not in schema:  # a format's pattern only restates it
        found.append(f"matches `{schema['pattern']}`")
    if "examples" in schema and schema["examples"]:
        found.append(f"e.g. `{json.dumps(schema['examples'][0])}`")
    return "; ".join(found)


# -- helpers -------------------------------------------------------------------------------------


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    """`node`, or what its local `$ref` points at (`#/components/...`)."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 20:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node, seen = target, seen + 1
    return node


def _anchor(operation: Mapping[str, Any], method: str, path: str) -> str:
    raw = str(operation.get("operationId") or f"{method}-{path}")
    return "op-" + "".join(char if char.isalnum() or char in "-_" else "-" for char in raw)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _inline(text: Any) -> str:
    """Escaped text with `code spans` shown as code."""
    pieces = str(text).split("`")
    if len(pieces) % 2 == 0:  # an unpaired backtick: show the text as it is
        return _e(text)
    return "".join(
        f"<code>{_e(piece)}</code>" if index % 2 else _e(piece)
        for index, piece in enumerate(pieces)
    )


def _paragraphs(text: Any) -> str:
    return "\n".join(
        f"<p>{_inline(paragraph.strip())}</p>"
        for paragraph in str(text).split("\n\n")
        if paragraph.strip()
    )
