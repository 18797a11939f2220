# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The database: one `Database` per process, one short transaction per unit of work.

    db = Database("mysql://user:password@localhost:3306/orders")
    with db.transaction() as conn:
        conn.execute("UPDATE orders SET status = %s WHERE order_id = %s", ("paid", order_id))
        row = conn.fetchone("SELECT status FROM orders WHERE order_id = %s", (order_id,))

Statements use `%s` placeholders (or `%(name)s` with a dict) and `%%` for a literal percent sign
on both engines; rows come back as dicts. Differences between engines live in `dialect.py`.

Each thread keeps one connection and reuses it for its next transaction, so a request does not
pay for a connect. A connection idle for a while is pinged before use and replaced if the server
dropped it (MySQL's wait_timeout, a restarted server).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
from pymysql.converters import encoders, escape_string

from .dialect import Dialect, MySQLDialect, SQLiteDialect, parse_server_version

T = TypeVar("T")
Row = dict[str, Any]
Params = Sequence[Any] | Mapping[str, Any]

# A pooled connection idle longer than this is pinged before use: cheap insurance against a
# server that closed it (shared hosts often set wait_timeout to a minute or less).
PING_AFTER_IDLE_SECONDS = 5.0
MYSQL_CONNECT_TIMEOUT_SECONDS = 5
# The most SQL `Connection.batch` sends in one message (bytes, about: characters).
MAX_BATCH_BYTES = 900_000
SQLITE_BUSY_TIMEOUT_MS = 5000

# STRICT_ALL_TABLES turns silent truncation and bad values into errors; the rest match MySQL
# 8's defaults, so code tested on one server behaves the same on another.
MYSQL_SQL_MODE = (
    "STRICT_ALL_TABLES,ONLY_FULL_GROUP_BY,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)


class DatabaseError(Exception):
    """A database URL or setup problem, with what to do about it."""


def _format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_datetime(raw: bytes) -> dt.datetime:
    return dt.datetime.fromisoformat(raw.decode())


# Rows from columns declared DATETIME/TIMESTAMP come back as naive UTC datetimes and DECIMAL
# columns as Decimal, as they do from MySQL. (Converters are registered process-wide by name;
# the names are the SQL type names our migrations use.)
sqlite3.register_converter("DATETIME", _parse_datetime)
sqlite3.register_converter("TIMESTAMP", _parse_datetime)
sqlite3.register_converter("DECIMAL", lambda raw: decimal.Decimal(raw.decode()))


# Parameters of these exact types go to both drivers as they are (most parameters are).
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_SEQUENCES = (tuple, list, set, frozenset)


def _adapt(value: Any, dialect_name: str) -> Any:
    """Turn a Python value into one both drivers store the same way."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dt.datetime):
        if dialect_name == "sqlite":
            return _format_datetime(value)
        if value.tzinfo is not None:  # the MySQL session runs in UTC; PyMySQL drops tzinfo
            return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if dialect_name == "sqlite":
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, dt.date):
            return value.isoformat()
    elif type(value) not in encoders and not isinstance(value, (str, bytes, bytearray)):
        # PyMySQL binds a type it has no converter for (a Path, an enum) by its text, escaped
        # with backslashes whatever the session's mode: the value could end its literal early.
        return str(value)
    return value


def _adapt_params(params: Params | None, dialect_name: str) -> Any:
    if params is None:
        return ()
    plain = _PLAIN  # runs for every statement: plain values skip the call
    if isinstance(params, Mapping):
        return {
            key: value if type(value) in plain else _adapt(value, dialect_name)
            for key, value in params.items()
        }
    return [value if type(value) in plain else _adapt(value, dialect_name) for value in params]


def _bind_mysql(raw: Any, statement: str, params: Params | None) -> str:
    """`statement` with its `%s` / `%(name)s` placeholders replaced by `params` as SQL
    literals: what PyMySQL's `cursor.mogrify` returns, with the types requests bind most (text,
    integers, NULL, datetimes) escaped directly. PyMySQL's generic dispatch costs more than the
    escaping itself when a request binds some thirty values. Other types, and a session that
    turned NO_BACKSLASH_ESCAPES on, go through PyMySQL's own escaping."""
    if params is None:
        params = ()
    fast = not raw.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES

    def literal(value: Any) -> str:
        kind = type(value)
        if fast:
            if kind is str:
                return "'" + escape_string(value) + "'"
            if kind is int:
                return str(value)
            if value is None:
                return "NULL"
            if kind is dt.datetime and value.tzinfo is None:  # the DATETIME(6) text
                return "'" + value.isoformat(" ", "microseconds") + "'"
        if kind in _SEQUENCES:  # an IN list: each item escaped as it would be alone
            return "(" + ",".join([literal(item) for item in value]) + ")"
        return raw.escape(_adapt(value, "mysql"))

    try:
        if isinstance(params, Mapping):
            if "%s" in statement and "%s" in statement.replace("%%", ""):
                # Python would format the whole mapping (its repr) into the text there.
                raise TypeError("%s placeholders take a sequence of parameters: use %(name)s")
            return statement % {key: literal(value) for key, value in params.items()}
        return statement % tuple([literal(value) for value in params])
    except TypeError as exc:  # as PyMySQL reports a placeholder/parameter mismatch
        raise pymysql.err.ProgrammingError(str(exc)) from None


def _mysql_tokens(escapes_in_single: bool, escapes_in_double: bool) -> re.Pattern[str]:
    """The tokens of MySQL/MariaDB SQL text as the server's lexer reads them, with or without
    backslash escapes in '...' and "..." (NO_BACKSLASH_ESCAPES; ANSI_QUOTES makes "..." a name,
    where a backslash is itself)."""

    def quoted(quote: str, escapes: bool) -> str:
        body = rf"[^{quote}\\]|\\[\s\S]" if escapes else rf"[^{quote}]"
        return rf"{quote}(?:{body}|{quote}{quote})*{quote}"

    return re.compile(
        "|".join(
            [
                rf"(?P<quoted>{quoted(chr(39), escapes_in_single)}|"
                rf"{quoted(chr(34), escapes_in_double)}|{quoted('`', False)})",
                # `#` and `-- ` (dashes then a space or a control character) end at the line's
                # end; `--x` is minus minus. /*! and /*M! open an executable comment: code.
                r"(?P<comment>#[^\n]*|--(?=[\x00-\x20\x7f]|\Z)[^\n]*|/\*(?!M?!)[\s\S]*?\*/)",
                r"(?P<unterminated>['\"`]|/\*(?!M?!))",
                r"(?P<semicolon>;)",
                r"(?P<code>(?:[^'\"`#/;\-]+|/(?!\*(?!M?!))|-(?!-(?:[\x00-\x20\x7f]|\Z)))+)",
            ]
        )
    )


_MYSQL_TOKENS = {
    (single, double): _mysql_tokens(single, double)
    for single in (True, False)
    for double in (True, False)
}
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!")
_SQL_MODE = re.compile(r"sql_mode", re.IGNORECASE)
_SPACES = " \t\n\r\x0b\x0c"  # what the server's lexer skips between tokens
_NAMED_PLACEHOLDERS = re.compile(r"%\(\w+\)s")
# A SET that changes the character set the server reads statements in (a quoted name too).
_SET = re.compile(r"[ \t\n\r\x0b\x0c]*SET\b", re.IGNORECASE)
_CHARSET_NAMES = re.compile(
    r"(?<![@\w$.])(?:NAMES|CHARSET|CHARACTER)\b|\bCHARACTER_SET_CLIENT\b", re.IGNORECASE
)
# Statements checked by `_one_mysql_statement`, by text: a service sends the same few texts
# again and again, so the check runs once per text. Bounded, as SQL built by pasting values
# into its text never repeats.
_CHECKED: dict[str, str] = {}
_CHECKED_MAX_CHARS = 8_000_000
_checked_chars = 0


def _placeholders_only(code: str) -> bool:
    """Whether every `%` in `code` is part of %s, %(name)s or %%."""
    rest = code.replace("%%", "").replace("%s", "")
    return "%" not in rest or "%" not in _NAMED_PLACEHOLDERS.sub("", rest)


def _one_mysql_statement(sql: str) -> str:
    """`sql` without its trailing `;`, spaces and comments, once it is known to hold exactly one
    statement for the MySQL/MariaDB server, and its placeholders to stand where a value goes.

    The connection runs with CLIENT_MULTI_STATEMENTS (see `Connection.batch`), so the server runs
    whatever follows a `;`; values are bound into the text as literals, so a placeholder inside
    quotes or a comment pastes its value there. The text is read under every reading the
    server may have (a backslash escapes the next character in quotes or not, by sql_mode), and
    refused when any of them finds a second statement or a misplaced placeholder.
    """
    statement = _CHECKED.get(sql)
    if statement is not None:
        return statement
    if "\0" in sql:
        raise ValueError(
            "one SQL statement per call, without NUL characters in its text: pass values as "
            f"parameters (%s), never pasted into the SQL text: {sql[:200]!r}"
        )
    placeholders = "%" in sql.replace("%%", "")
    if (";" in sql or placeholders) and _EXECUTABLE_COMMENT.search(sql):
        # The server runs /*!NNNNN ...*/ as code or skips it as a comment, by its version.
        raise ValueError(
            "one SQL statement per call: an executable comment (/*! ... */) cannot share its "
            f"statement with a `;` or a placeholder: {sql[:200]!r}"
        )
    readings = list(_MYSQL_TOKENS.values()) if "\\" in sql else [_MYSQL_TOKENS[True, True]]
    ends = set()
    for tokens in readings:
        end = 0
        after_semicolon = False
        is_set = False
        for token in tokens.finditer(sql):
            kind = token.lastgroup
            text = token.group()
            if kind == "code" and not text.strip(_SPACES):
                continue
            if not end and kind == "code":
                is_set = bool(_SET.match(text))
            if is_set and (kind == "code" or text[0] == "`") and _CHARSET_NAMES.search(text):
                # Values are escaped for utf8mb4. Read as GBK, Big5 or SJIS, the byte before an
                # escaping backslash can take it as its second half, and the quote after it
                # then ends the literal: the session would stay open to that for every request
                # that reuses the connection.
                raise ValueError(
                    "the connection's character set stays utf8mb4 (values are escaped for it): "
                    "convert in SQL with CONVERT(... USING ...) instead of changing it with SET: "
                    f"{sql[:200]!r}"
                )
            if kind == "code" and "%" in text and not _placeholders_only(text):
                raise ValueError(
                    "only %s and %(name)s placeholders (and %% for a percent sign) are allowed "
                    f"in SQL text: {sql[:200]!r}"
                )
            if kind in ("quoted", "comment") and "%" in text.replace("%%", ""):
                raise ValueError(
                    "a placeholder (%s) inside quotes or a comment would paste its value into "
                    "the SQL text instead of binding it: write %s without quotes (the value is "
                    f"quoted for you), and %% for a percent sign: {sql[:200]!r}"
                )
            if kind == "comment":
                continue
            if kind == "semicolon":
                after_semicolon = True
                continue
            if after_semicolon or kind == "unterminated":
                raise ValueError(
                    "one SQL statement per call (and every quote and comment closed): pass "
                    "values as parameters (%s), never pasted into the SQL text, and run "
                    f"statements one at a time: {sql[:200]!r}"
                )
            end = token.start() + len(text.rstrip(_SPACES))
        ends.add(end)
    if len(ends) > 1:  # where the statement ends depends on how the server reads backslashes
        raise ValueError(
            "one SQL statement per call: a `;` after a backslash in quotes ends the statement or "
            "not depending on the session's sql_mode; pass values as parameters (%s), never "
            f"pasted into the SQL text: {sql[:200]!r}"
        )
    statement = sql[: ends.pop()]
    global _checked_chars
    if _checked_chars + len(sql) > _CHECKED_MAX_CHARS:
        _CHECKED.clear()
        _checked_chars = 0
    _CHECKED[sql] = statement
    _checked_chars += len(sql)
    return statement


def split_statements(sql: str) -> list[str]:
    """The statements of a script. A `;` inside quotes, comments or a trigger body does not split
    (SQLite's own tokenizer decides where a statement is complete)."""
    statements: list[str] = []
    buffer = ""
    for char in sql:
        buffer += char
        if char == ";" and sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if _has_code(buffer):
        statements.append(buffer.strip())  # the last statement may omit its `;`
    return [statement for statement in statements if _has_code(statement)]


def _has_code(sql: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL)
    return bool(without_comments.strip(" \t\r\n;"))


def utcnow() -> dt.datetime:
    """The current time as the database stores it: naive UTC, microseconds."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@dataclass
class Result:
    """What one statement of `Connection.batch` did."""

    rowcount: int
    lastrowid: int | None
    rows: list[Row]


class Connection:
    """The open transaction handed out by `Database.transaction()`."""

    def __init__(self, raw: Any, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect
        self.lastrowid: int | None = None
        self.rowcount: int = 0
        self.committed = False  # by a batch that ended with COMMIT

    def _statement(self, sql: str) -> str:
        if self.committed:
            raise RuntimeError(
                "this transaction was committed by its last batch: open a new one for more work"
            )
        if self.dialect.name != "sqlite":
            return _CHECKED.get(sql) or _one_mysql_statement(self.dialect.translate(sql))
        statement = self.dialect.translate(sql).strip().rstrip(";")
        # SQLite runs one statement per call by itself; refused here too for the same message.
        if ";" in statement and len(split_statements(statement)) > 1:
            raise ValueError(
                "one SQL statement per call: pass values as parameters (%s), never pasted into "
                f"the SQL text, and run statements one at a time: {statement[:200]!r}"
            )
        return statement

    def _run(self, sql: str, params: Params | None, many: bool = False) -> Any:
        statement = self._statement(sql)
        if self.dialect.name == "sqlite":
            cursor = self.raw.cursor()
            if many:
                cursor.executemany(statement, [_adapt_params(p, "sqlite") for p in params])
            else:
                cursor.execute(statement, _adapt_params(params, "sqlite"))
        else:
            cursor = self.raw.cursor(pymysql.cursors.DictCursor)
            if many:
                cursor.executemany(statement, [_adapt_params(p, "mysql") for p in params])
            else:
                # Always bound, with no parameters too, so that `%%` means a literal percent
                # sign in every statement, as it does on SQLite after translate().
                cursor.execute(_bind_mysql(self.raw, statement, params))
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount
        return cursor

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; return the number of rows it changed.

        On MySQL an UPDATE counts the rows it changed, on SQLite the rows it matched; they
        agree whenever the UPDATE changes what it matches (a claim, a status change).
        """
        cursor = self._run(sql, params)
        cursor.close()
        return self.rowcount

    def batch(
        self, statements: Sequence[tuple[str, Params | None]], *, commit: bool = False
    ) -> list[Result]:
        """Run `statements` in order in this transaction and return what each did (rows as
        dicts for those that return rows); with `commit`, commit the transaction after the last.

        On MySQL the statements (and the COMMIT) travel to the server as one message and come
        back as one answer: a request that writes a few rows waits for one round trip instead
        of one per statement. The server stops at the first statement that fails, so a COMMIT
        at the end runs only when every statement before it succeeded; the error propagates
        and the transaction rolls back as usual. On SQLite (in-process, no round trips) they
        simply run one after another.
        """
        if self.dialect.name == "sqlite":
            results = []
            for sql, params in statements:
                cursor = self._run(sql, params)
                rows = [self._as_dict(cursor, row) for row in cursor.fetchall()]
                results.append(Result(self.rowcount, self.lastrowid, rows))
                cursor.close()
            if commit:
                self.raw.execute("COMMIT")
                self.committed = True
            return results
        cursor = self.raw.cursor(pymysql.cursors.DictCursor)
        try:
            texts = [
                _bind_mysql(self.raw, self._statement(sql), params) for sql, params in statements
            ]
            # Every value is escaped before the first statement runs, for the session's
            # NO_BACKSLASH_ESCAPES as it is now: a statement that may change it comes last.
            for sql, _ in statements[:-1]:
                if _SQL_MODE.search(sql):
                    raise ValueError(
                        "a statement that sets sql_mode must be the last of its batch (or run "
                        f"alone with execute): {sql[:200]!r}"
                    )
            if commit:
                texts.append("COMMIT")
            results = []
            for group in _messages(texts):
                cursor.execute(";\n".join(group))  # no parameters: each text is already bound
                for index in range(len(group)):
                    if index:
                        cursor.nextset()
                    results.append(
                        Result(cursor.rowcount, cursor.lastrowid, list(cursor.fetchall()))
                    )
        finally:
            cursor.close()
        if commit:
            results.pop()  # the COMMIT's: it ran, so every statement before it succeeded
            self.committed = True
        if results:
            self.rowcount, self.lastrowid = results[-1].rowcount, results[-1].lastrowid
        return results

    def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        """Run one statement once per parameter set; return the total rowcount."""
        params = list(seq_of_params)
        if len(params) == 1:  # the common case (one message): skip PyMySQL's multi-row rewrite
            return self.execute(sql, params[0])
        cursor = self._run(sql, params, many=True)
        cursor.close()
        return self.rowcount

    def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row of a query as a dict, or None."""
        cursor = self._run(sql, params)
        try:
            row = cursor.fetchone()
            return None if row is None else self._as_dict(cursor, row)
        finally:
            cursor.close()

    def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        """All rows of a query as dicts."""
        cursor = self._run(sql, params)
        try:
            return [self._as_dict(cursor, row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def fetchvalue(self, sql: str, params: Params | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    def _as_dict(self, cursor: Any, row: Any) -> Row:
        if isinstance(row, dict):
            return row
        return {column[0]: value for column, value in zip(cursor.description, row)}


def _messages(texts: list[str]) -> Iterator[list[str]]:
    """`texts` in order, grouped into messages of at most MAX_BATCH_BYTES (a statement larger
    than that goes alone): shared hosts often keep max_allowed_packet at 1 MB."""
    group: list[str] = []
    size = 0
    for text in texts:
        if group and size + len(text) > MAX_BATCH_BYTES:
            yield group
            group, size = [], 0
        group.append(text)
        size += len(text) + 2
    if group:
        yield group


# This process's id, kept up to date across fork: pooled connections compare it on every
# checkout and checkin, which would otherwise cost two system calls per transaction.
_PID = os.getpid()


def _after_fork() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


@dataclass
class _Pooled:
    """A thread's idle connection and what we know about it."""

    raw: Any
    pid: int
    last_used: float


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed DATABASE_URL."""

    dialect: str  # "mysql" | "sqlite"
    path: Path | None = None  # SQLite file
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = ""
    password: str = ""
    database: str = ""
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str, base_dir: Path | None = None) -> DatabaseURL:
        """Parse `sqlite:///relative.db`, `sqlite:////absolute.db` or
        `mysql://user:password@host:3306/name?unix_socket=/path&ssl_ca=/path`.

        A relative SQLite path is taken from `base_dir` (the service root), not from wherever the
        process happens to start.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]  # accept "mysql+pymysql://" too
        if scheme == "sqlite":
            raw_path = unquote(url.split(":", 1)[1].removeprefix("//").removeprefix("/"))
            if url.startswith("sqlite:////"):
                raw_path = "/" + raw_path.lstrip("/")
            if not raw_path:
                raise DatabaseError(f"{url!r} names no file: write sqlite:///var/app.db")
            path = Path(raw_path.split("?", 1)[0])
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            return cls(dialect="sqlite", path=path, options=tuple(parse_qsl(parts.query)))
        if scheme in ("mysql", "mariadb"):
            database = unquote(parts.path.lstrip("/"))
            if not database:
                raise DatabaseError(
                    f"{redact(url)!r} names no database: write mysql://user:password@host:3306/name"
                )
            return cls(
                dialect="mysql",
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=unquote(parts.username or ""),
                password=unquote(parts.password or ""),
                database=database,
                options=tuple(parse_qsl(parts.query)),
            )
        raise DatabaseError(
            f"unsupported database URL {redact(url)!r}: use sqlite:///path/to/file.db or "
            "mysql://user:password@host:3306/name"
        )


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class Database:
    """A database named by URL, with per-thread connection reuse."""

    def __init__(
        self,
        url: str,
        base_dir: Path | None = None,
        ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS,
    ) -> None:
        self.url = url
        self.config = DatabaseURL.parse(url, base_dir)
        self.ping_after_idle_seconds = ping_after_idle_seconds
        self._local = threading.local()
        self._dialect: Dialect | None = SQLiteDialect() if self.config.dialect == "sqlite" else None
        self._dialect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Database {redact(self.url)}>"

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect. On MySQL the first use connects once to learn the server version
        (SKIP LOCKED support depends on it)."""
        if self._dialect is None:
            with self.transaction() as conn:
                return conn.dialect
        return self._dialect

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[Connection]:
        """BEGIN ... COMMIT around the block; ROLLBACK when it raises.

        MySQL runs it at READ COMMITTED. SQLite begins with BEGIN IMMEDIATE, which takes the
        write lock up front (waiting up to the busy timeout) so two writers never deadlock on a
        lock upgrade; `readonly=True` begins a plain deferred transaction instead (WAL readers
        never wait for writers).
        """
        if getattr(self._local, "in_transaction", False):
            raise RuntimeError(
                "a transaction is already open on this thread: pass its connection (ctx.db) "
                "to the code that needs it instead of opening a second one"
            )
        raw = self._checkout()
        conn = Connection(raw, self._dialect)  # type: ignore[arg-type]  # set by _checkout
        self._local.in_transaction = True
        healthy = True
        try:
            self._begin(raw, readonly)
            yield conn
            if not conn.committed:  # a batch may have committed it already
                self._end(raw, "COMMIT")
        except BaseException as exc:
            healthy = not conn.dialect.is_connection_lost(exc)
            if healthy:
                try:
                    self._end(raw, "ROLLBACK")
                except Exception:
                    healthy = False  # a connection that cannot roll back is not reused
            raise
        finally:
            self._local.in_transaction = False
            self._checkin(raw, healthy)

    def _begin(self, raw: Any, readonly: bool) -> None:
        if self.config.dialect == "sqlite":
            raw.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
        elif readonly:
            with raw.cursor() as cursor:
                cursor.execute("START TRANSACTION READ ONLY")
        # MySQL with autocommit off starts a transaction at the first statement by itself.

    def _end(self, raw: Any, how: str) -> None:
        if self.config.dialect == "sqlite":
            raw.execute(how)
        elif how == "COMMIT":
            raw.commit()
        else:
            raw.rollback()

    def run_in_transaction(self, work: Callable[[Connection], T], attempts: int = 5) -> T:
        """Run `work(conn)` in a transaction, again from the start if it loses a deadlock."""

        def attempt() -> T:
            with self.transaction() as conn:
                return work(conn)

        return retry_on_deadlock(attempt, self.dialect, attempts=attempts)

    # -- connection reuse -----------------------------------------------------------------

    def _checkout(self) -> Any:
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        self._local.pooled = None
        if pooled is not None and pooled.pid != _PID:
            # Inherited across fork (a pre-forking server): the socket is shared with the
            # parent, so it is abandoned without closing it (closing would end the parent's).
            pooled = None
        idle = time.monotonic() - pooled.last_used if pooled is not None else 0.0
        if pooled is not None and idle >= self.ping_after_idle_seconds:
            if not self._alive(pooled.raw):
                self._close_quietly(pooled.raw)
                pooled = None
        return pooled.raw if pooled is not None else self._connect()

    def _checkin(self, raw: Any, healthy: bool) -> None:
        if healthy:
            self._local.pooled = _Pooled(raw, _PID, time.monotonic())
        else:
            self._close_quietly(raw)

    def close(self) -> None:
        """Close this thread's idle connection (other threads' connections close with them)."""
        pooled: _Pooled | None = getattr(self._local, "pooled", None)
        self._local.pooled = None
        if pooled is not None and pooled.pid == _PID:
            self._close_quietly(pooled.raw)

    def _alive(self, raw: Any) -> bool:
        if self.config.dialect == "sqlite":
            return True
        try:
            raw.ping(reconnect=False)  # reconnecting here would lose the session settings
            return True
        except pymysql.err.Error:
            return False

    @staticmethod
    def _close_quietly(raw: Any) -> None:
        try:
            raw.close()
        except Exception:
            pass  # already broken; nothing more to release

    def _connect(self) -> Any:
        if self.config.dialect == "sqlite":
            return self._connect_sqlite()
        return self._connect_mysql()

    def _connect_sqlite(self) -> sqlite3.Connection:
        path = self.config.path
        assert path is not None
        options = dict(self.config.options)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = sqlite3.connect(
            path,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            detect_types=sqlite3.PARSE_DECLTYPES,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        )
        busy_ms = int(options.get("busy_timeout_ms", SQLITE_BUSY_TIMEOUT_MS))
        raw.execute(f"PRAGMA busy_timeout = {busy_ms}")
        raw.execute("PRAGMA journal_mode = WAL")  # readers do not block the writer
        raw.execute("PRAGMA synchronous = NORMAL")  # durable across crashes of the process in WAL
        raw.execute("PRAGMA foreign_keys = ON")
        return raw

    def _connect_mysql(self) -> pymysql.connections.Connection:
        config = self.config
        options = dict(config.options)
        kwargs: dict[str, Any] = {}
        if "unix_socket" in options:
            kwargs["unix_socket"] = options["unix_socket"]
        if "ssl_ca" in options:
            kwargs["ssl"] = {"ca": options["ssl_ca"]}
        try:
            raw = pymysql.connect(
                host=config.host,
                port=config.port,
                user=config.user,
                password=config.password,
                database=config.database,
                charset="utf8mb4",
                autocommit=False,
                # `Connection.batch` sends several statements in one round trip; single
                # statements with a `;` in their text are refused (see `Connection._statement`).
                client_flag=CLIENT.MULTI_STATEMENTS,
                connect_timeout=int(options.get("connect_timeout", MYSQL_CONNECT_TIMEOUT_SECONDS)),
                **kwargs,
            )
        except pymysql.err.OperationalError as exc:
            raise DatabaseError(
                f"cannot connect to {redact(self.url)}: {exc.args[-1]} (check DATABASE_URL: "
                "host, port, user, password and that the database exists)"
            ) from exc
        with raw.cursor() as cursor:
            cursor.execute("SET SESSION sql_mode = %s", (MYSQL_SQL_MODE,))
            cursor.execute("SET SESSION time_zone = '+00:00'")
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if self._dialect is None:
                cursor.execute("SELECT VERSION()")
                server, version = parse_server_version(cursor.fetchone()[0])
                with self._dialect_lock:
                    self._dialect = MySQLDialect(server, version)
        raw.commit()
        return raw

    # -- helpers --------------------------------------------------------------------------

    def ping(self) -> None:
        """Run a trivial query; raises when the database does not answer."""
        with self.transaction(readonly=True) as conn:
            conn.fetchone("SELECT 1 AS ok")

    @contextmanager
    def named_lock(self, name: str, timeout_seconds: int = 60) -> Iterator[None]:
        """Hold a server-wide named lock for the block (MySQL GET_LOCK), so that only one
        process at a time runs it. On SQLite this is a no-op: write transactions there are
        serialized, so code that must be exclusive runs inside `transaction()`.

        The lock belongs to this thread's connection; the block must not open a nested
        transaction on another thread expecting to hold it.
        """
        lock_sql = self.dialect.lock_sql()
        if lock_sql is None:
            yield
            return
        # Lock names are limited to 64 characters; qualify by database so that services
        # sharing one server do not wait for each other.
        full_name = f"{self.config.database}:{name}"[:64]
        with self.transaction() as conn:
            acquired = conn.fetchvalue(lock_sql, (full_name, timeout_seconds))
        if acquired != 1:
            raise DatabaseError(
                f"could not take lock {full_name!r} within {timeout_seconds}s: another process "
                "holds it (a long migration?); try again when it has finished"
            )
        try:
            yield
        finally:
            with self.transaction() as conn:
                conn.fetchvalue(self.dialect.unlock_sql(), (full_name,))  # type: ignore[arg-type]


def retry_on_deadlock(
    work: Callable[[], T],
    dialect: Dialect,
    *,
    attempts: int = 5,
    base_seconds: float = 0.05,
    max_seconds: float = 2.0,
) -> T:
    """Call `work()`; when the database aborted it as a deadlock victim (MySQL 1213), a lock
    wait timed out (1205) or SQLite stayed busy, call it again after a jittered backoff.

    `work` must open its own transaction, so a retry starts from a clean slate:

        result = retry_on_deadlock(lambda: place_order(db, data), db.dialect)

    The last error propagates after `attempts` tries.
    """
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts or not dialect.is_retryable(exc):
                raise
            # Full jitter: competing transactions spread out instead of colliding again.
            time.sleep(random.uniform(0, min(max_seconds, base_seconds * 2**attempt)))
    raise AssertionError("unreachable")  # the loop either returns or raises
