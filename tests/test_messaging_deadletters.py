"""Retries and dead letters end to end: a generated service's worker and its `dead-letters`
command, run as a user runs them, on MariaDB/MySQL."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import EXAMPLES
from messaging_service import MessagingService

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

FAST_RETRIES = "default: {max_attempts: 3, base_seconds: 0.2, max_seconds: 0.5}"


@pytest.fixture
def service(new_service, mysql_database, tmp_path) -> MessagingService:
    # The user tunes the retry policy in service.yaml and regenerates.
    spec = (EXAMPLES / "orders" / "service.yaml").read_text()
    spec = spec.replace("default: {max_attempts: 10, base_seconds: 2, max_seconds: 3600}",
                        FAST_RETRIES)
    assert FAST_RETRIES in spec
    path = tmp_path / "service.yaml"
    path.write_text(spec)
    return MessagingService.create(new_service, mysql_database, spec=path)


def cli(service: MessagingService, *args: str) -> str:
    return service.python("-m", "orders", "dead-letters", *args).stdout


def test_failing_handler_retries_with_backoff_then_dead_letters_and_requeue_brings_it_back(
    service: MessagingService,
):
    failing = {"TEST_HANDLER_FAIL": "1"}
    service.enqueue(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        service.python("-m", "orders", "worker", "--max-seconds", "5", env=failing)
        (row,) = service.rows()
        if row["status"] == "FAILED":
            break
        time.sleep(0.1)
    (row,) = service.rows()
    assert (row["status"], row["retry_count"]) == ("FAILED", 3)
    assert "RuntimeError: the ledger is closed" in row["last_error"]
    # Published inside the handler's transaction, rolled back with it: nothing went out.
    assert service.value("SELECT COUNT(*) FROM outbox") == 0
    assert service.value("SELECT COUNT(*) FROM handled") == 0
    # Each failed attempt is in the log; attempts 2 and 3 came after their backoff.
    log = row["attempt_log"]
    assert [entry["attempt"] for entry in log] == [1, 2, 3]

    listed = cli(service, "list")
    assert f"queue  {row['id']}" in listed and "RuntimeError: the ledger is closed" in listed
    shown = cli(service, "show", str(row["id"]))
    assert "Traceback" in shown and "attempts:" in shown and shown.count("the ledger") >= 4
    assert "no dead letters" in cli(service, "list", "--older-than", "1h")

    assert "requeued 1 message(s)" in cli(service, "requeue", str(row["id"]))
    (row,) = service.rows()
    assert (row["status"], row["retry_count"]) == ("NEW", 0)
    service.python("-m", "orders", "worker", "--max-seconds", "5")
    (row,) = service.rows()
    assert row["status"] == "DONE"
    assert service.value("SELECT COUNT(*) FROM handled") == 1
    assert service.value("SELECT COUNT(*) FROM outbox") == 1


def test_backoff_spaces_the_attempts(service: MessagingService):
    """Between two attempts the row waits until its available_at, set by the policy."""
    failing = {"TEST_HANDLER_FAIL": "1"}
    service.enqueue(1)
    service.python("-m", "orders", "worker", "--once", env=failing)
    (row,) = service.rows()
    due = row["available_at"]
    waited = (due - row["updated_at"]).total_seconds()
    assert row["retry_count"] == 1 and 0 <= waited <= 0.2  # attempt 1: up to base_seconds
    deadline = time.monotonic() + 60
    while True:
        service.python("-m", "orders", "worker", "--once", env=failing)
        finished = service.value("SELECT UTC_TIMESTAMP(6)")
        (row,) = service.rows()
        if finished < due:  # the whole run was over before the row was due: not claimed
            assert row["retry_count"] == 1
        if row["retry_count"] == 2:
            break
        assert time.monotonic() < deadline, "the row was never claimed again"
    assert row["updated_at"] >= due  # the second attempt came after the backoff
    assert 0 <= (row["available_at"] - row["updated_at"]).total_seconds() <= 0.4  # base x 2


def test_a_message_that_breaks_its_schema_is_dead_lettered_at_once(service: MessagingService):
    event = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "payments",
        "type": "payment.captured.v1", "time": "2024-05-01T12:30:00Z",
        "datacontenttype": "application/json",
        "data": {"payment_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()),
                 "amount_cents": "a lot", "captured_at": "2024-05-01T12:30:00Z"},
    }
    service.query(
        "INSERT INTO message_queue (message_id, source, message_type, version, payload) "
        "VALUES (%s, 'payments', 'payment.captured', 1, %s)", (event["id"], json.dumps(event)))
    service.python("-m", "orders", "worker", "--max-seconds", "5")
    (row,) = service.rows()
    assert (row["status"], row["retry_count"]) == ("FAILED", 1)  # no retries
    assert "/amount_cents must be of type integer" in row["last_error"]
    assert service.value("SELECT COUNT(*) FROM handled") == 0
    assert "payment.captured v1" in cli(service, "list", "--type", "payment.captured")
    assert "no dead letters" in cli(service, "list", "--type", "order.created")
    assert "purged 1 message(s)" in cli(service, "purge", "--all")
    assert service.rows() == []
