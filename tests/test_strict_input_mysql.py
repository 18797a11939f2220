"""Strict input end to end: a generated service with a user table of VARCHAR(10), served by
waitress on MariaDB/MySQL, written by a handler from request fields.

What must hold: a 4-byte emoji is stored intact (10 emoji fit a VARCHAR(10): MySQL counts
characters, utf8mb4 holds any of them); a value over the column's length is refused by the
server (strict mode, error 1406), never truncated, and the client gets a 422 problem+json
pointing at the request field, without a traceback; a field declared with `maxLength` in the
spec's full form is checked before the handler runs (same 422, nothing reaches the database).

Input is as strict in every place as in a JSON body: a `date` or `datetime` must exist (in a
body, a query string or a path), an integer in a query string or a path has the 64-bit bound a
body's integers have, and each refusal says what is true of it. The served OpenAPI document
says which bodies are required, as the server treats them; what waitress refuses by itself is
listed in the generated README.
"""

from __future__ import annotations

import os
import re
import socket
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
  - name: create_event
    method: POST
    path: /v1/events
    description: Keep an event on a day, at a time.
    scopes: [notes:write]
    request:
      on: date
      at: datetime
    response:
      event_id: int
  - name: list_events
    method: GET
    path: /v1/events
    description: The latest events, since a day.
    scopes: [notes:read]
    request:
      since: date?
      limit: int?
    response:
      count: int
  - name: get_day
    method: GET
    path: /v1/days/{day}
    description: Echo a day from the path.
    scopes: [notes:read]
    request:
      day: date
    response:
      day: date
  - name: create_due
    method: POST
    path: /v1/dues
    description: Keep a due date given as text (a DATE column checks it).
    scopes: [notes:write]
    request:
      due: str
    response:
      due: str
  - name: ping_notes
    method: POST
    path: /v1/pings
    description: An action without request fields.
    scopes: [notes:write]
    response:
      ok: bool
  - name: touch_note
    method: POST
    path: /v1/notes/{note_id}/touch
    description: An action whose only field is in the path.
    scopes: [notes:write]
    request:
      note_id: int
    response:
      note_id: int
  - name: tag_note
    method: POST
    path: /v1/tags
    description: Optional fields only.
    scopes: [notes:write]
    request:
      tag: str?
    response:
      tag: str?
"""

CREATE_NOTE = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO notes (title) VALUES (%s)", (data["title"],))
    return {"note_id": ctx.db.lastrowid, "title": data["title"]}
"""

GET_NOTE = """\
from typing import Any

from shoestring_runtime import Problem
from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    row = ctx.db.fetchone("SELECT id, title FROM notes WHERE id = %s", (data["note_id"],))
    if row is None:
        raise Problem(404, f"no note {data['note_id']}")
    return {"note_id": row["id"], "title": row["title"]}
"""

CREATE_LABEL = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO labels (label) VALUES (%s)", (data["label"],))
    return {"label": data["label"]}
"""

CREATE_EVENT = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO events (day, at) VALUES (%s, %s)", (data["on"], data["at"]))
    return {"event_id": ctx.db.lastrowid}
"""

LIST_EVENTS = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    rows = ctx.db.fetchall(
        "SELECT id FROM events WHERE day >= %s ORDER BY id DESC LIMIT %s",
        (data.get("since") or "0001-01-01", data.get("limit") or 10),
    )
    return {"count": len(rows)}
"""

GET_DAY = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"day": data["day"]}
"""

CREATE_DUE = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute("INSERT INTO dues (due) VALUES (%s)", (data["due"],))
    return {"due": data["due"]}
"""

PING_NOTES = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}
"""

TOUCH_NOTE = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"note_id": data["note_id"]}
"""

TAG_NOTE = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"tag": data.get("tag")}
"""

