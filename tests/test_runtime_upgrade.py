"""A runtime upgrade on a database that a chassis-era service made and filled.

Up to commit 500bad8 every service carried the runtime as `<package>/chassis/` and recorded its
migrations as `chassis/NNNN_name`. Such databases exist and hold work. The service built then
(examples/orders at that commit, run with its own chassis) migrates a database and gets a row in
each runtime table; the same service as generated today then migrates it with the current
runtime. Nothing may be applied twice, every row must survive as it was, the records move to
`runtime/`, any runtime migration the old chassis lacked is applied, and the current runtime
works on the old rows: the worker completes the queued message, a dead letter is requeued and
completed, the idempotency key replays its response, the full rate limit bucket refuses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, REPO
from shoestring_runtime.db import Database
from shoestring_runtime.idempotency import IdempotencyKeys, Replay
from shoestring_runtime.migrate import discover
from shoestring_runtime.ratelimit import DatabaseStorage, Policy

CHASSIS_ERA = "500bad8"  # the last commit whose services carried the runtime as chassis/
TABLES = {  # table -> its key, for snapshots in a stable order
    "message_queue": "id",
    "outbox": "id",
    "idempotency_keys": "client, idempotency_key",
    "rate_limit_buckets": "bucket",
    "audit_log": "id",
}
FAR_FUTURE = dt.datetime(2999, 1, 1)


def chassis_era_service(where: Path) -> Path:
    """examples/orders as generated at CHASSIS_ERA, its chassis inside; returns its root."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", CHASSIS_ERA, "examples/orders"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    root = where / "examples" / "orders"
    assert (root / "orders" / "chassis" / "migrate.py").is_file()
    return root


def current_service(where: Path) -> Path:
    """examples/orders as generated today (it imports shoestring_runtime); returns its root."""
    root = where / "orders"
    shutil.copytree(EXAMPLES / "orders", root, ignore=shutil.ignore_patterns("var", ".venv"))
    return root


