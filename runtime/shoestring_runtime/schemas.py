# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The generated description of this service (`<package>/_generated/`), loaded and checked.

`service.json` is the spec model written by `shoestring generate` from `service.yaml`: the
endpoint table with compiled request/response JSON Schemas, messages, subscriptions and the
settings the spec adds. `Service.model` (service.py) reads it once; this module validates data
against its schemas.
"""

from __future__ import annotations

import calendar
import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

# The registry formats this runtime reads: `"format"` in `_generated/service.json`, which
# `shoestring generate` writes (its render.REGISTRY_FORMAT). A `_generated/` without the key is
# format 0, written for the chassis copied into each service before the runtime became a library.
REGISTRY_FORMATS = (1,)


class GeneratedCodeMissing(RuntimeError):
    """`_generated/` is absent or unreadable: the generator has not run in this service."""


class RegistryFormatUnknown(GeneratedCodeMissing):
    """`_generated/` was written in a registry format this runtime does not read: by a
    generator of another version than the runtime's."""


def check_registry_format(model: dict[str, Any], path: Path, root: Path, runtime: str) -> None:
    """Raise RegistryFormatUnknown, naming the `shoestring generate` to run, unless the spec
    model read from `path` (`_generated/service.json`) is in a format this runtime (version
    `runtime`) reads."""
    found = model.get("format", 0)
    if type(found) is int and found in REGISTRY_FORMATS:
        return
    by = re.match(r"shoestring (\S+)", str(model.get("x-generated-by", "")))
    writer = f"shoestring {by.group(1)}" if by else "a shoestring"
    reads = " or ".join(str(number) for number in REGISTRY_FORMATS)
    fix = f"run `shoestring generate` with shoestring {runtime} in {root}"
    if type(found) is int and found > max(REGISTRY_FORMATS) and by:
        # A newer generator: either generate with the runtime's own, or upgrade the runtime.
        fix += f", or upgrade the runtime: `shoestring-runtime=={by.group(1)}` in requirements.txt"
    era = " (for a chassis copied into the service)" if found == 0 else ""
    raise RegistryFormatUnknown(
        f"{path} was written by {writer} in registry format {found!r}{era}; this runtime "
        f"({runtime}) reads format {reads}: {fix}"
    )


# -- formats: dates and times that exist ------------------------------------------------------
#
# `date` and `datetime` fields compile to a pattern, which says how the text is written but not
# whether the day or the time exists (2026-02-31, 10:00:60). These checks say that, for every
# schema with `format: date` or `format: date-time`, wherever data is validated: request bodies,
# query strings, path parameters, messages received and published. jsonschema's own checkers are
# not used: its date-time needs an optional package and accepts leap seconds, which neither
# Python's datetime nor a MySQL DATETIME column can hold. Other formats stay annotations.

# RFC 3339 section 5.6, ASCII digits only (Python's \d would take other scripts' digits too).
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})"
    r":(?P<second>[0-9]{2})(?:\.[0-9]+)?(?:[Zz]|[+-](?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))"
)
DATE_EXAMPLE = "2024-05-01"
DATE_TIME_EXAMPLE = "2024-05-01T12:30:00Z"


def check_date(value: str) -> None:
    """Raise ValueError, saying what to send, unless `value` is an RFC 3339 full-date of a day
    that exists (2024-02-29 does, 2023-02-29 does not)."""
    if not _FULL_DATE.fullmatch(value):
        raise ValueError(f"must be a date written YYYY-MM-DD, such as {DATE_EXAMPLE}")
    _check_day(value)