MIGRATIONS = {
    "mysql": (
        "CREATE TABLE notes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "title VARCHAR(10) NOT NULL) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;\n"
        "CREATE TABLE labels (label VARCHAR(10) NOT NULL) ENGINE = InnoDB "
        "DEFAULT CHARSET = utf8mb4;\n"
        "CREATE TABLE events (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, day DATE NOT NULL, "
        "at VARCHAR(40) NOT NULL) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;\n"
        "CREATE TABLE dues (due DATE NOT NULL) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;\n"
    ),
    "sqlite": (
        "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL);\n"
        "CREATE TABLE labels (label TEXT NOT NULL);\n"
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, day TEXT NOT NULL, "
        "at TEXT NOT NULL);\n"
        "CREATE TABLE dues (due TEXT NOT NULL);\n"
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

    def post(self, path: str, body: dict | None) -> requests.Response:
        """POST `body` as JSON; with None, a POST without a body."""
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
        {
            "create_note": CREATE_NOTE,
            "get_note": GET_NOTE,
            "create_label": CREATE_LABEL,
            "create_event": CREATE_EVENT,
            "list_events": LIST_EVENTS,
            "get_day": GET_DAY,
            "create_due": CREATE_DUE,
            "ping_notes": PING_NOTES,
            "touch_note": TOUCH_NOTE,
            "tag_note": TAG_NOTE,
        },
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


# -- dates and times that exist, wherever they come from -----------------------------------------

NOT_A_DAY = ["2026-02-31", "2023-02-29", "2024-04-31", "2024-13-01"]
NOT_A_TIME = ["2024-05-01T10:00:60Z", "2024-05-01T24:00:00Z", "2024-05-01T10:00:00+24:00"]


def pointed(body: dict) -> dict[str, str]:
    return {error["pointer"]: error["detail"] for error in body["errors"]}


@pytest.mark.parametrize("day", NOT_A_DAY)
def test_a_date_that_does_not_exist_is_refused_in_a_body(notes: Notes, day):
    before = notes.query("SELECT COUNT(*) FROM events")
    body = assert_problem(notes.post("/v1/events", {"on": day, "at": "2024-05-01T10:00:00Z"}), 422)
    assert list(pointed(body)) == ["/on"]
    assert "shorter" not in body["detail"] and "smaller" not in body["detail"]
    assert notes.query("SELECT COUNT(*) FROM events") == before


@pytest.mark.parametrize("at", NOT_A_TIME)
def test_a_time_that_does_not_exist_is_refused_in_a_body(notes: Notes, at):
    body = assert_problem(notes.post("/v1/events", {"on": "2024-05-01", "at": at}), 422)
    assert list(pointed(body)) == ["/at"]


def test_a_leap_second_is_refused_as_a_leap_second(notes: Notes):
    body = assert_problem(
        notes.post("/v1/events", {"on": "2024-05-01", "at": "2016-12-31T23:59:60Z"}), 422
    )
    assert "leap second" in pointed(body)["/at"]


def test_february_29_exists_in_a_leap_year_only(notes: Notes):
    leap = notes.post("/v1/events", {"on": "2024-02-29", "at": "2024-02-29T23:59:59.5+01:00"})
    assert leap.status_code == 201, leap.text
    body = assert_problem(
        notes.post("/v1/events", {"on": "2023-02-29", "at": "2024-05-01T00:00:00Z"}), 422
    )
    assert pointed(body)["/on"] == "is not a day of the calendar: February 2023 has 28 days"


@pytest.mark.parametrize("day", NOT_A_DAY)
def test_a_date_that_does_not_exist_is_refused_in_a_query_string(notes: Notes, day):
    body = assert_problem(notes.get(f"/v1/events?since={day}"), 422)
    assert list(pointed(body)) == ["/since"]
    assert notes.get("/v1/events?since=2024-02-29").status_code == 200


@pytest.mark.parametrize("day", NOT_A_DAY)
def test_a_date_that_does_not_exist_is_refused_in_a_path(notes: Notes, day):
    body = assert_problem(notes.get(f"/v1/days/{day}"), 422)
    assert list(pointed(body)) == ["/day"]
    assert notes.get("/v1/days/2024-02-29").json() == {"day": "2024-02-29"}


# -- numbers in the query string and the path: the bounds of a JSON body -------------------------

BEYOND_64_BITS = "99999999999999999999999"


def test_a_query_integer_beyond_64_bits_gets_the_400_a_body_gets(notes: Notes):
    query = assert_problem(notes.get(f"/v1/events?limit={BEYOND_64_BITS}"), 400)
    assert query["errors"] == [{"pointer": "/limit", "detail": query["errors"][0]["detail"]}]
    # The same words as for the same integer in a JSON body.
    raw = b'{"title": "x", "n": ' + BEYOND_64_BITS.encode() + b"}"
    headers = {"Authorization": f"Bearer {notes.token}", "Content-Type": "application/json"}
    in_body = requests.post(notes.url("/v1/notes"), data=raw, headers=headers, timeout=10)
    assert_problem(in_body, 400)
    assert pointed(in_body.json())["/n"] == query["errors"][0]["detail"]
    assert "signed 64-bit" in query["errors"][0]["detail"]
    assert notes.get("/v1/events?limit=9223372036854775807").status_code == 200


def test_a_path_integer_beyond_64_bits_gets_400(notes: Notes):
    body = assert_problem(notes.get(f"/v1/notes/{BEYOND_64_BITS}"), 400)
    assert [error["pointer"] for error in body["errors"]] == ["/note_id"]


def test_an_integer_longer_than_python_reads_gets_400_not_500(notes: Notes):
    body = assert_problem(notes.get("/v1/events?limit=" + "7" * 5000), 400)
    assert [error["pointer"] for error in body["errors"]] == ["/limit"]


# -- each refusal says what is true of it ---------------------------------------------------------


def test_a_date_the_database_refuses_gets_a_hint_about_dates(notes: Notes):
    # `due` is a plain string field: only the DATE column (strict mode, error 1292) refuses it.
    body = assert_problem(notes.post("/v1/dues", {"due": "2026-02-31"}), 422)
    assert body["errors"] == [{"pointer": "/due", "detail": "is not a valid date or time"}]
    assert "shorter" not in body["detail"] and "smaller" not in body["detail"]
    assert "date" in body["detail"].split(":", 1)[1]
    assert notes.query("SELECT COUNT(*) FROM dues") == [(0,)]


def test_a_value_too_long_for_its_column_is_told_to_be_shorter(notes: Notes):
    body = assert_problem(notes.post("/v1/notes", {"title": "x" * 11}), 422)
    assert "send a shorter value" in body["detail"]


# -- the OpenAPI document and the server agree on request bodies ----------------------------------


def test_the_served_document_requires_a_body_exactly_when_the_server_does(notes: Notes):
    document = requests.get(notes.url("/openapi.json"), timeout=10).json()
    seen = {}
    for path, item in document["paths"].items():
        operation = item.get("post")
        if operation is None:
            continue
        assert "requestBody" in operation, path  # every POST reads a JSON body
        required = operation["requestBody"]["required"]
        url = path.replace("{note_id}", "1")
        answer = notes.post(url, None)
        if required:
            assert_problem(answer, 422)
        else:
            assert answer.status_code == 201, (path, answer.text)
        seen[operation["operationId"]] = required
    assert seen == {
        "create_note": True,
        "create_label": True,
        "create_event": True,
        "create_due": True,
        "ping_notes": False,
        "touch_note": False,
        "tag_note": False,
    }


# -- what only the HTTP server answers ------------------------------------------------------------


def raw_request(notes: Notes, request: bytes) -> tuple[int, str]:
    """Send `request` as bytes (no client library would send it); (status, Content-Type)."""
    with socket.create_connection(("127.0.0.1", notes.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), fields.get("Content-Type", "")


def readme_server_statuses(notes: Notes) -> set[int]:
    """The statuses the generated README says the HTTP server answers by itself."""
    text = (notes.root / "README.md").read_text()
    section = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    return {int(status) for status in re.findall(r"^\| (\d{3}) \|", section, re.MULTILINE)}


def test_what_waitress_refuses_by_itself_is_listed_in_the_readme(notes: Notes):
    documented = readme_server_statuses(notes)
    huge_header = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n"
    non_ascii = b"GET /v1/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    gzip = b"GET /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
    two_gib = b"POST /v1/notes HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n"
    bad_chunk = b"POST /v1/notes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    for request, status in (
        (huge_header, 431),
        (non_ascii, 400),
        (gzip, 501),
        (two_gib, 413),
        (bad_chunk, 400),
    ):
        answered, content_type = raw_request(notes, request)
        assert (answered, content_type.split(";")[0]) == (status, "text/plain")
        assert status in documented, (status, documented)
    # Percent-encoded, the same path reaches the service, which answers problem+json.
    encoded = b"GET /v1/caf%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw_request(notes, encoded) == (404, "application/problem+json")
