"""Benchmark: the chassis queue and outbox against the seed's naive MySQL queue, on one database.

    .venv/bin/python bench/queue.py [--server mysql://root@127.0.0.1:3306/] [--messages 20000]

Generates the orders example service into a temporary folder (its payment.captured handler
replaced by a no-op), creates a fresh database on the server, and measures on it:

- enqueue rate: `ctx.enqueue` (schema validation, CloudEvents envelope, one multi-row INSERT per
  transaction) against the naive producer (one INSERT), with 1 and 100 messages per transaction;
- consume rate with a no-op handler, 1 and 4 worker processes: `python -m orders worker` (claim
  by batch, validation, dispatch, completion in one transaction) against the naive consumer
  (SELECT ... FOR UPDATE one row, UPDATE IN_PROGRESS, COMMIT, UPDATE DONE, COMMIT);
- outbox write rate: `ctx.publish` against a naive INSERT into an outbox table;
- the claim query with many finished rows in the table: EXPLAIN and its latency.

Consume rates are timed from the moment the first message leaves NEW to the moment the last is
DONE (polled every 20 ms), so process start-up does not count for either side.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where bench/queue.py and
# bench/http.py would shadow the standard library modules of the same names.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pymysql

REPO = Path(__file__).resolve().parents[1]
BATCH = 500  # messages per claim and per handler transaction (the worker's --batch-size)
SPEC = REPO / "examples" / "orders" / "service.yaml"
NOOP_HANDLER = '''"""No-op handler for the benchmark."""


def handle(ctx, event):
    return None
'''

# The seed article's table, as its readers build it (plus an index on status, which only makes
# the baseline faster).
NAIVE_DDL = """
CREATE TABLE naive_queue (
    id INT AUTO_INCREMENT PRIMARY KEY,
    message_type VARCHAR(255) NOT NULL,
    payload JSON NOT NULL,
    status ENUM('NEW','IN_PROGRESS','DONE','FAILED') DEFAULT 'NEW',
    retry_count INT DEFAULT 0,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at DATETIME DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    KEY ix_status (status)
)"""
NAIVE_OUTBOX_DDL = NAIVE_DDL.replace("naive_queue", "naive_outbox").replace(
    "message_type VARCHAR(255) NOT NULL,",
    "message_type VARCHAR(255) NOT NULL, destination VARCHAR(100) NOT NULL,",
)

NAIVE_CONSUMER = """
import sys, pymysql
conn = pymysql.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3],
                       password=sys.argv[4], database=sys.argv[5], autocommit=False)
cur = conn.cursor()
while True:
    cur.execute("SELECT id, payload FROM naive_queue WHERE status = 'NEW' ORDER BY id LIMIT 1 "
                "FOR UPDATE")
    row = cur.fetchone()
    if row is None:
        conn.commit()
        break
    cur.execute("UPDATE naive_queue SET status = 'IN_PROGRESS' WHERE id = %s", (row[0],))
    conn.commit()
    # the no-op handler
    cur.execute("UPDATE naive_queue SET status = 'DONE' WHERE id = %s", (row[0],))
    conn.commit()
