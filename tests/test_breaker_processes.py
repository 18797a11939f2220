"""The circuit breaker across OS processes on MariaDB/MySQL: the state one process records is
what every other process sees, and when the cool-down ends exactly one of many processes gets
the trial call (an atomic conditional UPDATE), however many ask at the same instant."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

# One process of the service: opens the breaker of "orders" (BREAKER_FAILURE_THRESHOLD
# failures), or waits until START (a time.time() value) and asks for leave to call.
PROCESS = textwrap.dedent(
    """
    import sys, time
    from payments import SERVICE
    from shoestring_runtime.breaker import Breaker, BreakerOpen, BreakerPolicy, BreakerStore

    settings = SERVICE.load_settings()
    store = BreakerStore(settings.database_url, settings.root)
    breaker = Breaker(store, "orders", BreakerPolicy(failure_threshold=3, open_seconds=1.0))
    if sys.argv[1] == "fail":
        for _ in range(3):
            breaker.failed(breaker.allow(), "connection refused")
        print(breaker.state().state)
    else:
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
        try:
            print("trial" if breaker.allow().trial else "closed")
        except BreakerOpen:
            print("refused")
    """
)


@pytest.fixture
def payments(new_service, mysql_database) -> tuple[Path, dict[str, str]]:
    root = new_service(EXAMPLES / "payments" / "service.yaml")
    env = {"DATABASE_URL": mysql_database, "ORDERS_URL": "http://127.0.0.1:9",
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-m", "payments", "migrate"], cwd=root, check=True,
                   env={**os.environ, **env}, capture_output=True)
    return root, env


def run(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROCESS, *args], cwd=root,
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_one_process_opens_the_breaker_and_exactly_one_of_eight_gets_the_trial(payments):
    root, env = payments
    opener = run(root, env, "fail")
    out, err = opener.communicate(timeout=60)
    assert opener.returncode == 0 and out.strip() == "open", err
    # Eight processes, started while it is open, all ask at the same instant after it.
    start = time.time() + 3.0
    askers = [run(root, env, "ask", str(start)) for _ in range(8)]
    answers = []
    for asker in askers:
        out, err = asker.communicate(timeout=60)
        assert asker.returncode == 0, err
        answers.append(out.strip())
    assert sorted(answers) == ["refused"] * 7 + ["trial"]
