"""No SQL text or value given to `ctx.db` runs a second statement on MySQL/MariaDB.

The chassis opens MySQL connections with CLIENT_MULTI_STATEMENTS (its batches travel in one
round trip) and binds parameters itself, as SQL literals in the statement's text. What must
hold, against the real server:

- a value, whatever it holds (quotes, backticks, backslashes, `;`, comment openers, NUL, multi-byte
  characters), is stored and read back as data, with the session's sql_mode containing
  NO_BACKSLASH_ESCAPES and without it; so are the other types the binding takes (integers,
  None, datetimes, bytes, Decimal, floats, IN lists, objects bound by their text);
- SQL text holding a second statement is refused before it reaches the server, however the
  `;` hides from a tokenizer that does not follow the server's rules (`#` and `-- ` comments,
  `--` without a space, backslashes in quotes, executable comments); a `;` inside a string,
  a quoted name or a comment, and a trailing `;`, stay allowed;
- a placeholder the text puts inside quotes or a comment, where its value would be pasted into
  a literal instead of bound, is refused;
- the chassis's own batches still send several statements in one message.

"The second statement ran" is checked by the table it would have created.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pymysql
import pytest
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
from support import chassis_module

pytestmark = pytest.mark.mysql

db_module = chassis_module("db")

SECOND = "CREATE TABLE pwned (a INT)"
PAYLOAD = f"; {SECOND}; -- "

MODES = ["default", "NO_BACKSLASH_ESCAPES"]


@pytest.fixture
def db(mysql_database: str) -> Iterator[Any]:
    database = db_module.Database(mysql_database)
    with database.transaction() as conn:
        conn.execute("CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT, data BLOB)")
    yield database
    database.close()


def pwned(db: Any) -> bool:
    with db.transaction() as conn:
        return bool(
            conn.fetchvalue(
                "SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = 'pwned'"
            )
        )


def set_mode(conn: Any, mode: str) -> None:
    """The session's sql_mode for this test: the chassis's own, with NO_BACKSLASH_ESCAPES added
    when `mode` says so (the server then reads a backslash in a string as itself)."""
    if mode == "NO_BACKSLASH_ESCAPES":
        conn.execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')")
        assert conn.raw.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
    else:
        assert not conn.raw.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
    assert conn.fetchvalue("SELECT @@SESSION.character_set_client") == "utf8mb4"


# Values that end a naive literal and start a second statement, one way or another.
NASTY_TEXT = [
    "'" + PAYLOAD,
    "''" + PAYLOAD,
    "\\'" + PAYLOAD,  # \' : an escaped quote, or a backslash and a closing quote
    "\\\\'" + PAYLOAD,
    "x\\" + PAYLOAD,
    "\\",
    '"' + PAYLOAD,
    '\\"' + PAYLOAD,
    "`" + PAYLOAD,
    PAYLOAD,
    "*/" + PAYLOAD + "/*",
    "-- '" + PAYLOAD,
    "# '\n" + PAYLOAD,
    "a\0b'" + PAYLOAD,
    "\r\n\t\x1a'" + PAYLOAD,
    "%s %% %(x)s'" + PAYLOAD,
    # Multi-byte characters: in GBK/Big5/SJIS the second byte of these may be 0x5c (a
    # backslash); over utf8mb4 every byte of a multi-byte character is >= 0x80.
    "\u00bf\\'" + PAYLOAD,
    "\u00bf'" + PAYLOAD,
    "\u30bd\u8868\u80fd\u5341'" + PAYLOAD,  # ソ表能十: 0x5c second bytes in SJIS
    "\u7e17\u6d2a'" + PAYLOAD,  # second byte 0x5c in GBK
    "\U0001f600'" + PAYLOAD,
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", NASTY_TEXT, ids=range(len(NASTY_TEXT)))
def test_text_values_are_data(db: Any, mode: str, value: str) -> None:
    with db.transaction() as conn:
        set_mode(conn, mode)
        conn.execute("INSERT INTO notes (body) VALUES (%s)", (value,))
        conn.execute("INSERT INTO notes (body) VALUES (%(v)s)", {"v": value})
        assert conn.fetchvalue("SELECT %s AS v", (value,)) == value
        rows = conn.fetchall("SELECT body FROM notes WHERE body = %s", (value,))
        assert [row["body"] for row in rows] == [value, value]
        assert (
            conn.executemany(
                "INSERT INTO notes (body) VALUES (%s)", [(value,), ("plain",), (value,)]
            )
            == 3
        )
        assert conn.fetchvalue("SELECT COUNT(*) FROM notes WHERE body = %s", (value,)) == 4
    assert not pwned(db)


@pytest.mark.parametrize("mode", MODES)
def test_sequences_bind_as_in_lists(db: Any, mode: str) -> None:
    """A tuple or list is bound as a parenthesised list of literals, each escaped for the
    session's mode (PyMySQL's own sequence escaping does not look at NO_BACKSLASH_ESCAPES)."""
    with db.transaction() as conn:
        set_mode(conn, mode)
        for value in NASTY_TEXT:
            conn.execute("INSERT INTO notes (body) VALUES (%s)", (value,))
        for container in (tuple, list):
            rows = conn.fetchall(
                "SELECT body FROM notes WHERE body IN %s ORDER BY id", (container(NASTY_TEXT),)
            )
            assert [row["body"] for row in rows] == NASTY_TEXT
        assert conn.fetchvalue("SELECT 7 IN %s", ((1, None, 7, "'" + PAYLOAD),)) == 1
    assert not pwned(db)


@pytest.mark.parametrize("mode", MODES)
def test_other_types_are_data(db: Any, mode: str) -> None:
    moment = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    aware = dt.datetime(2024, 3, 1, 1, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    raw = b"'\\\0\"`;--#/*" + PAYLOAD.encode() + bytes(range(256))
    token = uuid.uuid4()
    with db.transaction() as conn:
        set_mode(conn, mode)
        row = conn.fetchone(
            "SELECT %s AS i, %s AS n, %s AS b, %s AS t, CAST(%s AS DATETIME(6)) AS m, "
            "CAST(%s AS DATETIME(6)) AS a, %s AS d, %s AS f, %s AS u, CAST(%s AS DATE) AS day, "
            "%s AS neg",
            (
                -(2**63),
                None,
                True,
                False,
                moment,
                aware,
                decimal.Decimal("-12.3400"),
                0.1,
                token,
                dt.date(2024, 2, 29),
                -1,
            ),
        )
        assert row == {
            "i": -(2**63),
            "n": None,
            "b": 1,
            "t": 0,
            "m": moment,
            "a": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
            "d": decimal.Decimal("-12.3400"),
            "f": 0.1,
            "u": str(token),
            "day": dt.date(2024, 2, 29),
            "neg": -1,
        }
        conn.execute("INSERT INTO notes (data) VALUES (%s)", (raw,))
        assert conn.fetchvalue("SELECT data FROM notes WHERE data = %s", (raw,)) == raw
        # A type PyMySQL has no converter for is bound by its text, escaped as text is.
        path = PurePosixPath("/tmp/'" + PAYLOAD)
        assert conn.fetchvalue("SELECT %s", (path,)) == str(path)
        backslashed = PurePosixPath("x\\'" + PAYLOAD)
        assert conn.fetchvalue("SELECT %s", (backslashed,)) == str(backslashed)
        conn.executemany("INSERT INTO notes (body) VALUES (%s)", [(path,), (backslashed,)])
        rows = conn.fetchall("SELECT body FROM notes WHERE body IS NOT NULL ORDER BY id")
        assert [row["body"] for row in rows] == [str(path), str(backslashed)]
    assert not pwned(db)


STACKED_TEXT = [
    f"SELECT 1; {SECOND}",
    f"SELECT 1;{SECOND};",
    f"SELECT 1;\n\n{SECOND}\n;\n",
    f"SELECT 1; /* c */ {SECOND}",
    f"SELECT 1; -- c\n{SECOND}",
    f"SELECT ';' AS a; {SECOND}",
    # `--` without a space after it is no comment on the server (it is minus minus)
    f"SELECT 1 --1; {SECOND}",
    # `#` comments to the end of the line on the server
    f"SELECT 1 # '\n; {SECOND}; -- '",
    f"SELECT 1 # x\r';\n AS a; {SECOND}; -- '",
    # a backslash escapes the quote after it (unless NO_BACKSLASH_ESCAPES)
    f"SELECT 'a\\' , '; {SECOND}; -- '",
    f'SELECT "a\\" , "; {SECOND}; -- "',
    # ...and does not when the session has NO_BACKSLASH_ESCAPES
    f"SELECT 'a\\'; {SECOND}; -- '",
    # backslashes never escape inside backticks
    f"SELECT 1 AS `a\\`; {SECOND}; -- `",
    # an executable comment is code, or a comment when its version is above the server's
    f"SELECT 1 /*! ; {SECOND} */",
    f"SELECT 1 /*M! ; {SECOND} */",
    f"SELECT 1 /*!99999 ' */ ; {SECOND}; -- '",
    f"SELECT 1 /* x */; {SECOND}",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sql", STACKED_TEXT, ids=range(len(STACKED_TEXT)))
def test_sql_text_with_a_second_statement_is_refused(db: Any, mode: str, sql: str) -> None:
    for call in ("execute", "fetchone", "fetchall", "fetchvalue"):
        with (
            pytest.raises(ValueError, match="one SQL statement per call"),
            db.transaction() as conn,
        ):
            set_mode(conn, mode)
            getattr(conn, call)(sql)
    with pytest.raises(ValueError, match="one SQL statement per call"), db.transaction() as conn:
        set_mode(conn, mode)
        conn.batch([("SELECT 2", None), (sql, None)])
    assert not pwned(db)


ONE_STATEMENT = [
    ("SELECT ';' AS a", ";"),
    ("SELECT 'it''s; fine' AS a", "it's; fine"),
    ('SELECT "x;y" AS a', "x;y"),
    ("SELECT 'a\\\\;b' AS a", None),  # the value depends on the mode
    ("SELECT 1 AS a -- ; not a statement", 1),
    ("SELECT 1 AS a # ; not a statement", 1),
    ("SELECT 1 AS a /* ; not a statement */", 1),
    ("SELECT 1 AS `a;b`", None),
    ("SELECT 1 AS a;", 1),
    ("SELECT 1 AS a ;  \n\t", 1),
    ("SELECT 1 AS a; -- done", 1),
    ("SELECT 1 AS a; /* done */ ;", 1),
    ("SELECT '%%;' AS a", "%;"),
    ("SELECT 5 %% 3 AS a", 2),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("sql", "expected"), ONE_STATEMENT, ids=range(len(ONE_STATEMENT)))
def test_one_statement_with_semicolons_inside_runs(
    db: Any, mode: str, sql: str, expected: Any
) -> None:
    with db.transaction() as conn:
        set_mode(conn, mode)
        row = conn.fetchone(sql)
        assert row is not None and len(row) == 1
        if expected is not None:
            assert next(iter(row.values())) == expected
        # the chassis's batches count one result per statement: a trailing `;` and comment
        # must not add one
        results = conn.batch([(sql, None), ("SELECT 2 AS b", None)])
        assert [result.rows for result in results] == [[row], [{"b": 2}]]
    assert not pwned(db)


PLACEHOLDER_OUTSIDE_CODE = [
    ("SELECT '%s' AS a", PAYLOAD),
    ('SELECT "%s" AS a', PAYLOAD),
    ("SELECT 'x%s' AS a", PAYLOAD),
    ("SELECT 1 AS `%s`", "x`" + PAYLOAD),
    ("SELECT 1 /* %s */", "*/" + PAYLOAD + "/*"),
    ("SELECT 1 -- %s", PAYLOAD),
    ("SELECT 1 # %s", PAYLOAD),
    ("SELECT '%(v)s' AS a", PAYLOAD),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("sql", "value"), PLACEHOLDER_OUTSIDE_CODE, ids=range(len(PLACEHOLDER_OUTSIDE_CODE))
)
def test_placeholder_inside_quotes_or_comments_is_refused(
    db: Any, mode: str, sql: str, value: str
) -> None:
    params = {"v": value} if "%(v)s" in sql else (value,)
    with (
        pytest.raises(ValueError, match="placeholder .* inside quotes or a comment"),
        db.transaction() as conn,
    ):
        set_mode(conn, mode)
        conn.fetchall(sql, params)
    assert not pwned(db)


@pytest.mark.parametrize("mode", MODES)
def test_nul_in_sql_text_is_refused(db: Any, mode: str) -> None:
    """Where a comment that holds a NUL ends is up to the server's lexer; no SQL text needs one."""
    for sql in (f"SELECT 1 /* x\0 */; {SECOND}", f"SELECT 1 # x\0; {SECOND}", "SELECT 1 \0"):
        with (
            pytest.raises(ValueError, match="one SQL statement per call, without NUL"),
            db.transaction() as conn,
        ):
            set_mode(conn, mode)
            conn.execute(sql)
    assert not pwned(db)


