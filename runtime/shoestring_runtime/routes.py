# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The endpoint table as Flask routes: assemble the request data, validate it, run the handler in
one transaction, validate what it returns.

For each request to an endpoint of `_generated/service.json`:

1. the data is assembled: path parameters, plus the query string (GET, DELETE) or the JSON body
   (other methods); strings from the path and query are turned into the integers, numbers and
   booleans the schema asks for;
2. it is validated against the endpoint's request schema (422 naming every bad field);
3. the handler runs as `handle(ctx, data)` inside ONE database transaction, run again from the
   start if the database aborts it as a deadlock victim (so keep side effects in the database:
   `ctx.db`, `ctx.publish`);
4. its return value is checked against the response schema before the transaction commits, so a
   handler bug answers 500 and leaves no half-done writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, current_app, g, request

from . import audit, auth, idempotency, jsonbody, ratelimit
from .context import Context, runtime
from .db import retry_on_deadlock
from .dialect import SQLITE_TYPE_REFUSED, VALUE_REFUSED
from .idempotency import Finish
from .problems import Problem
from .schemas import Endpoint, json_pointer, to_jsonable, validation_errors

Handler = Callable[[Context, dict[str, Any]], Any]

_INTEGER = re.compile(r"^-?[0-9]+$")
# A JSON number, as a query or path string may write one (float() would also take "1_000",
# " 12 " and digits of other scripts).
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class HandlerResponseInvalid(Exception):
    """A handler returned something its response schema does not allow (a bug in the handler)."""

    def __init__(self, endpoint: Endpoint, errors: list[dict[str, str]]) -> None:
        listed = "; ".join(f"{e['pointer'] or '/'} {e['detail']}" for e in errors)
        super().__init__(
            f"handler {endpoint.name} returned a body that does not match its response "
            f"schema: {listed} (fix the handler or the response fields in service.yaml)"
        )
        self.errors = errors


def register_endpoints(
    app: Flask, endpoints: list[Endpoint], handlers: Mapping[str, Handler]
) -> None:
    """Add one Flask rule per endpoint. Every endpoint must have a handler in the registry."""
    missing = [endpoint.name for endpoint in endpoints if endpoint.name not in handlers]
    if missing:
        raise LookupError(
            f"no handler registered for {', '.join(missing)}: run `shoestring generate` to "
            "rewrite _generated/registry.py and create the missing handler modules"
        )
    for endpoint in endpoints:
        app.add_url_rule(
            endpoint.flask_rule,
            endpoint=f"endpoint.{endpoint.name}",
            view_func=_view(endpoint, handlers[endpoint.name]),
            methods=[endpoint.method],
        )


def _view(endpoint: Endpoint, handler: Handler) -> Callable[..., Response]:
    def view(**path_values: str) -> Response:
        # Every endpoint needs a valid token with all its scopes (401/403 otherwise), before
        # anything else looks at the request.
        g.identity = auth.authenticate(endpoint.scopes)
        # After authentication (which sets g.identity): a `client` limit counts per token. An
        # idempotent request is counted in the transaction that claims its key (one commit
        # fewer), or here when it is refused before that.
        deferred_limit = endpoint.rate_limit if endpoint.idempotent else None
        if deferred_limit is None:
            ratelimit.enforce(endpoint.rate_limit)
        with ratelimit.counting_refusals(deferred_limit):
            key = idempotency.request_key() if endpoint.idempotent else None
            data = request_data(endpoint, path_values)
            errors = validation_errors(endpoint.request_validator, data, endpoint.request_check)
            if errors:
                raise Problem(
                    422,
                    f"the request does not match what {endpoint.name} accepts: fix the fields "
                    "listed in `errors`",
                    errors=errors,
                )
        if key is not None:  # count, claim the key, replay its response, or run and store
            return idempotency.run_once(
                endpoint.name,
                endpoint.status,
                key,
                lambda finish: run_handler(endpoint, handler, data, before_commit=finish),
                rate_limit=deferred_limit,
                # The body as parsed, unless path parameters were merged into it.
                parsed_body=data if endpoint.has_body and not path_values else None,
            )
        body = run_handler(endpoint, handler, data)
        return json_response(body, endpoint.status)

    view.__name__ = endpoint.name
    view.__doc__ = endpoint.description
    return view


