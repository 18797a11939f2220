"""Delivery between services end to end: orders and payments, generated from the examples, each
on its own MariaDB/MySQL database, served over HTTP on loopback (waitress), each trusting the
other's JWKS, their workers run from the command line as cron would run them.

- orders publishes order.created; its relay delivers it to the payments inbox; the payments
  worker handles it (one row per message in `captures`, keyed by message id, plus a counter that
  any second handling would bump) and publishes payment.captured, which travels back the same
  way. Every message is handled exactly once.
- payments down: the orders breaker opens, rows wait without spending attempts, none is
  dead-lettered, everything arrives once payments is back.
- payments answering 500 to one message type: the other type still arrives.
- a sender that is not a trusted issuer of payments delivers nothing.
- orders also calls payments synchronously (`ctx.peers.payments.capture_payment`), through the
  same breaker.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import EXAMPLES, run_shoestring
from delivery_services import FAILING_SERVER, Service, create_database, drop_database

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

CUSTOMER = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
# Small breaker times, so that the test sees it open and close within seconds.
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "2", "BREAKER_OPEN_SECONDS": "1",
           "BREAKER_MAX_OPEN_SECONDS": "2", "PEER_TIMEOUT_SECONDS": "3"}

ORDERS_CREATE = '''\
"""POST /v1/orders: stores the order and announces it, or pays for it at once (note pay-now)."""

import uuid
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    order_id = str(uuid.uuid4())
    status = "pending"
    note = data.get("note")
    if note == "pay-now":
        payment = ctx.peers.payments.capture_payment(
            order_id=order_id, amount_cents=data["amount_cents"]
        )
        status = "paid" if payment["status"] == "captured" else "pending"
    ctx.db.execute(
        "INSERT INTO orders (order_id, amount_cents, status) VALUES (%s, %s, %s)",
        (order_id, data["amount_cents"], status),
    )
    if note != "pay-now":
        announced = {"order_id": order_id, "customer_id": data["customer_id"],
                     "amount_cents": data["amount_cents"], "note": note}
        ctx.publish("order.created", 1, announced)
        if note == "also-v2":
            ctx.publish("order.created", 2, {**announced, "currency": data["currency"],
                                             "lines": [{"sku": "A-1", "quantity": 1}]})
    return {"order_id": order_id, "status": status}
'''
ORDERS_ON_CAPTURED = '''\
"""payment.captured v1: the order is paid (one row per message: a second handling fails)."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    ctx.db.execute("INSERT INTO payments_seen (message_id, order_id) VALUES (%s, %s)",
                   (ctx.request_id, event["order_id"]))
    ctx.db.execute("UPDATE handled_count SET n = n + 1 WHERE id = 1")
    ctx.db.execute("UPDATE orders SET status = 'paid' WHERE order_id = %s", (event["order_id"],))
'''
PAYMENTS_ON_CREATED = '''\
"""order.created v1: capture the payment and say so (one row per message in captures)."""

import uuid
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    ctx.db.execute(
        "INSERT INTO captures (message_id, order_id, cents) VALUES (%s, %s, %s)",
        (ctx.request_id, event["order_id"], event["amount_cents"]),
    )
    ctx.db.execute("UPDATE handled_count SET n = n + 1 WHERE id = 1")
    ctx.publish("payment.captured", 1, {
        "payment_id": str(uuid.uuid4()), "order_id": event["order_id"],
        "amount_cents": event["amount_cents"], "captured_at": "2024-05-01T12:30:00Z",
    })
'''
PAYMENTS_CAPTURE = '''\
"""POST /v1/payments: capture a payment, synchronously."""

import uuid
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    payment_id = str(uuid.uuid4())
    ctx.db.execute("INSERT INTO payments (payment_id, order_id) VALUES (%s, %s)",
                   (payment_id, data["order_id"]))
    return {"payment_id": payment_id, "status": "captured"}
