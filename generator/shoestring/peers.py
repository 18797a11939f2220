"""The typed peer clients: `_generated/peers.py`, reached by handlers as `ctx.peers`.

For each peer with `calls:` in the spec

    peers:
      payments:
        url_env: PAYMENTS_URL
        calls:
          capture_payment:
            method: POST
            path: /v1/payments
            scopes: [payments:write]
            request: {order_id: uuid, amount_cents: int}
            response: {payment_id: uuid, status: "enum[captured, declined]"}

the module gets a client class with one method per call, keyword arguments typed from the
request fields and a TypedDict for the response:

    payment = ctx.peers.payments.capture_payment(order_id=order_id, amount_cents=1250)

The methods only name the call and pass the data on: the chassis (`chassis/peers.py`) does the
HTTP, the token, timeouts, retries, the circuit breaker and both schema checks, from the call's
entry in `_generated/service.json`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Any

from .literal import WIDTH, Code, docstring_text, flat, layout, wrap

# Keyword arguments every method has besides the request fields; a field of the same name gets
# a trailing underscore.
CONTROL_ARGUMENTS = ("idempotency_key", "timeout")
NON_IDEMPOTENT = ("POST", "PATCH")
_SIMPLE = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def peers_module(spec: Mapping[str, Any], header: str) -> bytes:
    """The source of `_generated/peers.py` for `spec`."""
    imports: set[str] = set()
    classes: list[str] = []
    clients: list[tuple[str, str]] = []  # (attribute, class)
    for peer, entry in sorted((spec.get("peers") or {}).items()):
        calls = entry.get("calls") or {}
        if not calls:
            continue
        client = _camel(peer) + "Client"
        methods = []
        for name, call in sorted(calls.items()):
            response_type, typed = _response_type(peer, name, call, imports)
            classes.extend(typed)
            methods.append(_method(name, call, response_type, imports))
        docstring = f'"""The calls to {peer} (base URL: the {entry["url_env"]} setting)."""'
        body = "\n\n".join([f"    {docstring}", f'    peer = "{peer}"', *methods])
        classes.append(f"class {client}(PeerClient):\n{body}")
        clients.append((_attribute(peer), client))
    lines = [
        header,
        '"""Typed clients of the peers this service calls: `ctx.peers.<peer>.<call>(...)`.',
        "",
        "One method per call under `peers: <peer>: calls:` in service.yaml. The chassis",
        "(chassis/peers.py) makes the call: this service's token, a timeout, the trace",
        "header, an Idempotency-Key on POST and PATCH, safe retries, the peer's circuit",
        "breaker, and checks of the data sent and of the answer against the declared",
        'fields."""',
        "",
    ]
    if clients:  # Peers.__init__ and the client classes use these
        lines += [
            f"from typing import {', '.join(sorted({'Any', *imports}))}",
            "",
            "from shoestring_runtime.peers import Connector, PeerClient, PeersBase",
        ]
    else:
        lines.append("from shoestring_runtime.peers import PeersBase")
    lines += ["", ""]
    for text in classes:
        lines += [text, "", ""]
    lines.append(_peers_class(clients))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _peers_class(clients: list[tuple[str, str]]) -> str:
    if not clients:
        return (
            "class Peers(PeersBase):\n"
            '    """ctx.peers: this service declares no calls to peers yet (add them under\n'
            '    `peers: <peer>: calls:` in service.yaml)."""'
        )
    assignments = "\n".join(f"        self.{attr} = {cls}(connector, ctx)" for attr, cls in clients)
    return (
        "class Peers(PeersBase):\n"
        '    """ctx.peers: one client per peer this service calls."""\n'
        "\n"
        "    def __init__(self, connector: Connector, ctx: Any) -> None:\n"
        "        super().__init__(connector, ctx)\n"
        f"{assignments}"
    )


def _method(name: str, call: Mapping[str, Any], response_type: str, imports: set[str]) -> str:
    request = call.get("request") or {}
    properties: dict[str, Any] = request.get("properties") or {}
    required = set(request.get("required") or [])
    method = str(call["method"]).upper()
    fields = sorted(properties, key=lambda field: field not in required)  # required ones first
    params = ["        self,", "        *,"]
    data: dict[str, Code] = {}
    optional: list[str] = []
    for field in fields:
        argument = _argument(field)
        annotation = _annotation(properties[field], imports)
        default = "" if field in required else " = None"
        if field not in required and "None" not in annotation.split(" | "):
            annotation += " | None"
        line = f"        {argument}: {annotation}{default},"
        if len(line) > WIDTH:  # a long Literal reads worse than the plain type
            line = f"        {argument}: {_annotation(properties[field], imports, plain=True)}"
            line += (" | None = None," if field not in required else ",")
        params.append(line)
        data[field] = Code(argument)
        if field not in required:
            optional.append(field)
    if method in NON_IDEMPOTENT:
        params.append("        idempotency_key: str | None = None,")
    params.append("        timeout: float | None = None,")
    title = f"{method} {call['path']}"
    if call.get("description"):
        title += f": {call['description']}"
    arguments = [f'            "{name}",', layout(data, indent=3, suffix=",")]
    if optional:
        arguments.append(layout(tuple(optional), indent=3, prefix="optional=", suffix=","))
    if method in NON_IDEMPOTENT:
        arguments.append("            idempotency_key=idempotency_key,")
    arguments.append("            timeout=timeout,")
    return "\n".join([
        f"    def {name}(",
        *params,
        f"    ) -> {response_type}:",
        _docstring(title, indent=2),
        "        return self.call(",
        *arguments,
        "        )",
    ])