def run_handler(
    endpoint: Endpoint,
    handler: Handler,
    data: dict[str, Any],
    before_commit: Finish | None = None,
) -> Any:
    """Call the handler in one transaction; return its response body (JSON-ready).

    In that transaction, after the handler: the body is checked against the response schema,
    an audit row is written (endpoints with `audit: true`), and the messages the handler
    published are written, by `before_commit(conn, body, pending)` when given (it runs the
    statements `pending` with its own, e.g. storing the response of an idempotent request).
    Any failure rolls all of it back.
    """
    state = runtime()

    def attempt() -> Any:
        with state.db.transaction() as conn:
            ctx = Context(
                db=conn,
                log=state.log,
                request_id=g.request_id,
                trace_id=g.trace_id,
                identity=g.get("identity"),
                settings=state.settings,
            )
            try:
                # A copy: a handler that edits its input must not change what a retry sees.
                result = handler(ctx, jsonbody.copy_json(data))
            except Exception as exc:
                refused = conn.dialect.refused_value(exc)
                if refused is None:
                    raise
                raise value_refused(endpoint, data, *refused) from exc
            body = to_jsonable(result)
            errors = validation_errors(endpoint.response_validator, body, endpoint.response_check)
            if errors:
                raise HandlerResponseInvalid(endpoint, errors)
            if endpoint.audit:
                audit.record(
                    conn,
                    action=endpoint.name,
                    actor=getattr(ctx.identity, "subject", None),
                    request_id=ctx.request_id,
                    trace_id=ctx.trace_id,
                    detail={
                        "method": endpoint.method,
                        "path": request.path,
                        "status": endpoint.status,
                    },
                )
            # The messages the handler published, what `before_commit` stores and the COMMIT
            # go to the database together, in one round trip.
            pending = ctx.outgoing.take_statements(conn.dialect)
            if before_commit is not None:
                before_commit(conn, body, pending)
            elif pending:
                conn.batch(pending, commit=True)
            return body

    return retry_on_deadlock(attempt, state.db.dialect, attempts=3)


def value_refused(endpoint: Endpoint, data: Any, column: str, why: str) -> Exception:
    """What to raise when the database refused a value the handler stored (strict mode: too
    long, out of range, not a valid date; never truncated or clipped).

    When a request field has the column's name the value came from the client: 422 pointing at
    that field. Otherwise the handler computed it, a bug of the service: the exception goes on
    to the 500 handler, and the log says how to check such values before the handler runs.
    """
    pointer = _find_field(data, column)
    hint = (
        f"declare the limit on the field in service.yaml (full form, e.g. `{column}: {{schema: "
        "{type: string, maxLength: 10}}` for a VARCHAR(10) column, or minimum/maximum for a "
        "number) so that requests are checked before the handler runs"
    )
    if pointer is None:
        runtime().log.error(
            "%s: the database refused the value stored in column %r (%s), and no request field "
            "has that name: check the value in the handler, or %s",
            endpoint.name,
            column,
            why,
            hint,
        )
        return ValueRefusedByDatabase(f"{endpoint.name}: column {column!r}: the value {why}")
    runtime().log.info("%s: the value of %s %s; %s", endpoint.name, pointer, why, hint)
    advice = _REFUSAL_ADVICE.get(why, "send a value of the documented type and form")
    return Problem(
        422,
        f"the value at {pointer} {why}: {advice}",
        errors=[{"pointer": pointer, "detail": why}],
    )


# What to send instead, for each reason `dialect.refused_value` gives.
_REFUSAL_ADVICE = {
    VALUE_REFUSED[1406]: "send a shorter value",
    VALUE_REFUSED[1264]: "send a number within the range this field can hold",
    VALUE_REFUSED[1366]: "send a value of the documented type",
    VALUE_REFUSED[1292]: (
        "send a date or time that exists, in the documented form (such as 2024-05-01 or "
        "2024-05-01T12:30:00Z)"
    ),
    VALUE_REFUSED[1265]: "send one of the documented values",
    SQLITE_TYPE_REFUSED: "send a value of the documented type",
}


class ValueRefusedByDatabase(Exception):
    """The database refused a value a handler computed (not one a request field carried)."""


def _find_field(data: Any, name: str) -> str | None:
    """The JSON pointer of the first field called `name` in the request data, top level first."""
    queue: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while queue:
        path, value = queue.pop(0)
        if isinstance(value, dict):
            if value.get(name) is not None:
                return json_pointer([*path, name])
            queue.extend(((*path, key), child) for key, child in value.items())
        elif isinstance(value, list):
            queue.extend(((*path, index), child) for index, child in enumerate(value))
    return None


