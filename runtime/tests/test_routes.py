"""How request data is assembled and checked: path and query strings become the schema's types,
and every validation error points at its field."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from jsonschema import Draft202012Validator

from shoestring_runtime.jsonbody import Refused
from shoestring_runtime.routes import coerce
from shoestring_runtime.schemas import to_jsonable, validation_errors

OPTIONAL_INT = {"type": ["integer", "null"]}


def test_strings_become_integers_numbers_and_booleans_when_the_schema_says_so():
    assert coerce("42", {"type": "integer"}) == 42
    assert coerce("-7", OPTIONAL_INT) == -7
    assert coerce("2.5", {"type": "number"}) == 2.5
    assert coerce("true", {"type": "boolean"}) is True
    assert coerce("0", {"type": "boolean"}) is False
    assert coerce("5", {"anyOf": [{"type": "integer"}, {"type": "null"}]}) == 5


def test_strings_stay_strings_when_they_do_not_fit_so_validation_names_them():
    assert coerce("abc", {"type": "integer"}) == "abc"
    assert coerce("1.5", {"type": "integer"}) == "1.5"
    assert coerce("nan", {"type": "number"}) == "nan"
    assert coerce("007", {"type": "string"}) == "007"
    assert coerce("", OPTIONAL_INT) is None
    # float() would read these; a JSON body could not hold them as numbers.
    for text in ("1_000", " 12", "12\n", "\u0661\u0662", "inf", "0x10"):
        assert coerce(text, {"type": "number"}) == text


def test_numbers_beyond_what_a_json_body_holds_are_refused_not_read():
    assert coerce("9223372036854775807", {"type": "integer"}) == 2**63 - 1
    for text, schema in (
        ("9223372036854775808", {"type": "integer"}),
        ("-9223372036854775809", OPTIONAL_INT),
        ("9" * 30, {"type": "number"}),
        ("1e400", {"type": "number"}),
        ("1" * 5000, {"type": "integer"}),
    ):
        refused = coerce(text, schema)
        assert isinstance(refused, Refused), text


SCHEMA = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "string", "format": "uuid", "pattern": "^[0-9a-f-]{36}$"},
        "amount_cents": {"type": "integer"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}},
                "required": ["sku"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["customer_id", "amount_cents"],
    "additionalProperties": False,
}


def test_every_error_points_at_its_field():
    errors = validation_errors(
        Draft202012Validator(SCHEMA),
        {"customer_id": "nope", "lines": [{"sku": "a"}, {"qty": 1}], "colour": "red"},
    )
    by_pointer = {error["pointer"]: error["detail"] for error in errors}
    assert by_pointer["/amount_cents"] == "is required"
    assert by_pointer["/customer_id"].startswith("must be a UUID")
    assert by_pointer["/lines/1/sku"] == "is required"
    assert by_pointer["/lines/1/qty"].startswith("is not a known field")
    assert by_pointer["/colour"].startswith("is not a known field")


def test_handler_results_turn_into_json_types():
    order_id = uuid.UUID("3fa85f64-5717-4562-b3fc-2c963f66afa6")
    result = to_jsonable(
        {
            "order_id": order_id,
            "created_at": dt.datetime(2024, 5, 1, 12, 30),
            "day": dt.date(2024, 5, 1),
            "price": decimal.Decimal("12.50"),
            "items": (1, 2),
        }
    )
    assert result == {
        "order_id": str(order_id),
        "created_at": "2024-05-01T12:30:00Z",
        "day": "2024-05-01",
        "price": "12.50",
        "items": [1, 2],
    }