'''
COUNTER = ["CREATE TABLE handled_count (id INT PRIMARY KEY, n INT NOT NULL)",
           "INSERT INTO handled_count (id, n) VALUES (1, 0)"]
MIGRATIONS = {
    "orders": [
        "CREATE TABLE orders (order_id CHAR(36) PRIMARY KEY, amount_cents INT, status TEXT)",
        "CREATE TABLE payments_seen (message_id VARCHAR(64) PRIMARY KEY, order_id CHAR(36))",
        *COUNTER,
    ],
    "payments": [
        "CREATE TABLE captures (message_id VARCHAR(64) PRIMARY KEY, order_id CHAR(36), cents INT)",
        "CREATE TABLE payments (payment_id CHAR(36) PRIMARY KEY, order_id CHAR(36))",
        *COUNTER,
    ],
}


def orders_spec(folder: Path) -> Path:
    """The orders example, plus the synchronous call it makes to payments."""
    spec = yaml.safe_load((EXAMPLES / "orders" / "service.yaml").read_text())
    spec["peers"]["payments"]["calls"] = {
        "capture_payment": {
            "method": "POST", "path": "/v1/payments", "scopes": ["payments:write"],
            "description": "Capture a payment for an order.",
            "request": {"order_id": "uuid", "amount_cents": "int"},
            "response": {"payment_id": "uuid", "status": "enum[captured, declined]"},
        }
    }
    path = folder / "orders.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory, mysql_url) -> Iterator[dict[str, Service]]:
    base = tmp_path_factory.mktemp("delivery")
    orders = Service("orders", base / "orders", create_database(mysql_url))
    payments = Service("payments", base / "payments", create_database(mysql_url))
    orders.settings = {"PAYMENTS_URL": payments.url, **BREAKER,
                       "TRUSTED_ISSUERS": f"payments={payments.url}/.well-known/jwks.json"}
    payments.settings = {"ORDERS_URL": orders.url, **BREAKER,
                         "TRUSTED_ISSUERS": f"orders={orders.url}/.well-known/jwks.json"}
    specs = {"orders": orders_spec(base), "payments": EXAMPLES / "payments" / "service.yaml"}
    handlers = {
        "orders": {"create_order": ORDERS_CREATE, "on_payment_captured_v1": ORDERS_ON_CAPTURED},
        "payments": {"on_order_created_v1": PAYMENTS_ON_CREATED,
                     "capture_payment": PAYMENTS_CAPTURE},
    }
    try:
        for service in (orders, payments):
            run_shoestring("new", str(specs[service.name]), "-o", str(service.root))
            for module, source in handlers[service.name].items():
                service.write(f"{service.name}/handlers/{module}.py", source)
            for number, sql in enumerate(MIGRATIONS[service.name], start=1):
                service.write(f"migrations/mysql/{number:04d}_test.sql", sql + ";\n")
            service.cli("keys", "generate")
            service.cli("migrate")
        orders.start()
        payments.start()
        yield {"orders": orders, "payments": payments}
    finally:
        for service in (orders, payments):
            service.stop()
            drop_database(service.database_url)


@pytest.fixture
def pair(services) -> dict[str, Service]:
    """Both services served normally, the orders breaker closed, every queue drained."""
    orders, payments = services["orders"], services["payments"]
    for service in (orders, payments):
        if service.server is None or service.server.poll() is not None:
            service.start()
    payments.restart()  # whatever a previous test started in its place
    for service in (orders, payments):
        service.cli("breakers", "--reset", "payments" if service is orders else "orders",
                    ok=False)
    return services


def place_orders(orders: Service, count: int, note: str | None = None) -> list[str]:
    token = orders.cli("token", "--scope", "orders:write",
                       "--subject", f"client-{uuid.uuid4().hex[:8]}").stdout.strip()
    placed = []
    for _ in range(count):
        body = {"customer_id": CUSTOMER, "amount_cents": 1250, "currency": "EUR"}
        if note:
            body["note"] = note
        answer = orders.post("/v1/orders", body, token, **{"Idempotency-Key": str(uuid.uuid4())})
        assert answer.status_code == 201, answer.text
        placed.append(answer.json()["order_id"])
    return placed


def until(
    condition: Callable[[], bool],
    step: Callable[[], object],
    timeout: float = 90,
    state: Callable[[], object] = lambda: None,
) -> None:
    """Run `step` (a worker run, say) until `condition` holds; `state` explains a timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {state()}"
        step()
        time.sleep(0.2)


def captured(payments: Service, order_ids: list[str]) -> int:
    marks = ", ".join(["%s"] * len(order_ids))
    return payments.value(f"SELECT COUNT(*) FROM captures WHERE order_id IN ({marks})",
                          tuple(order_ids))


def test_a_message_published_by_one_service_is_handled_by_the_other_exactly_once(pair):
    orders, payments = pair["orders"], pair["payments"]
    before = {name: service.value("SELECT n FROM handled_count") for name, service in pair.items()}
    placed = place_orders(orders, 30)
    # Two orders workers at once (overlapping cron runs), then the payments worker.
    runs = [subprocess.Popen([sys.executable, "-m", "orders", "worker", "--max-seconds", "20"],
                             cwd=orders.root, env=orders.env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=60) == 0, run.stderr.read().decode()[-3000:]
    until(lambda: captured(payments, placed) == 30, payments.worker)
    until(lambda: orders.value("SELECT COUNT(*) FROM orders WHERE status = 'paid'") >= 30,
          orders.worker)
    # Exactly once on each side: one row per message, and no handling ran (and committed) twice.
    assert captured(payments, placed) == 30
    assert payments.value("SELECT COUNT(DISTINCT order_id) FROM captures") == \
        payments.value("SELECT COUNT(*) FROM captures")
    assert payments.value("SELECT n FROM handled_count") - before["payments"] == 30
    assert orders.value("SELECT n FROM handled_count") - before["orders"] == 30
    for service in (orders, payments):
        assert "FAILED" not in service.statuses("outbox")
        assert "FAILED" not in service.statuses("message_queue")


def test_while_the_receiver_is_down_the_breaker_opens_nothing_is_lost_and_all_arrives_after(
    pair,
):
    orders, payments = pair["orders"], pair["payments"]
    payments.stop()
    placed = place_orders(orders, 10)
    for _ in range(4):
        orders.worker(max_seconds=5)
        time.sleep(0.3)
    breaker = orders.breaker("payments")
    assert breaker["state"] in ("open", "half_open"), breaker
    assert breaker["trips"] >= 1 and "could not be reached" in breaker["last_error"]
    waiting = orders.query("SELECT status, retry_count FROM outbox WHERE destination = "
                           "'payments' AND status <> 'DONE'")
    assert len(waiting) == 10 and {row["status"] for row in waiting} == {"NEW"}
    # At most BREAKER_FAILURE_THRESHOLD attempts were spent before the breaker opened.
    assert max(row["retry_count"] for row in waiting) <= 2
    readiness = requests.get(orders.url + "/readyz", timeout=10).json()
    assert readiness["checks"]["breakers:open"][0]["status"] == "warn"

    payments.start()
    until(lambda: captured(payments, placed) == 10,
          lambda: (orders.worker(max_seconds=5), payments.worker(max_seconds=5)))
    assert orders.breaker("payments")["state"] == "closed"
    assert "FAILED" not in orders.statuses("outbox")
    assert payments.value("SELECT COUNT(*) FROM captures WHERE order_id IN (%s, %s)",
                          (placed[0], placed[-1])) == 2


def test_a_receiver_failing_on_one_message_type_does_not_hold_up_the_others(pair):
    orders, payments = pair["orders"], pair["payments"]
    payments.restart(FAILING_SERVER, '"order.created.v2"')
    placed = place_orders(orders, 5, note="also-v2")  # v1 and v2 of each order
    orders.worker(max_seconds=5)
    until(lambda: captured(payments, placed) == 5, payments.worker)
    v2 = orders.query("SELECT status, retry_count, last_error FROM outbox "
                      "WHERE destination = 'payments' AND version = 2 AND status <> 'DONE'")
    assert len(v2) == 5 and {row["status"] for row in v2} == {"NEW"}
    assert all("answered 500 for order.created v2" in row["last_error"] for row in v2)
    assert orders.breaker("payments")["state"] == "closed"  # payments is up: it answered
    # Back to the real build: payments reads v1 only and acknowledges v2 as `ignored` (a version
    # it does not read of a message it reads): delivered, not stored, not a dead letter.
    payments.restart()
    until(lambda: orders.statuses("outbox", "version = 2") == {"DONE": 5}, orders.worker,
          state=lambda: orders.query("SELECT status, retry_count, last_error FROM outbox "
                                     "WHERE version = 2"))
    assert payments.value("SELECT COUNT(*) FROM message_queue WHERE version = 2") == 0
    assert "FAILED" not in orders.statuses("outbox")


def test_a_peer_that_is_not_a_trusted_issuer_cannot_deliver(pair):
    orders, payments = pair["orders"], pair["payments"]
    trusting = payments.settings["TRUSTED_ISSUERS"]
    payments.settings["TRUSTED_ISSUERS"] = ""  # payments trusts nobody but itself now
    try:
        payments.restart()
        queued = payments.value("SELECT COUNT(*) FROM message_queue")
        placed = place_orders(orders, 3)
        orders.worker(max_seconds=5)
        rows = orders.query("SELECT status, last_error FROM outbox WHERE destination = "
                            "'payments' AND status <> 'DONE'")
        assert len(rows) == 3 and {row["status"] for row in rows} == {"NEW"}  # nothing lost
        assert "refused this service's token (401" in rows[0]["last_error"]
        assert "TRUSTED_ISSUERS" in rows[0]["last_error"]
        assert payments.value("SELECT COUNT(*) FROM message_queue") == queued
        # Straight at the inbox, with a token orders signed for payments: refused, not stored.
        token = orders.cli("token", "--audience", "payments", "--scope",
                           "inbox:deliver").stdout.strip()
        answer = payments.post("/v1/inbox", [], token)
        assert answer.status_code == 401 and "not trusted" in answer.json()["detail"]
    finally:
        payments.settings["TRUSTED_ISSUERS"] = trusting
    payments.restart()
    until(lambda: captured(payments, placed) == 3,
          lambda: (time.sleep(1), orders.worker(max_seconds=5), payments.worker(max_seconds=5)))


def test_a_synchronous_call_reaches_the_peer_once_and_shares_its_breaker(pair):
    orders, payments = pair["orders"], pair["payments"]
    token = orders.cli("token", "--scope", "orders:write", "--subject", "sync-client"
                       ).stdout.strip()
    body = {"customer_id": CUSTOMER, "amount_cents": 990, "currency": "EUR", "note": "pay-now"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = orders.post("/v1/orders", body, token, **key)
    assert first.status_code == 201 and first.json()["status"] == "paid", first.text
    again = orders.post("/v1/orders", body, token, **key)  # the client retries its request
    assert again.json() == first.json()
    order_id = first.json()["order_id"]
    assert payments.value("SELECT COUNT(*) FROM payments WHERE order_id = %s", (order_id,)) == 1

    payments.stop()
    refused = orders.post("/v1/orders", body, token, **{"Idempotency-Key": str(uuid.uuid4())})
    assert refused.status_code == 503 and "payments" in refused.json()["detail"]
    assert orders.breaker("payments")["state"] == "open"  # the relay's breaker, too
    started = time.monotonic()
    fast = orders.post("/v1/orders", body, token, **{"Idempotency-Key": str(uuid.uuid4())})
    assert fast.status_code == 503 and int(fast.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 1.0  # no connection attempt: the breaker said no
