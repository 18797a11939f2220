# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Every difference between MySQL/MariaDB and SQLite, in one place.

Code elsewhere writes SQL once, in the MySQL flavour PyMySQL understands (`%s` placeholders,
`%%` for a literal percent sign), and asks the dialect for the few fragments that differ:
the current time, row locks, upserts, and how to recognise a retryable error.

Datetimes are stored the same way on both: naive UTC, microsecond precision. MySQL columns are
`DATETIME(6)` and the session time zone is UTC; SQLite columns are declared `DATETIME` and hold
text `YYYY-MM-DD HH:MM:SS.ffffff`, which sorts and compares like the time it names.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import pymysql

# `%s`, `%(name)s` and `%%` are the only format sequences a statement may contain (as with
# PyMySQL, which formats the whole statement with Python's % operator).
_FORMAT_SEQUENCE = re.compile(r"%\((\w+)\)s|%s|%%")

# MySQL error numbers (https://dev.mysql.com/doc/mysql-errors/8.0/en/server-error-reference.html).
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
ER_DUP_ENTRY = 1062
ER_BAD_NULL_ERROR = 1048
# Client-side errors that mean the connection is gone (server restarted, wait_timeout elapsed).
CR_CONNECTION_LOST = {2006, 2013, 2055}
# A value the column cannot hold, refused in strict mode (STRICT_ALL_TABLES) instead of being
# truncated or clipped, by what it says about the value.
VALUE_REFUSED = {
    1406: "is too long to be stored",  # ER_DATA_TOO_LONG
    1264: "is outside the range that can be stored",  # ER_WARN_DATA_OUT_OF_RANGE
    1366: "is not a value that can be stored",  # ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    1292: "is not a valid date or time",  # ER_TRUNCATED_WRONG_VALUE
    1265: "is not one of the values that can be stored",  # WARN_DATA_TRUNCATED (ENUM, SET)
}
# What SQLite's STRICT tables refuse: a value of another type than the column's.
SQLITE_TYPE_REFUSED = "is not of the type that can be stored"
# The column in those messages: 'title' (MySQL) or `db`.`table`.`title` (MariaDB).
_MYSQL_COLUMN = re.compile(r"column (?:`[^`]*`\.)*[`']([^`']+)[`']")
# SQLite STRICT tables: "cannot store TEXT value in INTEGER column orders.amount".
_SQLITE_COLUMN = re.compile(r"cannot store \w+ value in \w+ column (?:[^.\s]+\.)?(\S+)$")


def parse_server_version(version: str) -> tuple[str, tuple[int, ...]]:
    """Split `SELECT VERSION()` output into ("mariadb" | "mysql", (major, minor, patch)).

    >>> parse_server_version("10.11.6-MariaDB-0+deb12u1")
    ('mariadb', (10, 11, 6))
    >>> parse_server_version("8.0.36")
    ('mysql', (8, 0, 36))
    """
    server = "mariadb" if "mariadb" in version.lower() else "mysql"
    # Old MariaDB builds announce themselves as "5.5.5-10.x.y-MariaDB" for replication clients.
    version = re.sub(r"^5\.5\.5-", "", version)
    numbers = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not numbers:
        return server, (0,)
    return server, tuple(int(part) for part in numbers.groups() if part is not None)


# Rows per multi-row INSERT of `insert_ignore_statements`: well under SQLite's limit of bound
# variables and a shared host's max_allowed_packet for messages of a few kilobytes.
INSERT_ROWS_PER_STATEMENT = 200


