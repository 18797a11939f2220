"""Benchmark: the full chassis request path against a hand-written Flask route, same server.

    .venv/bin/python bench/http.py [--server mysql://root@127.0.0.1:3306/] [--seconds 5]
                                   [--rounds 5] [--clients 16] [--threads 8]

Both sides answer `POST /v1/entries` by writing one row to `entries` and one message to the
outbox, in one transaction, on MariaDB/MySQL, served by waitress with the same thread count:

- chassis: a service generated from the spec below (`python -m benchsvc serve`). Each request
  is authenticated (EdDSA JWT, scope checked), validated against the request schema, counted
  by the rate limit (policy `per_client`, one GCRA upsert) and claims its Idempotency-Key (one
  INSERT), both committed in one round trip; then the handler runs (INSERT + `ctx.publish`,
  the CloudEvent validated against the message schema) and its transaction writes the message,
  stores the response for replays and commits in one more round trip. Three round trips in
  all, as on the hand-written side; the request is logged as one JSON access line;
- hand-written: a Flask route that parses the JSON and runs the same INSERT and an outbox
  INSERT in one PyMySQL transaction, nothing else.

The load comes from separate processes (keep-alive connections, one token subject and a fresh
Idempotency-Key per request), alternating between the two servers round by round so both see
the same machine. Printed: requests per second, p50 and p99 latency, and the ratio.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file (http.py) would
# then hide the standard library's `http` package from everything, Flask included.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymysql

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
shoestring: 1
service:
  name: benchsvc
  description: Records entries; the benchmark of the HTTP request path.
messages:
  entry.recorded:
    description: An entry was recorded.
    to: [ledger]
    versions:
      1:
        fields:
          entry_id: int
          account: str
          amount_cents: int
endpoints:
  - name: record_entry
    method: POST
    path: /v1/entries
    description: Record an entry and tell the ledger.
    scopes: [entries:write]
    rate_limit: per_client
    idempotent: true
    request:
      account: str
      amount_cents: int
    response:
      entry_id: int
rate_limits:
  # High enough never to refuse during the run: the check costs the same at any limit.
  per_client: {limit: 1000000, per: minute, key: client}
peers:
  ledger: {url_env: LEDGER_URL}
"""

HANDLER = '''"""Record an entry and publish it, in the request's transaction."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    ctx.db.execute(
        "INSERT INTO entries (account, amount_cents) VALUES (%s, %s)",
        (data["account"], data["amount_cents"]),
    )
    entry_id = ctx.db.lastrowid
    ctx.publish(
        "entry.recorded",
        1,
        {"entry_id": entry_id, "account": data["account"], "amount_cents": data["amount_cents"]},
    )
    return {"entry_id": entry_id}
'''

ENTRIES_SQL = (
    "CREATE TABLE entries (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
    "account VARCHAR(100) NOT NULL, amount_cents INT NOT NULL) ENGINE = InnoDB;\n"
)

MINT_TOKENS = """\
import json, sys
from pathlib import Path
from shoestring_runtime.keys import KeyStore, mint_token
store = KeyStore(Path("var/keys"))
if not store.keys():
    store.generate()
print(json.dumps([mint_token(store, issuer="benchsvc", audience="benchsvc", subject=f"client-{n}",
                             scopes=["entries:write"], ttl=86400) for n in range(int(sys.argv[1]))]))
"""


# -- the hand-written route -------------------------------------------------------------------


