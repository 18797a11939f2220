# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Strict JSON request bodies: what a client sends is read exactly as it meant it, or refused.

Python's `json` module is lenient where an API must not be: it accepts `NaN` and `Infinity`
(not JSON at all), keeps the last of two equal keys in an object (so `{"amount": 1, "amount":
1000}` means whatever the parser in front of us decided), turns `\\ud800` into a string no
database can store, and builds integers of any size. Here each of those is a 400 problem that
names the place in the document (a JSON pointer) and says what to send instead:

- not UTF-8, a byte order mark, a syntax error: where it is (line and column);
- a duplicate key in an object: the pointer of the key (RFC 8259 leaves the meaning open, RFC
  7493 I-JSON forbids it);
- `NaN`, `Infinity`, `-Infinity`: not JSON numbers;
- integers outside the signed 64-bit range (what a BIGINT column holds), numbers written with
  more than `MAX_NUMBER_LENGTH` characters, floats that overflow a double;
- strings (values and keys) with an unpaired UTF-16 surrogate escape;
- containers nested deeper than `MAX_DEPTH` levels.

The size limit (413) and the content type (415) are checked first, by `read_request_json`.
Schema violations (a field of the wrong type, a missing field) are the request schema's
business: 422, after this module has produced a well-formed document.

Cost: the checks ride on the parser's hooks; the document is walked afterwards only when a hook
found something, when the body holds enough brackets to nest past the limit, or when it holds
a `\\u` escape (the only way to write a lone surrogate), so an ordinary body pays nearly nothing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from flask import current_app
from flask import request as flask_request

from .problems import Problem
from .schemas import json_pointer

MAX_DEPTH = 64
MAX_NUMBER_LENGTH = 100
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
# A body with a thousand bad numbers is answered with the first few; enough to fix them.
MAX_ERRORS = 20
# Media types read as JSON: application/json and any structured `+json` suffix (RFC 6839).
JSON_TYPE = "application/json"

# Encoders made once: json.dumps with any option builds a new encoder on every call, and these
# run for every message and idempotent request.
#: Compact JSON, as stored messages are written.
COMPACT = json.JSONEncoder(separators=(",", ":"))
#: Compact JSON with sorted keys: one text per value (fingerprints).
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class InvalidJSON(ValueError):
    """The body is not JSON this service accepts. `detail` says why; `errors` lists the places
    ({"pointer", "detail"}) when the document parsed but holds values that are refused."""

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class Refused:
    """A value the parser met and refused; left in the document so the walk can point at it.
    (`routes` leaves them in query and path data the same way.)"""

    __slots__ = ("detail",)

    def __init__(self, detail: str) -> None:
        self.detail = detail


class _Duplicates(dict):  # type: ignore[type-arg]
    """An object that had keys more than once (the last value of each kept, as json does)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]], duplicates: list[str]) -> None:
        super().__init__(pairs)
        self.duplicates = duplicates


def loads(raw: bytes) -> Any:
    """The JSON document in `raw` (UTF-8), checked as described above; raises InvalidJSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJSON(
            f"the body is not UTF-8 text (byte {exc.start} is not valid UTF-8): JSON must be "
            "sent as UTF-8"
        ) from None
    if text.startswith("\ufeff"):
        raise InvalidJSON("the body starts with a byte order mark: send UTF-8 JSON without one")
    refused = False

    def on_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal refused
        value = dict(pairs)
        if len(value) == len(pairs):
            return value
        refused = True
        seen: set[str] = set()
        duplicates: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                duplicates.add(key)
            seen.add(key)
        return _Duplicates(pairs, sorted(duplicates))

    def on_int(literal: str) -> Any:
        nonlocal refused
        why = integer_refusal(literal)
        if why is None:
            return int(literal)
        refused = True
        return Refused(why)

    def on_float(literal: str) -> Any:
        nonlocal refused
        why = number_refusal(literal)
        if why is None:
            return float(literal)
        refused = True
        return Refused(why)

    def on_constant(name: str) -> Any:
        nonlocal refused
        refused = True
        return Refused(
            f"{name} is not a JSON number: send a finite number, or null when there is no value"
        )

    decoder = json.JSONDecoder(
        object_pairs_hook=on_object,
        parse_int=on_int,
        parse_float=on_float,
        parse_constant=on_constant,
    )
    try:
        document = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidJSON(_too_deep()) from None
    could_nest_too_deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
    if refused or could_nest_too_deep or b"\\u" in raw:
        try:
            errors = list(_walk(document))
        except _TooDeep as exc:
            where = {"pointer": exc.pointer, "detail": _too_deep()}
            raise InvalidJSON(_too_deep(), [where]) from None
        if errors:
            first = errors[0]
            where = f"at {first['pointer']}: " if first["pointer"] else ""
            more = f" ({len(errors)} problems, listed in `errors`)" if len(errors) > 1 else ""
            raise InvalidJSON(f"{where}{first['detail']}{more}", errors[:MAX_ERRORS])
    return document


class _TooDeep(Exception):
    """Raised by the walk at the first container past MAX_DEPTH (its pointer)."""

    def __init__(self, pointer: str) -> None:
        super().__init__(pointer)
        self.pointer = pointer