class Dialect:
    """What differs between database engines. Use `MySQLDialect` or `SQLiteDialect`."""

    name: str
    server: str
    version: tuple[int, ...]

    #: True when DDL runs inside transactions (SQLite). MySQL commits after each DDL statement,
    #: so migrations there take a named lock instead of relying on one transaction.
    transactional_ddl: bool

    #: True when at most one write transaction runs at a time (SQLite's BEGIN IMMEDIATE), so a
    #: select-then-update inside one transaction cannot race another writer.
    serializes_writers: bool

    #: True when an upsert's rowcount tells what it did: 1 inserted, 2 changed the existing row,
    #: 0 left it as it was (MySQL's affected rows). SQLite counts a row it matched as changed.
    upsert_reports_change: bool

    #: An SQL expression for the current UTC time, with microseconds, comparable with stored
    #: DATETIME values. Already escaped for use in a statement with parameters.
    now_sql: str

    @property
    def supports_skip_locked(self) -> bool:
        """Whether `SELECT ... FOR UPDATE SKIP LOCKED` is available."""
        raise NotImplementedError

    @property
    def for_update(self) -> str:
        """Clause that locks the selected rows until commit ("" where writers are serialized)."""
        raise NotImplementedError

    @property
    def for_update_skip_locked(self) -> str:
        """Clause that locks the selected rows and skips rows other transactions hold.

        Empty on SQLite, where a write transaction (BEGIN IMMEDIATE) already excludes every other
        writer, so a select-then-update inside `Database.transaction()` cannot race. Raises on a
        MySQL server without SKIP LOCKED: check `supports_skip_locked` and use a compare-and-set
        claim there.
        """
        raise NotImplementedError

    def now_plus_seconds_sql(self) -> str:
        """An expression for now + N seconds; takes one `%s` parameter (N, may be fractional)."""
        raise NotImplementedError

    def quote(self, identifier: str) -> str:
        """Quote a table or column name."""
        raise NotImplementedError

    def translate(self, sql: str) -> str:
        """Rewrite a statement written with `%s` placeholders for the driver."""
        return sql

    def upsert_sql(
        self,
        table: str,
        columns: Sequence[str],
        key_columns: Sequence[str],
        update_columns: Sequence[str] | None = None,
    ) -> str:
        """INSERT a row, or UPDATE `update_columns` (default: all non-key columns) when a row with
        the same `key_columns` (a primary or unique key) exists. One `%s` per column."""
        raise NotImplementedError

    def insert_ignore_sql(
        self, table: str, columns: Sequence[str], key_columns: Sequence[str], rows: int = 1
    ) -> str:
        """INSERT `rows` rows (one `%s` per column per row) unless one with the same
        `key_columns` exists. The statement's rowcount is the number of rows inserted: a
        duplicate counts 0 (deduplication). Small statements are built once (messages are
        written on every request)."""
        cache_key = (table, tuple(columns), tuple(key_columns), rows)
        sql = self._insert_ignore_cache.get(cache_key)
        if sql is None:
            sql = self._build_insert_ignore_sql(table, columns, key_columns, rows)
            if rows <= 16:
                self._insert_ignore_cache[cache_key] = sql
        return sql

    def insert_ignore_statements(
        self,
        table: str,
        columns: Sequence[str],
        key_columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> list[tuple[str, list[Any]]]:
        """`insert_ignore_sql` statements for `rows` (for `Connection.batch`): one multi-row
        INSERT per INSERT_ROWS_PER_STATEMENT rows, each with its rows' values in one list."""
        return [
            (
                self.insert_ignore_sql(table, columns, key_columns, len(chunk)),
                [value for row in chunk for value in row],
            )
            for chunk in (
                rows[start : start + INSERT_ROWS_PER_STATEMENT]
                for start in range(0, len(rows), INSERT_ROWS_PER_STATEMENT)
            )
        ]

    def _build_insert_ignore_sql(
        self, table: str, columns: Sequence[str], key_columns: Sequence[str], rows: int
    ) -> str:
        raise NotImplementedError

    def upsert_computed_sql(
        self,
        table: str,
        values: Mapping[str, str],
        key_columns: Sequence[str],
        assignments: Mapping[str, str],
        source: str | None = None,
    ) -> str:
        """INSERT one row, or apply `assignments` to the existing row with the same `key_columns`.

        With `source` ("FROM ... WHERE ...", the WHERE required), the row is inserted (or the
        existing one updated) only when `source` selects a row; otherwise nothing happens.

        `values` maps each column to the SQL expression inserted (a placeholder, usually);
        `assignments` maps columns to SQL expressions in which a bare column name means the
        existing row's value. One atomic statement: the row is locked (MySQL) or the database
        write-locked (SQLite) for the rest of the transaction.

        MySQL applies assignments left to right, each seeing the ones before it; SQLite applies
        them all to the old row. So an expression may only read columns that no earlier
        assignment writes: put the columns that conditions read last.
        """
        columns = ", ".join(self.quote(column) for column in values)
        inserted = ", ".join(values.values())
        updates = ", ".join(
            f"{self.quote(column)} = {expression}" for column, expression in assignments.items()
        )
        rows = f"SELECT {inserted} {source}" if source else f"VALUES ({inserted})"
        return (
            f"INSERT INTO {self.quote(table)} ({columns}) {rows} "
            f"{self._on_conflict_update(key_columns)} {updates}"
        )

    def _on_conflict_update(self, key_columns: Sequence[str]) -> str:
        raise NotImplementedError

    def returning_sql(self, columns: Sequence[str]) -> str | None:
        """A RETURNING clause that makes an INSERT/upsert return the row it left (SQLite,
        MariaDB >= 10.5), or None where the server has none (MySQL, older MariaDB: read the row
        back in the same transaction instead; the upsert's row lock keeps it as the statement
        left it). One round trip less per upsert where it exists."""
        return None

    def reported_sql(self, expression: str) -> str | None:
        """`expression` (a non-negative integer) wrapped so that the statement evaluating it
        reports the value in its answer, as the result's `lastrowid`, with no result set to
        send and read; None where there is no such way (use RETURNING there). Evaluate it at
        most once per statement; the last value wins."""
        return None

    def last_reported_sql(self) -> str | None:
        """An expression for the value the last `reported_sql` reported on this connection
        (earlier in the same batch), or None where there is no such way."""
        return None

    def is_null_refused(self, exc: BaseException, column: str) -> bool:
        """True when `exc` says a statement tried to store NULL in the NOT NULL `column` (an
        assignment that yields NULL is how a statement fails on a condition)."""
        return False

    def delete_batch_sql(self, table: str, where: str, limit: int) -> str:
        """DELETE at most `limit` rows matching `where`: purges in small batches keep each
        transaction, and the locks it holds, short."""
        raise NotImplementedError

    def table_exists_sql(self) -> str:
        """A query returning a row when the table named by its one `%s` parameter exists."""
        raise NotImplementedError

    def lock_sql(self) -> str | None:
        """`SELECT` that takes a named lock (params: name, timeout seconds; returns 1 on success),
        or None where the engine serializes writers itself."""
        return None

    def unlock_sql(self) -> str | None:
        """`SELECT` that releases a named lock taken with `lock_sql` (param: name)."""
        return None

    def is_retryable(self, exc: BaseException) -> bool:
        """True when the transaction failed only because of lock contention and may run again."""
        raise NotImplementedError

    def is_duplicate_key(self, exc: BaseException) -> bool:
        """True when a statement failed on a primary or unique key."""
        raise NotImplementedError

    def is_connection_lost(self, exc: BaseException) -> bool:
        """True when the connection is unusable and must be replaced."""
        raise NotImplementedError

    def refused_value(self, exc: BaseException) -> tuple[str, str] | None:
        """(column, why) when a statement failed because a value does not fit its column (too
        long, out of range, not a valid date, ...): the database refused to store it rather
        than store something else. None for any other error."""
        return None

    def _column_list(self, columns: Sequence[str]) -> str:
        return ", ".join(self.quote(column) for column in columns)

    def _insert_sql(self, table: str, columns: Sequence[str], rows: int = 1) -> str:
        placeholders = "(" + ", ".join("%s" for _ in columns) + ")"
        columns_sql = self._column_list(columns)
        values = ", ".join(placeholders for _ in range(rows))
        return f"INSERT INTO {self.quote(table)} ({columns_sql}) VALUES {values}"

    def __repr__(self) -> str:
        version = ".".join(str(part) for part in self.version)
        return f"<{type(self).__name__} {self.server} {version}>"


class MySQLDialect(Dialect):
    """MySQL >= 5.7 and MariaDB >= 10.3, through PyMySQL."""

    name = "mysql"
    transactional_ddl = False
    serializes_writers = False
    upsert_reports_change = True
    now_sql = "UTC_TIMESTAMP(6)"

    def __init__(self, server: str = "mysql", version: tuple[int, ...] = (0,)) -> None:
        self.server = server
        self.version = version
        self._insert_ignore_cache: dict[tuple[Any, ...], str] = {}

    @property
    def supports_skip_locked(self) -> bool:
        if self.server == "mariadb":
            return self.version >= (10, 6)
        return self.version >= (8, 0, 1)

    @property
    def for_update(self) -> str:
        return "FOR UPDATE"

    @property
    def for_update_skip_locked(self) -> str:
        if not self.supports_skip_locked:
            raise RuntimeError(
                f"{self.server} {'.'.join(map(str, self.version))} has no SKIP LOCKED "
                "(MariaDB >= 10.6 and MySQL >= 8.0.1 have it): use a compare-and-set claim"
            )
        return "FOR UPDATE SKIP LOCKED"

    def now_plus_seconds_sql(self) -> str:
        return "UTC_TIMESTAMP(6) + INTERVAL %s SECOND"

    def quote(self, identifier: str) -> str:
        return "`" + identifier.replace("`", "``") + "`"

    def upsert_sql(self, table, columns, key_columns, update_columns=None) -> str:
        if update_columns is None:
            update_columns = [column for column in columns if column not in key_columns]
        # VALUES(col) is deprecated in MySQL 8.0.20 in favour of a row alias, but MariaDB has no
        # row alias and MySQL still accepts VALUES(), so it is the one form both servers run.
        assignments = ", ".join(
            f"{self.quote(column)} = VALUES({self.quote(column)})" for column in update_columns
        )
        if not assignments:  # nothing to update: keep the existing row as it is
            return self.insert_ignore_sql(table, columns, key_columns)
        return f"{self._insert_sql(table, columns)} ON DUPLICATE KEY UPDATE {assignments}"

    def _build_insert_ignore_sql(self, table, columns, key_columns, rows) -> str:
        # Not INSERT IGNORE: that also turns NOT NULL, foreign key and truncation errors into
        # warnings. Assigning a key column to itself changes nothing, so the server reports 0
        # affected rows for a duplicate (PyMySQL does not set CLIENT_FOUND_ROWS).
        key = self.quote(key_columns[0])
        return f"{self._insert_sql(table, columns, rows)} ON DUPLICATE KEY UPDATE {key} = {key}"

    def _on_conflict_update(self, key_columns: Sequence[str]) -> str:
        return "ON DUPLICATE KEY UPDATE"

    def delete_batch_sql(self, table: str, where: str, limit: int) -> str:
        return f"DELETE FROM {self.quote(table)} WHERE {where} LIMIT {int(limit)}"

    def returning_sql(self, columns: Sequence[str]) -> str | None:
        # MariaDB returns the row as the upsert left it, updated or inserted; MySQL has no
        # RETURNING at all.
        if self.server == "mariadb" and self.version >= (10, 5):
            return "RETURNING " + self._column_list(columns)
        return None

    def table_exists_sql(self) -> str:
        return (
            "SELECT 1 AS found FROM information_schema.tables"
            " WHERE table_schema = DATABASE() AND table_name = %s"
        )

    def lock_sql(self) -> str:
        return "SELECT GET_LOCK(%s, %s) AS acquired"

    def unlock_sql(self) -> str:
        return "SELECT RELEASE_LOCK(%s) AS released"

    def is_retryable(self, exc: BaseException) -> bool:
        return _mysql_errno(exc) in (ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT)

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return _mysql_errno(exc) == ER_DUP_ENTRY

    def reported_sql(self, expression: str) -> str:
        # LAST_INSERT_ID(expr) returns expr and makes the OK packet carry it as the insert id
        # (the manual's way to emulate sequences). It also becomes what LAST_INSERT_ID()
        # returns on this connection until the next insert into an AUTO_INCREMENT column.
        return f"LAST_INSERT_ID({expression})"

    def last_reported_sql(self) -> str:
        return "LAST_INSERT_ID()"

    def is_null_refused(self, exc: BaseException, column: str) -> bool:
        # "Column 'state' cannot be null" (refused even outside strict mode: one row).
        return _mysql_errno(exc) == ER_BAD_NULL_ERROR and f"'{column}'" in str(exc.args[-1])

    def is_connection_lost(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):  # "(0, '')": the socket is closed
            return True
        return _mysql_errno(exc) in CR_CONNECTION_LOST

    def refused_value(self, exc: BaseException) -> tuple[str, str] | None:
        why = VALUE_REFUSED.get(_mysql_errno(exc) or 0)
        found = _MYSQL_COLUMN.search(str(exc.args[-1])) if why else None
        return (found.group(1), why) if found and why else None


class SQLiteDialect(Dialect):
    """SQLite >= 3.35 through the standard library."""

    name = "sqlite"
    server = "sqlite"
    transactional_ddl = True
    serializes_writers = True
    # strftime's %f gives milliseconds (SS.SSS); three zeros make it the same 26-character
    # shape as the microsecond text Python writes, so stored values compare as strings.
    upsert_reports_change = False
    now_sql = "(strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now') || '000')"

    def __init__(self) -> None:
        self.version = sqlite3.sqlite_version_info
        self._insert_ignore_cache: dict[tuple[Any, ...], str] = {}

    @property
    def supports_skip_locked(self) -> bool:
        return False

    @property
    def for_update(self) -> str:
        return ""

    @property
    def for_update_skip_locked(self) -> str:
        return ""

    def now_plus_seconds_sql(self) -> str:
        return "(strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', printf('%%+.6f seconds', %s)) || '000')"

    def quote(self, identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def translate(self, sql: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(1):
                return ":" + match.group(1)
            return "?" if match.group(0) == "%s" else "%"

        return _FORMAT_SEQUENCE.sub(replace, sql)

    def upsert_sql(self, table, columns, key_columns, update_columns=None) -> str:
        if update_columns is None:
            update_columns = [column for column in columns if column not in key_columns]
        if not update_columns:
            return self.insert_ignore_sql(table, columns, key_columns)
        assignments = ", ".join(
            f"{self.quote(column)} = excluded.{self.quote(column)}" for column in update_columns
        )
        return (
            f"{self._insert_sql(table, columns)} ON CONFLICT ({self._column_list(key_columns)}) "
            f"DO UPDATE SET {assignments}"
        )

    def _build_insert_ignore_sql(self, table, columns, key_columns, rows) -> str:
        return (
            f"{self._insert_sql(table, columns, rows)} "
            f"ON CONFLICT ({self._column_list(key_columns)}) DO NOTHING"
        )

    def _on_conflict_update(self, key_columns: Sequence[str]) -> str:
        return f"ON CONFLICT ({self._column_list(key_columns)}) DO UPDATE SET"

    def returning_sql(self, columns: Sequence[str]) -> str:
        return "RETURNING " + self._column_list(columns)

    def delete_batch_sql(self, table: str, where: str, limit: int) -> str:
        # DELETE ... LIMIT needs a compile-time option most SQLite builds lack.
        quoted = self.quote(table)
        return (
            f"DELETE FROM {quoted} WHERE rowid IN "
            f"(SELECT rowid FROM {quoted} WHERE {where} LIMIT {int(limit)})"
        )

    def table_exists_sql(self) -> str:
        return "SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = %s"

    def is_retryable(self, exc: BaseException) -> bool:
        # SQLITE_BUSY after busy_timeout ran out: another process held the write lock too long.
        return isinstance(exc, sqlite3.OperationalError) and (
            "database is locked" in str(exc) or "database is busy" in str(exc)
        )

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and (
            "UNIQUE constraint failed" in str(exc) or "PRIMARY KEY" in str(exc)
        )

    def is_connection_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)

    def is_null_refused(self, exc: BaseException, column: str) -> bool:
        # "NOT NULL constraint failed: idempotency_keys.state"
        return isinstance(exc, sqlite3.IntegrityError) and bool(
            re.search(rf"NOT NULL constraint failed: (?:\S+\.)?{re.escape(column)}$", str(exc))
        )

    def refused_value(self, exc: BaseException) -> tuple[str, str] | None:
        # SQLite stores any value in an ordinary column (a TEXT column has no length); only
        # STRICT tables refuse a value of the wrong type.
        if not isinstance(exc, sqlite3.IntegrityError):
            return None
        found = _SQLITE_COLUMN.search(str(exc))
        return (found.group(1), SQLITE_TYPE_REFUSED) if found else None


def _mysql_errno(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None