def check_date_time(value: str) -> None:
    """Raise ValueError, saying what to send, unless `value` is an RFC 3339 date-time whose day
    and time exist: hours 00-23, minutes and seconds 00-59 (no leap second), offset at most
    23:59."""
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        raise ValueError(
            f"must be an RFC 3339 date-time such as {DATE_TIME_EXAMPLE} (date, T, time with "
            "seconds, then Z or an offset such as +02:00)"
        )
    _check_day(found["date"])
    if int(found["hour"]) > 23 or int(found["minute"]) > 59:
        raise ValueError(
            f"has no such time of day ({found['hour']}:{found['minute']}): hours go from 00 to "
            "23 and minutes from 00 to 59"
        )
    if int(found["second"]) > 59:
        raise ValueError(
            f"has second {found['second']}, a leap second, which this service cannot store: "
            "seconds go from 00 to 59 (send the next second, 00 of the next minute)"
        )
    if found["off_hour"] is not None and (
        int(found["off_hour"]) > 23 or int(found["off_minute"]) > 59
    ):
        raise ValueError(
            f"has no such offset from UTC ({found['off_hour']}:{found['off_minute']}): send "
            "Z, or an offset from -23:59 to +23:59"
        )


_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def _check_day(text: str) -> None:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        year, month, _day = (int(part) for part in text.split("-"))
        if not 1 <= month <= 12:
            raise ValueError(f"has month {month:02d}: months go from 01 to 12") from None
        if year == 0:
            raise ValueError("has year 0000: years go from 0001 to 9999") from None
        days = calendar.monthrange(year, month)[1]
        raise ValueError(
            f"is not a day of the calendar: {_MONTHS[month - 1]} {year} has {days} days"
        ) from None


#: The formats checked wherever data is validated (the others are annotations).
FORMATS = FormatChecker(formats=())
FORMATS.checks("date", raises=ValueError)(lambda value: not isinstance(value, str)
                                          or check_date(value) is None)
FORMATS.checks("date-time", raises=ValueError)(lambda value: not isinstance(value, str)
                                               or check_date_time(value) is None)
_FORMAT_CHECKS: dict[str, Callable[[str], None]] = {
    "date": check_date,
    "date-time": check_date_time,
}


def validator_for(schema: Any) -> Draft202012Validator:
    """The validator of `schema`: JSON Schema 2020-12 with the checked formats."""
    return Draft202012Validator(schema, format_checker=FORMATS)


def _conforms(check: Callable[[str], None]) -> Callable[[Any], bool]:
    def conforms(value: Any) -> bool:
        if not isinstance(value, str):
            return True  # format applies to strings only
        try:
            check(value)
        except ValueError:
            return False
        return True

    return conforms


# -- a quick check for the schemas the spec compiles to -------------------------------------
#
# Every request and response is validated, and every message on the way out (publish, enqueue)
# and in (worker), so validation is on the hot path of requests and of the queue. jsonschema
# interprets a schema anew for every instance; for the handful of keywords `fields:` compiles
# to, a tree of closures answers the same question several times faster. A schema using any
# other keyword gets no quick check (None) and is validated by jsonschema alone; a "no" from the
# quick check is always re-checked by jsonschema, which also words the errors. Only a quick
# "yes" is final, so the closures below follow JSON Schema 2020-12 exactly for the keywords they
# accept.

_ANNOTATIONS = {
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
}  # format: an annotation, except for the formats in FORMATS (checked below)
_QUICK_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "pattern",
    "enum",
    "items",
    "anyOf",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
}
_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "minimum": lambda value, bound: value >= bound,
    "maximum": lambda value, bound: value <= bound,
    "exclusiveMinimum": lambda value, bound: value > bound,
    "exclusiveMaximum": lambda value, bound: value < bound,
}


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Callable[[Any], bool]] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "integer": _is_integer,
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "string": lambda value: isinstance(value, str),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}


