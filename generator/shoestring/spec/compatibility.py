"""Whether a reader of a schema accepts what a writer of another schema sends.

Spec fields compile to JSON Schema; these functions compare two of them field by field: the
published version of a message against a subscription to it (`shoestring check` between
services, and `shoestring validate` for a service subscribing to its own message), a call's
request against the endpoint it calls, and an old spec against a new one (`breaking`). Each
mismatch comes with the field's steps (property names and `ITEMS`), so the caller can locate it
in the spec it came from (`positions.field_path`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from .positions import ITEMS

# Upper and lower bounds: a lower upper bound, or a higher lower bound, accepts less.
UPPER = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
LOWER = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
# Keywords that accept less whenever they appear or change.
EXACT = ("pattern", "multipleOf", "const")


def split_null(schema: Any) -> tuple[dict[str, Any], bool]:
    """A field's schema without its null option, and whether null (optional) was allowed."""
    if not isinstance(schema, dict):
        return {}, False
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        core = next(option for option in options if option != {"type": "null"})
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return {**(core if isinstance(core, dict) else {}), **rest}, True
    kind = schema.get("type")
    if isinstance(kind, list) and "null" in kind:
        core = dict(schema)
        others = [name for name in kind if name != "null"]
        core["type"] = others[0] if len(others) == 1 else others
        if isinstance(core.get("enum"), list):
            core["enum"] = [value for value in core["enum"] if value is not None]
        return core, True
    return schema, False


def json_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema names; "number" brings "integer" along (every integer is one)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        found = {kind}
    elif isinstance(kind, list):
        found = set(kind)
    else:
        return set()
    if "number" in found:
        found.add("integer")  # every integer is a number
    return found


def accepts_type(wide: Mapping[str, Any], narrow: Mapping[str, Any]) -> bool:
    """True when every value of `narrow`'s type and format is of `wide`'s type and format."""
    wide_types, narrow_types = json_types(wide), json_types(narrow)
    if wide_types and not (narrow_types and narrow_types <= wide_types):
        return False
    return wide.get("format") in (None, narrow.get("format"))


def narrowed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(keyword, how) for each constraint of `new` that accepts less than `old`'s."""
    found: list[tuple[str, str]] = []
    for keyword in UPPER:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            was = f" from {old[keyword]}" if keyword in old else ""
            found.append((keyword, f"{keyword} lowered to {new[keyword]}{was}"))
    for keyword in LOWER:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            was = f" from {old[keyword]}" if keyword in old else ""
            found.append((keyword, f"{keyword} raised to {new[keyword]}{was}"))
    for keyword in EXACT:
        if keyword in new and new[keyword] != old.get(keyword):
            verb = "changed" if keyword in old else "added"
            found.append((keyword, f"{keyword} {verb} to {json.dumps(new[keyword])}"))
    if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
        found.append(("uniqueItems", "uniqueItems added"))
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        found.append(("additionalProperties", "additionalProperties set to false"))
    if isinstance(new.get("enum"), list) and not isinstance(old.get("enum"), list):
        values = ", ".join(str(value) for value in new["enum"])
        found.append(("enum", f"limited to the values {values}"))
    return found


def type_text(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    text = "/".join(kind) if isinstance(kind, list) else str(kind or "any")
    if schema.get("format"):
        text += f" ({schema['format']})"
    if kind == "array" and isinstance(schema.get("items"), dict):
        text = f"list of {type_text(schema['items'])}"
    return text


def incompatible(
    writer: Mapping[str, Any],
    reader: Mapping[str, Any],
    steps: list[str],
    written: str = "published",
) -> Iterator[tuple[list[str], str, str, bool]]:
    """(field steps, what does not fit, how to fix it, whether the writer has the field) for
    each field the reader declares that the writer's messages would fail: required but not
    (always) written, or of another type. `written` says how the writer gives it: "published",
    "sent", "answered"."""
    fields = writer.get("properties") or {}
    always = set(writer.get("required") or [])
    for name, read_schema in (reader.get("properties") or {}).items():
        path = [*steps, name]
        shown = ".".join(path).replace(f".{ITEMS}", ITEMS)
        read_core, read_null = split_null(read_schema)
        optional = read_null or name not in set(reader.get("required") or [])
        if name not in fields:
            if not optional:
                yield (
                    path,
                    f"it requires field '{shown}', which is not {written}",
                    f"declare it optional (`{name}: <type>?`) or drop it",
                    False,
                )
            continue
        write_core, write_null = split_null(fields[name])
        if not optional and (write_null or name not in always):
            yield (
                path,
                (
                    f"it requires field '{shown}', which is {written} as optional (it may "
                    "be missing or null)"
                ),
                f"declare it optional: `{name}: <type>?`",
                True,
            )
        for found in incompatible_value(write_core, read_core, path, shown, written):
            yield (*found, True)


def incompatible_value(
    writer: Mapping[str, Any],
    reader: Mapping[str, Any],
    path: list[str],
    shown: str,
    written: str = "published",
) -> Iterator[tuple[list[str], str, str]]:
    """Like `incompatible`, for one field present on both sides."""
    if not accepts_type(reader, writer):
        yield (
            path,
            (
                f"field '{shown}' is read as {type_text(reader)} but {written} as "
                f"{type_text(writer)}"
            ),
            f"declare it as the sender does ({type_text(writer)})",
        )
        return
    if isinstance(reader.get("enum"), list):
        allowed = [value for value in reader["enum"] if value is not None]
        sent = [value for value in writer.get("enum") or [] if value is not None]
        extra = [value for value in sent if value not in allowed]
        if not isinstance(writer.get("enum"), list):
            yield (
                path,
                (
                    f"field '{shown}' is read as one of {', '.join(map(str, allowed))} but "
                    f"{written} as any value of its type"
                ),
                "read it without an enum",
            )
        elif extra:
            yield (
                path,
                (
                    f"field '{shown}' may be {written} as {', '.join(map(str, extra))}, "
                    "which the reader's enum lacks"
                ),
                f"add {', '.join(map(str, extra))} to it",
            )
    for keyword, how in narrowed(writer, reader):
        if keyword in ("enum", "additionalProperties"):
            continue  # enums are compared above; objects field by field below
        yield (
            path,
            f"field '{shown}' is read more strictly than {written} ({how})",
            f"relax {keyword} to what the sender declares",
        )
    if "object" in json_types(reader):
        for steps, text, hint, _ in incompatible(writer, reader, path, written):
            yield steps, text, hint
    if isinstance(reader.get("items"), dict) and isinstance(writer.get("items"), dict):
        items_reader, _ = split_null(reader["items"])
        items_writer, _ = split_null(writer["items"])
        yield from incompatible_value(
            items_writer, items_reader, [*path, ITEMS], f"{shown}{ITEMS}", written
        )
