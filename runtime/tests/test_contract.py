"""The contract checks (shoestring_runtime.contract) that every service's generated
test_contract.py runs: they pass on a service that keeps its spec's promises (the shop, each
check on every endpoint or message version it applies to, as the generated file calls them),
and fail on one that breaks them."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
from flask import Flask

from shoestring_runtime import Problem, Service
from shoestring_runtime import create_app as build_app
from shoestring_runtime.contract import Contract
from shoestring_runtime.schemas import endpoints

from .shop import SERVICE, create_app

ENDPOINTS = [endpoint.name for endpoint in endpoints(SERVICE.model)]
WITH_BODY = [endpoint.name for endpoint in endpoints(SERVICE.model) if endpoint.has_body]
IDEMPOTENT = [endpoint.name for endpoint in endpoints(SERVICE.model) if endpoint.idempotent]
SCOPED = [endpoint.name for endpoint in endpoints(SERVICE.model) if endpoint.scopes]
LIMITED = [endpoint.name for endpoint in endpoints(SERVICE.model) if endpoint.rate_limit]
PUBLISHED = ["order.created.v1", "order.created.v2"]
SUBSCRIBED = ["payment.captured.v1"]

CHECKS = [
    *((check, name) for check in (
        "example_request_gets_its_response",
        "missing_field_gets_422_at_its_pointer",
        "wrong_type_gets_422_at_its_pointer",
    ) for name in ENDPOINTS),
    *((check, name) for check in (
        "malformed_json_gets_400",
        "body_that_is_not_json_gets_415",
        "oversized_body_gets_413",
    ) for name in WITH_BODY),
    *((check, name) for check in (
        "retry_replays_the_stored_response",
        "same_key_for_another_request_gets_422",
        "request_without_a_key_gets_400",
    ) for name in IDEMPOTENT),
    *((check, name) for check in (
        "request_without_a_token_gets_401",
        "token_without_one_of_its_scopes_gets_403",
    ) for name in SCOPED),
    *((check, name) for check in (
        "responses_carry_the_ratelimit_headers_of_the_policy",
        "request_over_the_limit_gets_429_with_retry_after",
    ) for name in LIMITED),
    *((check, name) for check in (
        "published_example_is_accepted",
        "invalid_published_message_is_refused_naming_the_field",
    ) for name in PUBLISHED),
    *((check, name) for check in (
        "subscribed_message_is_accepted",
        "invalid_subscribed_message_is_rejected_naming_the_field",
    ) for name in SUBSCRIBED),
]


@pytest.mark.parametrize(("check", "name"), CHECKS, ids=[f"{c}-{n}" for c, n in CHECKS])
def test_every_check_passes_on_a_service_that_keeps_its_promises(contract, check, name):
    getattr(contract, check)(name)


def contract_with(settings, **handlers) -> Contract:
    """The shop's contract, checked on an app whose handlers `handlers` replace."""
    app: Flask = create_app(settings, handlers={**SERVICE.registry.HANDLERS, **handlers})
    return Contract(SERVICE, app, settings)


def test_a_response_that_breaks_its_schema_fails_the_example_check(settings, db):
    contract = contract_with(settings, create_order=lambda ctx, data: {"order_id": "x"})
    # The runtime refuses to send it (500); the check fails either way.
    with pytest.raises(AssertionError, match="^500 "):
        contract.example_request_gets_its_response("create_order")


def test_a_404_keeps_the_promise_only_of_an_endpoint_with_path_parameters(settings, db):
    def not_found(ctx, data):
        raise Problem(404, "no such order")

    contract = contract_with(settings, get_order=not_found, list_orders=not_found)
    contract.example_request_gets_its_response("get_order")  # /v1/orders/{order_id}
    with pytest.raises(AssertionError, match="404"):
        contract.example_request_gets_its_response("list_orders")


def test_a_name_the_spec_no_longer_has_fails_saying_to_regenerate(contract):
    with pytest.raises(pytest.fail.Exception, match="run `shoestring generate`"):
        contract.example_request_gets_its_response("cancel_order")
    with pytest.raises(pytest.fail.Exception, match="run `shoestring generate`"):
        contract.subscribed_message_is_accepted("refund.issued.v1")


class ShopOfAnotherSpec(Service):
    """The shop's package run from a changed copy of its spec model: a running service that
    no longer keeps the spec its contract checks (the shop's)."""

    def __init__(self, name: str | None = None, **endpoint_keys_dropped: list[str]) -> None:
        """`name` renames the service; `endpoint_keys_dropped` maps an endpoint to the keys of
        its spec it loses (`scopes`, `rate_limit`)."""
        super().__init__(SERVICE.package, SERVICE.package_dir)
        model = copy.deepcopy(SERVICE.model)
        if name is not None:
            model["service"]["name"] = name
        for endpoint in model["endpoints"]:
            for key in endpoint_keys_dropped.get(endpoint["name"], []):
                endpoint[key] = [] if key == "scopes" else None
        self.changed_model = model

    @functools.cached_property
    def model(self) -> dict[str, Any]:
        return self.changed_model


def contract_on(settings, running: Service) -> Contract:
    """The shop's contract, checked on an app built from `running`."""
    return Contract(SERVICE, build_app(running, settings), settings)


def test_a_challenge_for_another_realm_fails_the_401_check(settings, db):
    contract = contract_on(settings, ShopOfAnotherSpec(name="store"))
    with pytest.raises(AssertionError, match='realm="store"'):
        contract.request_without_a_token_gets_401("create_order")


def test_an_endpoint_that_grants_what_its_spec_guards_fails_the_403_check(settings, db):
    contract = contract_on(settings, ShopOfAnotherSpec(create_order=["scopes"]))
    with pytest.raises(AssertionError, match="^201 "):
        contract.token_without_one_of_its_scopes_gets_403("create_order")


def test_an_endpoint_its_spec_limits_that_runs_unlimited_fails_both_limit_checks(settings, db):
    contract = contract_on(settings, ShopOfAnotherSpec(create_order=["rate_limit"]))
    with pytest.raises(AssertionError, match="RateLimit"):
        contract.responses_carry_the_ratelimit_headers_of_the_policy("create_order")
    with pytest.raises(AssertionError, match="^201 "):
        contract.request_over_the_limit_gets_429_with_retry_after("create_order")


def test_a_check_of_scopes_or_limits_the_spec_no_longer_gives_fails_saying_to_regenerate(
    settings, db
):
    unguarded = ShopOfAnotherSpec(get_order=["scopes", "rate_limit"])
    contract = Contract(unguarded, build_app(unguarded, settings), settings)
    for check in (
        contract.request_without_a_token_gets_401,
        contract.token_without_one_of_its_scopes_gets_403,
        contract.responses_carry_the_ratelimit_headers_of_the_policy,
        contract.request_over_the_limit_gets_429_with_retry_after,
    ):
        with pytest.raises(pytest.fail.Exception, match="run `shoestring generate`"):
            check("get_order")
