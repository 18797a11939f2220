"""A service lives through a release: its spec grows and sheds parts, the user's code stays.

The scenario, on a complete service made by `shoestring new` (tests/test_generate.py covers
each generator rule on its own; this is the whole story once, run by the service's own tests):

1. release 1 (specs/evolution/shop_v1.yaml): the user writes handlers, with helpers of their
   own, and a migration of their own;
2. release 2 (shop_v2.yaml) adds an endpoint, adds order.created v2 beside v1 with
   `publish_also: [1]` and a second subscription, and retires two endpoints: `generate`
   refuses (ENDPOINT_REMOVED) until given a reason, then creates the new stubs and the
   converter, removes the untouched stub of one retired endpoint and keeps the hand-edited
   other with a warning, and leaves every line of the user's code as it was;
3. the user moves `create_order` to v2 and renames its helper; `generate --check` is clean;
4. the service's own test suite passes, with a test of release 2 added: one publish writes v2
   and its v1 conversion, and both subscriptions handle the order.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_shoestring

pytestmark = pytest.mark.slow

SPECS = Path(__file__).parent / "specs" / "evolution"

CREATE_ORDER_V1 = '''"""Places an order and announces it."""

import uuid
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    order_id = _new_order_id()
    data = {"order_id": order_id, "amount_cents": data["amount_cents"]}
    ctx.publish("order.created", 1, data)
    return {"order_id": order_id}


def _new_order_id() -> str:
    return str(uuid.uuid4())
'''

CREATE_ORDER_V2 = '''"""Places an order, announced as order.created v2 (publish_also adds v1)."""

import uuid
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    order_id = _order_identifier()
    ctx.publish(
        "order.created",
        2,
        {
            "order_id": order_id,
            "amount_cents": data["amount_cents"],
            "currency": data.get("currency") or "EUR",
        },
    )
    return {"order_id": order_id}


def _order_identifier() -> str:
    return str(uuid.uuid4())
'''

ON_ORDER_CREATED = '''"""Counts orders from order.created v{version}."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    ctx.db.execute(
        "INSERT INTO order_stats (order_id, version, amount_cents) VALUES (%s, %s, %s)",
        (event["order_id"], {version}, event["amount_cents"]),
    )
'''

ORDER_STATS = (
    "CREATE TABLE order_stats (\n"
    "  order_id VARCHAR(36) NOT NULL,\n"
    "  version INT NOT NULL,\n"
    "  amount_cents INT NOT NULL,\n"
    "  PRIMARY KEY (order_id, version)\n"
    ");\n"
)

RELEASE_2_TEST = '''"""Release 2: one publish of order.created v2 also publishes v1, and both
subscriptions (v1 and v2) handle the order."""

import json
import logging

from shop import SERVICE
from shoestring_runtime.schemas import endpoints
from shoestring_runtime.worker import Worker

CREATE_ORDER = next(
    endpoint for endpoint in endpoints(SERVICE.model) if endpoint.name == "create_order"
)


def test_an_order_is_published_in_both_versions_and_handled_by_both_subscriptions(
    call, db, settings
):
    with db.transaction() as conn:
        for table in ("outbox", "message_queue", "order_stats"):
            conn.execute(f"DELETE FROM {table}")

    response = call(CREATE_ORDER, {"amount_cents": 250, "currency": "USD"})
    assert response.status_code == 201, response.get_data(as_text=True)
    order_id = response.get_json()["order_id"]

    with db.transaction(readonly=True) as conn:
        sent = conn.fetchall(
            "SELECT version, payload FROM outbox WHERE destination = %s ORDER BY version",
            ("billing",),
        )
    events = [json.loads(row["payload"]) for row in sent]
    assert [event["type"] for event in events] == ["order.created.v1", "order.created.v2"]
    assert events[0]["data"] == {"order_id": order_id, "amount_cents": 250}
    assert events[1]["data"] == {"order_id": order_id, "amount_cents": 250, "currency": "USD"}
    assert events[0]["id"] != events[1]["id"]

    worker = Worker(
        db,
        subscribers=SERVICE.registry.SUBSCRIBERS,
        catalog=SERVICE.catalog,
        settings=settings,
        log=logging.getLogger("test.release_2"),
    )
    worker.run()
    with db.transaction(readonly=True) as conn:
        stats = conn.fetchall("SELECT order_id, version, amount_cents FROM order_stats")
    assert sorted((row["version"], row["amount_cents"]) for row in stats) == [(1, 250), (2, 250)]
    assert {row["order_id"] for row in stats} == {order_id}