def test_positional_placeholders_with_a_mapping_are_refused(db: Any) -> None:
    """Python's `%` would format the whole mapping into the text for a `%s`."""
    with (
        pytest.raises(pymysql.err.ProgrammingError, match="use %\\(name\\)s"),
        db.transaction() as conn,
    ):
        conn.fetchall("SELECT %s AS a", {"v": "'" + PAYLOAD})
    with db.transaction() as conn:
        assert conn.fetchvalue("SELECT '%%s' AS a, %(v)s AS b", {"v": 1}) == "%s"
    assert not pwned(db)


CHARSET_CHANGES = [
    "SET NAMES gbk",
    "set names 'big5'",
    "SET CHARACTER SET gbk",
    "SET CHARSET sjis",
    "SET character_set_client = gbk",
    "SET SESSION character_set_client = gbk",
    "SET @@session.character_set_client = 'gbk'",
    "SET `character_set_client` = gbk",
    "/* c */ SET @x = 1, NAMES gbk",
]


@pytest.mark.parametrize("sql", CHARSET_CHANGES)
def test_the_client_character_set_cannot_be_changed(db: Any, sql: str) -> None:
    """Values are escaped for utf8mb4. Read as GBK, the last byte of 丿 (e4 b8 bf) and the
    backslash escaping the quote after it are one character, and the quote ends the literal;
    the setting would outlive the request on the reused connection."""
    with pytest.raises(ValueError, match="character set stays utf8mb4"), db.transaction() as conn:
        conn.execute(sql)
    value = "\u4e3f'" + PAYLOAD
    with db.transaction() as conn:
        assert conn.fetchvalue("SELECT @@SESSION.character_set_client") == "utf8mb4"
        assert conn.fetchvalue("SELECT %s", (value,)) == value
        conn.execute("SET @note = 'names and character sets'")  # other SETs stay allowed
    assert not pwned(db)


