"""`shoestring upgrade`: a service of the chassis era moves to the runtime library.

The service is examples/orders as generated at 500bad8 (its runtime copied in as
`orders/chassis/`), used as its developer did: a handler with business logic, a migration of
their own, rows in the database from the old runtime. The upgrade keeps the user's files, their
data and their work in the queue; it removes the chassis only when it is as the template
shipped it, and otherwise changes nothing at all.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import shoestring_runtime
from conftest import REPO, run_shoestring
from shoestring.upgrade import RUNTIME_EXPORTS, rewrite_chassis_imports, shipped_chassis
from shoestring_runtime.db import Database
from support import free_port, run_service_suite, start_server, stop_server, tree
from test_runtime_upgrade import chassis_era_service, fill, records, run, snapshot, status

OLD_IMPORT = "from ..chassis.context import Context\n"
NEW_IMPORT = "from shoestring_runtime import Context\n"
# The user's business logic: each captured payment leaves a note, in the user's own table.
HANDLER_LOGIC = '''

def handle(ctx: Context, event: dict[str, Any]) -> None:
    """Note the payment against its order."""
    ctx.db.execute(
        "INSERT INTO payment_notes (order_id, payment_id) VALUES (%s, %s)",
        (event["order_id"], event["payment_id"]),
    )
'''
MIGRATIONS = {
    "sqlite": "CREATE TABLE payment_notes (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " order_id VARCHAR(36) NOT NULL, payment_id VARCHAR(36) NOT NULL);\n",
    "mysql": "CREATE TABLE payment_notes (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
    " order_id VARCHAR(36) NOT NULL, payment_id VARCHAR(36) NOT NULL);\n",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


def commit_all(root: Path) -> None:
    """Put the service under git as its developer keeps it: everything committed."""
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the service as it is")


def user_service(where: Path) -> Path:
    """The chassis-era orders service with the user's handler, migrations and .env, committed."""
    root = chassis_era_service(where)
    handler = root / "orders" / "handlers" / "on_payment_captured_v1.py"
    text = handler.read_text()
    handler.write_text(text[: text.index("\n\ndef handle")] + HANDLER_LOGIC)
    for engine, sql in MIGRATIONS.items():
        (root / "migrations" / engine / "0001_payment_notes.sql").write_text(sql)
    (root / ".env").write_text("# the developer's settings\nLOG_LEVEL=WARNING\n")
    commit_all(root)
    return root


def notes(db: Database) -> list[dict]:
    with db.transaction(readonly=True) as conn:
        return [dict(row) for row in conn.fetchall(
            "SELECT order_id, payment_id FROM payment_notes ORDER BY id")]


def test_the_table_has_every_file_of_the_chassis_era_chassis(tmp_path: Path):
    chassis = chassis_era_service(tmp_path) / "orders" / "chassis"
    shipped = shipped_chassis()
    files = [file for file in chassis.rglob("*") if file.is_file()]
    assert len(files) > 40
    for file in files:
        name = file.relative_to(chassis).as_posix()
        assert hashlib.sha256(file.read_bytes()).hexdigest() in shipped.get(name, ()), name


