"""`load_spec` returns the normalised model of docs/internals.md §2: defaults filled, fields compiled."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXAMPLES
from shoestring.spec import LoadResult, compile_fields, handler_name, load_spec, package_name
from shoestring.spec.model import tolerant

SPECS = Path(__file__).parent / "specs"


def test_payments_example_model_is_exactly_the_contract() -> None:
    result = load_spec(EXAMPLES / "payments" / "service.yaml")
    assert isinstance(result, LoadResult)
    assert result.problems == []
    assert result.spec == {
        "shoestring": 1,
        "service": {"name": "payments", "package": "payments",
                    "description": "Captures payments for orders."},
        "messages": {
            "payment.captured": {
                "description": "A payment was captured for an order.",
                "to": ["orders"],
                "versions": {"1": {"schema": compile_fields({
                    "payment_id": "uuid", "order_id": "uuid", "amount_cents": "int",
                    "captured_at": "datetime"}), "deprecated": False, "publish_also": []}},
            }
        },
        "subscriptions": [{
            "message": "order.created", "version": 1, "from": "orders", "retry": "patient",
            "handler": "on_order_created_v1",
            "schema": tolerant(compile_fields({"order_id": "uuid", "customer_id": "uuid",
                                               "amount_cents": "int", "note": "str?"})),
        }],
        "endpoints": [{
            "name": "capture_payment", "method": "POST", "path": "/v1/payments", "status": 201,
            "description": "Capture a payment for an order.", "scopes": ["payments:write"],
            "rate_limit": None, "idempotent": True, "audit": False, "path_params": [],
            "request": compile_fields({"order_id": "uuid", "amount_cents": "int"}),
            "response": compile_fields({"payment_id": "uuid",
                                        "status": "enum[captured, declined]"}),
        }],
        "rate_limits": {},
        "retry_policies": {"patient": {"max_attempts": 20, "base_seconds": 5,
                                       "max_seconds": 7200}},
        "peers": {"orders": {"url_env": "ORDERS_URL", "scopes": [], "calls": {}}},
        "settings": ["ORDERS_URL"],
    }
    # A subscriber reads the fields it names and ignores the rest (the tolerant reader).
    assert "additionalProperties" not in result.spec["subscriptions"][0]["schema"]


def test_orders_example_model_fills_defaults() -> None:
    model = load_spec(EXAMPLES / "orders" / "service.yaml").spec
    assert model is not None
    endpoints = {endpoint["name"]: endpoint for endpoint in model["endpoints"]}
    assert endpoints["create_order"]["status"] == 201
    assert endpoints["create_order"]["audit"] is True
    assert endpoints["get_order"]["status"] == 200
    assert endpoints["get_order"]["path_params"] == ["order_id"]
    assert endpoints["get_order"]["idempotent"] is False
    assert endpoints["list_orders"]["request"]["required"] == ["customer_id"]
    assert list(model["messages"]["order.created"]["versions"]) == ["1", "2"]
    assert model["subscriptions"][0]["handler"] == "on_payment_captured_v1"
    assert model["settings"] == ["PAYMENTS_URL"]


def test_model_is_plain_json() -> None:
    for spec in (EXAMPLES / "orders" / "service.yaml", SPECS / "valid" / "everything.yaml"):
        model = load_spec(spec).spec
        assert json.loads(json.dumps(model)) == model


def test_minimal_spec_gets_every_section_empty() -> None:
    assert load_spec(SPECS / "valid" / "minimal.yaml").spec == {
        "shoestring": 1,
        "service": {"name": "tiny", "package": "tiny", "description": ""},
        "messages": {}, "subscriptions": [], "endpoints": [], "rate_limits": {},
        "retry_policies": {}, "peers": {}, "settings": [],
    }


def test_everything_spec_normalises_aliases_merges_and_explicit_values() -> None:
    model = load_spec(SPECS / "valid" / "everything.yaml").spec
    assert model is not None
    assert model["service"] == {"name": "Order-History", "package": "order_history",
                                "description": "Keeps the history of orders."}
    archived = model["messages"]["history.order-archived"]
    assert archived["description"] == "" and archived["to"] == []
    assert [version["deprecated"] for version in archived["versions"].values()] == [True, False]
    archive, unarchive, search = model["endpoints"]
    assert archive["status"] == 202
    assert archive["response"] == compile_fields({})
    # `<<: *archive` copied what unarchive_order does not set itself.
    assert unarchive["status"] == 204 and unarchive["method"] == "DELETE"
    assert unarchive["path_params"] == ["id"]
    assert search["rate_limit"] is None and search["scopes"] == ["history:read", "admin"]
    assert search["status"] == 200
    assert model["subscriptions"][0]["schema"] == {"type": "object"}
    assert [sub["handler"] for sub in model["subscriptions"]] == [
        "on_order_created_v2", "on_order_created_v1"]
    assert model["retry_policies"]["patient"]["base_seconds"] == 0.5
    assert model["rate_limits"] == {}


def test_names_derive_the_same_way_everywhere() -> None:
    assert package_name("Order-History") == "order_history"
    assert handler_name("history.order-archived", 3) == "on_history_order_archived_v3"


def test_invalid_spec_has_no_model() -> None:
    result = load_spec(SPECS / "broken" / "undefined_rate_limit.yaml")
    assert result.spec is None and not result.ok
    assert [problem.code for problem in result.errors] == ["undefined-reference"]
