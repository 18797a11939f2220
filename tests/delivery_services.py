"""Two generated services that talk to each other, run the way their operators run them.

`Service` is one generated service: its own MariaDB/MySQL database, its own signing keys, an
HTTP server (`python -m <name> serve`, waitress) on a loopback port, and its command line
(`migrate`, `keys`, `token`, `worker`) run as subprocesses. The handlers and app migrations the
tests need are written into the service as its developer would write them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from conftest import _connect, database_url
from support import free_port, query_mysql, start_server, stop_server

# A server that answers 500 to every inbox batch holding a given message type, in front of the
# service's real app: a peer with a bug in one message type's path.
FAILING_SERVER = """
import io, sys, waitress
from {package}.app import create_app

app = create_app()
poison = sys.argv[2].encode()

def failing(environ, start_response):
    if environ["PATH_INFO"] == "/v1/inbox":
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if poison in body:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"this build cannot take that message type"]
        environ["wsgi.input"] = io.BytesIO(body)
    return app(environ, start_response)

waitress.serve(failing, host="127.0.0.1", port=int(sys.argv[1]), threads=4)
"""


def create_database(server_url: str) -> str:
    name = f"ss_delivery_{uuid.uuid4().hex[:10]}"
    conn = _connect(server_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return database_url(server_url, name)


def drop_database(url: str) -> None:
    conn = _connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{url.rsplit('/', 1)[1]}`")
    finally:
        conn.close()


@dataclass
class Service:
    name: str
    root: Path
    database_url: str
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ, "LOG_LEVEL": "WARNING", "DATABASE_URL": self.database_url,
            **self.settings, **(extra or {}),
        }

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def cli(self, *args: str, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", self.name, *args], cwd=self.root, env=self.env(),
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if ok and result.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr[-4000:]}")
        return result

    def worker(self, max_seconds: float = 20) -> str:
        """One cron run of the worker: handles the queue and relays the outbox until drained."""
        return self.cli("worker", "--max-seconds", str(max_seconds)).stderr

    def token(self, *scopes: str) -> str:
        return self.cli("token", "--scope", " ".join(scopes)).stdout.strip()

    def start(self, script: str | None = None, *args: str) -> None:
        """Serve HTTP: `python -m <name> serve`, or `script` (Python source) with `args`."""
        command = [sys.executable, "-m", self.name, "serve", "--port", str(self.port)]
        if script is not None:
            command = [sys.executable, "-c", script.format(package=self.name), str(self.port),
                       *args]
        self.server = start_server(
            command, cwd=self.root, env=self.env({"PYTHONPATH": str(self.root)}),
            name=self.name, url=self.url,
        )

    def stop(self) -> None:
        stop_server(self.server)
        self.server = None

    def restart(self, script: str | None = None, *args: str) -> None:
        self.stop()
        self.start(script, *args)

    # -- the database ---------------------------------------------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        return query_mysql(self.database_url, sql, params)

    def value(self, sql: str, params: tuple = ()) -> Any:
        (row,) = self.query(sql, params)
        return next(iter(row.values()))

    def statuses(self, table: str, where: str = "1 = 1") -> dict[str, int]:
        rows = self.query(f"SELECT status, COUNT(*) AS n FROM {table} WHERE {where} "
                          "GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    def breaker(self, peer: str) -> dict[str, Any]:
        """The peer's circuit breaker row (a peer that never failed has none: closed)."""
        found = self.query("SELECT * FROM circuit_breakers WHERE name = %s", (peer,))
        return found[0] if found else {"state": "closed", "trips": 0, "last_error": None}

    def post(self, path: str, body: Any, token: str, **headers: str) -> requests.Response:
        return requests.post(
            self.url + path, data=json.dumps(body),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                     **headers},
            timeout=30,
        )
