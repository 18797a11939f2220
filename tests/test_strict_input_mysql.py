"""Strict mode and utf8mb4 end to end: a generated service with a user table of VARCHAR(10),
served by waitress on MariaDB/MySQL, written by a handler from request fields.

What must hold: a 4-byte emoji is stored intact (10 emoji fit a VARCHAR(10): MySQL counts
characters, utf8mb4 holds any of them); a value over the column's length is refused by the
server (strict mode, error 1406), never truncated, and the client gets a 422 problem+json
pointing at the request field, without a traceback; a field declared with `maxLength` in the
spec's full form is checked before the handler runs (same 422, nothing reaches the database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import _connect
from support import free_port, scaffold_service

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

SPEC = """\
shoestring: 1
service:
  name: notes
  description: Keeps short notes; exercises strict mode and utf8mb4.
endpoints:
  - name: create_note
    method: POST
    path: /v1/notes
    description: Keep a note (its title goes to a VARCHAR(10) column).
    scopes: [notes:write]
    request:
      title: str
    response:
      note_id: int
      title: str
  - name: get_note
    method: GET
    path: /v1/notes/{note_id}
    description: Read a note back.
    scopes: [notes:read]
    request:
      note_id: int
    response:
      note_id: int
      title: str
  - name: create_label
    method: POST
    path: /v1/labels
    description: Keep a label; its length is declared, so requests are checked up front.
    scopes: [notes:write]
    request:
      label: {schema: {type: string, maxLength: 10}, description: At most 10 characters.}
    response:
      label: str
"""

CREATE_NOTE = """\
from typing import Any

from ..chassis.context import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO notes (title) VALUES (%s)", (data["title"],))
    return {"note_id": ctx.db.lastrowid, "title": data["title"]}
"""

GET_NOTE = """\
from typing import Any

from ..chassis import Problem
from ..chassis.context import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    row = ctx.db.fetchone("SELECT id, title FROM notes WHERE id = %s", (data["note_id"],))
    if row is None:
        raise Problem(404, f"no note {data['note_id']}")
    return {"note_id": row["id"], "title": row["title"]}
"""

CREATE_LABEL = """\
from typing import Any

from ..chassis.context import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO labels (label) VALUES (%s)", (data["label"],))
    return {"label": data["label"]}
"""

MIGRATIONS = {
    "mysql": (
        "CREATE TABLE notes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "title VARCHAR(10) NOT NULL) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;\n"
        "CREATE TABLE labels (label VARCHAR(10) NOT NULL) ENGINE = InnoDB "
        "DEFAULT CHARSET = utf8mb4;\n"
    ),
    "sqlite": (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);\n"
        "CREATE TABLE labels (label TEXT NOT NULL);\n"
    ),
}

EMOJI = "\U0001f600"  # 4 bytes in UTF-8: needs utf8mb4, not MySQL's 3-byte utf8


class Notes:
    """The generated service, served by one waitress process."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "INFO"}
        self.port = free_port()
        self.log = root / "server.log"
        self.process: subprocess.Popen | None = None
        self.token = ""

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "notes", *args],
            cwd=self.root,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def start(self) -> None:
        self.run("migrate")
        self.run("keys", "generate")
        self.token = self.run("token", "--scope", "notes:read notes:write", "--ttl", "600")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notes", "serve", "--port", str(self.port)],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                requests.get(self.url("/livez"), timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"the service did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str, body: dict) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.post(self.url(path), json=body, headers=headers, timeout=10)

    def get(self, path: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.get(self.url(path), headers=headers, timeout=10)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = _connect(self.database_url, urlsplit(self.database_url).path.lstrip("/"))
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            conn.close()


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory, mysql_url: str) -> Iterator[Notes]:
    folder = tmp_path_factory.mktemp("strict")
    root = folder / "notes"
    scaffold_service(
        root,
        SPEC,
        {"create_note": CREATE_NOTE, "get_note": GET_NOTE, "create_label": CREATE_LABEL},
        MIGRATIONS,
        "0001_notes.sql",
    )

    name = f"ss_strict_{os.getpid()}_{int(time.time())}"
    server = _connect(mysql_url)
    with server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    parts = urlsplit(mysql_url)
    service = Notes(root, f"{parts.scheme}://{parts.netloc}/{name}")
    try:
        service.start()
        yield service
    finally:
        service.stop()
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()


def assert_problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "Traceback" not in response.text and "pymysql" not in response.text.lower()
    return response.json()


def test_ten_four_byte_emoji_fill_a_varchar_10_intact(notes: Notes):
    title = EMOJI * 10
    created = notes.post("/v1/notes", {"title": title})
    assert created.status_code == 201, created.text
    note_id = created.json()["note_id"]
    assert notes.get(f"/v1/notes/{note_id}").json()["title"] == title
    stored = notes.query(
        "SELECT title, CHAR_LENGTH(title), LENGTH(title) FROM notes WHERE id = %s", (note_id,)
    )
    assert stored == [(title, 10, 40)]


@pytest.mark.parametrize("title", ["x" * 11, EMOJI * 11, "abcdefghi" + EMOJI * 2])
def test_a_title_over_the_column_is_refused_with_422_and_never_truncated(notes: Notes, title):
    last_id = notes.query("SELECT COALESCE(MAX(id), 0) FROM notes")[0][0]
    body = assert_problem(notes.post("/v1/notes", {"title": title}), 422)
    assert body["errors"] == [{"pointer": "/title", "detail": "is too long to be stored"}]
    # No row at all: not the first 10 characters, not anything else.
    assert notes.query("SELECT title FROM notes WHERE id > %s", (last_id,)) == []


def test_the_refusal_is_logged_with_the_fix_and_without_a_traceback(notes: Notes):
    assert_problem(notes.post("/v1/notes", {"title": "y" * 50}), 422)
    time.sleep(0.2)  # the access line is flushed by the server thread
    log = notes.log.read_text()
    assert "maxLength" in log
    assert "Traceback" not in log


def test_a_declared_max_length_is_checked_before_the_handler(notes: Notes):
    body = assert_problem(notes.post("/v1/labels", {"label": "z" * 11}), 422)
    assert [error["pointer"] for error in body["errors"]] == ["/label"]
    assert "too long" in body["errors"][0]["detail"]
    assert notes.query("SELECT COUNT(*) FROM labels") == [(0,)]
    assert notes.post("/v1/labels", {"label": EMOJI * 10}).status_code == 201
    assert notes.query("SELECT label FROM labels") == [(EMOJI * 10,)]


def test_the_openapi_document_shows_the_declared_length(notes: Notes):
    document = requests.get(notes.url("/openapi.json"), timeout=10).json()
    schema = document["components"]["schemas"]["create_label.request"]
    assert schema["properties"]["label"]["maxLength"] == 10