def test_other_conversions_than_s_are_refused(db: Any) -> None:
    for sql in ("SELECT %r", "SELECT %d", "SELECT %(v)r", "SELECT 5 % 3"):
        with pytest.raises(ValueError, match="only %s and %\\(name\\)s"), db.transaction() as conn:
            conn.fetchall(sql, {"v": 1} if "(v)" in sql else (1,))


@pytest.mark.parametrize("mode", MODES)
def test_batches_still_run_in_one_message(db: Any, mode: str) -> None:
    """The chassis's batching: several bound statements and the COMMIT in one round trip."""
    with db.transaction() as conn:
        set_mode(conn, mode)
        statements = [("INSERT INTO notes (body) VALUES (%s)", (value,)) for value in NASTY_TEXT]
        statements.append(("SELECT COUNT(*) AS n FROM notes", None))
        results = conn.batch(statements, commit=True)
        assert conn.committed
        assert results[-1].rows == [{"n": len(NASTY_TEXT)}]
        assert [result.rowcount for result in results[:-1]] == [1] * len(NASTY_TEXT)
    with db.transaction() as conn:
        rows = conn.fetchall("SELECT body FROM notes ORDER BY id")
        assert [row["body"] for row in rows] == NASTY_TEXT
    assert not pwned(db)