def test_the_asyncapi_document_is_served_and_says_which_versions_are_live(client):
    response = client.get("/asyncapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    message = document["components"]["messages"]["order_created_v1"]
    assert message["title"] == "order.created version 1 (deprecated)"
    assert "order.created v1 (deprecated), v2" in document["info"]["description"]
'''


def test_a_service_evolves_and_keeps_the_users_code(tmp_path: Path) -> None:
    service = tmp_path / "shop"
    run_shoestring("new", str(SPECS / "shop_v1.yaml"), "-o", str(service))
    handlers = service / "shop" / "handlers"

    # Release 1: the user's code.
    (handlers / "create_order.py").write_text(CREATE_ORDER_V1)
    (handlers / "on_order_created_v1.py").write_text(ON_ORDER_CREATED.replace("{version}", "1"))
    legacy = handlers / "legacy_report.py"
    legacy.write_text(legacy.read_text() + "\n# Counted by hand until the new report is ready.\n")
    for dialect in ("sqlite", "mysql"):
        (service / "migrations" / dialect / "0001_order_stats.sql").write_text(ORDER_STATS)
    users_code = {
        path: path.read_bytes()
        for path in [*handlers.glob("*.py"), *(service / "migrations").rglob("*.sql")]
    }

    # Release 2: the spec changes; generate wants a reason for what it breaks.
    shutil.copy(SPECS / "shop_v2.yaml", service / "service.yaml")
    refused = run_shoestring("generate", cwd=service, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr.count("ENDPOINT_REMOVED") == 2
    assert "service.yaml:24:1: ENDPOINT_REMOVED: endpoint 'ping'" in refused.stderr

    result = run_shoestring(
        "generate", "--allow-breaking", "nobody calls ping or legacy_report since May",
        cwd=service,
    )
    for created in ("cancel_order.py", "on_order_created_v2.py", "order_created_v2_to_v1.py"):
        assert f"create  shop/handlers/{created}" in result.stdout
    assert "remove  shop/handlers/ping.py" in result.stdout
    assert not (handlers / "ping.py").exists()
    assert "warning: shop/handlers/legacy_report.py handles something service.yaml no longer " \
        "declares" in result.stderr
    assert not list((service / "shop/_generated").rglob("*legacy_report*"))
    assert not list((service / "shop/_generated").rglob("*ping*"))
    for path, content in users_code.items():
        if path.name != "ping.py":
            assert path.read_bytes() == content, f"{path} was changed"

    # The user moves create_order to v2 (renaming its helper) and handles v2 too.
    (handlers / "create_order.py").write_text(CREATE_ORDER_V2)
    (handlers / "on_order_created_v2.py").write_text(ON_ORDER_CREATED.replace("{version}", "2"))
    (service / "tests" / "test_release_2.py").write_text(RELEASE_2_TEST)
    check = run_shoestring("generate", "--check", cwd=service, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    for path in service.rglob("*"):
        assert not path.name.endswith((".rej", ".orig", ".partial")), path

    release_2 = _service_tests(service, "tests/test_release_2.py")
    assert "2 passed" in release_2.stdout, release_2.stdout
    _service_tests(service)


def _service_tests(service: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *args],
        cwd=service, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result