def json_response(body: Any, status: int) -> Response:
    if status == 204:
        return Response(status=204)
    return Response(current_app.json.dumps(body), status=status, mimetype="application/json")


# -- assembling the request data --------------------------------------------------------------


def request_data(endpoint: Endpoint, path_values: Mapping[str, str]) -> Any:
    """The data a handler sees: path parameters plus the query string or the JSON body.

    A number in the path or the query string meets the bounds a JSON body's numbers meet
    (`jsonbody.integer_refusal`): beyond them, 400 naming the parameter, as for a body.
    """
    data = read_json_body() if endpoint.has_body else read_query(endpoint.request)
    path_data = {
        name: coerce(raw, property_schema(endpoint.request, name))
        for name, raw in path_values.items()
    }
    refused = _refused_places(path_data)
    if isinstance(data, dict) and not endpoint.has_body:
        refused += _refused_places(data)
    if refused:
        first = refused[0]
        more = f" ({len(refused)} problems, listed in `errors`)" if len(refused) > 1 else ""
        raise Problem(400, f"at {first['pointer']}: {first['detail']}{more}", errors=refused)
    if not isinstance(data, dict):
        return data  # a JSON array or scalar: validation reports it against the object schema
    for name, value in path_data.items():
        if name in data and data[name] != value:
            raise Problem(
                422,
                f"'{name}' is given in the path and in the body with different values: send it "
                "in the path only",
                errors=[{"pointer": f"/{name}", "detail": "differs from the value in the path"}],
            )
        data[name] = value
    return data


def _refused_places(data: dict[str, Any]) -> list[dict[str, str]]:
    """The path or query values `coerce` refused, as {"pointer", "detail"}."""
    found = []
    for name, value in data.items():
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            if isinstance(item, jsonbody.Refused):
                where = [name] if index is None else [name, index]
                found.append({"pointer": json_pointer(where), "detail": item.detail})
    return found


def read_json_body() -> Any:
    """The request body parsed as strict JSON (see `jsonbody`): 413 when too large, 415 when not
    JSON, 400 when malformed or holding values JSON cannot carry faithfully. An empty body counts
    as `{}`."""
    return jsonbody.read_request_json()


def read_query(schema: dict[str, Any]) -> dict[str, Any]:
    """The query string as data: repeated keys make a list where the schema wants an array."""
    data: dict[str, Any] = {}
    repeated: list[dict[str, str]] = []
    for name in request.args:
        values = request.args.getlist(name)
        field_schema = property_schema(schema, name)
        if "array" in _types(field_schema):
            items = field_schema.get("items", {}) if isinstance(field_schema, dict) else {}
            data[name] = [coerce(value, items) for value in values]
        elif len(values) > 1:
            repeated.append({"pointer": f"/{name}", "detail": f"is given {len(values)} times"})
        else:
            data[name] = coerce(values[0], field_schema)
    if repeated:
        raise Problem(422, "give each query parameter once", errors=repeated)
    return data


def property_schema(schema: dict[str, Any], name: str) -> Any:
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return properties.get(name, {})


def _types(schema: Any) -> set[str]:
    """Every JSON type a schema admits, looking inside anyOf/oneOf (optional fields use them)."""
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type", [])
    found = {declared} if isinstance(declared, str) else set(declared)
    for keyword in ("anyOf", "oneOf"):
        for choice in schema.get(keyword, []):
            found |= _types(choice)
    return found


def coerce(raw: str, schema: Any) -> Any:
    """A path or query string as the type the schema wants; left as text when it does not fit,
    so that validation names the field and the expected type. A number beyond what a JSON body
    may hold becomes a `jsonbody.Refused` (see `request_data`)."""
    types = _types(schema)
    if not types or "string" in types:
        return raw
    if raw == "" and "null" in types:
        return None
    if ("integer" in types or "number" in types) and _INTEGER.fullmatch(raw):
        why = jsonbody.integer_refusal(raw)
        return int(raw) if why is None else jsonbody.Refused(why)
    if "number" in types and _NUMBER.fullmatch(raw):
        why = jsonbody.number_refusal(raw)
        return float(raw) if why is None else jsonbody.Refused(why)
    if "boolean" in types and raw.lower() in _BOOLEANS:
        return _BOOLEANS[raw.lower()]
    return raw