def _walk(document: Any) -> Iterator[dict[str, str]]:
    """The refused places of a parsed document, in document order. Iterative, so a deep document
    cannot exhaust the stack; it stops descending at the depth limit."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Refused):
            yield {"pointer": json_pointer(path), "detail": value.detail}
        elif isinstance(value, str):
            if _has_lone_surrogate(value):
                yield {"pointer": json_pointer(path), "detail": _SURROGATE}
        elif isinstance(value, (dict, list)):
            if len(path) >= MAX_DEPTH:
                raise _TooDeep(json_pointer(path))
            if isinstance(value, _Duplicates):
                for key in value.duplicates:
                    yield {
                        "pointer": json_pointer([*path, key]),
                        "detail": "the key appears more than once in this object: send it once",
                    }
            if isinstance(value, dict):
                for key in value:
                    if _has_lone_surrogate(key):
                        yield {"pointer": json_pointer([*path, key]), "detail": _SURROGATE}
                children = list(value.items())
            else:
                children = list(enumerate(value))
            stack.extend(((*path, key), child) for key, child in reversed(children))


_SURROGATE = (
    "the string has an unpaired UTF-16 surrogate escape (\\ud800 to \\udfff without its pair), "
    "which is not a character: send the character itself, or the escape of both halves"
)


def _has_lone_surrogate(text: str) -> bool:
    # A valid surrogate pair is decoded to one character, so any code point left in the
    # surrogate range came from an unpaired escape.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def integer_refusal(literal: str) -> str | None:
    """Why the integer written as `literal` (ASCII digits, maybe a sign) is refused, or None.
    The one bound on integers, wherever they come from: a JSON body, a query string, a path."""
    if len(literal) > MAX_NUMBER_LENGTH:
        return _too_long(literal)
    if INT_MIN <= int(literal) <= INT_MAX:
        return None
    return (
        f"the integer {_excerpt(literal)} is outside the range this service accepts "
        f"({INT_MIN} to {INT_MAX}, a signed 64-bit integer): send larger identifiers as strings"
    )


def number_refusal(literal: str) -> str | None:
    """Why the number written as `literal` (a JSON number with a fraction or an exponent) is
    refused, or None: too many characters, or beyond a double."""
    if len(literal) > MAX_NUMBER_LENGTH:
        return _too_long(literal)
    if math.isfinite(float(literal)):
        return None
    return (
        f"the number {_excerpt(literal)} is too large for a 64-bit float (at most about "
        "1.8e308): send it as a string if it must be exact"
    )


def _too_deep() -> str:
    return f"the document is nested more than {MAX_DEPTH} levels deep: flatten the structure"


def _too_long(literal: str) -> str:
    return (
        f"the number {_excerpt(literal)} is written with {len(literal)} characters; numbers "
        f"may have at most {MAX_NUMBER_LENGTH}: send it as a string if it must be exact"
    )


def _excerpt(literal: str) -> str:
    return literal if len(literal) <= 30 else f"{literal[:12]}...{literal[-6:]}"


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON document (dicts, lists and scalars), several times faster than
    `copy.deepcopy`, which must allow for any object and for shared references."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


# -- the current request -------------------------------------------------------------------------


def read_request_json() -> Any:
    """The current request's body as JSON: 413 when too large, 415 when not JSON, 400 when it is
    not JSON this service accepts (see `loads`).

    An empty body counts as `{}`, so an endpoint whose fields are all optional may be called
    without one.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    request = flask_request._get_current_object()  # type: ignore[attr-defined]  # read often
    length = request.content_length  # parsed from the header on every access
    if length is not None and length > limit:
        raise Problem(
            413,
            f"the request body is {length} bytes; this service accepts at most "
            f"{limit} bytes (MAX_BODY_BYTES)",
        )
    if (
        length is None
        and "wsgi.input_terminated" not in request.environ
        and request.headers.get("Transfer-Encoding")
    ):
        # A server that neither de-chunks the body (waitress does, and sets Content-Length)
        # nor marks the stream as terminated hands over a body Werkzeug will not read: refuse
        # it rather than take an unread body for an empty one.
        raise Problem(
            411,
            "this server cannot read a body sent with Transfer-Encoding: chunked: send it with "
            "a Content-Length header",
        )
    raw = request.get_data(cache=True)
    # Without a Content-Length (a chunked body, under a server that terminates the stream)
    # Werkzeug reads at most MAX_CONTENT_LENGTH bytes and stops there without a word: a body
    # that reached the limit is too large if the stream holds one byte more.
    if (
        length is None
        and len(raw) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise Problem(
            413,
            f"the request body is larger than {limit} bytes, the most this service accepts "
            "(MAX_BODY_BYTES)",
        )
    if not raw.strip():
        return {}
    mimetype, options = request.mimetype, request.mimetype_params
    is_json = mimetype == JSON_TYPE or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
    if not is_json:
        raise Problem(
            415,
            f"the body is sent as {mimetype or 'an unnamed content type'}; send JSON with "
            "Content-Type: application/json",
        )
    charset = options.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise Problem(
            415,
            f"the body is declared as {charset}; JSON is read as UTF-8 only: send it as UTF-8 "
            "with Content-Type: application/json",
        )
    try:
        return loads(raw)
    except InvalidJSON as exc:
        raise Problem(400, exc.detail, errors=exc.errors) from None
