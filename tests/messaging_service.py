"""A generated orders service prepared for messaging tests, driven the way a user drives it.

The handler stub of `payment.captured` v1 is overwritten with test code (what a user does with a
stub): it records each message it handles in `handled` (message_id is the primary key, so a
second handling of one message could never commit) and adds one to `handled_counter`. Extra
behaviour comes from environment variables read per call: TEST_HANDLER_SLEEP (seconds per
message), TEST_HANDLER_LOG (a file that gets one line per call, committed or not) and
TEST_HANDLER_FAIL (raise after publishing, so nothing commits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from conftest import EXAMPLES
from support import query_mysql

HANDLER = '''\
"""Test handler: records each payment.captured v1 it handles (see tests/messaging_service.py)."""

import os
import time
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    log = os.environ.get("TEST_HANDLER_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as calls:
            calls.write(ctx.request_id + "\\n")
    ctx.db.execute(
        "INSERT INTO handled (message_id, payment_id, worker_pid) VALUES (%s, %s, %s)",
        (ctx.request_id, event["payment_id"], os.getpid()),
    )
    ctx.db.execute("UPDATE handled_counter SET n = n + 1 WHERE id = 1")
    ctx.publish("order.created", 1, {
        "order_id": event["order_id"], "customer_id": event["order_id"],
        "amount_cents": event["amount_cents"],
    })
    if os.environ.get("TEST_HANDLER_FAIL"):
        raise RuntimeError("the ledger is closed")
    time.sleep(float(os.environ.get("TEST_HANDLER_SLEEP", "0")))
'''

MIGRATIONS = {
    "0001_handled.sql": (
        "CREATE TABLE handled (message_id VARCHAR(64) NOT NULL PRIMARY KEY, "
        "payment_id CHAR(36) NOT NULL, worker_pid INT NOT NULL)"
    ),
    "0002_handled_counter.sql": "CREATE TABLE handled_counter (id INT PRIMARY KEY, n INT NOT NULL)",
    "0003_handled_counter_row.sql": "INSERT INTO handled_counter (id, n) VALUES (1, 0)",
}

ENQUEUE = textwrap.dedent(
    """
    import sys, uuid
    from orders import SERVICE
    from shoestring_runtime.context import Context
    from shoestring_runtime.db import Database
    import logging

    count, per_transaction = int(sys.argv[1]), int(sys.argv[2])
    data = dict(x.split("=", 1) for x in sys.argv[3:])
    settings = SERVICE.load_settings()
    db = Database(settings.database_url, base_dir=settings.root)
    done = 0
    while done < count:
        with db.transaction() as conn:
            ctx = Context(db=conn, log=logging.getLogger("enqueue"), request_id="enqueue",
                          trace_id=uuid.uuid4().hex, identity=None, settings=settings)
            for _ in range(min(per_transaction, count - done)):
                ctx.enqueue("payment.captured", 1, {
                    "payment_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4()),
                    "amount_cents": int(data.get("amount_cents", 100)),
                    "captured_at": "2024-05-01T12:30:00Z",
                })
                done += 1
            ctx.flush_messages()
    print(done)
    """
)


class MessagingService:
    """The generated service in `root`, on the MySQL database `database_url`."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PAYMENTS_URL": "http://127.0.0.1:9",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(root),
        }

    @classmethod
    def create(cls, new_service: Any, database_url: str, spec: Path | None = None):
        root = new_service(spec or EXAMPLES / "orders" / "service.yaml")
        (root / "orders" / "handlers" / "on_payment_captured_v1.py").write_text(HANDLER)
        for name, sql in MIGRATIONS.items():
            (root / "migrations" / "mysql" / name).write_text(sql + ";\n")
        service = cls(root, database_url)
        service.python("-m", "orders", "migrate")
        return service

    def python(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, *args], check=False, cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-5000:]}"
            )
        return result

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `python -m orders worker ARGS` in the background."""
        return subprocess.Popen(
            [sys.executable, "-m", "orders", "worker", *args], cwd=self.root,
            env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def enqueue(self, count: int, per_transaction: int = 1000, **data: Any) -> None:
        extra = [f"{key}={value}" for key, value in data.items()]
        self.python("-c", ENQUEUE, str(count), str(per_transaction), *extra)

    def query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return query_mysql(self.database_url, sql, params)

    def value(self, sql: str, params: tuple = ()) -> Any:
        (row,) = self.query(sql, params)
        return next(iter(row.values()))

    def rows(self, table: str = "message_queue") -> list[dict[str, Any]]:
        found = self.query(f"SELECT * FROM {table} ORDER BY id")
        for row in found:
            for column in ("payload", "attempt_log"):
                if isinstance(row.get(column), str):
                    row[column] = json.loads(row[column])
        return found
