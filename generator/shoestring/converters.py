"""Living with two versions of a message: the converters of `publish_also`.

During a migration a publisher emits the new version and the old one, so consumers move at
their own pace. The spec says so on the new version:

    order.created:
      versions:
        1: {deprecated: true, fields: {...}}
        2: {publish_also: [1], fields: {...}}

and `ctx.publish("order.created", 2, data)` then publishes version 2 and, in the same
transaction, version 1 as `convert(data)` of the user's module
`<package>/handlers/order_created_v2_to_v1.py`. The generator writes that module once, when it
is missing (a generation gap, like handler stubs), and `_generated/converters.py`, the table the
chassis looks converters up in.

A stub that can convert by itself (every field the old version needs is in the new one, with the
same schema) is complete: it copies those fields. Otherwise it raises until the user writes the
conversion, naming the fields it cannot fill, so a publish never sends made-up data.
"""

from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .breaking import Finding
from .literal import WIDTH, Code, flat, layout
from .spec import Problem, converter_name
from .spec.positions import ITEMS
from .spec.problems import WARNING


@dataclass(frozen=True)
class Conversion:
    """`message` version `source` converted to version `target` by handlers/`module`.py."""

    message: str
    source: int
    target: int

    @property
    def module(self) -> str:
        return converter_name(self.message, self.source, self.target)


def conversions(spec: Mapping[str, Any]) -> list[Conversion]:
    """Every conversion the spec's `publish_also` lists, in message and version order."""
    found = []
    for message, published in sorted((spec.get("messages") or {}).items()):
        versions = published.get("versions") or {}
        for text in sorted(versions, key=int):
            for target in versions[text].get("publish_also") or []:
                found.append(Conversion(message, int(text), int(target)))
    return found


def converters_module(spec: Mapping[str, Any], header: str) -> bytes:
    """`_generated/converters.py`: CONVERTERS[(type, version, other version)] -> convert."""
    planned = conversions(spec)
    table = {(c.message, c.source, c.target): Code(f"{c.module}.convert") for c in planned}
    modules = [c.module for c in planned]
    imports = ""
    if modules:
        line = f"from ..handlers import {', '.join(modules)}"
        if len(line) > WIDTH:
            line = "\n".join(["from ..handlers import (", *(f"    {m}," for m in modules), ")"])
        imports = f"\n{line}\n"
    prefix = "CONVERTERS: dict[tuple[str, int, int], Converter] = "
    text = (
        f"{header}\n"
        '"""Converters of `publish_also`: publishing (type, N) also publishes each version M that\n'
        "service.yaml lists under N, as CONVERTERS[(type, N, M)](data). The functions live in\n"
        'the user\'s modules in ../handlers/."""\n'
        "\n"
        "from collections.abc import Callable\n"
        "from typing import Any\n"
        f"{imports}"
        "\n"
        "Converter = Callable[[dict[str, Any]], dict[str, Any]]\n"
        "\n"
        f"{layout(table, prefix=prefix)}\n"
    )
    return text.encode("utf-8")


def converter_stub(spec: Mapping[str, Any], conversion: Conversion) -> bytes:
    """The user's module converting one version to another, as first written."""
    package = spec["service"]["package"]
    versions = spec["messages"][conversion.message]["versions"]
    source = versions[str(conversion.source)].get("schema") or {}
    target = versions[str(conversion.target)].get("schema") or {}
    same, missing = _carried_over(source, target)
    name, old, new = conversion.message, conversion.target, conversion.source
    docstring = _docstring(
        f"Converts {name} v{new} data to v{old}.",
        f"In service.yaml, version {new} lists {old} under `publish_also`, so "
        f'`ctx.publish("{name}", {new}, data)` also publishes version {old}: it calls '
        f"`convert(data)` and publishes the result, validated against version {old}'s schema, "
        "in the same transaction. Consumers still reading the old version keep receiving it "
        "while they move; once none does (`shoestring check system.yaml` says), remove "
        "`publish_also` and this module.",
        "This module is yours: `shoestring generate` created it once and never touches it "
        "again.",
    )
    fields = layout(tuple(same), prefix="SAME_FIELDS = ")
    body = ["def convert(data: dict[str, Any]) -> dict[str, Any]:"]
    if not missing:
        body += [
            f"    # Every field of v{old} is in v{new} with the same schema: copy them over;",
            f"    # the fields v{old} does not have are left out.",
            "    return {key: data[key] for key in SAME_FIELDS if key in data}",
        ]
    else:
        listed = ", ".join(missing)
        comment = textwrap.wrap(f"v{new} does not carry these fields of v{old} as they are: "
                                f"{listed}. Build them from `data`, e.g.", width=WIDTH - 6,
                                break_long_words=False, break_on_hyphens=False)
        body += [
            *(f"    # {line}" for line in comment),
            "    #     converted = {key: data[key] for key in SAME_FIELDS if key in data}",
            "    #     converted[...] = ...",
            "    #     return converted",
            "    raise NotImplementedError(",
            *_message_lines(f"write the conversion of {name} v{new} to v{old} in "
                            f"{package}/handlers/{conversion.module}.py (v{old} needs "
                            f"{listed})"),
            "    )",
        ]
    text = "\n".join([docstring, "", "from typing import Any", "", fields, "", "",
                      *body]) + "\n"
    return text.encode("utf-8")