def test_the_table_is_what_the_history_says():
    result = subprocess.run(
        [sys.executable, "scripts/template_history.py", "--check"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chassis_imports_become_imports_of_the_runtime():
    assert RUNTIME_EXPORTS == set(shoestring_runtime.__all__)
    source = (
        "from ..chassis.context import Context\n"
        "from ..chassis import Problem  # raised below\n"
        "from orders.chassis.db import Database\n"
        "    from ...chassis.problems import (\n        Problem,\n    )\n"
        "from .models import chassis_free\n"
    )
    assert rewrite_chassis_imports(source, "orders") == (
        "from shoestring_runtime import Context\n"
        "from shoestring_runtime import Problem  # raised below\n"
        "from shoestring_runtime.db import Database\n"
        "    from shoestring_runtime import (\n        Problem,\n    )\n"
        "from .models import chassis_free\n"
    )


def test_a_changed_or_added_chassis_file_stops_the_upgrade_and_nothing_changes(tmp_path: Path):
    root = chassis_era_service(tmp_path)
    db_module = root / "orders" / "chassis" / "db.py"
    db_module.write_text(db_module.read_text().replace("\n", "\n# tuned for our host\n", 1))
    (root / "orders" / "chassis" / "extra.py").write_text("HELPER = 1\n")
    commit_all(root)
    before = tree(root)

    refused = run_shoestring("upgrade", str(root), check=False)

    assert refused.returncode == 1
    listed = [line.split(":")[0] for line in refused.stderr.splitlines()
              if line.startswith("orders/")]
    assert listed == ["orders/chassis/db.py", "orders/chassis/extra.py"]
    assert "restore the file from version control" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert tree(root) == before


def test_uncommitted_changes_stop_the_upgrade_and_nothing_changes(tmp_path: Path):
    root = chassis_era_service(tmp_path)
    refused = run_shoestring("upgrade", str(root), check=False)  # not in git at all
    assert refused.returncode == 1 and "git init" in refused.stderr
    commit_all(root)
    (root / "README.md").write_text("ours\n")
    before = tree(root)
    refused = run_shoestring("upgrade", str(root), check=False)
    assert refused.returncode == 1
    assert "uncommitted changes (README.md)" in refused.stderr
    assert tree(root) == before


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orders.db'}"
    return request.getfixturevalue("mysql_database")


@pytest.mark.slow  # the old and the new service's commands, the service's suite on SQLite
def test_an_upgraded_service_keeps_the_users_files_and_data_and_runs_on_the_runtime(
    database_url: str, tmp_path: Path
):
    root = user_service(tmp_path)
    db = Database(database_url)
    run(root, database_url, "migrate")
    chassis_records = records(db)
    assert "app/0001_payment_notes" in chassis_records
    fill(db)
    with db.transaction() as conn:
        conn.execute("INSERT INTO payment_notes (order_id, payment_id) VALUES ('o-0', 'p-0')")
    rows = snapshot(db)
    handler = (root / "orders" / "handlers" / "on_payment_captured_v1.py").read_text()
    assert OLD_IMPORT in handler
    users = tree(root)
    kept = ["service.yaml", ".env", "migrations/sqlite/0001_payment_notes.sql",
            "migrations/mysql/0001_payment_notes.sql"]
    kept += [path for path in users if path.startswith("var/")]

    upgraded = run_shoestring("upgrade", str(root))

    assert "rewrote chassis imports in: orders/handlers/on_payment_captured_v1.py" in (
        upgraded.stdout
    )
    assert "created: orders/app.py" in upgraded.stdout
    after = tree(root)
    for path in kept:
        assert after[path] == users[path], path
    assert (root / "orders" / "handlers" / "on_payment_captured_v1.py").read_text() == (
        handler.replace(OLD_IMPORT, NEW_IMPORT)
    )
    assert not (root / "orders" / "chassis").exists()
    assert (root / "orders" / "app.py").is_file()
    assert "chassis" not in (root / "orders" / "__init__.py").read_text()
    assert "shoestring-runtime==" in (root / "requirements.txt").read_text()
    # The skeleton is today's: the same files as the service `shoestring new` makes now.
    today = tree(REPO / "examples" / "orders")
    for path in ("passenger_wsgi.py", "orders/__main__.py", "conftest.py", ".htaccess",
                 ".copier-answers.yml", "orders/_generated/service.json"):
        assert after[path] == today[path], path
    run_shoestring("generate", "--check", str(root))

    # The database: nothing applied twice, the records adopted, every row kept.
    migrated = run(root, database_url, "migrate").stdout
    assert "applied app/" not in migrated
    assert set(records(db)) >= {
        name.replace("chassis/", "runtime/", 1) for name in chassis_records
    }
    assert snapshot(db) == rows
    assert notes(db) == [{"order_id": "o-0", "payment_id": "p-0"}]

    # The user's handler, on the runtime, takes the message the old runtime queued.
    run(root, database_url, "worker", "--once")
    assert status(db, "m-queued") == ("DONE", 0)
    assert notes(db)[1] == {"order_id": "5b0c3c4e-5c1e-4a43-8f0b-2a4f3c9d1e01",
                            "payment_id": "7c1d4a5e-1b7e-4c56-9d5b-0b8a1f6f1a01"}

    # It serves HTTP.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {"DATABASE_URL": database_url, "PAYMENTS_URL": "http://127.0.0.1:9",
                   "SERVICE_KEYS_DIR": str(root / "var" / "keys"), "PATH": "/usr/bin:/bin"}
    server = start_server([sys.executable, "-m", "orders", "serve", "--port", str(port)],
                          cwd=root, env=environment, name="orders", url=url)
    try:
        ready = requests.get(url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        anonymous = requests.get(url + "/v1/orders", timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["Content-Type"] == "application/problem+json"
    finally:
        stop_server(server)

    if database_url.startswith("sqlite"):
        run_service_suite(root)

    # A second run: nothing to do, nothing changed.
    shutil.rmtree(root / ".pytest_cache", ignore_errors=True)
    settled = tree(root)
    again = run_shoestring("upgrade", str(root))
    assert "nothing to do" in again.stdout
    assert tree(root) == settled
