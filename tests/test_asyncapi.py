"""The AsyncAPI 3.0 document of a service: what it says, and that the official parser accepts it.

Validation runs `@asyncapi/parser` (the reference implementation, tests/asyncapi/package.json)
under node. Without node or the installed package the validation tests skip with the command
that installs them, except under CI=true, where they fail: CI installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES
from shoestring.asyncapi import asyncapi_document
from shoestring.render import render
from shoestring.spec import load_spec

HERE = Path(__file__).parent
PARSER = HERE / "asyncapi"
SPECS = sorted(EXAMPLES.glob("*/service.yaml")) + [
    HERE / "specs/evolution/shop_v2.yaml",
    HERE / "specs/evolution/base.yaml",
    HERE / "specs/valid/everything.yaml",
]


def model(path: Path) -> dict[str, Any]:
    result = load_spec(path)
    assert result.spec is not None, [problem.format() for problem in result.problems]
    return result.spec


def _parser_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed: install Node.js 20 or later to validate AsyncAPI documents"
    if not (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir():
        return f"the AsyncAPI parser is not installed: run `npm ci --ignore-scripts` in {PARSER}"
    return None


@pytest.fixture(scope="module")
def validate():
    """`validate(documents) -> [result]`: the parser's verdict and diagnostics per document."""
    missing = _parser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)

    def run(documents: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
        files = []
        for index, document in enumerate(documents):
            file = folder / f"document{index}.json"
            file.write_text(json.dumps(document, indent=2))
            files.append(str(file))
        done = subprocess.run(
            ["node", str(PARSER / "validate.mjs"), *files],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    return run


def test_every_document_is_valid_asyncapi_3_without_warnings(validate, tmp_path: Path) -> None:
    documents = [asyncapi_document(model(spec), version="spec-test") for spec in SPECS]
    for spec, result in zip(SPECS, validate(documents, tmp_path)):
        assert result["valid"], (spec, result["diagnostics"])
        problems = [d for d in result["diagnostics"] if d["severity"] in (0, 1)]
        assert problems == [], (spec, problems)


def test_the_parser_rejects_a_broken_document(validate, tmp_path: Path) -> None:
    document = asyncapi_document(model(EXAMPLES / "orders/service.yaml"), version="spec-test")
    document["operations"]["publish_order_created"]["action"] = "publish"  # AsyncAPI 2 wording
    [result] = validate([document], tmp_path)
    assert not result["valid"]
    assert any(d["severity"] == 0 and "action" in d["path"] for d in result["diagnostics"])


def test_generate_writes_the_document_beside_openapi() -> None:
    spec = model(EXAMPLES / "orders/service.yaml")
    written = json.loads(render(spec).generated["orders/_generated/asyncapi.json"])
    assert written["asyncapi"] == "3.0.0"
    assert written["x-generated-by"].startswith("shoestring ")
    assert {k: v for k, v in written.items() if k != "x-generated-by"} == asyncapi_document(
        spec, version=written["info"]["version"])


def test_published_versions_are_channel_messages_of_one_send_operation() -> None:
    document = asyncapi_document(model(HERE / "specs/evolution/shop_v2.yaml"), version="v")
    channel = document["channels"]["order_created"]
    assert channel["address"] == "order.created"
    assert sorted(channel["messages"]) == ["order_created_v1", "order_created_v2"]
    send = document["operations"]["publish_order_created"]
    assert send["action"] == "send" and send["channel"] == {"$ref": "#/channels/order_created"}
    assert send["messages"] == [
        {"$ref": "#/channels/order_created/messages/order_created_v1"},
        {"$ref": "#/channels/order_created/messages/order_created_v2"},
    ]
    assert send["x-destinations"] == ["billing"]
    assert send["summary"] == "Publishes order.created (v1 (deprecated), v2) to billing."


def test_messages_carry_their_version_deprecation_and_publish_also() -> None:
    document = asyncapi_document(model(HERE / "specs/evolution/shop_v2.yaml"), version="v")
    messages = document["components"]["messages"]
    old, new = messages["order_created_v1"], messages["order_created_v2"]
    assert old["name"] == "order.created.v1" and old["x-message-version"] == 1
    assert old["title"] == "order.created version 1 (deprecated)"
    assert old["tags"] == [{"name": "deprecated"}]
    assert document["components"]["schemas"]["order.created.v1"]["deprecated"] is True
    assert "tags" not in new and new["title"] == "order.created version 2"
    assert "also publishes v1 (converted by shop/handlers/order_created_v2_to_v1.py)" in \
        new["summary"]
    assert document["info"]["description"] == (
        "Sells things.\n\nPublishes: order.created v1 (deprecated), v2. Consumes: order.created "
        "v1 from shop; order.created v2 from shop.")


def test_a_message_travels_as_a_cloudevents_envelope_around_the_version_schema() -> None:
    spec = model(EXAMPLES / "orders/service.yaml")
    document = asyncapi_document(spec, version="v")
    payload = document["components"]["messages"]["order_created_v2"]["payload"]
    assert payload["properties"]["type"] == {
        "const": "order.created.v2", "description": "Message type and major version."}
    assert payload["properties"]["source"]["const"] == "orders"
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/order.created.v2"}
    assert document["components"]["schemas"]["order.created.v2"] == \
        spec["messages"]["order.created"]["versions"]["2"]["schema"]
    assert document["defaultContentType"] == "application/cloudevents+json"


def test_each_subscription_is_a_receive_operation_named_after_its_handler() -> None:
    spec = model(EXAMPLES / "orders/service.yaml")
    document = asyncapi_document(spec, version="v")
    receive = document["operations"]["on_payment_captured_v1"]
    assert receive["action"] == "receive"
    assert receive["messages"] == [
        {"$ref": "#/channels/payment_captured/messages/payment_captured_v1"}]
    message = document["components"]["messages"]["payment_captured_v1"]
    assert message["payload"]["properties"]["source"]["const"] == "payments"
    assert document["components"]["schemas"]["payment.captured.v1"] == \
        spec["subscriptions"][0]["schema"]


def test_a_subscription_to_its_own_message_reuses_the_published_message() -> None:
    document = asyncapi_document(model(HERE / "specs/evolution/shop_v2.yaml"), version="v")
    assert document["operations"]["on_order_created_v2"]["messages"] == [
        {"$ref": "#/channels/order_created/messages/order_created_v2"}]
    assert sorted(document["components"]["messages"]) == ["order_created_v1", "order_created_v2"]
