"""The database layer behaves the same on SQLite and MySQL/MariaDB (TEST_DATABASE_URL)."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import threading
import uuid

import pytest

from shoestring_runtime.db import Database, retry_on_deadlock, utcnow
from shoestring_runtime.migrate import migrate

from .shop import SERVICE


@pytest.fixture
def things(fresh_database_url):
    """A fresh database with one table to play with."""
    db = Database(fresh_database_url)
    migrate(db, SERVICE.root)
    datetime_type = "DATETIME(6)" if db.dialect.name == "mysql" else "DATETIME"
    with db.transaction() as conn:
        conn.execute(
            "CREATE TABLE things (name VARCHAR(50) NOT NULL PRIMARY KEY, n INTEGER NOT NULL,"
            f" at {datetime_type} NULL, price DECIMAL(10, 2) NULL)"
        )
        conn.execute("INSERT INTO things (name, n) VALUES ('a', 1), ('b', 2)")
    return db


def test_rows_come_back_as_dicts(things):
    with things.transaction() as conn:
        rows = conn.fetchall("SELECT name, n FROM things ORDER BY name")
    assert rows == [{"name": "a", "n": 1}, {"name": "b", "n": 2}]


def test_a_transaction_commits_when_the_block_ends(things):
    with things.transaction() as conn:
        conn.execute("UPDATE things SET n = %s WHERE name = %s", (10, "a"))
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'a'") == 10


def test_a_transaction_rolls_back_when_the_block_raises(things):
    with pytest.raises(ZeroDivisionError), things.transaction() as conn:
        conn.execute("UPDATE things SET n = 99 WHERE name = 'a'")
        raise ZeroDivisionError("a failure after the write")
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'a'") == 1


def test_a_nested_transaction_is_refused(things):
    # The second transaction opens inside the first, on the same thread.
    with (
        things.transaction(),
        pytest.raises(RuntimeError, match="already open"),
        things.transaction(),
    ):
        pass


def test_datetimes_round_trip_as_naive_utc(things):
    aware = dt.datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with things.transaction() as conn:
        conn.execute("UPDATE things SET at = %s WHERE name = 'a'", (aware,))
        stored = conn.fetchvalue("SELECT at FROM things WHERE name = 'a'")
    assert stored == dt.datetime(2024, 5, 1, 12, 30, 0, 123456)


def test_the_database_clock_compares_with_stored_times(things):
    before = utcnow() - dt.timedelta(seconds=5)
    with things.transaction() as conn:
        conn.execute("UPDATE things SET at = %s WHERE name = 'a'", (before,))
        now_sql = conn.dialect.now_sql
        later = conn.dialect.now_plus_seconds_sql()
        assert conn.fetchvalue(f"SELECT COUNT(*) FROM things WHERE at < {now_sql}") == 1
        assert conn.fetchvalue(f"SELECT COUNT(*) FROM things WHERE at > {later}", (-60,)) == 1


def test_decimals_and_uuids_are_accepted_as_parameters(things):
    key = uuid.uuid4()
    with things.transaction() as conn:
        conn.execute(
            "INSERT INTO things (name, n, price) VALUES (%s, %s, %s)",
            (key, 3, decimal.Decimal("12.50")),
        )
        row = conn.fetchone("SELECT name, price FROM things WHERE name = %s", (str(key),))
    assert row == {"name": str(key), "price": decimal.Decimal("12.50")}


def test_percent_signs_are_escaped_the_same_on_both_engines(things):
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT '100%%' AS p") == "100%"
        assert conn.fetchvalue("SELECT COUNT(*) FROM things WHERE name LIKE %s", ("%",)) == 2


TRICKY_TEXT = "it's a \\ back\\slash, a \"quote\", a NUL \0, \r\n, \x1a and 🎉 ' OR '1'='1"


def test_values_of_every_kind_come_back_as_they_were_bound(things):
    values = [TRICKY_TEXT, "", 0, -(2**63), 2**63 - 1, None, 1.5, b"\x00\x01'\\"]
    with things.transaction() as conn:
        for value in values:
            assert conn.fetchvalue("SELECT %s AS v", (value,)) == value
        assert conn.fetchvalue("SELECT %(text)s AS v", {"text": TRICKY_TEXT}) == TRICKY_TEXT
        assert conn.fetchvalue("SELECT %s AS v", (True,)) == 1
        assert decimal.Decimal(conn.fetchvalue("SELECT %s AS v", (decimal.Decimal("-12.50"),))) == (
            decimal.Decimal("-12.50")
        )
        # Datetimes are bound as text with microseconds, dates as ISO text.
        for value in (dt.datetime(2024, 5, 1, 12, 30, 0, 123456), dt.datetime(2024, 5, 1, 12, 30)):
            back = conn.fetchvalue("SELECT %s AS v", (value,))
            assert dt.datetime.fromisoformat(back) == value
        assert conn.fetchvalue("SELECT %s AS v", (dt.date(2024, 5, 1),)) == "2024-05-01"


def test_statements_are_bound_as_the_driver_would_bind_them(things):
    if things.dialect.name != "mysql":
        pytest.skip("SQLite binds parameters itself")
    from shoestring_runtime.db import _bind_mysql

    aware = dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    values = [TRICKY_TEXT, 7, None, True, 1.5, decimal.Decimal("2.50"), b"\x00'",
              dt.datetime(2024, 5, 1, 12, 30, 0, 5), uuid.UUID(int=1), aware]
    with things.transaction() as conn:
        cursor = conn.raw.cursor()
        expected = cursor.mogrify(
            "SELECT " + ", ".join(["%s"] * len(values)),
            [str(v) if isinstance(v, uuid.UUID) else v for v in values[:-1]]
            + [dt.datetime(2024, 5, 1, 12, 30)],
        )
        cursor.close()
        bound = _bind_mysql(conn.raw, "SELECT " + ", ".join(["%s"] * len(values)), values)
    assert bound == expected


def test_named_parameters_work_on_both_engines(things):
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = %(name)s", {"name": "b"}) == 2


def test_upsert_inserts_then_updates(things):
    with things.transaction() as conn:
        upsert = conn.dialect.upsert_sql("things", ["name", "n"], ["name"])
        conn.execute(upsert, ("c", 5))
        conn.execute(upsert, ("c", 6))
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'c'") == 6


def test_insert_ignore_reports_whether_the_row_was_new(things):
    with things.transaction() as conn:
        insert = conn.dialect.insert_ignore_sql("things", ["name", "n"], ["name"])
        assert conn.execute(insert, ("new", 1)) == 1
        assert conn.execute(insert, ("new", 2)) == 0
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'new'") == 1


def test_a_duplicate_key_is_recognised(things):
    with things.transaction() as conn:
        with pytest.raises(Exception) as raised:
            conn.execute("INSERT INTO things (name, n) VALUES ('a', 5)")
        assert conn.dialect.is_duplicate_key(raised.value)


def test_a_batch_runs_its_statements_in_order_and_returns_what_each_did(things):
    with things.transaction() as conn:
        results = conn.batch([
            ("INSERT INTO things (name, n) VALUES (%s, %s)", ("c", 3)),
            ("UPDATE things SET n = n + %s WHERE name IN ('a', 'b')", (10,)),
            ("SELECT name, n FROM things ORDER BY name", None),
        ])
    assert [result.rowcount for result in results[:2]] == [1, 2]
    assert results[2].rows == [
        {"name": "a", "n": 11}, {"name": "b", "n": 12}, {"name": "c", "n": 3},
    ]


def test_a_batch_can_commit_and_then_the_transaction_takes_no_more_work(things):
    with things.transaction() as conn:
        conn.batch([("UPDATE things SET n = %s WHERE name = %s", (7, "a"))], commit=True)
        with pytest.raises(RuntimeError, match="committed"):
            conn.execute("UPDATE things SET n = 8 WHERE name = 'a'")
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'a'") == 7


def test_a_failing_statement_stops_the_batch_before_its_commit(things):
    # The duplicate key fails the second statement: the third and the COMMIT never run, and
    # the first rolls back with the transaction.
    with pytest.raises(Exception) as raised, things.transaction() as conn:
        conn.batch([
            ("UPDATE things SET n = 50 WHERE name = %s", ("a",)),
            ("INSERT INTO things (name, n) VALUES (%s, %s)", ("b", 5)),
            ("UPDATE things SET n = 60 WHERE name = %s", ("b",)),
        ], commit=True)
    assert things.dialect.is_duplicate_key(raised.value)
    with things.transaction() as conn:
        assert conn.fetchall("SELECT name, n FROM things ORDER BY name") == [
            {"name": "a", "n": 1}, {"name": "b", "n": 2},
        ]


def test_a_batch_on_mysql_takes_one_round_trip(things):
    if things.dialect.name != "mysql":
        pytest.skip("SQLite runs in-process: no round trips to save")
    with things.transaction() as conn:
        sent = []
        real = conn.raw._execute_command

        def counting(command, sql):
            sent.append(sql)
            return real(command, sql)

        conn.raw._execute_command = counting
        try:
            conn.batch([
                ("INSERT INTO things (name, n) VALUES (%s, %s)", ("c", 3)),
                ("UPDATE things SET n = 4 WHERE name = %s", ("c",)),
            ], commit=True)
        finally:
            del conn.raw._execute_command
    assert len(sent) == 1
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'c'") == 4


def test_text_holding_a_second_statement_is_refused(things):
    # What pasting a value into SQL text lets through: refused before it reaches the server.
    pasted = "a'; DELETE FROM things; --"
    with things.transaction() as conn:
        with pytest.raises(ValueError, match="one SQL statement per call"):
            conn.fetchall(f"SELECT n FROM things WHERE name = '{pasted}'")
        # A `;` inside a string or a comment is part of the one statement.
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'x;y' -- no; match") is None
        assert conn.fetchvalue("SELECT n FROM things WHERE name = %s", (pasted,)) is None
        assert conn.fetchvalue("SELECT COUNT(*) AS n FROM things") == 2


def test_text_mysql_reads_as_two_statements_is_refused(things):
    # MySQL reads `--` without a space after it as minus minus, `#` as a comment and a
    # backslash in quotes as an escape; a value bound where the text has quotes lands inside
    # them. Each would hide a second statement from a tokenizer that reads SQL otherwise.
    attempts = [
        ("SELECT 1 --1; DELETE FROM things", None),
        ("SELECT 1 # '\n; DELETE FROM things; -- '", None),
        ("SELECT 'a\\' , '; DELETE FROM things; -- '", None),
        ("SELECT n FROM things WHERE name = '%s'", ("; DELETE FROM things; -- ",)),
    ]
    for sql, params in attempts:
        if things.dialect.name == "mysql":
            with (
                pytest.raises(ValueError, match="one SQL statement|placeholder"),
                things.transaction() as conn,
            ):
                conn.fetchall(sql, params)
        else:  # SQLite runs one statement per call by itself: a syntax error at most
            try:
                with things.transaction() as conn:
                    conn.fetchall(sql, params)
            except Exception:  # noqa: BLE001, S110 - what matters is the row count below
                pass
        with things.transaction() as conn:
            assert conn.fetchvalue("SELECT COUNT(*) AS n FROM things") == 2


def test_insert_ignore_statements_write_many_rows_in_few_statements(things):
    rows = [(f"r{number}", number) for number in range(450)]
    with things.transaction() as conn:
        statements = conn.dialect.insert_ignore_statements("things", ["name", "n"], ["name"], rows)
        assert len(statements) == 3  # 200 rows per statement
        assert sum(result.rowcount for result in conn.batch(statements)) == 450
        again = conn.batch(statements)
        assert sum(result.rowcount for result in again) == 0  # duplicates are dropped
        assert conn.fetchvalue("SELECT COUNT(*) AS n FROM things") == 452


def test_a_connection_is_reused_by_the_next_transaction_on_the_thread(things):
    with things.transaction() as conn:
        first = conn.raw
    with things.transaction() as conn:
        assert conn.raw is first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(things):
    """A pre-forking server (Passenger) forks after the parent used the database: the child
    must not talk over the parent's socket."""
    with things.transaction() as conn:
        parent = conn.raw
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report whether it got the parent's connection, then leave
        try:
            with things.transaction() as conn:
                reused = conn.raw is parent
                conn.fetchvalue("SELECT 1")
            os.write(write_end, b"reused" if reused else b"own")
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as answer:
        assert answer.read() == b"own"
    with things.transaction() as conn:
        assert conn.raw is parent
        assert conn.fetchvalue("SELECT 1") == 1