def serve_baseline(database_url: str, port: int, threads: int) -> None:
    """The route a developer writes by hand: parse, two INSERTs, commit. Runs under waitress."""
    import waitress
    from flask import Flask, jsonify, request

    parts = urlsplit(database_url)
    local = threading.local()

    def connection() -> pymysql.connections.Connection:
        if getattr(local, "conn", None) is None:
            local.conn = pymysql.connect(
                host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                password=parts.password or "", database=parts.path.lstrip("/"),
                charset="utf8mb4", autocommit=False,
            )
            with local.conn.cursor() as cursor:  # the same isolation level as the chassis
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return local.conn

    app = Flask("baseline")

    @app.post("/v1/entries")
    def record_entry() -> Any:
        data = request.get_json()
        conn = connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO entries (account, amount_cents) VALUES (%s, %s)",
                    (data["account"], data["amount_cents"]),
                )
                entry_id = cursor.lastrowid
                message_id = str(uuid.uuid4())
                event = {
                    "specversion": "1.0", "id": message_id, "source": "baseline",
                    "type": "entry.recorded.v1",
                    "data": {"entry_id": entry_id, "account": data["account"],
                             "amount_cents": data["amount_cents"]},
                }
                cursor.execute(
                    "INSERT INTO outbox (message_id, destination, message_type, version, payload) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (message_id, "ledger", "entry.recorded", 1, json.dumps(event)),
                )
            conn.commit()
        except Exception:
            conn.rollback()
            raise
        return jsonify(entry_id=entry_id), 201

    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, ident="baseline")


# -- load -------------------------------------------------------------------------------------