def stale_references(root: Path, spec: Mapping[str, Any],
                     findings: Iterable[Finding]) -> list[Problem]:
    """Warnings for the user's converter modules that still name a field a breaking change
    removed from a version they convert from or to.

    A converter written for the old versions keeps copying the field (the stub's SAME_FIELDS,
    or the user's own code): copied into a version that lost it, every publish of the newer
    version fails that version's schema; read from a version that lost it, it is missing. The
    module is parsed, and a reference is the field's name as a string constant (a SAME_FIELDS
    item, a subscript, a dict key, a `.get` argument): comments and docstrings do not count.
    For a nested field, the top-level field that holds it is what a converter copies.
    """
    package = spec["service"]["package"]
    planned = conversions(spec)
    found: list[Problem] = []
    for finding in findings:
        gone = finding.removed
        if gone is None:
            continue
        name = gone.steps[0]
        shown = ".".join(gone.steps).replace(f".{ITEMS}", ITEMS)
        for conversion in planned:
            if conversion.message != gone.message or \
                    gone.version not in (conversion.source, conversion.target):
                continue
            relative = f"{package}/handlers/{conversion.module}.py"
            for line, col in _string_constants(root / relative, name):
                found.append(_stale(relative, line, col, conversion, gone.version, name, shown))
    return sorted(found, key=lambda problem: (problem.file, problem.line, problem.col))


def _stale(relative: str, line: int, col: int, conversion: Conversion, version: int,
           name: str, shown: str) -> Problem:
    message, new, old = conversion.message, conversion.source, conversion.target
    what = f"field '{name}'" if name == shown else f"field '{name}' (holding '{shown}')"
    if version == old:
        text = (f"still refers to {what}, which {message} v{old} no longer has: every "
                f"publish of v{new} also publishes v{old} through convert(), and v{old}'s schema "
                "refuses what it no longer declares")
        hint = (f"stop copying '{name}' into v{old} (take it out of SAME_FIELDS, or build "
                f"'{name}' as v{old} now declares it)")
    else:
        text = (f"still refers to {what}, which {message} v{new} no longer has: convert() "
                f"receives v{new} data without it")
        hint = f"build what v{old} needs from the fields v{new} still has"
    return Problem(relative, line, col, text, hint, "stale-reference", WARNING)


def _string_constants(path: Path, value: str) -> Iterator[tuple[int, int]]:
    """(line, column) of every string constant `value` in the module at `path`, docstrings left
    out; nothing when the module is missing or does not parse (its own tests say so)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                                       ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == value and id(node) not in docstrings:
            yield node.lineno, node.col_offset + 1


def _carried_over(source: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[list, list]:
    """The target's fields the source has with the same schema, and the required ones it lacks
    (or has in another form)."""
    source_fields = source.get("properties") or {}
    source_required = set(source.get("required") or [])
    same, missing = [], []
    for name, schema in (target.get("properties") or {}).items():
        required = name in (target.get("required") or [])
        carried = name in source_fields and _canonical(source_fields[name]) == _canonical(schema)
        if carried and (name in source_required or not required):
            same.append(name)
        elif carried:
            same.append(name)
            missing.append(name)  # optional in the source, required in the target
        elif required:
            missing.append(name)
    return same, missing


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True)


def _docstring(*paragraphs: str) -> str:
    wrapped = [textwrap.fill(text, width=WIDTH, break_long_words=False, break_on_hyphens=False)
               for text in paragraphs]
    return '"""' + "\n\n".join(wrapped) + '\n"""'


def _message_lines(text: str) -> list[str]:
    """A long message as implicitly concatenated string literals, indented for the call."""
    pieces = textwrap.wrap(text, width=WIDTH - 12, break_long_words=False, drop_whitespace=False)
    return [f"        {flat(piece)}" for piece in pieces]
