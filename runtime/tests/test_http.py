"""What every request gets, whatever the endpoint: problem+json errors, request and trace ids,
one transaction around the handler, no traceback ever sent to a client."""

from __future__ import annotations

import json
import logging

from shoestring_runtime import Problem, audit
from shoestring_runtime import create_app as create_runtime_app
from shoestring_runtime.examples import example_for
from shoestring_runtime.logs import Throttle
from shoestring_runtime.schemas import endpoints
from shoestring_runtime.testing import client_of

from .shop import SERVICE, request_headers

ENDPOINTS = endpoints(SERVICE.model)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_an_unknown_route_gets_404_problem_json(client):
    body = problem_of(client.get("/no/such/route"), 404)
    assert body["instance"] == "/no/such/route"
    assert "<html" not in json.dumps(body).lower()


def test_a_wrong_method_gets_405_problem_json_with_allow(client):
    response = client.put("/livez")
    body = problem_of(response, 405)
    assert "GET" in response.headers["Allow"]
    assert "PUT is not allowed" in body["detail"]


def test_every_response_carries_a_request_id_and_keeps_the_callers(client):
    assert len(client.get("/livez").headers["X-Request-Id"]) == 32
    response = client.get("/livez", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    # A request id that could forge log lines or headers is replaced.
    response = client.get("/livez", headers={"X-Request-Id": "bad id\tx"})
    assert response.headers["X-Request-Id"] != "bad id\tx"


def test_problems_name_the_request_id(client):
    response = client.get("/no/such/route", headers={"X-Request-Id": "req-42"})
    assert problem_of(response, 404)["request_id"] == "req-42"


def test_logs_are_json_lines_with_request_and_trace_ids(client, app, capsys):
    app.extensions["chassis"].log.setLevel("INFO")
    try:
        client.get(
            "/no/such/route",
            headers={"X-Request-Id": "req-7", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
        )
    finally:
        app.extensions["chassis"].log.setLevel(app.extensions["chassis"].settings.log_level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    access = [line for line in lines if line.get("path") == "/no/such/route"]
    assert access and access[-1]["request_id"] == "req-7"
    assert access[-1]["trace_id"] == TRACE_ID
    assert access[-1]["status"] == 404


def test_waitress_queue_warnings_are_logged_once_per_interval(app, capsys):
    # Under load waitress warns once per request that waits for a thread; one line per
    # interval, counting the rest, says the same without flooding the log.
    queue = logging.getLogger("waitress.queue")
    throttle = next(found for found in queue.filters if isinstance(found, Throttle))
    throttle._next = 0.0  # start a fresh interval
    for depth in range(50):
        queue.warning("Task queue depth is %d", depth)
    throttle._next = 0.0  # the interval is over
    queue.warning("Task queue depth is %d", 99)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "depth" in line]
    messages = [line["message"] for line in lines]
    assert messages == ["Task queue depth is 0", "Task queue depth is 99"]
    assert lines[1]["suppressed"] == 49


def app_with_handler(settings, handler):
    """The app, with the first endpoint's handler replaced by `handler`."""
    handlers = {**SERVICE.registry.HANDLERS, ENDPOINTS[0].name: handler}
    return create_runtime_app(SERVICE, settings, handlers=handlers)


def call_first_endpoint(app):
    endpoint = ENDPOINTS[0]
    data = example_for(endpoint.request)
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace("{" + name + "}", str(data.pop(name)))
    client = client_of(app)
    headers = request_headers(endpoint)
    if endpoint.has_body:
        return client.open(path, method=endpoint.method, json=data, headers=headers)
    return client.open(path, method=endpoint.method, query_string=data, headers=headers)


def audit_rows(db, action: str) -> int:
    with db.transaction() as conn:
        return conn.fetchvalue("SELECT COUNT(*) FROM audit_log WHERE action = %s", (action,))


def test_a_handler_bug_gets_500_without_the_traceback_and_is_logged(settings, db, capsys):
    def broken(ctx, data):
        raise RuntimeError("secret detail of the failure")

    response = call_first_endpoint(app_with_handler(settings, broken))
    body = problem_of(response, 500)
    text = response.get_data(as_text=True)
    assert "secret detail" not in text and "Traceback" not in text
    assert body["request_id"]
    logged = capsys.readouterr().err
    assert "secret detail of the failure" in logged and "Traceback" in logged


def test_a_handler_that_raises_leaves_no_writes(settings, db):
    def writes_then_fails(ctx, data):
        audit.record(ctx.db, action="test_rolled_back")
        raise Problem(409, "conflict on purpose")

    response = call_first_endpoint(app_with_handler(settings, writes_then_fails))
    assert problem_of(response, 409)["detail"] == "conflict on purpose"
    assert audit_rows(db, "test_rolled_back") == 0


def test_a_response_that_breaks_the_schema_is_a_500_and_rolls_back(settings, db):
    def wrong_response(ctx, data):
        audit.record(ctx.db, action="test_bad_response")
        return {"no_such_field": True}

    response = call_first_endpoint(app_with_handler(settings, wrong_response))
    problem_of(response, 500)
    assert audit_rows(db, "test_bad_response") == 0


def test_a_handlers_writes_commit_when_it_returns(settings, db):
    real = SERVICE.registry.HANDLERS[ENDPOINTS[0].name]

    def writes(ctx, data):
        audit.record(ctx.db, action="test_committed")
        return real(ctx, data)

    response = call_first_endpoint(app_with_handler(settings, writes))
    assert response.status_code == ENDPOINTS[0].status, response.get_data(as_text=True)
    assert audit_rows(db, "test_committed") == 1
