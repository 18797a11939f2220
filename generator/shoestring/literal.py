"""Python source for JSON-like values, laid out the way `ruff format` (and black) lays it out.

Generated modules must read as if written by hand and pass `ruff format --check` under the
service's settings, without running a formatter at generation time. The layout rule is the
formatter's own: a collection stays on one line when it fits; otherwise it is exploded one item
per line with a trailing comma, recursively. The trailing comma is "magic" to ruff and black:
an exploded collection stays exploded even under a longer line limit, and a collection that
fits in `WIDTH` also fits in any longer limit — so targeting the formatters' default of 88
columns gives output that is stable under every `line-length >= 88`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH = 88
INDENT = "    "


class Code(str):
    """A piece of Python source to emit verbatim (a name such as `create_order.handle`)."""


def flat(value: Any) -> str:
    """`value` as a Python expression on one line."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if value is True:
        return "True"
    if value is False:
        return "False"
    if value is None:
        return "None"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{flat(k)}: {flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        if len(value) == 1:
            return f"({flat(value[0])},)"
        return "(" + ", ".join(flat(item) for item in value) + ")"
    if isinstance(value, Sequence):
        return "[" + ", ".join(flat(item) for item in value) + "]"
    raise TypeError(f"no Python literal for {type(value).__name__}: {value!r}")


def _string(text: str) -> str:
    """A string literal quoted as the formatters quote it.

    Double quotes are preferred, unless the text holds more double quotes than single ones:
    then single quotes need fewer escapes, and the formatters switch.
    """
    quote = "'" if text.count('"') > text.count("'") else '"'
    return quote + escape(text, quote) + quote


_INVISIBLE = {"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"}
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, quote: str = '"') -> str:
    """`text` as the body of a Python string literal delimited by `quote`, the way repr() does.

    Visible characters (accents, emoji, CJK) stay as they are, so the source reads as the
    spec does; a backslash, the quote and every invisible character (control and format
    characters, line and paragraph separators, spaces other than the space, a lone surrogate)
    become escapes, so the literal is valid Python, encodes to UTF-8, and evaluates to exactly
    `text`. The test is by general category rather than `str.isprintable()`, which also
    escapes characters the running Python's Unicode tables do not know yet: the same spec
    gives the same bytes under every supported Python.
    """
    pieces = []
    for char in text:
        if char in _SHORT_ESCAPES:
            pieces.append(_SHORT_ESCAPES[char])
        elif char == quote:
            pieces.append("\\" + char)
        elif char == " " or unicodedata.category(char) not in _INVISIBLE:
            pieces.append(char)
        else:
            code = ord(char)
            if code < 0x100:
                pieces.append(f"\\x{code:02x}")
            elif code < 0x10000:
                pieces.append(f"\\u{code:04x}")
            else:
                pieces.append(f"\\U{code:08x}")
    return "".join(pieces)


def docstring_text(text: str) -> str:
    """Free text (a description from the spec) as one line of a docstring's source.

    Whitespace runs, newlines included, become single spaces (the docstring is wrapped
    afterwards); backslashes, three quotes in a row and a final quote, which would end or
    corrupt the docstring, are escaped, and so is anything `escape` escapes.
    """
    line = " ".join(text.split())
    final_quote = line.endswith('"')
    if final_quote:
        line = line[:-1]
    body = escape(line, quote="").replace('"""', '\\"\\"\\"')
    return body + '\\"' if final_quote else body


def width(text: str) -> int:
    """The columns `text` takes in an editor, as ruff counts them for line lengths.

    Wide characters (CJK, most emoji) take two columns, combining marks none. Where a
    terminal and ruff might disagree (emoji sequences), and for characters newer than the
    running Python's Unicode tables (mostly emoji and CJK), this errs on the wide side: a
    line wrapped a little early is still within the limit.
    """
    columns = 0
    for char in text:
        category = unicodedata.category(char)
        if category in ("Mn", "Me"):
            continue
        if char == "\ufe0f":  # the emoji presentation selector makes the character before wide
            columns += 1
        elif category == "Cn" or unicodedata.east_asian_width(char) in ("W", "F"):
            columns += 2
        else:
            columns += 1
    return columns


def wrap(text: str, columns: int) -> list[str]:
    """`text`'s words in lines of at most `columns` (by `width`), breaking only at spaces.

    textwrap counts characters, which puts a line of CJK text or emoji past the line limit.
    A word longer than a line gets a line of its own.
    """
    lines: list[str] = []
    for word in text.split(" "):
        if lines and width(lines[-1]) + 1 + width(word) <= columns:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def layout(value: Any, *, indent: int = 0, prefix: str = "", suffix: str = "") -> str:
    """The lines `prefix + value + suffix` at `indent` levels, exploded where they would not fit.

    `prefix` is what precedes the value on its first line (`return `, `HANDLERS = `, a dict
    key); `suffix` what follows it on its last (`,` inside an exploded parent). The result has
    no trailing newline.
    """
    pad = INDENT * indent
    one_line = f"{pad}{prefix}{flat(value)}{suffix}"
    if width(one_line) <= WIDTH or not _explodable(value):
        return one_line
    if isinstance(value, Mapping):
        opening, closing = "{", "}"
        items = [_entry(key, item, indent + 1) for key, item in value.items()]
    else:
        opening, closing = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        items = [layout(item, indent=indent + 1, suffix=",") for item in value]
    return "\n".join([f"{pad}{prefix}{opening}", *items, f"{pad}{closing}{suffix}"])


def _entry(key: Any, value: Any, indent: int) -> str:
    """One `key: value,` line of an exploded dict.

    Like the formatters, split the value when it can be split; otherwise, when the key is a
    tuple, split the key (`(` + its items + `): value,`); otherwise leave the line long.
    """
    pad = INDENT * indent
    one_line = f"{pad}{flat(key)}: {flat(value)},"
    if width(one_line) <= WIDTH or _explodable(value) or not isinstance(key, tuple):
        return layout(value, indent=indent, prefix=f"{flat(key)}: ", suffix=",")
    items = [f"{pad}{INDENT}{flat(item)}," for item in key]
    return "\n".join([f"{pad}(", *items, f"{pad}): {flat(value)},"])


def _explodable(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    return isinstance(value, (Mapping, Sequence)) and len(value) > 0