"""


def payment(amount: int = 100) -> dict:
    return {
        "payment_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "amount_cents": amount,
        "captured_at": "2024-05-01T12:30:00Z",
    }


def order() -> dict:
    return {"order_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4()), "amount_cents": 250}


class Bench:
    def __init__(self, server: str, messages: int, naive_messages: int, finished_rows: int,
                 rounds: int = 3):
        self.rounds = rounds
        self.server = server
        self.messages = messages
        self.naive_messages = naive_messages
        self.finished_rows = finished_rows
        self.results: list[tuple[str, float, float]] = []
        self.notes: list[str] = []

    # -- setup ----------------------------------------------------------------------------

    def __enter__(self) -> Bench:  # noqa: PYI034  (Self needs Python 3.11)
        parts = urlsplit(self.server)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 3306
        self.user, self.password = parts.username or "root", parts.password or ""
        self.database = f"ss_bench_{secrets.token_hex(4)}"
        self.admin().cursor().execute(f"CREATE DATABASE `{self.database}`")
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + self.database, "", ""))
        self.folder = Path(tempfile.mkdtemp(prefix="ss_bench_"))
        try:
            self._prepare_service()
        except BaseException:
            self._drop()
            raise
        return self

    def _prepare_service(self) -> None:
        self.root = self.folder / "orders"
        subprocess.run(
            [sys.executable, "-m", "shoestring", "new", str(SPEC), "-o", str(self.root)],
            check=True, capture_output=True,
        )
        (self.root / "orders" / "handlers" / "on_payment_captured_v1.py").write_text(NOOP_HANDLER)
        self.env = {**os.environ, "DATABASE_URL": self.url, "PAYMENTS_URL": "http://127.0.0.1:9",
                    "LOG_LEVEL": "WARNING", "PYTHONPATH": str(self.root)}
        os.environ.update({k: self.env[k] for k in ("DATABASE_URL", "PAYMENTS_URL", "LOG_LEVEL")})
        sys.path.insert(0, str(self.root))
        subprocess.run([sys.executable, "-m", "orders", "migrate"], cwd=self.root, env=self.env,
                       check=True, capture_output=True)
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(NAIVE_DDL)
            cur.execute(NAIVE_OUTBOX_DDL)
        from orders import SERVICE
        from shoestring_runtime.db import Database

        self.settings = SERVICE.load_settings()
        self.db = Database(self.url)

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        self._drop()

    def _drop(self) -> None:
        self.admin().cursor().execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        shutil.rmtree(self.folder, ignore_errors=True)

    def admin(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, autocommit=True)

    def connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=self.database, autocommit=False)

    def count(self, sql: str) -> int:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql)
            return int(cur.fetchone()[0])

    def reset(self) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            for table in ("message_queue", "outbox", "naive_queue", "naive_outbox"):
                cur.execute(f"DELETE FROM {table}")
            conn.commit()

    # -- producing ------------------------------------------------------------------------

    def context(self, conn):
        from shoestring_runtime.context import Context

        return Context(db=conn, log=logging.getLogger("bench"), request_id="bench",
                       trace_id=uuid.uuid4().hex, identity=None, settings=self.settings)

    def chassis_write(self, count: int, per_transaction: int, publish: bool) -> float:
        started = time.perf_counter()
        done = 0
        while done < count:
            with self.db.transaction() as conn:
                ctx = self.context(conn)
                for _ in range(min(per_transaction, count - done)):
                    if publish:
                        ctx.publish("order.created", 1, order())
                    else:
                        ctx.enqueue("payment.captured", 1, payment())
                    done += 1
                ctx.flush_messages()
        return count / (time.perf_counter() - started)

    def naive_write(self, count: int, per_transaction: int, outbox: bool) -> float:
        with self.connect() as conn, conn.cursor() as cur:
            started = time.perf_counter()
            done = 0
            while done < count:
                for _ in range(min(per_transaction, count - done)):
                    if outbox:
                        cur.execute(
                            "INSERT INTO naive_outbox (message_type, destination, payload) "
                            "VALUES (%s, %s, %s)", ("order.created", "payments", json.dumps(order())))
                    else:
                        cur.execute(
                            "INSERT INTO naive_queue (message_type, payload) VALUES (%s, %s)",
                            ("payment.captured", json.dumps(payment())))
                    done += 1
                conn.commit()
            return count / (time.perf_counter() - started)

    # -- consuming ------------------------------------------------------------------------

    def timed_drain(self, table: str, order: str, count: int,
                    processes: list[subprocess.Popen]) -> float:
        """Messages per second from the first leaving NEW to the last reaching DONE. The polls
        read one index entry each, so watching does not slow either side down."""
        head = f"SELECT id FROM {table} WHERE status = 'NEW' ORDER BY {order} LIMIT 1"
        busy = f"SELECT 1 FROM {table} WHERE status IN ('NEW', 'IN_PROGRESS') LIMIT 1"
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(head)
            oldest = cur.fetchone()
            first = None
            while True:
                conn.commit()  # a fresh snapshot for each poll
                now = time.perf_counter()
                if first is None:
                    cur.execute(head)
                    if cur.fetchone() != oldest:
                        first = now
                cur.execute(busy)
                if cur.fetchone() is None:
                    break
                if all(p.poll() is not None for p in processes):
                    errors = [p.stderr.read()[-2000:] for p in processes if p.stderr]
                    raise RuntimeError(f"workers exited with messages left: {errors}")
                time.sleep(0.005)
        for process in processes:
            process.wait(timeout=60)
        done = self.count(f"SELECT COUNT(*) FROM {table} WHERE status = 'DONE'")
        if done != count:
            raise RuntimeError(f"{table}: {done} of {count} messages DONE")
        return count / (now - (first or now))

    def chassis_consume(self, workers: int) -> float:
        self.reset()
        self.chassis_write(self.messages, 1000, publish=False)
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "orders", "worker", "--max-seconds", "600",
                 "--batch-size", str(BATCH)],
                cwd=self.root, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)
            for _ in range(workers)
        ]
        return self.timed_drain("message_queue", "available_at", self.messages, processes)

    def naive_consume(self, workers: int) -> float:
        self.reset()
        self.naive_write(self.naive_messages, 1000, outbox=False)
        args = [self.host, str(self.port), self.user, self.password, self.database]
        processes = [
            subprocess.Popen([sys.executable, "-c", NAIVE_CONSUMER, *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(workers)
        ]
        return self.timed_drain("naive_queue", "id", self.naive_messages, processes)

    # -- the claim with many finished rows ------------------------------------------------

    def claim_with_finished_rows(self) -> None:
        from shoestring_runtime.claim import QUEUE, claim, claim_method

        self.reset()
        self.chassis_write(1000, 1000, publish=False)
        with self.connect() as conn, conn.cursor() as cur:
            # Double the rows until there are enough, all DONE, then add 100 NEW ones.
            cur.execute("UPDATE message_queue SET status = 'DONE'")
            while True:
                cur.execute("SELECT COUNT(*) FROM message_queue")
                have = cur.fetchone()[0]
                if have >= self.finished_rows:
                    break
                cur.execute(
                    "INSERT INTO message_queue (message_id, source, message_type, version, "
                    "payload, status, available_at, created_at, updated_at) "
                    "SELECT UUID(), source, message_type, version, payload, 'DONE', available_at, "
                    f"created_at, updated_at FROM message_queue LIMIT {self.finished_rows - have}")
                conn.commit()
            conn.commit()
        self.chassis_write(100, 100, publish=False)
        with self.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("ANALYZE TABLE message_queue")
            cur.fetchall()
            cur.execute(
                "EXPLAIN SELECT id, lease_owner FROM message_queue WHERE status = 'NEW' AND "
                "available_at <= UTC_TIMESTAMP(6) ORDER BY available_at LIMIT 100 "
                "FOR UPDATE SKIP LOCKED")
            plan = cur.fetchone()
        method = claim_method(self.db.dialect)
        started = time.perf_counter()
        claimed = claim(self.db, QUEUE, limit=100, lease_seconds=60, method=method)
        elapsed = (time.perf_counter() - started) * 1000
        self.notes.append(
            f"claim of {len(claimed)} NEW rows beside {self.finished_rows:,} DONE rows "
            f"({method}): {elapsed:.1f} ms; EXPLAIN: type={plan['type']} key={plan['key']} "
            f"rows={plan['rows']} extra={plan['Extra']}")

    # -- the table ------------------------------------------------------------------------

    def run(self) -> None:
        """Each measurement `rounds` times, naive and chassis alternating so that both see the
        same machine (shared hosts and CI boxes are noisy); the table shows medians."""
        small = min(2000, self.messages)
        measurements = [(f"enqueue, {per} per transaction",
                         lambda per=per: (self.reset(), self.naive_write(small, per, False))[1],
                         lambda per=per: (self.reset(), self.chassis_write(small, per, False))[1])
                        for per in (1, 100)]
        measurements += [(f"consume, no-op handler, {workers} worker(s)",
                          lambda workers=workers: self.naive_consume(workers),
                          lambda workers=workers: self.chassis_consume(workers))
                         for workers in (1, 4)]
        measurements += [(f"outbox write, {per} per transaction",
                          lambda per=per: (self.reset(), self.naive_write(small, per, True))[1],
                          lambda per=per: (self.reset(), self.chassis_write(small, per, True))[1])
                         for per in (1, 100)]
        for name, naive, chassis in measurements:
            naive_rates, chassis_rates = [], []
            for _ in range(self.rounds):
                naive_rates.append(naive())
                chassis_rates.append(chassis())
            self.results.append((name, statistics.median(naive_rates),
                                 statistics.median(chassis_rates)))
        if self.finished_rows:
            self.claim_with_finished_rows()

    def table(self) -> str:
        server = self.db.dialect
        lines = [
            f"shoestring queue benchmark on {server!r}; messages/s, median of {self.rounds} runs",
            (f"chassis consume: {self.messages:,} messages, --batch-size {BATCH}; "
             f"naive consume: {self.naive_messages:,} messages, one per claim"),
            "",
            f"{'operation':<40} {'naive (seed)':>14} {'chassis':>12} {'ratio':>8}",
            "-" * 77,
        ]
        for name, naive, chassis in self.results:
            lines.append(f"{name:<40} {naive:>14,.0f} {chassis:>12,.0f} {chassis / naive:>7.1f}x")
        lines += ["", *self.notes]
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get(
        "SHOESTRING_MYSQL_URL", "mysql://root@127.0.0.1:3306/"))
    parser.add_argument("--messages", type=int, default=20_000,
                        help="messages drained by the chassis workers per run")
    parser.add_argument("--naive-messages", type=int, default=2_000,
                        help="messages drained by the naive workers (they are slow)")
    parser.add_argument("--finished-rows", type=int, default=1_000_000,
                        help="DONE rows beside which the claim is timed (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    with Bench(args.server, args.messages, args.naive_messages, args.finished_rows,
               args.rounds) as bench:
        bench.run()
        print(bench.table())


if __name__ == "__main__":
    main()
