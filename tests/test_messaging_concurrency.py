"""Concurrency and crash claims of the worker, proven with OS processes on MariaDB/MySQL.

A generated orders service's `payment.captured` handler is replaced with test code that records
each message in a table keyed by message id and bumps a counter (see messaging_service.py). Then
several `python -m orders worker` processes drain the queue together, or one is killed with
SIGKILL in the middle of a batch, and the database is checked: every message handled exactly
once, none left behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from messaging_service import MessagingService

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


@pytest.fixture
def service(new_service, mysql_database) -> MessagingService:
    return MessagingService.create(new_service, mysql_database)


def wait_all(workers, timeout: float) -> list[str]:
    outputs = []
    for worker in workers:
        try:
            _out, err = worker.communicate(timeout=timeout)
        except Exception:
            worker.kill()
            raise
        assert worker.returncode == 0, err[-3000:]
        outputs.append(err)
    return outputs


def assert_each_handled_once(service: MessagingService, count: int) -> None:
    statuses = service.query(
        "SELECT status, COUNT(*) AS n, MAX(retry_count) AS retries FROM message_queue "
        "GROUP BY status"
    )
    assert [(row["status"], row["n"]) for row in statuses] == [("DONE", count)], statuses
    assert service.value("SELECT COUNT(*) FROM handled") == count
    assert service.value("SELECT n FROM handled_counter") == count  # no handling committed twice
    # Every handled message id is a queued one (the primary key rules out duplicates).
    assert service.value(
        "SELECT COUNT(*) FROM handled h JOIN message_queue q ON q.message_id = h.message_id"
    ) == count
    # What the handlers published committed with them: one outbox row per handled message.
    assert service.value("SELECT COUNT(*) FROM outbox WHERE destination = 'payments'") == count


@pytest.mark.parametrize("claim_method", ["skip_locked", "compare_and_set"])
def test_four_workers_started_together_handle_ten_thousand_messages_exactly_once(
    service: MessagingService, claim_method: str
):
    count = 10_000
    service.enqueue(count)
    assert service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'NEW'") == count
    env = {"CLAIM_METHOD": claim_method}
    workers = [
        service.worker("--max-seconds", "240", "--batch-size", "100", env=env) for _ in range(4)
    ]
    outputs = wait_all(workers, timeout=300)
    assert_each_handled_once(service, count)
    # All four took part: the claim spread the work instead of serialising it.
    pids = service.query("SELECT worker_pid, COUNT(*) AS n FROM handled GROUP BY worker_pid")
    assert len(pids) == 4, (pids, outputs)
    assert service.value("SELECT COUNT(*) FROM message_queue WHERE retry_count > 0") == 0
    # No row was ever leased to two workers: none had to give up a batch to another.
    assert all("lost_leases=0" in output for output in outputs), outputs


@pytest.mark.parametrize("claim_method", ["skip_locked", "compare_and_set"])
def test_killed_worker_messages_are_handled_once_after_the_lease_expires(
    service: MessagingService, tmp_path: Path, claim_method: str
):
    count = 300
    service.enqueue(count)
    calls = tmp_path / "calls.log"
    lease = 3.0
    service.env["CLAIM_METHOD"] = claim_method  # for every worker started below
    env = {"TEST_HANDLER_SLEEP": "0.01", "TEST_HANDLER_LOG": str(calls)}
    victim = service.worker("--max-seconds", "120", "--batch-size", "50",
                            "--lease-seconds", str(lease), env=env)
    # Wait until the victim is inside its third batch: two committed, one half done.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = len(calls.read_text().splitlines()) if calls.exists() else 0
        if started >= 125:
            break
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    started = len(calls.read_text().splitlines())
    done_at_kill = service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'DONE'")
    in_progress = service.value(
        "SELECT COUNT(*) FROM message_queue WHERE status = 'IN_PROGRESS'"
    )
    assert done_at_kill < started  # killed in the middle of a batch: handled, not committed
    assert in_progress > 0 and done_at_kill == service.value("SELECT COUNT(*) FROM handled")

    # A worker started before the lease runs out leaves the dead worker's rows alone...
    survivor = service.worker("--max-seconds", "60", "--batch-size", "50",
                              "--lease-seconds", str(lease))
    wait_all([survivor], timeout=90)
    stranded = service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'IN_PROGRESS'")
    if stranded:  # ...and once the lease has run out, the next run takes them over.
        time.sleep(lease)
        wait_all([service.worker("--max-seconds", "60", "--lease-seconds", str(lease))], 90)
    assert_each_handled_once_after_crash(service, count)


def assert_each_handled_once_after_crash(service: MessagingService, count: int) -> None:
    assert service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'DONE'") == count
    assert service.value("SELECT COUNT(*) FROM handled") == count
    assert service.value("SELECT n FROM handled_counter") == count
    assert service.value("SELECT COUNT(*) FROM outbox") == count
    # The rows the killed worker held were counted as an attempt and say what happened.
    reclaimed = service.rows()
    reclaimed = [row for row in reclaimed if row["retry_count"] > 0]
    assert reclaimed, "the killed worker held leased rows"
    for row in reclaimed:
        assert row["retry_count"] == 1
        assert "lease expired" in row["attempt_log"][-1]["error"]


def test_sigterm_stops_a_forever_worker_after_the_batch_in_hand(
    service: MessagingService, tmp_path: Path
):
    service.enqueue(400)
    calls = tmp_path / "calls.log"
    env = {"TEST_HANDLER_SLEEP": "0.01", "TEST_HANDLER_LOG": str(calls)}
    worker = service.worker("--forever", "--poll-seconds", "0.1", "--batch-size", "50", env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if calls.exists() and len(calls.read_text().splitlines()) >= 75:
            break  # inside the second batch
        time.sleep(0.01)
    worker.send_signal(signal.SIGTERM)
    _out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err[-3000:]
    # The batch in hand was finished and committed, not abandoned to its lease.
    assert service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'IN_PROGRESS'") == 0
    done = service.value("SELECT COUNT(*) FROM message_queue WHERE status = 'DONE'")
    assert done % 50 == 0 and 100 <= done < 400
    assert service.value("SELECT COUNT(*) FROM handled") == done
