# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Schema migrations: numbered SQL files, applied once each, in order.

Two folders per engine, the runtime's first:

    shoestring_runtime/migrations/{mysql,sqlite}/0001_init.sql   -> "runtime/0001_init"
    migrations/{mysql,sqlite}/0001_orders.sql                    -> "app/0001_orders"

Each applied file is recorded in `schema_migrations` under its namespace (`runtime/` for this
library's own tables, `app/` for the service's), so `python -m <package> migrate` can run from
every deploy (or every cron run) and does nothing when nothing is new. A runtime upgrade that
brings a new numbered file gets it applied by the next `migrate`. Two processes may run it at
once: on MySQL they queue on a named lock (GET_LOCK); on SQLite each migration runs in one write
transaction (BEGIN IMMEDIATE) that re-checks whether another process applied it meanwhile.

Before it became this library the runtime was copied into every service as `<package>/chassis/`
and its migrations were recorded as `chassis/NNNN_name`. Those are the same files: `applied`
reads a `chassis/` record as its `runtime/` name, so nothing is applied twice, and `migrate`
renames the records to `runtime/` (see `adopt_chassis_records`).

A file holds statements separated by `;`. Use `--` comments (not `#`). MySQL commits after every
DDL statement, so keep one change per file there: a failure leaves the earlier statements applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .db import Connection, Database, retry_on_deadlock, split_statements, utcnow

# The runtime's own tables, shipped with it (the service's are under its root's migrations/).
RUNTIME_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
RUNTIME, APP = "runtime", "app"
# Where the runtime's migrations were recorded while it was copied into each service (as
# `<package>/chassis/`, before it became this library): the same files under an older name.
CHASSIS = "chassis"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_NAME = "schema_migrations"
LOCK_TIMEOUT_SECONDS = 600


class MigrationError(Exception):
    """A migration file is misnamed or failed to apply; the message says which and what to do."""


@dataclass(frozen=True)
class Migration:
    """One SQL file; `name` is how `schema_migrations` records it."""

    name: str  # "runtime/0001_init" | "app/0001_orders"
    path: Path

    def statements(self) -> list[str]:
        return split_statements(self.path.read_text(encoding="utf-8"))


def migration_folders(dialect_name: str, root: Path) -> list[tuple[str, Path]]:
    """(namespace, folder) pairs in the order they apply: the runtime's, then the app's."""
    return [
        (RUNTIME, RUNTIME_MIGRATIONS / dialect_name),
        (APP, root / "migrations" / dialect_name),
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
    """Names recorded in `schema_migrations` (empty before the first migration), a chassis-era
    `chassis/NNNN_name` read as the `runtime/NNNN_name` it is."""
    return {runtime_name(name) for name in _recorded(conn)}


def runtime_name(name: str) -> str:
    """The name a record has today: `chassis/0001_init` -> `runtime/0001_init`; others as they
    are."""
    namespace, _, rest = name.partition("/")
    return f"{RUNTIME}/{rest}" if namespace == CHASSIS else name


def adopt_chassis_records(db: Database) -> list[tuple[str, str]]:
    """Rename the `chassis/NNNN_name` records of a database that a chassis-era service migrated
    to `runtime/NNNN_name`; return the (old, new) pairs this call renamed.

    Safe when several `migrate` runs (two cron jobs, a deploy and a cron job) do it at once, and
    when the process dies half-way: on MySQL `migrate` holds the named lock around it; on SQLite
    the one write transaction (BEGIN IMMEDIATE) serializes it. Even without either, each record
    moves in one statement whose WHERE names the old record: a second run finds nothing left to
    move (its UPDATE waits for the first's row lock, then matches no row) and renames nothing, and
    a record already present under its new name only loses its old duplicate. Whatever moment a
    run stops at, `applied` reads either name as applied, so no migration runs twice.
    """
    with db.transaction() as conn:
        recorded = _recorded(conn)
        moved: list[tuple[str, str]] = []
        for old in sorted(name for name in recorded if runtime_name(name) != name):
            new = runtime_name(old)
            if new in recorded:
                conn.execute("DELETE FROM schema_migrations WHERE name = %s", (old,))
            elif conn.execute(
                "UPDATE schema_migrations SET name = %s WHERE name = %s", (new, old)
            ):
                moved.append((old, new))
    return moved


def chassis_records(db: Database) -> list[str]:
    """The `chassis/NNNN_name` records that `migrate` will rename (read-only, for --dry-run)."""
    with db.transaction(readonly=True) as conn:
        return sorted(name for name in _recorded(conn) if runtime_name(name) != name)


def _recorded(conn: Connection) -> set[str]:
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
    on_renamed: Callable[[str, str], None] | None = None,
) -> list[Migration]:
    """Apply every pending migration in order; return the ones this call applied.

    Records of a chassis-era database move to the `runtime/` namespace first (`on_renamed` hears
    of each)."""
    migrations = discover(db.dialect.name, root)
    done: list[Migration] = []

    def apply_all() -> None:
        for old, new in retry_on_deadlock(lambda: adopt_chassis_records(db), db.dialect):
            if on_renamed:
                on_renamed(old, new)
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
