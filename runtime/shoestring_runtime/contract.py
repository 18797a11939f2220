"""The contract checks of a service: what its spec promises, checked on the running service.

`shoestring generate` writes `<package>/_generated/test_contract.py`, which names the spec's
endpoints and message versions and calls one method of `Contract` per concern and per name; the
plugin's `contract` fixture (shoestring_runtime.testing) gives the `Contract` of the service
under test. The checks live here, so a fix to them reaches every service as a runtime version.

Each method fails with an `AssertionError` saying what the service answered, or skips (with the
reason) when the spec gives it nothing to check. A new concern is one more method here and one
more test in the generated file.

PYTEST_DONT_REWRITE: the checks say what went wrong themselves.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from . import audit, inbox, ratelimit
from .app import create_app
from .context import Context
from .events import InvalidMessage, envelope, parse_event_type
from .examples import example_for
from .logs import new_trace_id
from .schemas import Endpoint, endpoints
from .service import Service
from .settings import Settings
from .testing import (
    bearer,
    client_of,
    endpoint_url,
    new_address,
    new_subject,
    peer_issuers,
    request_headers,
    settings_for,
)

__all__ = ["Contract", "message_version"]

Sender = Callable[..., TestResponse]
# A traceparent for the messages the checks build (any valid one will do).
_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def message_version(name: str) -> tuple[str, int]:
    """("order.created", 2) from "order.created.v2", the id of a message version in the
    generated tests (the form of its schema file's name)."""
    return parse_event_type(name)


class Contract:
    """The checks of one service's contract, on its app (`app`, built by the service's own
    `create_app`) and its migrated database (`settings`)."""

    def __init__(self, service: Service, app: Flask, settings: Settings) -> None:
        self.service = service
        self.app = app
        self.settings = settings
        self.endpoints = {endpoint.name: endpoint for endpoint in endpoints(service.model)}

    # -- endpoints -----------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint `name` of the spec, or a failure that says to regenerate."""
        if name not in self.endpoints:
            pytest.fail(f"service.yaml has no endpoint {name!r}: run `shoestring generate`")
        return self.endpoints[name]

    def call(self, name: str, request: dict[str, Any], **kwargs: Any) -> TestResponse:
        """Send `request` to the endpoint `name` as a client would (its scopes granted, a fresh
        Idempotency-Key where it is idempotent), from a caller of its own; `data=` sends raw
        bytes as the body instead."""
        endpoint = self.endpoint(name)
        headers = {**request_headers(self.service, endpoint), **kwargs.pop("headers", {})}
        if endpoint.has_body and "data" not in kwargs:
            kwargs["json"] = {k: v for k, v in request.items() if k not in endpoint.path_params}
        return client_of(self.app).open(
            endpoint_url(endpoint, request), method=endpoint.method, headers=headers, **kwargs
        )

    def example_request_gets_its_response(self, name: str) -> None:
        """The example of the request schema reaches the handler, whose answer has the
        endpoint's status and a body valid against the response schema.

        An endpoint with path parameters addresses one resource, which the example's made-up
        identifiers may not name: there a 404 problem+json is a kept promise too (the handler
        stub answers its example; a real handler finds no such row).
        """
        endpoint = self.endpoint(name)
        response = self.call(name, example_for(endpoint.request))
        if endpoint.path_params and response.status_code == 404:
            problem_of(response, 404)
            return
        assert response.status_code == endpoint.status, _shown(response)
        if endpoint.status != 204:
            assert response.mimetype == "application/json", _shown(response)
            errors = [
                f"{error.json_path}: {error.message}"
                for error in endpoint.response_validator.iter_errors(response.get_json())
            ]
            assert errors == [], f"{name}'s response breaks its schema: {errors}"

    def missing_field_gets_422_at_its_pointer(self, name: str) -> None:
        """A request without a required field (or, where none is required, with one nobody
        declared) gets 422, its `errors` pointing at that field."""
        endpoint = self.endpoint(name)
        data = example_for(endpoint.request)
        required = [
            field
            for field in endpoint.request.get("required", [])
            if field not in endpoint.path_params
        ]
        if required:
            field = required[0]
            del data[field]
            expected = {"pointer": f"/{field}", "detail": "is required"}
        else:
            field = "no_such_field"
            data[field] = "1"
            expected = {"pointer": f"/{field}"}
        body = problem_of(self.call(name, data), 422)
        assert any(expected.items() <= error.items() for error in body["errors"]), body["errors"]

    def wrong_type_gets_422_at_its_pointer(self, name: str) -> None:
        """A value of the wrong type (a word where a number, a boolean, a format or a choice
        belongs) gets 422 at the field's pointer."""
        endpoint = self.endpoint(name)
        data = example_for(endpoint.request)
        properties = endpoint.request.get("properties", {})
        breakable = [
            field
            for field, schema in properties.items()
            if field in data and _wrong_value(schema) is not None
        ]
        if not breakable:
            pytest.skip(f"{name} has no field of a type a string can break")
        field = breakable[0]
        data[field] = _wrong_value(properties[field])
        body = problem_of(self.call(name, data), 422)
        assert f"/{field}" in [error["pointer"] for error in body["errors"]], body["errors"]

    def malformed_json_gets_400(self, name: str) -> None:
        """A body that is not valid JSON gets 400."""
        response = self._send_raw(name, b'{"a": ', "application/json")
        assert "not valid JSON" in problem_of(response, 400)["detail"]

    def body_that_is_not_json_gets_415(self, name: str) -> None:
        """A body of another media type gets 415."""
        problem_of(self._send_raw(name, b"hello", "text/plain"), 415)

    def oversized_body_gets_413(self, name: str) -> None:
        """A body over MAX_BODY_BYTES gets 413, naming the limit."""
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        oversized = b'{"padding": "' + b"x" * limit + b'"}'
        body = problem_of(self._send_raw(name, oversized, "application/json"), 413)
        assert str(limit) in body["detail"], body

    def _send_raw(self, name: str, raw: bytes, content_type: str) -> TestResponse:
        endpoint = self.endpoint(name)
        if not endpoint.has_body:
            pytest.fail(f"{name} ({endpoint.method}) takes no body: run `shoestring generate`")
        return self.call(
            name, example_for(endpoint.request), data=raw, headers={"Content-Type": content_type}
        )

    def _send_example(
        self, endpoint: Endpoint, headers: dict[str, str], address: str | None = None
    ) -> TestResponse:
        """Send the example request of `endpoint` with exactly `headers` (no token unless they
        hold one), from `address` (by default an address of its own)."""
        data = example_for(endpoint.request)
        parts: dict[str, Any] = {}
        if endpoint.has_body:
            parts["json"] = {k: v for k, v in data.items() if k not in endpoint.path_params}
        if address is not None:
            parts["environ_base"] = {"REMOTE_ADDR": address}
        return client_of(self.app).open(
            endpoint_url(endpoint, data), method=endpoint.method, headers=headers, **parts
        )

    # -- authentication ------------------------------------------------------------------

    def request_without_a_token_gets_401(self, name: str) -> None:
        """A request without a token gets 401 problem+json with the service's Bearer challenge
        (its realm is the service's name, the audience of its tokens)."""
        endpoint = self._declaring(name, "scopes")
        headers = request_headers(self.service, endpoint)
        del headers["Authorization"]
        challenge = _challenge(self._send_example(endpoint, headers), 401)
        assert challenge == f'Bearer realm="{self.service.name}"', challenge

    def token_without_one_of_its_scopes_gets_403(self, name: str) -> None:
        """For each scope the endpoint requires, a token granting every other scope of the spec
        gets 403 problem+json, its challenge saying `insufficient_scope` and naming the scope."""
        endpoint = self._declaring(name, "scopes")
        spec_scopes = sorted({scope for each in self.endpoints.values() for scope in each.scopes})
        for scope in endpoint.scopes:
            others = [granted for granted in spec_scopes if granted != scope]
            headers = {
                **request_headers(self.service, endpoint),
                **bearer(self.service, others, subject=new_subject()),
            }
            challenge = _challenge(self._send_example(endpoint, headers), 403)
            assert challenge.startswith(f'Bearer realm="{self.service.name}"'), challenge
            assert 'error="insufficient_scope"' in challenge, challenge
            named = re.search(r'scope="([^"]*)"', challenge)
            assert named and scope in named.group(1).split(), (
                f"{name}'s challenge to a token without {scope} does not name it: {challenge}"
            )

    # -- rate limits ---------------------------------------------------------------------

    def responses_carry_the_ratelimit_headers_of_the_policy(self, name: str) -> None:
        """A caller's first request gets the RateLimit-Policy header of the endpoint's policy and
        a RateLimit header with one request used."""
        endpoint = self._declaring(name, "rate_limit")
        policy = self._policy(endpoint)
        response = self._send_example(endpoint, request_headers(self.service, endpoint))
        assert response.status_code != 429, _shown(response)
        headers = dict(response.headers)
        assert response.headers.get("RateLimit-Policy") == policy.header, (
            f"{name} answered without RateLimit-Policy: {policy.header}: {headers}"
        )
        window = response.headers.get("RateLimit", "").partition(";t=")[2]
        assert response.headers.get("RateLimit") == (
            f'"{policy.name}";r={policy.limit - 1};t={window}'
        ), f"{name} answered without the RateLimit of a caller's first request: {headers}"

    def request_over_the_limit_gets_429_with_retry_after(self, name: str) -> None:
        """With every policy scaled down to two requests, one caller's third request gets 429
        problem+json saying when to retry, with Retry-After and the policy's RateLimit header
        at r=0: a refusal comes after a few calls, whatever the real limit is."""
        endpoint = self._declaring(name, "rate_limit")
        subject, address = new_subject(), new_address()
        with self._limits_scaled_to(2):
            first, second, third = [
                self._send_example(
                    endpoint,
                    {
                        **request_headers(self.service, endpoint),
                        **bearer(self.service, endpoint.scopes, subject=subject),
                    },
                    address,
                )
                for _ in range(3)
            ]
        assert first.status_code != 429 and second.status_code != 429, _shown(second)
        problem = problem_of(third, 429)
        assert "retry in" in problem["detail"], problem
        retry_after = third.headers.get("Retry-After", "")
        assert retry_after.isdigit() and int(retry_after) >= 1, dict(third.headers)
        assert third.headers.get("RateLimit", "").startswith(
            f'"{endpoint.rate_limit}";r=0;'
        ), dict(third.headers)

    def _declaring(self, name: str, what: str) -> Endpoint:
        """The endpoint `name`, whose entry in the spec declares `what` (`scopes`,
        `rate_limit`), or a failure that says to regenerate."""
        endpoint = self.endpoint(name)
        if not getattr(endpoint, what):
            pytest.fail(f"{name} names no {what} in service.yaml: run `shoestring generate`")
        return endpoint

    def _policy(self, endpoint: Endpoint) -> ratelimit.Policy:
        """The policy the spec's `rate_limits` define for `endpoint`."""
        assert endpoint.rate_limit is not None
        policies = self.service.model.get("rate_limits") or {}
        if endpoint.rate_limit not in policies:
            pytest.fail(
                f"service.yaml defines no rate limit {endpoint.rate_limit!r} (used by "
                f"{endpoint.name}): define it under rate_limits and run `shoestring generate`"
            )
        return ratelimit.Policy.from_spec(endpoint.rate_limit, policies[endpoint.rate_limit])

    @contextmanager
    def _limits_scaled_to(self, limit: int) -> Iterator[None]:
        """The service's app with every policy scaled down to `limit` requests while the block
        runs, counting as before (the same storage and buckets): the check proves the limits
        of the service's own app, and the checks after it find them as they were."""
        limiter = self.app.extensions[ratelimit.EXTENSION]
        policies = limiter.policies
        limiter.policies = {
            policy_name: dataclasses.replace(policy, limit=limit)
            for policy_name, policy in policies.items()
        }
        try:
            yield
        finally:
            limiter.policies = policies

    # -- idempotency ---------------------------------------------------------------------

    def retry_replays_the_stored_response(self, name: str) -> None:
        """A retry with the same Idempotency-Key gets the first response again, marked
        `Idempotent-Replayed: true`, and the handler ran once."""
        with self._counted(name) as (send, runs):
            key, subject = str(uuid.uuid4()), _new_subject()
            first = send(key, subject)
            retry = send(key, subject)
            assert first.status_code == self.endpoint(name).status, _shown(first)
            assert retry.status_code == first.status_code, _shown(retry)
            assert retry.get_data() == first.get_data()
            assert "Idempotent-Replayed" not in first.headers
            assert retry.headers.get("Idempotent-Replayed") == "true", dict(retry.headers)
            assert runs() == 1, f"the handler ran {runs()} times for one key"

    def same_key_for_another_request_gets_422(self, name: str) -> None:
        """The key of one request sent with another request gets 422, and the handler does not
        run again."""
        endpoint = self.endpoint(name)
        other = another_request(endpoint)
        if other is None:
            pytest.skip(f"{name} takes no request fields: every request is the same")
        with self._counted(name) as (send, runs):
            key, subject = str(uuid.uuid4()), _new_subject()
            assert send(key, subject).status_code == endpoint.status
            response = send(key, subject, data=other[0], query=other[1])
            body = problem_of(response, 422)
            assert "different request" in body["detail"], body
            assert runs() == 1

    def request_without_a_key_gets_400(self, name: str) -> None:
        """A request without an Idempotency-Key gets 400 saying to send one, and the handler
        does not run."""
        with self._counted(name) as (send, runs):
            body = problem_of(send(None, _new_subject()), 400)
            assert "send an Idempotency-Key header" in body["detail"], body
            assert runs() == 0

    @contextmanager
    def _counted(self, name: str) -> Iterator[tuple[Sender, Callable[[], int]]]:
        """(send, runs): `send(key, subject, data=None, query=None)` calls the endpoint on an
        app whose handler records an audit row per run it commits (`runs()` counts them). A
        retry must come from the same caller, so that app lets every caller through its rate
        limits (the limits have checks of their own)."""
        endpoint = self.endpoint(name)
        action = f"contract_{uuid.uuid4().hex[:12]}"
        real = self.service.registry.HANDLERS[name]

        def counting(ctx: Context, data: dict[str, Any]) -> Any:
            audit.record(ctx.db, action=action)
            return real(ctx, data)

        app = create_app(
            self.service, self.settings, handlers={**self.service.registry.HANDLERS, name: counting}
        )
        limiter = app.extensions[ratelimit.EXTENSION]
        for policy_name, policy in limiter.policies.items():
            limiter.policies[policy_name] = dataclasses.replace(policy, limit=1_000_000)
        client = app.test_client()  # one address: a retry comes from where the request did

        def send(
            key: str | None,
            subject: str,
            data: dict[str, Any] | None = None,
            query: dict[str, Any] | None = None,
        ) -> TestResponse:
            data = dict(example_for(endpoint.request) if data is None else data)
            headers = bearer(self.service, endpoint.scopes, subject=subject)
            if key is not None:
                headers["Idempotency-Key"] = key
            path = endpoint.path
            for param in endpoint.path_params:
                path = path.replace("{" + param + "}", str(data.pop(param)))
            if endpoint.has_body:
                parts: dict[str, Any] = {"json": data, "query_string": query or {}}
            else:  # the request is the query string
                parts = {"query_string": {**data, **(query or {})}}
            return client.open(path, method=endpoint.method, headers=headers, **parts)

        def runs() -> int:
            with self.app.extensions["chassis"].db.transaction(readonly=True) as conn:
                return conn.fetchvalue(
                    "SELECT COUNT(*) FROM audit_log WHERE action = %s", (action,)
                )

        yield send, runs

    # -- messages published --------------------------------------------------------------

    def published_example_is_accepted(self, name: str) -> None:
        """The example of the message version is valid, and `ctx.publish` accepts it: one
        outbox row per receiver the spec sends it to, in the handler's transaction."""
        type_, version = message_version(name)
        catalog = self.service.catalog
        schema = catalog.published_schema(type_, version)
        example = example_for(schema)
        catalog.check_published(type_, version, example)  # InvalidMessage names the field
        with self._context() as ctx:
            try:
                event = ctx.publish(type_, version, example)
            except NotImplementedError as exc:  # a publish_also converter not written yet
                pytest.skip(f"publishing {name} converts it first: {exc}")
            ctx.flush_messages()
            destinations = ctx.db.fetchall(
                "SELECT destination FROM outbox WHERE message_id = %s", (event["id"],)
            )
            ctx.db.execute("DELETE FROM outbox WHERE message_id = %s", (event["id"],))
        assert sorted(row["destination"] for row in destinations) == sorted(
            catalog.destinations(type_)
        )

    def invalid_published_message_is_refused_naming_the_field(self, name: str) -> None:
        """`ctx.publish` refuses data without a required field (or with one the schema does
        not declare), naming the field, and writes nothing."""
        type_, version = message_version(name)
        data, pointer = _broken(self.service.catalog.published_schema(type_, version))
        with self._context() as ctx:
            with pytest.raises(InvalidMessage) as refused:
                ctx.publish(type_, version, data)
            assert len(ctx.outgoing) == 0
        assert pointer in [error["pointer"] for error in refused.value.errors], refused.value

    @contextmanager
    def _context(self) -> Iterator[Context]:
        """A handler's `ctx` in a transaction of the service's database."""
        state = self.app.extensions["chassis"]
        with state.db.transaction() as conn:
            yield Context(
                db=conn,
                log=state.log,
                request_id=f"contract-{uuid.uuid4()}",
                trace_id=new_trace_id(),
                identity=None,
                settings=self.settings,
            )

    # -- messages received ---------------------------------------------------------------

    def subscribed_message_is_accepted(self, name: str) -> None:
        """A message of the subscription's schema (its example), delivered by the peer it
        comes from, is accepted by the inbox (stored in the queue for the worker)."""
        type_, version = message_version(name)
        subscription = self._subscription(type_, version)
        data = example_for(subscription.get("schema") or {"type": "object"})
        if subscription["from"] == self.service.name:  # a job it queues for itself
            with self._context() as ctx:
                event = ctx.enqueue(type_, version, data)
                ctx.flush_messages()
                ctx.db.execute("DELETE FROM message_queue WHERE message_id = %s", (event["id"],))
            return
        result = self._deliver(subscription["from"], type_, version, data)
        assert result["status"] == inbox.ACCEPTED, result

    def invalid_subscribed_message_is_rejected_naming_the_field(self, name: str) -> None:
        """A message that breaks the subscription's schema is rejected by the inbox (the
        sender dead-letters it), with a reason naming the field."""
        type_, version = message_version(name)
        subscription = self._subscription(type_, version)
        data, pointer = _broken(subscription.get("schema") or {"type": "object"})
        if subscription["from"] == self.service.name:  # a job it queues for itself
            with self._context() as ctx, pytest.raises(InvalidMessage) as refused:
                ctx.enqueue(type_, version, data)
            assert pointer in [error["pointer"] for error in refused.value.errors], refused.value
            return
        result = self._deliver(subscription["from"], type_, version, data)
        assert result["status"] == inbox.REJECTED, result
        assert pointer in result["detail"], result

    def _subscription(self, type_: str, version: int) -> dict[str, Any]:
        subscription = self.service.catalog.subscription(type_, version)
        if subscription is None:
            pytest.fail(
                f"service.yaml subscribes to no {type_} v{version}: run `shoestring generate`"
            )
        return subscription

    def _deliver(self, sender: str, type_: str, version: int, data: Any) -> dict[str, Any]:
        """Deliver one message from `sender` to the inbox of an app that trusts it; return
        the inbox's result for it."""
        app = self._receiver(sender)
        event = envelope(
            source=sender,
            type_=type_,
            version=version,
            data=data,
            dataschema=f"urn:contract:{type_}.v{version}",
            traceparent=_TRACEPARENT,
        )
        response = client_of(app).post(
            inbox.INBOX_PATH,
            data=json.dumps([event]),
            headers={
                **bearer(self.service, [inbox.DELIVER_SCOPE], subject=sender, issuer=sender),
                "Content-Type": inbox.BATCH_CONTENT_TYPE,
            },
        )
        assert response.status_code == 200, _shown(response)
        return response.get_json()["results"][0]

    def _receiver(self, sender: str) -> Flask:
        """The service's runtime app, trusting `sender` as an issuer with the session's key."""
        trusting = settings_for(
            self.service, self.settings.database_url, TRUSTED_ISSUERS=peer_issuers(sender)
        )
        return create_app(self.service, trusting)


# -- helpers ------------------------------------------------------------------------------------


def problem_of(response: TestResponse, status: int) -> dict[str, Any]:
    """The problem+json body of `response`, which must have `status`."""
    assert response.status_code == status, _shown(response)
    assert response.mimetype == "application/problem+json", _shown(response)
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def _challenge(response: TestResponse, status: int) -> str:
    """The WWW-Authenticate challenge of `response`, a problem+json refusal with `status`."""
    problem_of(response, status)
    assert "WWW-Authenticate" in response.headers, dict(response.headers)
    return response.headers["WWW-Authenticate"]


def _shown(response: TestResponse) -> str:
    return f"{response.status_code} {response.get_data(as_text=True)[:2000]}"


def _new_subject() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


def _wrong_value(schema: dict[str, Any]) -> str | None:
    """A value of the wrong type for `schema` that survives the trip through a URL."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "integer" in types or "number" in types or "boolean" in types:
        return "not-a-number"
    if "format" in schema or "enum" in schema:
        return "@@@"
    return None


def _broken(schema: dict[str, Any]) -> tuple[Any, str]:
    """Data that breaks `schema` and the pointer of the field it breaks: its example without a
    required field, else with a value of the wrong type, else with a field the schema does not
    allow. Skips when the schema accepts all three (a tolerant reader with optional fields)."""
    data = example_for(schema)
    if not isinstance(data, dict):
        pytest.skip("the schema is not an object's: no field to break")
    required = schema.get("required", [])
    if required:
        del data[required[0]]
        return data, f"/{required[0]}"
    for field, field_schema in schema.get("properties", {}).items():
        wrong = _wrong_value(field_schema) if isinstance(field_schema, dict) else None
        if wrong is not None:
            return {**data, field: wrong}, f"/{field}"
    if schema.get("additionalProperties") is False:
        return {**data, "no_such_field": 1}, "/no_such_field"
    pytest.skip("the schema accepts any object: no field is required, typed or refused")


def another_request(endpoint: Endpoint) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(data, query) of a valid request other than the example, or None when the endpoint
    takes no request that could differ."""
    data = example_for(endpoint.request)
    if endpoint.has_body:  # the same body, a query parameter more
        return data, {"variant": "2"}
    # The query string is the request: a parameter more would be one it does not declare.
    for field, schema in endpoint.request.get("properties", {}).items():
        value = other_value(schema, data.get(field))
        if field in data and value is not None:
            return {**data, field: value}, {}
    return None


def other_value(schema: dict[str, Any], value: Any) -> Any:
    """A valid value for `schema` other than `value`, where a simple rule finds one."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if len(schema.get("enum", [])) > 1:
        return next(choice for choice in schema["enum"] if choice != value)
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if "boolean" in types and isinstance(value, bool):
        return not value
    if "integer" in types and isinstance(value, int):
        return value + 1 if value + 1 <= schema.get("maximum", value + 1) else value - 1
    return None