def compile_check(schema: Any) -> Callable[[Any], bool] | None:
    """A function telling whether an instance is valid against `schema`, or None when the schema
    uses a keyword this quick check does not implement."""
    if schema is True:
        return lambda value: True
    if not isinstance(schema, dict):
        return None
    for keyword in schema:
        if keyword not in _QUICK_KEYWORDS and keyword not in _ANNOTATIONS:
            if not keyword.startswith("x-"):
                return None
    checks: list[Callable[[Any], bool]] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if any(name not in _TYPES for name in names):
            return None
        tests = [_TYPES[name] for name in names]
        # Checks run for every request and message: no generator where one test will do.
        if len(tests) == 1:
            checks.append(tests[0])
        else:
            checks.append(lambda value: any(test(value) for test in tests))
    if "enum" in schema:
        choices = schema["enum"]
        if not all(choice is None or isinstance(choice, str) for choice in choices):
            return None  # JSON equality of numbers and booleans is left to jsonschema
        allowed = frozenset(choices)
        null_allowed = None in allowed
        checks.append(
            lambda value: (value is None and null_allowed)
            or (isinstance(value, str) and value in allowed)
        )
    if "minLength" in schema or "maxLength" in schema:
        shortest, longest = schema.get("minLength", 0), schema.get("maxLength")
        if any(isinstance(n, bool) or not isinstance(n, int) for n in (shortest, longest or 0)):
            return None
        # JSON Schema counts code points, as len() does.
        checks.append(
            lambda value: not isinstance(value, str)
            or (len(value) >= shortest and (longest is None or len(value) <= longest))
        )
    for keyword, compare in _BOUNDS.items():
        if keyword in schema:
            bound = schema[keyword]
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                return None
            checks.append(
                lambda value, n=bound, compare=compare: isinstance(value, bool)
                or not isinstance(value, (int, float))
                or compare(value, n)
            )
    if "anyOf" in schema:
        choices = [compile_check(choice) for choice in schema["anyOf"]]
        if not choices or any(choice is None for choice in choices):
            return None
        checks.append(lambda value: any(choice(value) for choice in choices))
    if schema.get("format") in _FORMAT_CHECKS:
        checks.append(_conforms(_FORMAT_CHECKS[schema["format"]]))
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        checks.append(lambda value: not isinstance(value, str) or search(value) is not None)
    if "items" in schema:
        item_check = compile_check(schema["items"])
        if item_check is None:
            return None
        checks.append(
            lambda value: not isinstance(value, list) or all(item_check(item) for item in value)
        )
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        object_check = _compile_object(schema)
        if object_check is None:
            return None
        checks.append(object_check)
    if not checks:
        return lambda value: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)
    return lambda value: all(check(value) for check in checks)