def _response_type(
    peer: str, name: str, call: Mapping[str, Any], imports: set[str]
) -> tuple[str, list[str]]:
    """The method's return annotation and the TypedDict classes that define it."""
    response = call.get("response") or {}
    properties: dict[str, Any] = response.get("properties") or {}
    if not properties or not all(_usable_name(field) for field in properties):
        return "dict[str, Any]", []
    imports.add("TypedDict")
    required = set(response.get("required") or [])
    cls = f"{_camel(peer)}{_camel(name)}Response"
    doc = _docstring(f"What {peer} answers to {name} (fields it adds later are not listed).",
                     indent=1)

    def members(names: list[str]) -> list[str]:
        found = []
        for field in names:
            line = f"    {field}: {_annotation(properties[field], imports)}"
            if len(line) > WIDTH:
                line = f"    {field}: {_annotation(properties[field], imports, plain=True)}"
            found.append(line)
        return found

    needed = [field for field in properties if field in required]
    optional = [field for field in properties if field not in required]
    if not optional:
        return cls, [f"class {cls}(TypedDict):\n" + "\n".join([doc, "", *members(needed)])]
    if not needed:
        return cls, [
            f"class {cls}(TypedDict, total=False):\n" + "\n".join([doc, "", *members(optional)])
        ]
    base = f"_{cls}Required"
    return cls, [
        f"class {base}(TypedDict):\n" + "\n".join(members(needed)),
        _class_line(cls, [base, "total=False"]) + "\n" + "\n".join([doc, "", *members(optional)]),
    ]


def _class_line(name: str, bases: list[str]) -> str:
    """`class name(bases):` wrapped the way the formatters wrap it when it is too long."""
    line = f"class {name}({', '.join(bases)}):"
    if len(line) <= WIDTH:
        return line
    inner = f"    {', '.join(bases)}"
    if len(inner) <= WIDTH:
        return f"class {name}(\n{inner}\n):"
    return "\n".join([f"class {name}(", *(f"    {base}," for base in bases), "):"])


def _annotation(schema: Any, imports: set[str], plain: bool = False) -> str:
    """A Python type for a compiled field schema (`Any` for what it cannot say simply)."""
    if not isinstance(schema, dict):
        return "Any"
    declared = schema.get("type")
    kinds = [declared] if isinstance(declared, str) else list(declared or [])
    if not kinds:
        return "Any"
    enum = schema.get("enum")
    parts: list[str] = []
    for kind in kinds:
        if kind == "string" and enum and not plain:
            values = [value for value in enum if isinstance(value, str)]
            if values:
                imports.add("Literal")
                parts.append(f"Literal[{', '.join(flat(value) for value in values)}]")
                continue
        if kind == "array":
            parts.append(f"list[{_annotation(schema.get('items'), imports, plain)}]")
        elif kind == "object":
            parts.append("dict[str, Any]")
        elif kind in _SIMPLE:
            parts.append(_SIMPLE[kind])
        else:
            return "Any"
    if "None" in parts:  # the formatters' habit, and the readers': `X | None`
        parts = [part for part in parts if part != "None"] + ["None"]
    return " | ".join(parts)


def _argument(field: str) -> str:
    if keyword.iskeyword(field) or field in ("self", *CONTROL_ARGUMENTS):
        return field + "_"
    return field


def _usable_name(field: str) -> bool:
    return field.isidentifier() and not keyword.iskeyword(field)


def _attribute(peer: str) -> str:
    name = peer.replace("-", "_")
    return name + "_" if keyword.iskeyword(name) else name


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]+", name) if part)


def _docstring(text: str, indent: int) -> str:
    pad = "    " * indent
    lines = wrap(docstring_text(text), WIDTH - len(pad) - 6)
    if len(lines) == 1:
        return f'{pad}"""{lines[0]}"""'
    return "\n".join([f'{pad}"""{lines[0]}', *(f"{pad}{line}" for line in lines[1:]),
                      f'{pad}"""'])