def load_worker(port: int, tokens: list[str], seconds: float, results: Any) -> None:
    """One load process: a thread per token, each with a keep-alive connection, sending
    requests back to back for `seconds`; puts (latencies in ms, status counts) on `results`."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        counts: dict[int, int] = {}
        while time.monotonic() < deadline:
            body = json.dumps({"account": "acct-1", "amount_cents": 1250})
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": str(uuid.uuid4()),
            }
            started = time.perf_counter()
            conn.request("POST", "/v1/entries", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            counts[response.status] = counts.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, count in counts.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=run, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((latencies, statuses))


def measure(port: int, tokens: list[str], seconds: float, processes: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    shares = [tokens[n::processes] for n in range(processes)]
    workers = [
        context.Process(target=load_worker, args=(port, share, seconds, results))
        for share in shares if share
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in workers:
        worker_latencies, worker_statuses = results.get(timeout=seconds + 120)
        latencies.extend(worker_latencies)
        for status, count in worker_statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "latencies": latencies, "statuses": statuses}


# -- set-up -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(port: int, process: subprocess.Popen, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not answer within 60 s")


def create_database(server: str) -> str:
    parts = urlsplit(server)
    name = f"bench_http_{secrets.token_hex(4)}"
    conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "",
                           autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def drop_database(url: str) -> None:
    parts = urlsplit(url)
    conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "",
                           autocommit=True)
    with conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{parts.path.lstrip('/')}`")
    conn.close()


def count_rows(url: str) -> tuple[int, int]:
    parts = urlsplit(url)
    conn = pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=parts.username or "root", password=parts.password or "",
                           database=parts.path.lstrip("/"))
    with conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM entries")
        entries = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM outbox")
        outbox = cursor.fetchone()[0]
    conn.close()
    return entries, outbox


def generate_service(folder: Path) -> Path:
    spec = folder / "benchsvc.yaml"
    spec.write_text(SPEC)
    root = folder / "benchsvc"
    subprocess.run(
        [sys.executable, "-m", "shoestring", "new", str(spec), "-o", str(root)],
        check=True, capture_output=True,
    )
    (root / "benchsvc" / "handlers" / "record_entry.py").write_text(HANDLER)
    for engine in ("mysql", "sqlite"):
        (root / "migrations" / engine).mkdir(parents=True, exist_ok=True)
        (root / "migrations" / engine / "0001_entries.sql").write_text(ENTRIES_SQL)
    return root


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(value for run in runs for value in run["latencies"])
    total = len(latencies)
    elapsed = sum(run["elapsed"] for run in runs)
    statuses: dict[int, int] = {}
    for run in runs:
        for status, count in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "name": name,
        "rps": total / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(total - 1, int(total * 0.99))],
        "requests": total,
        "statuses": statuses,
        "per_round": [len(run["latencies"]) / run["elapsed"] for run in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=os.environ.get(
        "SHOESTRING_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
        help="MariaDB/MySQL server URL (a database is created and dropped on it)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one round per side")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating the sides")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads, both servers")
    parser.add_argument("--log-level", default="INFO",
                        help="the chassis LOG_LEVEL (INFO logs one access line per request)")
    parser.add_argument("--serve-baseline", nargs=2, metavar=("DATABASE_URL", "PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline[0], int(args.serve_baseline[1]), args.threads)
        return

    folder = Path(tempfile.mkdtemp(prefix="bench-http-"))
    chassis_db = create_database(args.server)
    baseline_db = create_database(args.server)
    servers: list[subprocess.Popen] = []
    try:
        root = generate_service(folder)
        env = {**os.environ, "LEDGER_URL": "http://127.0.0.1:9", "LOG_LEVEL": args.log_level}
        for url in (chassis_db, baseline_db):  # the baseline uses the same tables
            subprocess.run([sys.executable, "-m", "benchsvc", "migrate"], cwd=root,
                           env={**env, "DATABASE_URL": url}, check=True, capture_output=True)
        minted = subprocess.run([sys.executable, "-c", MINT_TOKENS, str(args.clients)], cwd=root,
                                env={**env, "DATABASE_URL": chassis_db}, check=True,
                                capture_output=True, text=True)
        tokens = json.loads(minted.stdout)

        chassis_port, baseline_port = free_port(), free_port()
        log = open(folder / "chassis.log", "w")  # noqa: SIM115 - open for the server's lifetime
        servers.append(subprocess.Popen(
            [sys.executable, "-m", "benchsvc", "serve", "--port", str(chassis_port),
             "--threads", str(args.threads)],
            cwd=root, env={**env, "DATABASE_URL": chassis_db}, stdout=log, stderr=log,
        ))
        servers.append(subprocess.Popen(
            [sys.executable, __file__, "--threads", str(args.threads),
             "--serve-baseline", baseline_db, str(baseline_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        wait_until_up(chassis_port, servers[0], "/livez")
        wait_until_up(baseline_port, servers[1], "/")

        print(f"warming up ({args.clients} clients) ...", file=sys.stderr)
        measure(baseline_port, tokens, 1.0, args.processes)
        measure(chassis_port, tokens, 1.0, args.processes)
        runs: dict[str, list[dict[str, Any]]] = {"hand-written": [], "chassis": []}
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ...", file=sys.stderr)
            runs["hand-written"].append(measure(baseline_port, tokens, args.seconds, args.processes))
            runs["chassis"].append(measure(chassis_port, tokens, args.seconds, args.processes))

        results = [summary(name, side) for name, side in runs.items()]
        print()
        print(f"POST /v1/entries, MariaDB, waitress {args.threads} threads, {args.clients} "
              f"clients, {args.rounds} x {args.seconds:g} s per side")
        print(f"{'':14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}  statuses"
              f"  (req/s per round)")
        for result in results:
            rounds = ", ".join(f"{rps:.0f}" for rps in result["per_round"])
            print(f"{result['name']:14} {result['rps']:8.1f} {result['p50']:8.2f} "
                  f"{result['p99']:8.2f} {result['requests']:9d}  {result['statuses']}  ({rounds})")
        ratio = results[1]["rps"] / results[0]["rps"]
        # Rounds alternate the sides, so each round's pair saw the same machine: the median of
        # the pairs' ratios is the figure least moved by a machine that speeds up or slows down.
        pairs = [c / h for h, c in zip(results[0]["per_round"], results[1]["per_round"])]
        print(f"chassis / hand-written throughput: {ratio:.2f} (goal: >= 0.50); per round: "
              f"{', '.join(f'{p:.2f}' for p in pairs)}; median {statistics.median(pairs):.2f}")
        for name, url in (("hand-written", baseline_db), ("chassis", chassis_db)):
            entries, outbox = count_rows(url)
            print(f"{name}: {entries} entries and {outbox} outbox rows written")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        drop_database(chassis_db)
        drop_database(baseline_db)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
