"""Rate limits and idempotency keys over real HTTP: a generated service served by four waitress
processes on loopback ports, all against one database, the way Passenger runs several processes.

The service (`ledger`, spec below) has one idempotent, rate-limited POST that writes a row, and a
rate-limited GET. The servers trust one proxy hop (TRUSTED_PROXY_HOPS=1), so each test plays
distinct clients by the address a proxy would append to X-Forwarded-For.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from conftest import _connect, database_url
from support import free_port, scaffold_service

pytestmark = [pytest.mark.slow]

SPEC = """\
shoestring: 1
service:
  name: ledger
  description: Records entries; exercises rate limits and idempotency keys.
endpoints:
  - name: create_entry
    method: POST
    path: /v1/entries
    description: Record an entry.
    scopes: [entries:write]
    rate_limit: writes
    idempotent: true
    request:
      account: str
      amount_cents: int
      sleep_ms: int?
    response:
      entry_id: int
      account: str
  - name: ping
    method: GET
    path: /v1/ping
    description: Answer, ten times an hour per address.
    scopes: [entries:read]
    rate_limit: reads
    request: {}
    response:
      ok: bool
  - name: pong
    method: GET
    path: /v1/pong
    description: Answer, twenty times an hour per address.
    scopes: [entries:read]
    rate_limit: shared
    request: {}
    response:
      ok: bool
  - name: tick
    method: GET
    path: /v1/tick
    description: Answer, five times a second per address.
    scopes: [entries:read]
    rate_limit: fast
    request: {}
    response:
      ok: bool
  - name: whoami
    method: GET
    path: /v1/whoami
    description: Answer, three times a minute per token.
    scopes: [entries:read]
    rate_limit: per_client
    request: {}
    response:
      ok: bool
rate_limits:
  writes: {limit: 1000, per: minute, key: ip}
  reads: {limit: 10, per: hour, key: ip}
  shared: {limit: 20, per: hour, key: ip}
  fast: {limit: 5, per: second, key: ip}
  per_client: {limit: 3, per: minute, key: client}
"""

CREATE_ENTRY = """\
import time
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    if data.get("sleep_ms"):
        time.sleep(data["sleep_ms"] / 1000)  # a slow request, for the concurrency tests
    ctx.db.execute(
        "INSERT INTO entries (account, amount_cents) VALUES (%s, %s)",
        (data["account"], data["amount_cents"]),
    )
    return {"entry_id": ctx.db.lastrowid, "account": data["account"]}
"""

ANSWER = """\
from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}
"""

MIGRATIONS = {
    "mysql": "CREATE TABLE entries (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "account VARCHAR(100) NOT NULL, amount_cents INT NOT NULL) ENGINE = InnoDB;\n",
    "sqlite": "CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "account TEXT NOT NULL, amount_cents INTEGER NOT NULL);\n",
}

MINT_TOKENS = """\
import json, sys
from pathlib import Path
from shoestring_runtime.keys import KeyStore, mint_token
store = KeyStore(Path("var/keys"))
if not store.keys():
    store.generate()
subjects = sys.argv[1:]
print(json.dumps({s: mint_token(store, issuer="ledger", audience="ledger", subject=s,
                                scopes=["entries:read", "entries:write"], ttl=3600)
                  for s in subjects}))