def test_retry_on_deadlock_runs_the_loser_again(things):
    """Two transactions lock rows in opposite orders: the database aborts one of them (MySQL
    picks a deadlock victim; SQLite's second writer waits, then finds the lock free), and the
    retry makes both finish."""
    if things.dialect.name == "sqlite":
        pytest.skip("SQLite serializes writers with BEGIN IMMEDIATE: no deadlock to lose")
    barrier = threading.Barrier(2, timeout=10)
    attempts = {"ab": 0, "ba": 0}
    errors: list[BaseException] = []

    def lock_in_order(first: str, second: str) -> None:
        key = first + second

        def work() -> None:
            attempts[key] += 1
            with things.transaction() as conn:
                conn.execute("UPDATE things SET n = n + 1 WHERE name = %s", (first,))
                if attempts[key] == 1:
                    barrier.wait()  # both hold their first row now (MySQL) or queue (SQLite)
                conn.execute("UPDATE things SET n = n + 1 WHERE name = %s", (second,))

        try:
            retry_on_deadlock(work, things.dialect, attempts=5)
        except BaseException as exc:  # noqa: BLE001 - reported below, not lost in the thread
            errors.append(exc)

    threads = [
        threading.Thread(target=lock_in_order, args=("a", "b")),
        threading.Thread(target=lock_in_order, args=("b", "a")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sum(attempts.values()) == 3  # one of them ran twice
    with things.transaction() as conn:
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'a'") == 3
        assert conn.fetchvalue("SELECT n FROM things WHERE name = 'b'") == 4


def test_sqlite_busy_is_retried_until_the_writer_is_done(fresh_database_url):
    if not fresh_database_url.startswith("sqlite:"):
        pytest.skip("SQLite only")
    holder = Database(fresh_database_url)
    impatient = Database(fresh_database_url + "?busy_timeout_ms=20")
    with holder.transaction() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    locked = threading.Event()

    def hold_the_write_lock() -> None:
        with holder.transaction() as conn:
            conn.execute("INSERT INTO t (x) VALUES (1)")
            locked.set()
            threading.Event().wait(0.3)

    thread = threading.Thread(target=hold_the_write_lock)
    thread.start()
    locked.wait(5)

    def insert() -> None:
        with impatient.transaction() as conn:
            conn.execute("INSERT INTO t (x) VALUES (2)")

    retry_on_deadlock(insert, impatient.dialect, attempts=10, base_seconds=0.05, max_seconds=0.5)
    thread.join()
    with holder.transaction() as conn:
        assert conn.fetchvalue("SELECT COUNT(*) FROM t") == 2


def kill_connection_of(db: Database) -> None:
    """End this thread's pooled MySQL connection from the server side, as wait_timeout or a
    server restart would."""
    with db.transaction() as conn:
        connection_id = conn.fetchvalue("SELECT CONNECTION_ID()")
    killer = Database(db.url)
    with killer.transaction() as conn:
        conn.execute(f"KILL CONNECTION {int(connection_id)}")
    killer.close()


def test_a_connection_the_server_dropped_is_replaced_after_idling(fresh_database_url):
    if not fresh_database_url.startswith("mysql"):
        pytest.skip("MySQL/MariaDB only: SQLite has no server to drop the connection")
    db = Database(fresh_database_url, ping_after_idle_seconds=0)
    kill_connection_of(db)
    with db.transaction() as conn:  # pinged, found dead, replaced: no error
        assert conn.fetchvalue("SELECT 1") == 1


def test_a_connection_lost_mid_transaction_is_not_reused(fresh_database_url):
    if not fresh_database_url.startswith("mysql"):
        pytest.skip("MySQL/MariaDB only: SQLite has no server to drop the connection")
    db = Database(fresh_database_url, ping_after_idle_seconds=3600)  # no ping: the query fails
    kill_connection_of(db)
    with pytest.raises(Exception) as raised, db.transaction() as conn:
        conn.fetchvalue("SELECT 1")
    assert db.dialect.is_connection_lost(raised.value)
    with db.transaction() as conn:  # a new connection
        assert conn.fetchvalue("SELECT 1") == 1
