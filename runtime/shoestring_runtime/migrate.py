"""Schema migrations: numbered SQL files, applied once each, in order.

Two folders per engine, chassis first:

    <package>/chassis/migrations/{mysql,sqlite}/0001_init.sql   -> "chassis/0001_init"
    migrations/{mysql,sqlite}/0001_orders.sql                   -> "app/0001_orders"

Each applied file is recorded in `schema_migrations`, so `python -m <package> migrate` can run from
every deploy (or every cron run) and does nothing when nothing is new. Two processes may run it at
once: on MySQL they queue on a named lock (GET_LOCK); on SQLite each migration runs in one write
transaction (BEGIN IMMEDIATE) that re-checks whether another process applied it meanwhile.

A file holds statements separated by `;`. Use `--` comments (not `#`). MySQL commits after every
DDL statement, so keep one change per file there: a failure leaves the earlier statements applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .db import Connection, Database, retry_on_deadlock, split_statements, utcnow

# The chassis's own tables, shipped with it (the service's are under its root's migrations/).
CHASSIS_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_NAME = "schema_migrations"
LOCK_TIMEOUT_SECONDS = 600


class MigrationError(Exception):
    """A migration file is misnamed or failed to apply; the message says which and what to do."""


@dataclass(frozen=True)
class Migration:
    """One SQL file; `name` is how `schema_migrations` records it."""

    name: str  # "chassis/0001_init" | "app/0001_orders"
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))


def migration_folders(dialect_name: str, root: Path) -> list[tuple[str, Path]]:
    """(prefix, folder) pairs in the order they apply: chassis first, then the app's."""
    return [
        ("chassis", CHASSIS_MIGRATIONS / dialect_name),
        ("app", root / "migrations" / dialect_name),
    ]


def discover(dialect_name: str, root: Path) -> list[Migration]:
    """Every migration for this engine, in the order they apply; `root` is the service's
    folder."""
    found: list[Migration] = []
    for prefix, folder in migration_folders(dialect_name, root):
        if not folder.is_dir():
            continue
        numbers: dict[str, Path] = {}
        for path in sorted(folder.glob("*.sql")):
            match = FILE_NAME.match(path.name)
            if not match:
                raise MigrationError(
                    f"{path}: migration files are named NNNN_lowercase_words.sql "
                    "(e.g. 0002_add_orders.sql); rename it"
                )
            if match.group(1) in numbers:
                raise MigrationError(
                    f"{path} and {numbers[match.group(1)]} share the number {match.group(1)}: "
                    "give the newer one the next free number"
                )
            numbers[match.group(1)] = path
            found.append(Migration(f"{prefix}/{path.stem}", path))
    return found


def applied(conn: Connection) -> set[str]:
    """Names recorded in `schema_migrations` (empty before the first migration)."""
    if conn.fetchone(conn.dialect.table_exists_sql(), ("schema_migrations",)) is None:
        return set()
    return {row["name"] for row in conn.fetchall("SELECT name FROM schema_migrations")}


def pending(db: Database, root: Path) -> list[Migration]:
    """Migrations not applied yet, in order."""
    with db.transaction(readonly=True) as conn:
        done = applied(conn)
    return [m for m in discover(db.dialect.name, root) if m.name not in done]


def migrate(
    db: Database,
    root: Path,
    on_applied: Callable[[Migration], None] | None = None,
) -> list[Migration]:
    """Apply every pending migration in order; return the ones this call applied."""
    migrations = discover(db.dialect.name, root)
    done: list[Migration] = []

    def apply_all() -> None:
        for migration in migrations:
            # SQLite: one BEGIN IMMEDIATE transaction per file holds the write lock, so the check
            # and the apply cannot interleave with another process's. MySQL: the named lock
            # taken around this loop does the same job, since its DDL cannot be rolled back.
            applied_now = retry_on_deadlock(lambda m=migration: _apply(db, m), db.dialect)
            if applied_now:
                done.append(migration)
                if on_applied:
                    on_applied(migration)

    with db.named_lock(LOCK_NAME, LOCK_TIMEOUT_SECONDS):
        apply_all()
    return done


def _apply(db: Database, migration: Migration) -> bool:
    statements = migration.statements()
    with db.transaction() as conn:
        if migration.name in applied(conn):
            return False  # another process got there first
        for number, statement in enumerate(statements, start=1):
            try:
                # Migration files are plain SQL, not format strings: a `%` is just a `%`.
                conn.execute(statement.replace("%", "%%"))
            except Exception as exc:
                if db.dialect.is_retryable(exc):
                    raise
                raise MigrationError(_failure(db, migration, number, exc)) from exc
        conn.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
            (migration.name, utcnow()),
        )
    return True


def _failure(db: Database, migration: Migration, number: int, exc: Exception) -> str:
    message = f"{migration.path}: statement {number} failed: {exc}."
    if db.dialect.transactional_ddl or number == 1:
        return f"{message} Nothing of it was applied; fix the file and run migrate again."
    return (
        f"{message} MySQL commits each DDL statement, so statements 1-{number - 1} of this file "
        "are applied and it is not recorded: undo them by hand (or make them idempotent), fix "
        "the file and run migrate again."
    )