"""


@dataclass
class Service:
    """A generated service, its database, its running server processes, and test tokens."""

    root: Path
    database_url: str
    servers: list[subprocess.Popen] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "LOG_LEVEL": "WARNING",
            "TRUSTED_PROXY_HOPS": "1",
        }
        env.update(overrides)
        return env

    def start_server(self, **settings: str) -> int:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "ledger", "serve", "--port", str(port), "--threads", "16"],
            cwd=self.root,
            env=self.env(**settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.servers.append(process)
        wait_until_up(port, process)
        self.ports.append(port)
        return port

    def url(self, path: str, server: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[server % len(self.ports)]}{path}"

    @property
    def dialect(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "mysql"

    def count_entries(self, account: str) -> int:
        """Rows the handler wrote for `account`: the side effects, counted in the database."""
        if self.dialect == "sqlite":
            path = self.database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path) as conn:
                sql = "SELECT COUNT(*) FROM entries WHERE account = ?"
                return conn.execute(sql, (account,)).fetchone()[0]
        parts = urlsplit(self.database_url)
        conn = _connect(self.database_url, parts.path.lstrip("/"))
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM entries WHERE account = %s", (account,))
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def stop(self) -> None:
        for process in self.servers:
            if process.poll() is None:
                process.terminate()
        for process in self.servers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not answer within {timeout}s")


def generate(root: Path, database_url: str, dialect: str) -> Service:
    answers = {name: ANSWER for name in ("ping", "pong", "tick", "whoami")}
    scaffold_service(
        root, SPEC, {"create_entry": CREATE_ENTRY, **answers}, MIGRATIONS, "0001_entries.sql"
    )
    service = Service(root=root, database_url=database_url)
    subprocess.run(
        [sys.executable, "-m", "ledger", "migrate"],
        cwd=root, env=service.env(), check=True, capture_output=True,
    )
    minted = subprocess.run(
        [sys.executable, "-c", MINT_TOKENS, "alice", "bob"],
        cwd=root, env=service.env(), check=True, capture_output=True, text=True,
    )
    service.tokens = json.loads(minted.stdout)
    return service


@pytest.fixture(
    scope="module", params=[pytest.param("mysql", marks=pytest.mark.mysql), "sqlite"]
)
def service(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The ledger service on four server processes sharing one database."""
    root = tmp_path_factory.mktemp(f"ledger-{request.param}") / "ledger"
    if request.param == "mysql":
        database_url = request.getfixturevalue("mysql_server_database")
    else:
        database_url = f"sqlite:///{root.parent / 'ledger.db'}"
    service = generate(root, database_url, request.param)
    try:
        for _ in range(4):
            service.start_server()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def mysql_server_database(mysql_url: str) -> Iterator[str]:
    """A fresh MariaDB database for the module's servers, dropped afterwards."""
    name = f"ss_test_{uuid.uuid4().hex[:12]}"
    conn = _connect(mysql_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield database_url(mysql_url, name)
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def client_headers(service: Service, address: str, token: str = "alice") -> dict[str, str]:
    """Headers of a client at `address` behind the trusted proxy, with a valid token."""
    return {
        "X-Forwarded-For": address,
        "Authorization": f"Bearer {service.tokens[token]}",
    }


def a_new_address() -> str:
    # 198.18.0.0/15 is reserved for benchmarking: no real client has one.
    number = uuid.uuid4().int
    return f"198.18.{number % 256}.{(number >> 8) % 254 + 1}"


# -- rate limits ----------------------------------------------------------------------------------


def test_the_request_after_the_limit_is_429_problem_with_retry_after(service):
    headers = client_headers(service, a_new_address())
    responses = [
        requests.get(service.url("/v1/ping", server=n), headers=headers, timeout=10)
        for n in range(11)
    ]
    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert responses[0].headers["RateLimit-Policy"] == '"reads";q=10;w=3600'
    assert responses[0].headers["RateLimit"].startswith('"reads";r=9;t=')
    refused = responses[-1]
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert "10 requests per hour" in refused.json()["detail"]
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 360  # one interval: 3600 s / 10
    assert refused.headers["RateLimit"].startswith('"reads";r=0;t=')


def test_rotating_spoofed_forwarded_for_values_do_not_reset_the_limit(service):
    address = a_new_address()
    statuses = []
    for n in range(11):
        # The client writes whatever it likes; the trusted proxy appends the real address.
        spoofed = f"203.0.113.{n + 1}, {a_new_address()}, {address}"
        headers = client_headers(service, spoofed)
        statuses.append(requests.get(service.url("/v1/ping", n), headers=headers, timeout=10).status_code)
    assert statuses == [200] * 10 + [429]


def test_fifty_concurrent_requests_across_four_processes_admit_exactly_the_limit(service):
    headers = client_headers(service, a_new_address())

    def call(n: int) -> int:
        return requests.get(service.url("/v1/pong", server=n), headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = Counter(pool.map(call, range(50)))
    assert statuses == {200: 20, 429: 30}


def test_one_clients_exhaustion_leaves_another_unaffected(service):
    greedy, modest = a_new_address(), a_new_address()
    for n in range(10):
        requests.get(service.url("/v1/ping", n), headers=client_headers(service, greedy), timeout=10)
    assert requests.get(
        service.url("/v1/ping"), headers=client_headers(service, greedy), timeout=10
    ).status_code == 429
    other = requests.get(service.url("/v1/ping"), headers=client_headers(service, modest), timeout=10)
    assert other.status_code == 200
    assert other.headers["RateLimit"].startswith('"reads";r=9;')


def test_client_limits_count_per_token_subject(service):
    anonymous = requests.get(service.url("/v1/ping"), headers={"X-Forwarded-For": a_new_address()},
                             timeout=10)
    if anonymous.status_code != 401:
        pytest.skip("the routes do not authenticate requests yet, so no request has a subject")
    address = a_new_address()  # alice and bob behind one NAT: one address, two tokens
    alice = [
        requests.get(service.url("/v1/whoami", n), headers=client_headers(service, address, "alice"),
                     timeout=10)
        for n in range(4)
    ]
    if all(r.status_code == 200 for r in alice):
        pytest.fail("the per-client limit of 3 a minute let a fourth request through")
    assert [r.status_code for r in alice] == [200, 200, 200, 429]
    bob = requests.get(service.url("/v1/whoami"), headers=client_headers(service, address, "bob"),
                       timeout=10)
    assert bob.status_code == 200, (
        "bob shares alice's address but has his own token: his quota must be untouched "
        "(requests must be authenticated before the rate limit counts them)"
    )


def test_no_second_burst_right_after_a_window_boundary(service):
    # 5 a second. A fixed window would admit 5 just before a second turns and 5 more just after.
    session = requests.Session()
    for _ in range(3):  # a machine too busy to send 10 requests within 0.6 s cannot tell
        headers = client_headers(service, a_new_address())

        def burst(headers: dict[str, str] = headers) -> list[int]:
            return [
                session.get(service.url("/v1/tick", n), headers=headers, timeout=10).status_code
                for n in range(5)
            ]

        time.sleep(1 - time.time() % 1 + 0.8)  # 0.2 s before a whole second
        boundary = math.ceil(time.time())
        started = time.monotonic()
        first = burst()
        time.sleep(max(0.0, boundary + 0.02 - time.time()))  # just past that second
        second = burst()
        elapsed = time.monotonic() - started
        if elapsed > 0.6:
            continue
        assert first == [200] * 5
        # GCRA refills one request per 0.2 s: at most one more per 0.2 s elapsed, never a burst.
        assert second.count(200) <= int(elapsed / 0.2) + 1 < 5, (second, elapsed)
        return
    pytest.skip("the machine was too busy to send ten requests within 0.6 s, three times")


# -- idempotency keys -------------------------------------------------------------------------------


def post_entry(service: Service, body: dict[str, Any], key: str | None, server: int = 0,
               address: str = "192.0.2.10", token: str = "alice",
               **kwargs: Any) -> requests.Response:
    headers = client_headers(service, address, token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(service.url("/v1/entries", server), json=body, headers=headers,
                         timeout=kwargs.pop("timeout", 30), **kwargs)


def test_same_key_and_body_twice_has_one_effect_and_an_identical_replay(service):
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": account, "amount_cents": 1200}
    first = post_entry(service, body, key, server=0)
    second = post_entry(service, body, key, server=1)  # another process, same database
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert service.count_entries(account) == 1


def test_same_key_with_a_different_body_is_422(service):
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    assert post_entry(service, {"account": account, "amount_cents": 1}, key).status_code == 201
    other = post_entry(service, {"account": account, "amount_cents": 2}, key, server=2)
    assert other.status_code == 422
    assert other.headers["Content-Type"] == "application/problem+json"
    assert "different request" in other.json()["detail"]
    assert service.count_entries(account) == 1


def test_two_concurrent_requests_with_one_key_get_one_2xx_and_one_409(service):
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": account, "amount_cents": 500, "sleep_ms": 1500}
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = pool.submit(post_entry, service, body, key, 0)
        time.sleep(0.5)  # the first request holds the key, its handler still sleeping
        racing = pool.submit(post_entry, service, body, key, 1)
        first, second = slow.result(), racing.result()
    assert first.status_code == 201
    if service.dialect == "mysql":
        assert second.status_code == 409
        assert second.headers["Retry-After"] == "1"
    else:
        # SQLite has one writer at a time: the slow request's transaction holds the write lock,
        # so the second request's claim waits for it to commit and then replays its response.
        assert second.status_code in (201, 409)
        if second.status_code == 201:
            assert second.headers["Idempotent-Replayed"] == "true"
            assert second.content == first.content
    assert service.count_entries(account) == 1
    replay = post_entry(service, body, key, server=3)
    assert replay.status_code == 201 and replay.content == first.content


def test_many_concurrent_requests_with_one_key_have_one_effect(service):
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": account, "amount_cents": 700}

    def send(n: int) -> requests.Response:
        return post_entry(service, body, key, server=n)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(send, range(12)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {201, 409} and statuses[201] >= 1, statuses
    originals = [r for r in responses if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(originals) == 1  # the rest were replays of it or 409s while it ran
    assert all(r.content == originals[0].content for r in responses if r.status_code == 201)
    assert service.count_entries(account) == 1


def test_another_clients_same_key_is_independent(service):
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": account, "amount_cents": 300}
    mine = post_entry(service, body, key, token="alice")
    theirs = post_entry(service, body, key, token="bob", server=1)
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["entry_id"] != theirs.json()["entry_id"]
    assert service.count_entries(account) == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "send an Idempotency-Key header"), ("", "is empty"), ("k" * 256, "at most 255")],
)
def test_missing_empty_or_overlong_keys_are_400(service, key, reason):
    account = f"acct-{uuid.uuid4().hex}"
    headers = client_headers(service, "192.0.2.10")
    if key is not None:
        headers["Idempotency-Key"] = key
    response = requests.post(service.url("/v1/entries"), json={"account": account, "amount_cents": 1},
                             headers=headers, timeout=10)
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert service.count_entries(account) == 0


def test_expired_key_is_reusable_and_a_crashed_requests_key_returns_after_its_lease(service):
    # A server of its own with a 1 s retention and a 2 s lease, beside the four others.
    port = service.start_server(IDEMPOTENCY_TTL_SECONDS="1", IDEMPOTENCY_LEASE_SECONDS="2")
    short = len(service.ports) - 1
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    first = post_entry(service, {"account": account, "amount_cents": 1}, key, server=short)
    assert first.status_code == 201
    time.sleep(1.2)
    # Past the retention: the key is free again, even for a different request.
    again = post_entry(service, {"account": account, "amount_cents": 2}, key, server=short)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert service.count_entries(account) == 2

    # Now a request that dies: its server is killed while the handler sleeps, key held.
    crashed_account, crashed_key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": crashed_account, "amount_cents": 9, "sleep_ms": 2500}
    with ThreadPoolExecutor(max_workers=1) as pool:
        doomed = pool.submit(post_entry, service, body, crashed_key, short, timeout=30)
        time.sleep(0.7)
        victim = service.servers[-1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        with pytest.raises(requests.ConnectionError):
            doomed.result()
    service.ports.remove(port)
    # The 2 s lease has not run out yet: the key is still held by the dead request ...
    assert post_entry(service, body, crashed_key).status_code == 409
    time.sleep(2.0)
    # ... and once it has, the client's retry runs. The dead request wrote nothing.
    assert service.count_entries(crashed_account) == 0
    retried = post_entry(service, body, crashed_key)
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert service.count_entries(crashed_account) == 1
    assert post_entry(service, body, crashed_key).content == retried.content


# -- counters in Redis ----------------------------------------------------------------------------


def test_counters_move_to_redis_with_rate_limit_storage(service):
    pytest.importorskip("limits")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis server answers at 127.0.0.1:6379 (start one: redis-server --daemonize yes)")
    # A server of its own that counts in Redis, beside the four that count in the database.
    service.start_server(RATE_LIMIT_STORAGE="redis://127.0.0.1:6379/15")
    redis_server = len(service.ports) - 1
    headers = client_headers(service, a_new_address())
    statuses = [
        requests.get(service.url("/v1/ping", redis_server), headers=headers, timeout=10).status_code
        for _ in range(11)
    ]
    assert statuses == [200] * 10 + [429]
    # The database's counters did not see those requests: the same client has its full quota on
    # a server that counts in the database.
    other = requests.get(service.url("/v1/ping", 0), headers=headers, timeout=10)
    assert other.status_code == 200 and other.headers["RateLimit"].startswith('"reads";r=9;')
    # Idempotent requests count in Redis too, and still claim their key in the database.
    account, key = f"acct-{uuid.uuid4().hex}", str(uuid.uuid4())
    body = {"account": account, "amount_cents": 5}
    first = post_entry(service, body, key, server=redis_server)
    again = post_entry(service, body, key, server=redis_server)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["RateLimit-Policy"] == '"writes";q=1000;w=60'
    assert service.count_entries(account) == 1
