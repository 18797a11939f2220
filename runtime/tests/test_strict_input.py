"""Strict input, on the shop's endpoints (specs/shop.yaml; every service's generated contract
tests check the 400, 413, 415 and 422 of its own): a request body is read exactly as the client
meant it, or refused with a problem+json that says where and what to send instead, and never
with a 500.

- not JSON this service accepts (syntax, duplicate keys, NaN/Infinity, numbers beyond 64 bits,
  deep nesting, unpaired surrogates, not UTF-8): 400, `errors` pointing at each place;
- valid JSON that breaks the request schema (`true` where an integer belongs): 422;
- too large: 413, also for a chunked body without Content-Length; not JSON: 415;
- a value the database refuses to store (strict mode: too long, out of range): 422 pointing at
  the request field it came from, or 500 without a traceback when the handler computed it;
- the same rules in every place: a `date` or `date-time` must exist in a body, a query string, a
  path (and in a message received or published: test_strict_messages.py proves that); a number
  in a query string or a path has the bounds of a body's numbers (400); each refusal says what
  is true of it;
- a body is required where the served OpenAPI document says so, and only there.
"""

from __future__ import annotations

import io
import json
import secrets
import uuid

import pytest
from jsonschema import Draft202012Validator
from werkzeug.test import EnvironBuilder, run_wsgi_app

from shoestring_runtime import create_app as create_runtime_app
from shoestring_runtime.examples import example_for
from shoestring_runtime.jsonbody import MAX_DEPTH, InvalidJSON, copy_json, loads
from shoestring_runtime.schemas import (
    Endpoint,
    compile_check,
    endpoints,
    validation_errors,
    validator_for,
)
from shoestring_runtime.testing import new_address

from .shop import SERVICE, bearer

WITH_BODY = [endpoint for endpoint in endpoints(SERVICE.model) if endpoint.has_body]
needs_body_endpoint = pytest.mark.skipif(not WITH_BODY, reason="no endpoint takes a JSON body")


def refusal(raw: bytes) -> InvalidJSON:
    with pytest.raises(InvalidJSON) as caught:
        loads(raw)
    return caught.value


def pointers(error: InvalidJSON) -> list[str]:
    return [entry["pointer"] for entry in error.errors or []]


# -- the parser --------------------------------------------------------------------------------


def test_a_duplicate_key_is_refused_at_its_pointer():
    error = refusal(b'{"order": {"lines": [{"sku": "a", "sku": "b"}]}}')
    assert pointers(error) == ["/order/lines/0/sku"]
    assert "more than once" in error.detail


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_numbers(literal):
    error = refusal(b'{"amount": %s}' % literal.encode())
    assert pointers(error) == ["/amount"]
    assert f"{literal} is not a JSON number" in error.detail


def test_integers_must_fit_in_64_bits():
    assert loads(b"[9223372036854775807, -9223372036854775808]") == [2**63 - 1, -(2**63)]
    error = refusal(b'{"id": 9223372036854775808}')
    assert pointers(error) == ["/id"] and "signed 64-bit" in error.detail
    assert pointers(refusal(b'{"id": -9223372036854775809}')) == ["/id"]


def test_numbers_written_with_too_many_digits_are_refused():
    error = refusal(b'{"x": 0.' + b"1" * 200 + b"}")
    assert pointers(error) == ["/x"] and "at most 100" in error.detail
    # Beyond Python's own limit on int() (4300 digits): still a 400, not a ValueError.
    assert pointers(refusal(b'{"x": ' + b"7" * 5000 + b"}")) == ["/x"]


def test_floats_that_overflow_are_refused():
    error = refusal(b'{"ratio": [1.5, 1e400]}')
    assert pointers(error) == ["/ratio/1"] and "too large for a 64-bit float" in error.detail
    assert loads(b"1e308") == 1e308


