"""Template upgrades with `copier update`, the way a service's developer runs it.

A throwaway git repository holds a copy of the template (copier.yml + template/) tagged v1; a
service is copied from it with the copier command and committed; its developer writes a handler,
a migration of their own, and grows the spec. The template then changes its wiring (passenger_wsgi.py) and is
tagged v2, and `copier update --trust --defaults` brings v2 into the service:

- the user's handler, migration and spec are untouched, the wiring is v2's;
- the generator task re-ran (it stubbed the endpoint the developer added without generating);
- no conflict markers and no .rej files; `shoestring generate --check` is clean;
- the service's own tests pass.

When the developer edited a line of the wiring that v2 changes too, Copier 9 writes the conflict
inline (its default `--conflict inline`), between `<<<<<<< before updating` and
`>>>>>>> after updating`; resolving it is editing the file and committing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import GIT_ENV

REPO = Path(__file__).resolve().parents[1]
WIRING = "template/passenger_wsgi.py.jinja"

pytestmark = pytest.mark.slow

GREETING = '''"""GET /v1/greeting: greets the caller by name, politely."""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    return {"greeting": _polite(data.get("name") or "you")}


def _polite(name: str) -> str:
    return f"Good day, {name}."
'''
MIGRATION = (
    "CREATE TABLE greetings (\n"
    "  name VARCHAR(100) NOT NULL PRIMARY KEY,\n"
    "  times INT NOT NULL\n"
    ");\n"
)
FAREWELL = (
    "  - name: get_farewell\n"
    "    method: GET\n"
    "    path: /v1/farewell\n"
    "    scopes: [orders:read]\n"
    "    response:\n"
    "      farewell: str\n"
)


def run(cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, check=False,
        env={**os.environ, **GIT_ENV}, timeout=600,
    )
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", *args).stdout


def copier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "copier", *args)


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A git repository holding the template as it is now, tagged v1."""
    source = tmp_path / "template-repo"
    source.mkdir()
    shutil.copy2(REPO / "copier.yml", source / "copier.yml")
    shutil.copytree(REPO / "template", source / "template",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*_cache"))
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "template v1")
    git(source, "tag", "v1")
    return source


@pytest.fixture
def service(tmp_path: Path, template: Path) -> Path:
    """A service copied from v1 and committed, with its developer's first work committed too."""
    project = tmp_path / "orders"
    copier(tmp_path, "copy", "--trust", "--defaults", "--vcs-ref", "v1",
           "--data", "service_name=orders", str(template), str(project))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "orders, from the template v1")

    (project / "orders/handlers/get_greeting.py").write_text(GREETING)
    for dialect in ("sqlite", "mysql"):
        (project / "migrations" / dialect / "0001_greetings.sql").write_text(MIGRATION)
    # A new endpoint in the spec, not generated yet: the update's task must generate it.
    spec = project / "service.yaml"
    spec.write_text(spec.read_text() + FAREWELL)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "business logic")
    return project


def release_v2(template: Path, change) -> None:
    wiring = template / WIRING
    wiring.write_text(change(wiring.read_text()))
    git(template, "commit", "-q", "-am", "template v2: a fix of the wiring")
    git(template, "tag", "v2")


def files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if ".git" not in p.parts and p.is_file()]


def test_update_brings_the_skeleton_and_keeps_the_users_work(
    template: Path, service: Path
) -> None:
    mine = {path: path.read_bytes() for path in [
        service / "orders/handlers/get_greeting.py",
        service / "migrations/sqlite/0001_greetings.sql",
        service / "migrations/mysql/0001_greetings.sql",
        service / "service.yaml",
    ]}
    release_v2(template, lambda text: text + "\n# Fixed in v2: the log names the application root.\n")

    copier(service, "update", "--trust", "--defaults")

    wiring = (service / "passenger_wsgi.py").read_text()
    assert wiring.endswith("# Fixed in v2: the log names the application root.\n")
    for path, content in mine.items():
        assert path.read_bytes() == content, f"{path} changed"
    assert (service / "orders/handlers/get_farewell.py").is_file()  # the generator task ran
    assert "get_farewell" in (service / "orders/_generated/registry.py").read_text()
    for path in files(service):
        assert not path.name.endswith(".rej"), path
        content = path.read_bytes()
        assert b"<<<<<<<" not in content and b">>>>>>>" not in content, path
    answers = (service / ".copier-answers.yml").read_text()
    assert "_commit: v2" in answers
    run(service, sys.executable, "-m", "shoestring", "generate", "--check", ".")

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"],
        cwd=service, capture_output=True, text=True, timeout=900, check=False,
        env={k: v for k, v in os.environ.items() if k != "TEST_DATABASE_URL"},
    )
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-3000:]


def test_a_skeleton_line_both_sides_changed_becomes_an_inline_conflict(
    template: Path, service: Path
) -> None:
    wiring = service / "passenger_wsgi.py"
    original = wiring.read_text()
    first = original.splitlines()[0]
    assert first.startswith('"""Entry point for Phusion Passenger')

    def edited(text: str, how: str) -> str:
        return text.replace(first, first.replace("Entry point", f"Entry point ({how})"))

    wiring.write_text(edited(original, "patched locally"))
    git(service, "commit", "-q", "-am", "a local patch of the wiring")
    release_v2(template, lambda text: edited(text, "v2"))

    copier(service, "update", "--trust", "--defaults")

    text = wiring.read_text()
    assert "<<<<<<< before updating" in text and ">>>>>>> after updating" in text
    assert "Entry point (patched locally)" in text and "Entry point (v2)" in text
    assert not list(service.rglob("*.rej"))
    # Resolving is editing the file: keep one side (here v2's), drop the markers, commit.
    before, conflict = text.split("<<<<<<< before updating\n", 1)
    after = conflict.split(">>>>>>> after updating\n", 1)[1]
    theirs = conflict.split("=======\n", 1)[1].split(">>>>>>> after updating\n", 1)[0]
    wiring.write_text(before + theirs + after)
    assert wiring.read_text() == edited(original, "v2")
    git(service, "commit", "-q", "-am", "take v2's passenger_wsgi.py")
    run(service, sys.executable, "-m", "shoestring", "generate", "--check", ".")
    run(service, sys.executable, "-m", "ruff", "check", "--no-cache", "passenger_wsgi.py")