def run(root: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m orders ARGS` in the service at `root`, with this interpreter (which has the
    packages both the chassis and the runtime need; each service imports its own `orders`)."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PAYMENTS_URL": "http://127.0.0.1:9",  # never called: nothing is due for payments
        "SERVICE_KEYS_DIR": str(root / "var" / "keys"),
    }
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-m", "orders", *args],
        check=False, cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"orders {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def envelope(message_id: str, order_id: str) -> str:
    """A payment.captured v1 CloudEvent, as the inbox stores it."""
    return json.dumps({
        "specversion": "1.0", "id": message_id, "source": "payments",
        "type": "payment.captured.v1", "time": "2026-12-01T10:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "payment_id": "7c1d4a5e-1b7e-4c56-9d5b-0b8a1f6f1a01", "order_id": order_id,
            "amount_cents": 1250, "captured_at": "2026-12-01T09:59:58Z",
        },
    })


def fill(db: Database) -> None:
    """One row of each kind a chassis-era service leaves behind, in the chassis's schema."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    queue = (
        "INSERT INTO message_queue (message_id, source, message_type, version, payload, status,"
        " retry_count, available_at, last_error, attempt_log, created_at, updated_at)"
        " VALUES (%s, 'payments', 'payment.captured', 1, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    with db.transaction() as conn:
        conn.execute(queue, ("m-queued", envelope("m-queued", "5b0c3c4e-5c1e-4a43-8f0b-2a4f3c9d1e01"),
                             "NEW", 0, now - dt.timedelta(minutes=1), None, None, now, now))
        conn.execute(queue, ("m-dead", envelope("m-dead", "5b0c3c4e-5c1e-4a43-8f0b-2a4f3c9d1e02"),
                             "FAILED", 10, now, "RuntimeError: payments said no",
                             json.dumps([{"attempt": 10, "error": "RuntimeError"}]), now, now))
        conn.execute(
            "INSERT INTO outbox (message_id, destination, message_type, version, payload, status,"
            " available_at, created_at, updated_at)"
            " VALUES ('o-1', 'payments', 'order.created', 2, %s, 'NEW', %s, %s, %s)",
            (json.dumps({"id": "o-1", "type": "order.created.v2", "data": {}}), FAR_FUTURE, now,
             now),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (client, idempotency_key, owner, endpoint, fingerprint,"
            " state, response_status, response_headers, response_body, created_at, reclaimable_at)"
            " VALUES ('sub:shop', 'key-1', %s, 'create_order', %s, 'DONE', 201, %s, %s, %s, %s)",
            ("a" * 32, "f" * 64, json.dumps({"Location": "/v1/orders/1"}), '{"status":"pending"}',
             now, FAR_FUTURE),
        )
        # A bucket whose theoretical arrival time lies an hour ahead: the quota is spent.
        tat_us = int((time.time() + 3600) * 1_000_000)
        conn.execute(
            "INSERT INTO rate_limit_buckets (bucket, tat_us, last_allowed) VALUES (%s, %s, 1)",
            ("per_client_60m|sub:shop", tat_us),
        )
        conn.execute(
            "INSERT INTO audit_log (occurred_at, action, actor, detail) VALUES (%s, %s, %s, %s)",
            (now, "create_order", "sub:shop", "{}"),
        )


def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    with db.transaction(readonly=True) as conn:
        return {
            table: [dict(row) for row in conn.fetchall(f"SELECT * FROM {table} ORDER BY {key}")]
            for table, key in TABLES.items()
        }


def records(db: Database) -> dict[str, Any]:
    with db.transaction(readonly=True) as conn:
        return {row["name"]: row["applied_at"]
                for row in conn.fetchall("SELECT name, applied_at FROM schema_migrations")}


def status(db: Database, message_id: str) -> tuple[str, int]:
    with db.transaction(readonly=True) as conn:
        row = conn.fetchone(
            "SELECT status, retry_count FROM message_queue WHERE message_id = %s", (message_id,)
        )
    return row["status"], row["retry_count"]


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    return request.getfixturevalue("mysql_database")


@pytest.mark.slow  # two services' command lines, a dozen processes: about 5 s per engine
def test_a_chassis_era_database_moves_to_the_current_runtime_and_keeps_its_work(
    database_url: str, tmp_path: Path
):
    old = chassis_era_service(tmp_path / "old")
    new = current_service(tmp_path / "new")
    db = Database(database_url)

    made = run(old, database_url, "migrate").stdout
    chassis_records = records(db)
    assert chassis_records and all(name.startswith("chassis/") for name in chassis_records)
    assert made.count("applied chassis/") == len(chassis_records)
    fill(db)
    before = snapshot(db)

    # What the current runtime has that the chassis lacked: applied now, and only that.
    had = {name.replace("chassis/", "runtime/", 1) for name in chassis_records}
    expected = [m.name for m in discover(db.dialect.name, new) if m.name not in had]
    listed = run(new, database_url, "migrate", "--dry-run").stdout
    assert [line.split()[1] for line in listed.splitlines() if line.startswith("pending ")] == (
        expected
    )
    assert listed.count("rename chassis/") == len(chassis_records)

    upgraded = run(new, database_url, "migrate").stdout
    applied = [line.split()[1] for line in upgraded.splitlines() if line.startswith("applied ")]
    assert applied == expected
    for name in sorted(chassis_records):
        assert f"renamed {name} to runtime/{name.split('/', 1)[1]}" in upgraded

    after = records(db)
    assert set(after) == {m.name for m in discover(db.dialect.name, new)}
    for name, applied_at in chassis_records.items():  # moved, not re-applied
        assert after[name.replace("chassis/", "runtime/", 1)] == applied_at
    assert snapshot(db) == before
    assert "database is up to date" in run(new, database_url, "migrate").stdout
    assert "0 pending migration(s)" in run(new, database_url, "migrate", "--list").stdout
    run(new, database_url, "check")

    # The current runtime works on the old rows.
    run(new, database_url, "worker", "--once")
    assert status(db, "m-queued") == ("DONE", 0)
    assert status(db, "m-dead") == ("FAILED", 10)
    requeued = run(new, database_url, "dead-letters", "requeue", "--all", "--table", "queue")
    assert "requeued 1 message(s)" in requeued.stdout
    assert status(db, "m-dead") == ("NEW", 0)
    run(new, database_url, "worker", "--once")
    assert status(db, "m-dead") == ("DONE", 0)

    replay = IdempotencyKeys(db).claim(
        client="sub:shop", key="key-1", endpoint="create_order", fingerprint="f" * 64
    )
    assert replay == Replay(201, {"Location": "/v1/orders/1"}, '{"status":"pending"}')
    policy = Policy("per_client_60m", 60, "minute", "client")
    assert not DatabaseStorage(db).hit(policy, "per_client_60m|sub:shop", time.time()).allowed


@pytest.mark.slow
def test_two_migrate_runs_at_once_move_each_chassis_record_once_and_apply_nothing_twice(
    database_url: str, tmp_path: Path
):
    old = chassis_era_service(tmp_path / "old")
    new = current_service(tmp_path / "new")
    db = Database(database_url)
    run(old, database_url, "migrate")
    chassis_records = records(db)

    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "orders", "migrate"]
    runs = [
        subprocess.Popen(command, cwd=new, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in runs]
    for process, (out, err) in zip(runs, outputs):
        assert process.returncode == 0, out + err
    lines = [line for out, _err in outputs for line in out.splitlines()]
    renamed = sorted(line.split()[1] for line in lines if line.startswith("renamed "))
    assert renamed == sorted(chassis_records)
    had = {name.replace("chassis/", "runtime/", 1) for name in chassis_records}
    expected = [m.name for m in discover(db.dialect.name, new) if m.name not in had]
    assert [line.split()[1] for line in lines if line.startswith("applied ")] == expected
    assert set(records(db)) == {m.name for m in discover(db.dialect.name, new)}
