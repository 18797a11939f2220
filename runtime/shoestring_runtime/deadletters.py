# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Dead letters: FAILED rows of the queue and the outbox, and what an operator does with them.

    python -m <package> dead-letters list [--table queue|outbox] [--type T] [--older-than 2h]
    python -m <package> dead-letters show 42 [--table outbox]
    python -m <package> dead-letters requeue 42 43 | --all [--type T] [--older-than 1d]
    python -m <package> dead-letters purge 42 | --all [--type T] [--older-than 30d]

A row is dead when its handler (or its delivery) failed on every attempt its retry policy allows,
or at once when it can never succeed as it is (no handler, data that breaks the schema). Its
`last_error` holds the reason with the traceback, `attempt_log` one line per attempt. Requeueing
makes it NEW again with its attempts reset (after the cause is fixed); purging deletes it.
An age is how long ago the row failed: `older-than 2h` means it failed more than two hours ago.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .claim import TABLES, Table
from .db import Connection, Database, retry_on_deadlock

BATCH = 500
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """`90s`, `15m`, `2h`, `7d`, `1w` (or plain seconds) -> seconds."""
    match = _AGE.match(text or "")
    if not match:
        raise ValueError(f"age {text!r}: write a number with s, m, h, d or w, e.g. 30m or 7d")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


def tables(name: str | None) -> list[Table]:
    """The tables named by --table: `queue`, `outbox`, or both when None/`all`."""
    if name in (None, "all"):
        return list(TABLES.values())
    if name not in TABLES:
        raise ValueError(f"table {name!r}: use queue, outbox or all")
    return [TABLES[name]]


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on."""

    ids: Sequence[int] = ()
    message_type: str | None = None
    older_than_seconds: float | None = None

    def where(self, conn: Connection) -> tuple[str, list[Any]]:
        clauses, params = ["status = 'FAILED'"], []
        if self.ids:
            clauses.append(f"id IN ({', '.join(['%s'] * len(self.ids))})")
            params.extend(self.ids)
        if self.message_type:
            clauses.append("message_type = %s")
            params.append(self.message_type)
        if self.older_than_seconds is not None:
            # available_at of a FAILED row is when it failed.
            clauses.append(f"available_at < {conn.dialect.now_plus_seconds_sql()}")
            params.append(-self.older_than_seconds)
        return " AND ".join(clauses), params


def list_dead(
    db: Database, table_names: list[Table], selection: Selection, limit: int = 100
) -> list[dict[str, Any]]:
    """Dead letters, most recently failed first, with the first line of their error."""
    found: list[dict[str, Any]] = []
    with db.transaction(readonly=True) as conn:
        for table in table_names:
            where, params = selection.where(conn)
            rows = conn.fetchall(
                f"SELECT id, message_id, message_type, version, {table.peer_column} AS peer, "
                f"retry_count, available_at AS failed_at, last_error FROM {table.name} "
                f"WHERE {where} ORDER BY available_at DESC LIMIT %s",
                (*params, limit),
            )
            for row in rows:
                row["table"] = "queue" if table.name == "message_queue" else table.name
                row["error"] = _last_line(row.pop("last_error"))
                found.append(row)
    found.sort(key=lambda row: row["failed_at"], reverse=True)
    return found[:limit]


def show(db: Database, table: Table, row_id: int) -> dict[str, Any] | None:
    """One row of `table` (any status) with its envelope and attempt log parsed."""
    with db.transaction(readonly=True) as conn:
        row = conn.fetchone(f"SELECT * FROM {table.name} WHERE id = %s", (row_id,))
    if row is None:
        return None
    for column in ("payload", "attempt_log"):
        if isinstance(row.get(column), (str, bytes)):
            row[column] = json.loads(row[column])
    return row


def requeue(db: Database, table_names: list[Table], selection: Selection) -> int:
    """Make the selected dead letters NEW again with their attempts reset; return how many."""

    def change(conn: Connection, table: Table, ids: list[int]) -> int:
        marks = ", ".join(["%s"] * len(ids))
        now = conn.dialect.now_sql
        # The status check again: only rows that are still dead letters are touched.
        return conn.execute(
            f"UPDATE {table.name} SET status = 'NEW', retry_count = 0, available_at = {now}, "
            f"lease_owner = NULL, lease_expires_at = NULL, updated_at = {now} "
            f"WHERE id IN ({marks}) AND status = 'FAILED'",
            ids,
        )

    return _in_batches(db, table_names, selection, change)


def purge(db: Database, table_names: list[Table], selection: Selection) -> int:
    """Delete the selected dead letters; return how many."""

    def delete(conn: Connection, table: Table, ids: list[int]) -> int:
        marks = ", ".join(["%s"] * len(ids))
        return conn.execute(
            f"DELETE FROM {table.name} WHERE id IN ({marks}) AND status = 'FAILED'", ids
        )

    return _in_batches(db, table_names, selection, delete)


def _in_batches(db: Database, table_names: list[Table], selection: Selection, action: Any) -> int:
    """Apply `action(conn, table, ids)` to the selected rows, BATCH rows per transaction."""
    total = 0
    for table in table_names:
        while True:

            def one_batch(table: Table = table) -> int:
                with db.transaction() as conn:
                    where, params = selection.where(conn)
                    rows = conn.fetchall(
                        f"SELECT id FROM {table.name} WHERE {where} LIMIT %s", (*params, BATCH)
                    )
                    ids = [int(row["id"]) for row in rows]
                    return action(conn, table, ids) if ids else 0

            changed = retry_on_deadlock(one_batch, db.dialect)
            total += changed
            if changed < BATCH:
                break
    return total


def format_list(rows: list[dict[str, Any]]) -> str:
    """Dead letters as a plain-text table for the terminal."""
    if not rows:
        return "no dead letters"
    header = ("TABLE", "ID", "TYPE", "FROM/TO", "ATTEMPTS", "FAILED AT (UTC)", "ERROR")
    lines = [
        (
            row["table"],
            str(row["id"]),
            f"{row['message_type']} v{row['version']}",
            row["peer"],
            str(row["retry_count"]),
            str(row["failed_at"])[:19],
            row["error"][:80],
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1]
        for line in [header, *lines]
    )


def format_row(table: Table, row: dict[str, Any]) -> str:
    """One row in full: columns, the envelope, the attempt log and the last error."""
    lines = [f"{table.name} #{row['id']}"]
    for column in (
        "message_id",
        table.peer_column,
        "message_type",
        "version",
        "status",
        "retry_count",
        "available_at",
        "lease_owner",
        "lease_expires_at",
        "created_at",
        "updated_at",
    ):
        lines.append(f"  {column}: {row.get(column)}")
    lines.append("  payload:")
    lines.extend("    " + line for line in json.dumps(row["payload"], indent=2).splitlines())
    lines.append("  attempts:")
    for entry in row.get("attempt_log") or []:
        lines.append(
            f"    #{entry.get('attempt')} at {entry.get('at')} by {entry.get('worker')}: "
            f"{entry.get('error')}"
        )
    if row.get("last_error"):
        lines.append("  last error:")
        lines.extend("    " + line for line in str(row["last_error"]).splitlines())
    return "\n".join(lines)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
