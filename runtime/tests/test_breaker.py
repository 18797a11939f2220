"""Circuit breakers: state in the database, shared by every process; one trial call at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from shoestring_runtime.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerOpen,
    BreakerPolicy,
    BreakerStore,
)

from .shop import SERVICE, service_environment

FAST = BreakerPolicy(failure_threshold=3, open_seconds=0.3, max_open_seconds=1.0, trial_seconds=1)


@pytest.fixture(scope="module")
def store(settings, db):
    found = BreakerStore(settings.database_url, settings.root)
    yield found
    found.close()


@pytest.fixture
def breaker(store):
    """A breaker of its own per test (the store is shared by the session), closed afterwards
    (an open one would make /readyz warn in later tests)."""
    found = Breaker(store, f"peer-{uuid.uuid4().hex[:8]}", FAST)
    yield found
    store.reset(found.name)


def fail(breaker: Breaker, times: int, error: str = "connection refused") -> None:
    for _ in range(times):
        breaker.failed(breaker.allow(), error)


def test_a_healthy_peer_is_allowed_and_costs_no_write(breaker):
    permit = breaker.allow()
    assert not permit.trial
    breaker.succeeded(permit)
    state = breaker.state()
    assert (state.state, state.failures) == (CLOSED, 0)
    assert breaker.name not in [found.name for found in breaker.store.states()]  # no row at all


def test_failures_in_a_row_open_it_and_calls_are_refused_with_the_wait(breaker):
    fail(breaker, 2)
    assert breaker.state().state == CLOSED and breaker.state().failures == 2
    assert breaker.failed(breaker.allow(), "connection refused") is True  # the third opens it
    with pytest.raises(BreakerOpen) as refused:
        breaker.allow()
    assert 0 < refused.value.retry_in <= FAST.open_seconds + 0.05
    assert "connection refused" in str(refused.value) and breaker.name in str(refused.value)
    assert breaker.state().state == OPEN


def test_a_success_forgets_earlier_failures(breaker):
    fail(breaker, 2)
    breaker.succeeded(breaker.allow())
    fail(breaker, 2)
    assert breaker.state().state == CLOSED  # never three in a row


def test_a_retry_after_opens_it_at_once_for_that_long(breaker):
    assert breaker.failed(breaker.allow(), "503 Service Unavailable", retry_after=5) is True
    with pytest.raises(BreakerOpen) as refused:
        breaker.allow()
    assert 4 < refused.value.retry_in <= 5.05  # longer than the policy's own cool-down


def test_after_the_cool_down_one_trial_closes_it_on_success(breaker):
    fail(breaker, 3)
    time.sleep(FAST.open_seconds + 0.05)
    trial = breaker.allow()
    assert trial.trial and breaker.state().state == HALF_OPEN
    with pytest.raises(BreakerOpen) as refused:
        breaker.allow()  # everyone else waits for the trial's outcome
    assert refused.value.retry_in is None
    breaker.succeeded(trial)
    state = breaker.state()
    assert (state.state, state.failures, state.trips) == (CLOSED, 0, 0)
    assert not breaker.allow().trial


def test_a_failed_trial_opens_it_again_for_twice_as_long(breaker):
    fail(breaker, 3)
    time.sleep(FAST.open_seconds + 0.05)
    breaker.failed(breaker.allow(), "still down")
    with pytest.raises(BreakerOpen) as refused:
        breaker.allow()
    assert FAST.open_seconds < refused.value.retry_in <= 2 * FAST.open_seconds + 0.05
    assert breaker.state().trips == 2 and breaker.state().last_error == "still down"


def test_the_cool_down_stops_growing_at_its_maximum():
    assert [FAST.cool_down(trips) for trips in range(4)] == [0.3, 0.6, 1.0, 1.0]


def test_of_many_threads_after_the_cool_down_exactly_one_gets_the_trial(breaker):
    fail(breaker, 3)
    time.sleep(FAST.open_seconds + 0.05)
    trials: list[bool] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        try:
            trials.append(breaker.allow().trial)
        except BreakerOpen:
            trials.append(False)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(trials) == [False] * 7 + [True]


def test_a_trial_whose_process_went_silent_is_taken_over_after_trial_seconds(breaker):
    fail(breaker, 3)
    time.sleep(FAST.open_seconds + 0.05)
    lost = breaker.allow()  # its process dies: it never reports
    assert lost.trial
    with pytest.raises(BreakerOpen):
        breaker.allow()
    time.sleep(FAST.trial_seconds + 0.05)
    taken = breaker.allow()
    assert taken.trial and taken.owner != lost.owner
    breaker.succeeded(lost)  # too late: fenced on the trial's owner, it decides nothing
    assert breaker.state().state == HALF_OPEN
    breaker.succeeded(taken)
    assert breaker.state().state == CLOSED


def test_breaker_writes_commit_even_inside_a_rolled_back_handler_transaction(db, breaker):
    # A handler calls a peer inside its transaction, and its failure rolls that transaction back:
    # the breaker must still have counted the failures (its writes use their own connection; on
    # SQLite, their own database file, since the handler holds the only write lock).
    with pytest.raises(RuntimeError), db.transaction() as conn:
        conn.execute("SELECT 1")
        fail(breaker, 3)
        raise RuntimeError("the peer is down, so the handler gives up")
    assert breaker.state().state == OPEN


def test_an_operator_can_close_a_breaker_by_hand(store, breaker):
    fail(breaker, 3)
    assert store.reset(breaker.name) is True
    assert not breaker.allow().trial and breaker.state().state == CLOSED
    assert store.reset("no-such-peer") is False


def test_readyz_warns_while_a_breaker_is_open_and_names_it(client, store, breaker):
    fail(breaker, 3, "connection refused by the peer")
    answer = client.get("/readyz")
    assert answer.status_code == 200  # still ready: what goes to that peer waits
    body = answer.get_json()
    assert body["status"] == "warn"
    (check,) = body["checks"]["breakers:open"]
    assert check["status"] == "warn" and breaker.name in check["output"]
    assert "connection refused by the peer" in check["output"]
    store.reset(breaker.name)
    assert client.get("/readyz").get_json()["checks"]["breakers:open"][0]["status"] == "pass"


def test_the_breakers_command_lists_them_and_closes_one_by_hand(settings, breaker):
    fail(breaker, 3, "connection refused")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", SERVICE.package, "breakers", *args],
            cwd=SERVICE.root, capture_output=True, text=True,
            env={**os.environ, **service_environment(settings.database_url)}, timeout=60,
            check=False,
        )

    listed = run()
    assert listed.returncode == 0, listed.stderr
    assert f"{breaker.name}: open until" in listed.stdout and "connection refused" in listed.stdout
    closed = run("--reset", breaker.name)
    assert closed.returncode == 0 and f"breaker {breaker.name} closed" in closed.stdout
    assert breaker.state().state == CLOSED
    unknown = run("--reset", "no-such-peer")
    assert unknown.returncode == 1 and "no breaker named 'no-such-peer'" in unknown.stderr
