"""Local background jobs: a service subscribes to a message `from:` itself, an endpoint queues it
with `ctx.enqueue` in the request's transaction, and the worker runs it. Over real HTTP, on
SQLite and MariaDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from support import free_port, scaffold_service, start_server, stop_server

SPEC = """\
shoestring: 1
service:
  name: mailer
  description: Mails receipts, later, from its own queue.
messages:
  receipt.requested:
    description: A receipt is to be mailed (a background job of this service).
    versions:
      1:
        fields:
          order_id: uuid
subscriptions:
  - message: receipt.requested
    version: 1
    from: mailer
    retry: default
    fields:
      order_id: uuid
endpoints:
  - name: request_receipt
    method: POST
    path: /v1/receipts
    description: Queue a receipt for mailing.
    scopes: [receipts:write]
    status: 202
    request:
      order_id: uuid
    response:
      queued: bool
retry_policies:
  default: {max_attempts: 5, base_seconds: 1, max_seconds: 60}
"""

ENDPOINT = '''"""Queue the receipt; the worker mails it."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.enqueue("receipt.requested", 1, {"order_id": data["order_id"]})
    return {"queued": True}
'''

JOB = '''"""Mail a receipt: here, record it."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    ctx.db.execute("INSERT INTO mailed (order_id) VALUES (%s)", (event["order_id"],))
'''

MAILED_SQL = "CREATE TABLE mailed (order_id VARCHAR(36) NOT NULL PRIMARY KEY);\n"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mailer.db'}"
    return request.getfixturevalue("mysql_database")


def test_a_job_queued_by_an_endpoint_runs_in_the_worker(tmp_path: Path, database_url: str):
    root = tmp_path / "mailer"
    job_module = "on_receipt_requested_v1"
    handlers = scaffold_service(
        root,
        SPEC,
        {"request_receipt": ENDPOINT},
        {"mysql": MAILED_SQL, "sqlite": MAILED_SQL},
        "0001_mailed.sql",
    )
    # Generated as the subscriber of the local message; the test's job replaces the stub.
    assert (handlers / f"{job_module}.py").exists()
    (handlers / f"{job_module}.py").write_text(JOB)
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}

    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "mailer", *args], cwd=root, env=env, check=True,
            capture_output=True, text=True,
        ).stdout

    cli("migrate")
    cli("keys", "generate")
    token = cli("token", "--scope", "receipts:write").strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server([sys.executable, "-m", "mailer", "serve", "--port", str(port)],
                          cwd=root, env=env, name="mailer", url=url)
    try:
        order_id = str(uuid.uuid4())
        response = requests.post(f"{url}/v1/receipts", json={"order_id": order_id},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 202, response.text
        assert response.json() == {"queued": True}
    finally:
        stop_server(server)

    cli("worker", "--once")
    check = (
        "import json; from mailer import SERVICE; from shoestring_runtime.db import Database\n"
        "db = Database(SERVICE.load_database_url(), base_dir=SERVICE.root)\n"
        "with db.transaction() as conn:\n"
        "    print(json.dumps([conn.fetchall('SELECT order_id FROM mailed'),\n"
        "                      conn.fetchall('SELECT status FROM message_queue')]))\n"
    )
    mailed, queue = json.loads(
        subprocess.run([sys.executable, "-c", check], cwd=root, env=env, check=True,
                       capture_output=True, text=True).stdout
    )
    assert mailed == [{"order_id": order_id}]
    assert queue == [{"status": "DONE"}]