def test_a_batch_cannot_change_the_mode_its_values_were_escaped_for(db: Any) -> None:
    """A batch's values are escaped before its first statement runs: one that turns on
    NO_BACKSLASH_ESCAPES must not come before them."""
    turn_on = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')"
    value = "\\'" + PAYLOAD
    with (
        pytest.raises(ValueError, match="sets sql_mode must be the last of its batch"),
        db.transaction() as conn,
    ):
        conn.batch([(turn_on, None), ("SELECT %s", (value,))])
    with db.transaction() as conn:
        conn.batch([("INSERT INTO notes (body) VALUES (%s)", (value,)), (turn_on, None)])
        assert conn.raw.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
        conn.batch([("INSERT INTO notes (body) VALUES (%s)", (value,))], commit=True)
    with db.transaction() as conn:
        rows = conn.fetchall("SELECT body FROM notes ORDER BY id")
        assert [row["body"] for row in rows] == [value, value]
    assert not pwned(db)


def test_the_error_names_the_fix(db: Any) -> None:
    with pytest.raises(ValueError) as error, db.transaction() as conn:
        conn.execute(f"SELECT 1; {SECOND}")
    message = str(error.value)
    assert "pass values as parameters" in message and SECOND in message
    with pytest.raises(ValueError) as error, db.transaction() as conn:
        conn.execute("SELECT '%s'", ("x",))
    assert "write %s without quotes" in str(error.value)


def test_the_server_would_run_a_second_statement(mysql_database: str) -> None:
    """The premise: on the chassis's own connection the server runs whatever second statement
    reaches it, so the refusals above are what stands in the way."""
    database = db_module.Database(mysql_database)
    try:
        with database.transaction() as conn, conn.raw.cursor() as cursor:
            cursor.execute(f"SELECT 1; {SECOND}")
            while cursor.nextset():
                pass
        assert pwned(database)
    finally:
        database.close()


def test_sqlite_refuses_a_second_statement_too(tmp_path: Any) -> None:
    database = db_module.Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with (
            pytest.raises(ValueError, match="one SQL statement per call"),
            database.transaction() as conn,
        ):
            conn.execute(f"SELECT 1; {SECOND}")
        with database.transaction() as conn:
            for value in NASTY_TEXT:
                assert conn.fetchvalue("SELECT %s", (value,)) == value
            assert conn.fetchone("SELECT ';' AS a;") == {"a": ";"}
            assert not conn.fetchvalue("SELECT COUNT(*) FROM sqlite_master WHERE name = 'pwned'")
    finally:
        database.close()