def test_nesting_deeper_than_the_limit_is_refused():
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads(at_limit) is not None
    error = refusal(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert f"more than {MAX_DEPTH} levels" in error.detail
    # Far deeper than Python's recursion limit: refused, never a RecursionError.
    assert f"more than {MAX_DEPTH} levels" in refusal(b"[" * 100_000 + b"]" * 100_000).detail


def test_unpaired_surrogate_escapes_are_refused_and_pairs_are_characters():
    assert loads(b'{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}
    assert pointers(refusal(b'{"name": "\\ud800x"}')) == ["/name"]
    assert pointers(refusal(b'{"\\udfff": 1}')) == ["/\udfff"]


def test_text_that_is_not_utf8_is_refused():
    assert "not UTF-8" in refusal(b'{"name": "\xff"}').detail
    assert "byte order mark" in refusal('\ufeff{"a": 1}'.encode()).detail


def test_a_syntax_error_says_where():
    assert "line 2 column 7" in refusal(b'{"a": 1,\n "b": }').detail


def test_many_problems_are_listed_together():
    error = refusal(b'{"a": NaN, "b": 1e999, "c": 99999999999999999999, "a": 1}')
    # The second "a" replaces the first, NaN and all: the duplicate is what is reported there.
    assert pointers(error) == ["/a", "/b", "/c"]
    assert "3 problems" in error.detail


def test_true_is_not_an_integer_for_the_request_schema():
    # jsonschema's draft 2020-12 type checker: bool is not an integer (nor a number), although
    # Python's bool is an int subclass; 1.0 is an integer, as the JSON Schema spec says.
    validator = Draft202012Validator({"type": "object", "properties": {"n": {"type": "integer"}}})
    assert validation_errors(validator, {"n": True}) == [
        {"pointer": "/n", "detail": "must be of type integer, not true"}
    ]
    assert validation_errors(validator, {"n": 1.0}) == []
    number = Draft202012Validator({"type": "number"})
    assert not number.is_valid(False)


# -- over HTTP ---------------------------------------------------------------------------------


def headers_for(endpoint: Endpoint) -> dict[str, str]:
    """A token of its own per request (so these calls never meet a rate limit shared with other
    tests) and a fresh Idempotency-Key."""
    headers = bearer(endpoint.scopes, subject=f"strict-{secrets.token_hex(6)}")
    headers["Idempotency-Key"] = str(uuid.uuid4())
    return headers


def url_of(endpoint: Endpoint) -> str:
    data = example_for(endpoint.request)
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace("{" + name + "}", str(data[name]))
    return path


def post_raw(client, endpoint: Endpoint, raw: bytes, content_type="application/json"):
    headers = {**headers_for(endpoint), "Content-Type": content_type}
    return client.open(
        url_of(endpoint),
        method=endpoint.method,
        data=raw,
        headers=headers,
        environ_base={"REMOTE_ADDR": new_address()},  # a caller of its own, like headers_for's
    )


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


BAD_BODIES = {
    "duplicate key": (b'{"a": 1, "a": 2}', "/a"),
    "NaN": (b'{"a": NaN}', "/a"),
    "Infinity": (b'{"a": [Infinity]}', "/a/0"),
    "-Infinity": (b'{"a": -Infinity}', "/a"),
    "integer beyond 2**63": (b'{"a": 18446744073709551616}', "/a"),
    "150 digits": (b'{"a": ' + b"9" * 150 + b"}", "/a"),
    "float overflow": (b'{"a": -1e309}', "/a"),
    "65 levels": (b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", None),
    "lone surrogate": (b'{"a": "\\udc00"}', "/a"),
    "not UTF-8": (b'{"a": "\xc3\x28"}', None),
    "syntax error": (b'{"a": 1,}', None),
}


@needs_body_endpoint
@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_body_that_is_not_acceptable_json_gets_400_naming_the_place(client, case):
    raw, pointer = BAD_BODIES[case]
    body = problem_of(post_raw(client, WITH_BODY[0], raw), 400)
    if pointer is not None:
        assert pointer in [error["pointer"] for error in body["errors"]]


def _integer_field(endpoint: Endpoint) -> str | None:
    for name, schema in endpoint.request.get("properties", {}).items():
        types = schema.get("type", [])
        types = [types] if isinstance(types, str) else types
        if name not in endpoint.path_params and "integer" in types:
            return name
    return None


def body_of(endpoint: Endpoint) -> dict:
    """A valid body for `endpoint` (its example without the path parameters)."""
    data = example_for(endpoint.request)
    return {key: value for key, value in data.items() if key not in endpoint.path_params}


WITH_INTEGER = [endpoint for endpoint in WITH_BODY if _integer_field(endpoint)]


@pytest.mark.skipif(not WITH_INTEGER, reason="no JSON body has an integer field")
def test_true_for_an_integer_field_gets_422_at_its_pointer(client):
    endpoint = WITH_INTEGER[0]
    field = _integer_field(endpoint)
    data = body_of(endpoint)
    data[field] = True
    body = problem_of(post_raw(client, endpoint, json.dumps(data).encode()), 422)
    # An optional field (`days: int?`) takes null too, and the message names both.
    nullable = "null" in endpoint.request["properties"][field]["type"]
    expected = "integer or null" if nullable else "integer"
    detail = f"must be of type {expected}, not true"
    assert {"pointer": f"/{field}", "detail": detail} in body["errors"]


@needs_body_endpoint
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_json_gets_415(client, content_type):
    problem_of(post_raw(client, WITH_BODY[0], b'{"a": 1}', content_type), 415)


@needs_body_endpoint
def test_json_in_another_charset_gets_415(client):
    body = problem_of(
        post_raw(client, WITH_BODY[0], b'{"a": 1}', "application/json; charset=latin-1"), 415
    )
    assert "UTF-8" in body["detail"]


def run_streamed(app, endpoint: Endpoint, raw: bytes, terminated: bool):
    """Send `raw` the way a server hands over a chunked body: no Content-Length, and
    `wsgi.input_terminated` when the server has read the body to its end itself."""
    environ = EnvironBuilder(
        path=url_of(endpoint),
        method=endpoint.method,
        headers={**headers_for(endpoint), "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_base={"REMOTE_ADDR": new_address()},  # a caller of its own, like headers_for's
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(raw)
    if terminated:
        environ["wsgi.input_terminated"] = True
    app_iter, status, headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    return int(status.split()[0]), dict(headers), b"".join(app_iter)


@needs_body_endpoint
def test_a_chunked_body_over_the_limit_gets_413(app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    status, headers, text = run_streamed(
        app, WITH_BODY[0], b'{"a": "' + b"x" * limit + b'"}', terminated=True
    )
    assert status == 413 and headers["Content-Type"] == "application/problem+json"
    assert str(limit).encode() in text


@needs_body_endpoint
def test_a_chunked_body_at_the_limit_is_read_whole(app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    raw = b'{"a": "' + b"x" * (limit - 9) + b'"}'  # exactly the limit
    status, _, text = run_streamed(app, WITH_BODY[0], raw, terminated=True)
    assert status == 422, text  # parsed whole; "a" is not a field of the endpoint


@needs_body_endpoint
def test_a_chunked_body_the_server_did_not_read_gets_411_not_an_empty_body(app):
    status, headers, text = run_streamed(app, WITH_BODY[0], b'{"a": 1}', terminated=False)
    assert status == 411 and headers["Content-Type"] == "application/problem+json"
    assert b"Content-Length" in text


# -- values the database refuses -----------------------------------------------------------------


def _string_field(endpoint: Endpoint) -> str | None:
    data = example_for(endpoint.request)
    for name, value in data.items():
        if name not in endpoint.path_params and isinstance(value, str):
            return name
    return None


WITH_STRING = [endpoint for endpoint in WITH_BODY if _string_field(endpoint)]


@pytest.fixture
def narrow_table(db):
    """`narrow_table(column)`: a new table with one column that cannot hold the text the tests
    store: VARCHAR(3) on MySQL (strict mode refuses longer values), INTEGER in a STRICT table on
    SQLite. Returns the table's name; the tables are dropped afterwards."""
    made: list[str] = []

    def make(column: str) -> str:
        name = f"narrow_{secrets.token_hex(4)}"
        column_type = "VARCHAR(3)" if db.dialect.name == "mysql" else "INTEGER"
        strict = "" if db.dialect.name == "mysql" else " STRICT"
        with db.transaction() as conn:
            conn.execute(f"CREATE TABLE {name} ({column} {column_type}){strict}")
        made.append(name)
        return name

    yield make
    with db.transaction() as conn:
        for name in made:
            conn.execute(f"DROP TABLE {name}")


def app_storing(settings, endpoint: Endpoint, table: str, column: str):
    """The app, with `endpoint`'s handler storing text too long for `table.column`."""

    def handle(ctx, data):
        ctx.db.execute(f"INSERT INTO {table} ({column}) VALUES (%s)", ("far too long",))
        return {}

    handlers = {**SERVICE.registry.HANDLERS, endpoint.name: handle}
    return create_runtime_app(SERVICE, settings, handlers=handlers)


def rows_in(db, table: str) -> int:
    with db.transaction() as conn:
        return conn.fetchvalue(f"SELECT COUNT(*) FROM {table}")


@pytest.mark.skipif(not WITH_STRING, reason="no JSON body has a string field")
def test_a_value_the_database_refuses_gets_422_at_the_field_it_came_from(
    settings, db, narrow_table
):
    endpoint = WITH_STRING[0]
    field = _string_field(endpoint)
    table = narrow_table(field)  # the column has the request field's name
    app = app_storing(settings, endpoint, table, field)
    response = post_raw(app.test_client(), endpoint, json.dumps(body_of(endpoint)).encode())
    body = problem_of(response, 422)
    assert body["errors"][0]["pointer"] == f"/{field}"
    assert rows_in(db, table) == 0  # refused, not truncated


@needs_body_endpoint
def test_a_computed_value_the_database_refuses_is_a_500_without_a_traceback(
    settings, db, narrow_table, capsys
):
    endpoint = WITH_BODY[0]
    table = narrow_table("no_field_has_this_name")
    app = app_storing(settings, endpoint, table, "no_field_has_this_name")
    response = post_raw(app.test_client(), endpoint, json.dumps(body_of(endpoint)).encode())
    problem_of(response, 500)
    assert rows_in(db, table) == 0
    logged = capsys.readouterr().err
    assert "no request field has that name" in logged and "maxLength" in logged


def test_copy_json_copies_every_level():
    document = {"a": [1, {"b": ["c"]}], "d": None}
    copied = copy_json(document)
    assert copied == document
    copied["a"][1]["b"].append("x")
    assert document == {"a": [1, {"b": ["c"]}], "d": None}


@pytest.mark.parametrize("endpoint", endpoints(SERVICE.model), ids=lambda endpoint: endpoint.name)
def test_the_quick_request_check_never_accepts_what_jsonschema_refuses(endpoint):
    # The quick check answers "valid" for the common case without jsonschema; it must never
    # say so for data jsonschema refuses (its "invalid" is always re-checked by jsonschema).
    quick = endpoint.request_check
    if quick is None:
        pytest.skip("the request schema uses keywords the quick check leaves to jsonschema")
    valid = example_for(endpoint.request)
    assert quick(valid) and endpoint.request_validator.is_valid(valid)
    candidates = [None, [], "x", {}, {**valid, "no_such_field": 1}]
    for name in valid:
        candidates += [{**valid, name: wrong} for wrong in (None, True, 1.5, "", [], {}, "x" * 300)]
    for candidate in candidates:
        if quick(candidate):
            assert endpoint.request_validator.is_valid(candidate), candidate


# -- dates and times that exist, wherever data is checked ----------------------------------------

DAY = {"type": "string", "format": "date"}
MOMENT = {"type": "string", "format": "date-time"}
DAYS = {
    "2024-02-29": True,  # a leap year
    "2023-02-29": False,
    "2026-02-31": False,
    "2024-04-31": False,
    "2024-12-31": True,
    "2024-00-10": False,
    "2024-13-01": False,
    "0000-01-01": False,
    "2024-5-01": False,
    "\uff12\uff10\uff12\uff14-05-01": False,  # digits, but not ASCII ones
    "20240501": False,
}
MOMENTS = {
    "2024-05-01T12:30:00Z": True,
    "2024-05-01t12:30:00.123456z": True,
    "2024-05-01 12:30:00+02:00": True,
    "2024-02-29T23:59:59-23:59": True,
    "2023-02-29T12:00:00Z": False,
    "2024-05-01T10:00:60Z": False,  # a leap second
    "2024-05-01T24:00:00Z": False,
    "2024-05-01T12:60:00Z": False,
    "2024-05-01T12:30:00+24:00": False,
    "2024-05-01T12:30Z": False,
    "2024-05-01T12:30:00": False,  # no offset
}


@pytest.mark.parametrize("value", list(DAYS))
def test_a_date_must_be_a_day_of_the_calendar(value):
    assert validator_for(DAY).is_valid(value) is DAYS[value]
    assert compile_check(DAY)(value) is DAYS[value]  # the quick check agrees


@pytest.mark.parametrize("value", list(MOMENTS))
def test_a_date_time_must_be_a_moment_that_exists(value):
    assert validator_for(MOMENT).is_valid(value) is MOMENTS[value]
    assert compile_check(MOMENT)(value) is MOMENTS[value]


def test_a_date_that_does_not_exist_is_told_why():
    errors = validation_errors(validator_for(DAY), "2023-02-29")
    assert errors == [
        {"pointer": "", "detail": "is not a day of the calendar: February 2023 has 28 days"}
    ]
    [leap] = validation_errors(validator_for(MOMENT), "2016-12-31T23:59:60Z")
    assert "leap second" in leap["detail"]


# -- the query string and the path: the bounds of a body ----------------------------------------


def _query_integer(endpoint: Endpoint) -> str | None:
    for name, schema in endpoint.request.get("properties", {}).items():
        types = schema.get("type", []) if isinstance(schema, dict) else []
        types = [types] if isinstance(types, str) else types
        if "integer" in types:
            return name
    return None


WITH_QUERY_INTEGER = [
    endpoint
    for endpoint in endpoints(SERVICE.model)
    if not endpoint.has_body and _query_integer(endpoint)
]


@pytest.mark.skipif(not WITH_QUERY_INTEGER, reason="no endpoint reads an integer from the URL")
@pytest.mark.parametrize("literal", ["99999999999999999999999", "-9223372036854775809", "7" * 5000])
def test_an_integer_in_the_url_beyond_a_bodys_bounds_gets_400_naming_it(client, literal):
    endpoint = WITH_QUERY_INTEGER[0]
    name = _query_integer(endpoint)
    data = example_for(endpoint.request)
    data[name] = literal
    path = endpoint.path
    query = {}
    for field, value in data.items():
        if field in endpoint.path_params:
            path = path.replace("{" + field + "}", str(value))
        else:
            query[field] = value
    response = client.open(
        path, method=endpoint.method, query_string=query, headers=headers_for(endpoint)
    )
    body = problem_of(response, 400)
    assert [error["pointer"] for error in body["errors"]] == [f"/{name}"]
    # The words a JSON body gets for the same number.
    in_a_body = refusal(b"[" + literal.encode() + b"]").errors or []
    assert body["errors"][0]["detail"] == in_a_body[0]["detail"]


# -- each refusal says what is true of it ---------------------------------------------------------

HINTS = [
    ({"type": "integer", "minimum": 3}, 1, "must be at least 3"),
    ({"type": "integer", "maximum": 3}, 9, "must be at most 3"),
    ({"type": "number", "exclusiveMinimum": 0}, 0, "must be greater than 0"),
    ({"type": "number", "exclusiveMaximum": 1}, 1, "must be less than 1"),
    ({"type": "integer", "multipleOf": 5}, 7, "must be a multiple of 5"),
    ({"type": "string", "minLength": 2}, "a", "is too short: send at least 2 characters"),
    ({"type": "string", "maxLength": 1}, "ab", "is too long: send at most 1 character"),
    ({"type": "string", "pattern": "^[a-z]+$"}, "A1",
     "does not have the required form (the pattern ^[a-z]+$)"),
    ({"type": "string", "enum": ["a", "b"]}, "c", 'must be one of "a", "b"'),
    ({"const": "yes"}, "no", 'must be "yes"'),
    ({"type": "array", "minItems": 1}, [], "has too few items: send at least 1"),
    ({"type": "array", "maxItems": 1}, [1, 2], "has too many items: send at most 1"),
    ({"type": "array", "uniqueItems": True}, [1, 1],
     "has an item more than once: send each item once"),
    ({"type": "string"}, 5, "must be of type string, not 5"),
    ({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]}, 5,
     "must be of type string or null, not 5"),
    ({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "null"}]}, "abc",
     "is too long: send at most 2 characters"),
    (DAY, "2026-02-31", "is not a day of the calendar: February 2026 has 28 days"),
    (DAY, "31.12.2024", "must be a date written YYYY-MM-DD, such as 2024-05-01"),
]


@pytest.mark.parametrize("schema, value, detail", HINTS, ids=[str(i) for i in range(len(HINTS))])
def test_each_keyword_gets_a_detail_true_for_it(schema, value, detail):
    wrapped = {"type": "object", "properties": {"x": schema}}
    assert validation_errors(validator_for(wrapped), {"x": value}) == [
        {"pointer": "/x", "detail": detail}
    ]


def test_a_date_with_the_form_of_a_compact_date_gets_one_error_not_two():
    # A compact `date` carries a pattern too; when the date does not exist the format says why,
    # and the pattern's complaint is left out.
    schema = {**DAY, "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"}
    wrapped = {"type": "object", "properties": {"x": schema}}
    assert validation_errors(validator_for(wrapped), {"x": "2024-13-45"}) == [
        {"pointer": "/x", "detail": "has month 13: months go from 01 to 12"}
    ]


# -- the OpenAPI document and the server agree on request bodies ----------------------------------


@needs_body_endpoint
@pytest.mark.parametrize("endpoint", WITH_BODY, ids=lambda endpoint: endpoint.name)
def test_a_body_is_required_exactly_where_the_served_document_says(client, endpoint):
    document = client.get("/openapi.json").get_json()
    operation = document["paths"][endpoint.path][endpoint.method.lower()]
    headers = headers_for(endpoint)
    response = client.open(url_of(endpoint), method=endpoint.method, headers=headers)
    if operation["requestBody"]["required"]:
        body = problem_of(response, 422)
        assert all(error["detail"] == "is required" for error in body["errors"])
    else:
        assert response.status_code == endpoint.status, response.get_data(as_text=True)