def _compile_object(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    properties = {}
    for name, subschema in (schema.get("properties") or {}).items():
        check = compile_check(subschema)
        if check is None:
            return None
        properties[name] = check
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    if extra is True:
        extra_check = None
    elif extra is False:
        extra_check = lambda value: False  # noqa: E731
    else:
        extra_check = compile_check(extra)
        if extra_check is None:
            return None

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True  # object keywords ignore other types
        if any(name not in value for name in required):
            return False
        for name, item in value.items():
            property_check = properties.get(name)
            if property_check is not None:
                if not property_check(item):
                    return False
            elif extra_check is not None and not extra_check(item):
                return False
        return True

    return check


@dataclass(frozen=True)
class Endpoint:
    """One row of the endpoint table."""

    name: str
    method: str
    path: str
    status: int
    request: dict[str, Any]
    response: dict[str, Any]
    description: str = ""
    scopes: tuple[str, ...] = ()
    rate_limit: str | None = None
    idempotent: bool = False
    audit: bool = False
    path_params: tuple[str, ...] = ()
    request_validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    response_validator: Draft202012Validator = field(init=False, repr=False, compare=False)
    # Quick checks (`compile_check`) tried first; None when a schema uses other keywords.
    request_check: Callable[[Any], bool] | None = field(init=False, repr=False, compare=False)
    response_check: Callable[[Any], bool] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: validators are built once here rather than per request.
        object.__setattr__(self, "request_validator", validator_for(self.request))
        object.__setattr__(self, "response_validator", validator_for(self.response))
        object.__setattr__(self, "request_check", compile_check(self.request))
        object.__setattr__(self, "response_check", compile_check(self.response))

    @classmethod
    def from_model(cls, model: dict[str, Any]) -> Endpoint:
        return cls(
            name=model["name"],
            method=model["method"].upper(),
            path=model["path"],
            status=int(model.get("status", 200)),
            request=model.get("request") or {"type": "object"},
            response=model.get("response") or {"type": "object"},
            description=model.get("description") or "",
            scopes=tuple(model.get("scopes") or ()),
            rate_limit=model.get("rate_limit"),
            idempotent=bool(model.get("idempotent", False)),
            audit=bool(model.get("audit", False)),
            path_params=tuple(model.get("path_params") or ()),
        )

    @property
    def flask_rule(self) -> str:
        """The path as a Flask rule: `/v1/orders/{order_id}` -> `/v1/orders/<order_id>`.

        Parameters use the plain string converter whatever their type, so that a malformed value
        reaches validation (422 naming the field) instead of falling through to 404.
        """
        rule = self.path
        for name in self.path_params:
            rule = rule.replace("{" + name + "}", f"<{name}>")
        return rule

    @property
    def has_body(self) -> bool:
        """Whether request data comes from a JSON body (else from the query string)."""
        return self.method not in ("GET", "DELETE", "HEAD")


def endpoints(service: dict[str, Any]) -> list[Endpoint]:
    """The endpoint table of the spec model `service`, in spec order."""
    return [Endpoint.from_model(model) for model in service.get("endpoints", [])]


def json_pointer(parts: Iterable[Any]) -> str:
    """RFC 6901 pointer to a location in a document: ("lines", 0, "sku") -> /lines/0/sku."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def validation_errors(
    validator: Draft202012Validator,
    instance: Any,
    quick: Callable[[Any], bool] | None = None,
) -> list[dict[str, str]]:
    """Every way `instance` breaks the schema, as {"pointer", "detail"}, one entry per field.

    Missing and unexpected properties point at the field itself (/customer_id), not at the
    object that lacks or carries it, so a client can attach each message to its input. `quick`,
    the schema's `compile_check`, answers first: its "valid" is final, anything else goes to
    the validator.
    """
    if quick is not None and quick(instance):
        return []
    found: list[dict[str, str]] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        found.extend(_describe(error))
    unique = {(entry["pointer"], entry["detail"]): entry for entry in found}
    return sorted(unique.values(), key=lambda entry: entry["pointer"])


def _describe(error: ValidationError) -> list[dict[str, str]]:
    where = list(error.absolute_path)
    instance = error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "required" and isinstance(instance, dict):
        return [
            {"pointer": json_pointer([*where, name]), "detail": "is required"}
            for name in error.validator_value
            if name not in instance
        ]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        allowed = ", ".join(sorted(known)) or "none"
        return [
            {
                "pointer": json_pointer([*where, name]),
                "detail": f"is not a known field (known fields: {allowed})",
            }
            for name in sorted(set(instance) - known)
        ]
    if error.validator == "pattern" and not _conforms_to_format(schema, instance):
        return []  # the format's own error says more precisely what is wrong
    if error.validator in ("anyOf", "oneOf") and error.context:
        return _describe_choice(error)
    return [{"pointer": json_pointer(where), "detail": _friendly(error)}]


def _conforms_to_format(schema: dict[str, Any], instance: Any) -> bool:
    check = _FORMAT_CHECKS.get(schema.get("format"))  # type: ignore[arg-type]
    return check is None or _conforms(check)(instance)


_NULL = {"type": "null"}


def _describe_choice(error: ValidationError) -> list[dict[str, str]]:
    """anyOf/oneOf: what each allowed form found wrong. An optional field (`anyOf: [schema,
    {type: null}]`) reads as the one form it has, which may also be null."""
    branches: dict[int, list[ValidationError]] = {}
    for suberror in error.context or ():
        branches.setdefault(int(suberror.relative_schema_path[0]), []).append(suberror)
    choices = error.validator_value
    nullable = _NULL in choices
    forms = {index: found for index, found in branches.items() if choices[index] != _NULL}
    described = {
        index: [entry for suberror in found for entry in _describe(suberror)]
        for index, found in forms.items()
    }
    pointer = json_pointer(error.absolute_path)
    if len(described) == 1:
        (entries,) = described.values()
        if nullable:
            for entry in entries:
                if entry["pointer"] == pointer and entry["detail"].startswith("must be of type "):
                    kinds, _, rest = entry["detail"].removeprefix("must be of type ").partition(
                        ", not "
                    )
                    entry["detail"] = f"must be of type {kinds} or null, not {rest}"
        return entries
    listed = "; ".join(
        f"{entry['pointer'] or '/'} {entry['detail']}"
        for entries in described.values()
        for entry in entries[:1]
    )
    return [{"pointer": pointer, "detail": f"matches none of the allowed forms ({listed})"}]


_FORMAT_EXAMPLES = {
    "uuid": "a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "date-time": f"an RFC 3339 date-time such as {DATE_TIME_EXAMPLE}",
    "date": f"a date such as {DATE_EXAMPLE}",
    "decimal": 'a decimal number written as a string, such as "12.50"',
}


def _plural(count: Any, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# What each keyword's error says: what is wrong, in words true for that keyword, and what to
# send instead. (jsonschema's own messages quote regular expressions and Python reprs.)
_HINTS: dict[str, Callable[[Any, Any], str]] = {
    "minimum": lambda bound, _value: f"must be at least {bound}",
    "maximum": lambda bound, _value: f"must be at most {bound}",
    "exclusiveMinimum": lambda bound, _value: f"must be greater than {bound}",
    "exclusiveMaximum": lambda bound, _value: f"must be less than {bound}",
    "multipleOf": lambda bound, _value: f"must be a multiple of {bound}",
    "minLength": lambda bound, _value: (
        f"is too short: send at least {_plural(bound, 'character')}"
    ),
    "maxLength": lambda bound, _value: (
        f"is too long: send at most {_plural(bound, 'character')}"
    ),
    "minItems": lambda bound, _value: f"has too few items: send at least {bound}",
    "maxItems": lambda bound, _value: f"has too many items: send at most {bound}",
    "uniqueItems": lambda _bound, _value: "has an item more than once: send each item once",
    "minProperties": lambda bound, _value: f"has too few fields: send at least {bound}",
    "maxProperties": lambda bound, _value: f"has too many fields: send at most {bound}",
    "const": lambda bound, _value: f"must be {json.dumps(bound)}",
    "enum": lambda bound, _value: "must be one of " + ", ".join(json.dumps(c) for c in bound),
    "pattern": lambda bound, _value: f"does not have the required form (the pattern {bound})",
}


def _says_format(schema: dict[str, Any]) -> bool:
    """Whether a pattern failure means "not of the format": for the compact types' formats that
    have no check of their own (a checked format's pattern fails alone only when a full-form
    schema narrows the format; then the pattern itself is what is wrong)."""
    name = schema.get("format")
    return name in _FORMAT_EXAMPLES and name not in _FORMAT_CHECKS


def _friendly(error: ValidationError) -> str:
    """A detail true for the keyword that failed, saying what to send."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    if keyword == "format" and error.cause is not None:
        return str(error.cause)  # the format check's own words (check_date, ...)
    if keyword == "pattern" and _says_format(schema):
        return f"must be {_FORMAT_EXAMPLES[schema['format']]}"
    if keyword == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be of type {expected}, not {json.dumps(error.instance)}"
    hint = _HINTS.get(str(keyword))
    if hint is not None:
        return hint(error.validator_value, error.instance)
    return f"does not match the field's schema ({keyword}): {error.message}"


def to_jsonable(value: Any) -> Any:
    """A handler's return value with Python types turned into their JSON forms, so handlers may
    return UUIDs, datetimes (naive ones are UTC) and Decimals as they come from the database."""
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value
