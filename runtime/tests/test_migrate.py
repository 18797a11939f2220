"""Migrations: in order, the runtime's first, recorded once, safe to run again or at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shoestring_runtime.db import Database
from shoestring_runtime.migrate import (
    MigrationError,
    discover,
    migrate,
    pending,
    split_statements,
)

from .shop import SERVICE


def recorded(db: Database) -> list[str]:
    with db.transaction() as conn:
        rows = conn.fetchall("SELECT name FROM schema_migrations ORDER BY name")
    return [row["name"] for row in rows]


def test_migrate_applies_everything_in_order_and_records_it(fresh_database_url):
    db = Database(fresh_database_url)
    expected = discover(db.dialect.name, SERVICE.root)
    applied = migrate(db, SERVICE.root)
    assert [m.name for m in applied] == [m.name for m in expected]
    assert applied[0].name == "runtime/0001_init"
    assert sorted(recorded(db)) == sorted(m.name for m in expected)
    assert pending(db, SERVICE.root) == []


def test_migrate_again_does_nothing(fresh_database_url):
    db = Database(fresh_database_url)
    migrate(db, SERVICE.root)
    before = recorded(db)
    assert migrate(db, SERVICE.root) == []
    assert recorded(db) == before


def test_app_migrations_run_after_the_runtime_ones(fresh_database_url, tmp_path):
    db = Database(fresh_database_url)
    folder = tmp_path / "migrations" / db.dialect.name
    folder.mkdir(parents=True)
    (folder / "0001_notes.sql").write_text(
        "-- a note; with a semicolon in a comment\n"
        "CREATE TABLE notes (id INTEGER NOT NULL PRIMARY KEY, body VARCHAR(100) NOT NULL);\n"
        "INSERT INTO notes (id, body) VALUES (1, '100% done; really');\n"
    )
    applied = [m.name for m in migrate(db, tmp_path)]
    assert applied[-1] == "app/0001_notes"
    assert all(name.startswith("runtime/") for name in applied[:-1])
    with db.transaction() as conn:
        assert conn.fetchvalue("SELECT body FROM notes WHERE id = 1") == "100% done; really"


def test_a_failing_migration_is_not_recorded_and_says_which_statement(fresh_database_url, tmp_path):
    db = Database(fresh_database_url)
    folder = tmp_path / "migrations" / db.dialect.name
    folder.mkdir(parents=True)
    (folder / "0001_broken.sql").write_text("CREATE TABLE broken (id INTEGER;\n")
    with pytest.raises(MigrationError, match=r"0001_broken.sql: statement 1 failed"):
        migrate(db, tmp_path)
    assert "app/0001_broken" not in recorded(db)


def test_a_misnamed_migration_file_is_refused(tmp_path):
    folder = tmp_path / "migrations" / "sqlite"
    folder.mkdir(parents=True)
    (folder / "add-orders.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lowercase_words.sql"):
        discover("sqlite", tmp_path)


def test_statements_split_on_semicolons_outside_quotes_and_triggers():
    script = """
        CREATE TABLE a (x TEXT DEFAULT ';');  -- trailing comment
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = 'y';
        END;
        -- only a comment
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].endswith("END;")


def test_two_migrate_processes_at_once_apply_each_migration_once(fresh_database_url):
    env = {**os.environ, "DATABASE_URL": fresh_database_url}
    command = [sys.executable, "-m", SERVICE.package, "migrate"]
    runs = [
        subprocess.Popen(
            command, cwd=SERVICE.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_out, err) in zip(runs, outputs):
        assert run.returncode == 0, err.decode()
    applied_lines = [
        line
        for out, _err in outputs
        for line in out.decode().splitlines()
        if line.startswith("applied ")
    ]
    db = Database(fresh_database_url)
    names = recorded(db)
    assert len(applied_lines) == len(names) == len(discover(db.dialect.name, SERVICE.root))
