"""The Copier template used directly (`copier copy`, `copier update`), as pytest-copie drives it.

The template is rendered from a copy of copier.yml and template/ outside this repository's git
checkout: Copier renders a git-tracked local template from a clone, and this repository's
uncommitted work would otherwise be invisible to the tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from copier import run_update
from shoestring.manifest import MANIFEST_PATH
from support import GIT_ENV

REPO = Path(__file__).resolve().parents[1]
# Jinja that escaped rendering: an expression or a statement tag. (A bare `{{` is legal in a
# Python f-string, so only the shapes Jinja gives meaning to count.)
UNRENDERED = re.compile(rb"\{\{-?\s*[A-Za-z_][\w.]*\s*(\|[^}]*)?-?\}\}|\{%-?\s*[a-z]+\b")

MATRIX: dict[str, dict[str, Any]] = {
    "sqlite-default": {"service_name": "orders"},
    "mysql": {"service_name": "orders", "database": "mysql"},
    "dashed-name": {"service_name": "order-book", "description": 'Books "orders": all of them.'},
    "custom-package": {"service_name": "orders", "package": "shop_orders"},
}


def _snapshot(destination: Path) -> Path:
    destination.mkdir(parents=True)
    shutil.copy2(REPO / "copier.yml", destination / "copier.yml")
    shutil.copytree(
        REPO / "template",
        destination / "template",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache"),
    )
    return destination


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _snapshot(tmp_path_factory.mktemp("template") / "shoestring")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def shoestring(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoestring", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def files(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*")) if ".git" not in path.parts]


@pytest.mark.parametrize("answers", MATRIX.values(), ids=MATRIX.keys())
def test_template_renders_a_complete_generated_service(
    copie, template: Path, answers: dict[str, Any]
) -> None:
    result = copie.copy(extra_answers=answers, template_dir=template)
    assert result.exception is None, result.exception
    project: Path = result.project_dir
    package = answers.get("package", answers["service_name"].replace("-", "_"))

    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert recorded["package"] == package
    assert recorded["database"] == answers.get("database", "sqlite")

    for path in files(project):
        relative = path.relative_to(project).as_posix()
        assert "{{" not in relative and not relative.endswith(".jinja"), relative
        if path.is_file():
            assert not UNRENDERED.search(path.read_bytes()), f"unrendered Jinja in {relative}"

    # The post-copy task ran the generator on the template's starter spec.
    assert (project / MANIFEST_PATH).is_file()
    assert (project / package / "_generated" / "registry.py").is_file()
    assert (project / package / "handlers" / "get_greeting.py").is_file()
    check = shoestring(project, "generate", "--check", ".")
    assert check.returncode == 0, check.stdout + check.stderr

    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # What the generator writes is also exactly as `ruff format` lays it out.
    layout = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--no-cache",
            "--check",
            "--diff",
            f"{package}/_generated",
            f"{package}/handlers",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert layout.returncode == 0, layout.stdout + layout.stderr


def test_template_refuses_a_service_name_that_is_no_name(copie, template: Path) -> None:
    result = copie.copy(extra_answers={"service_name": "Orders Service"}, template_dir=template)
    assert result.exception is not None
    assert "letters, digits, dashes and underscores" in str(result.exception)


def test_copier_update_merges_the_template_and_leaves_spec_derived_files_to_the_generator(
    copie, tmp_path: Path
) -> None:
    # A template repository with a release, v0.1.0.
    source = _snapshot(tmp_path / "shoestring")
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "template v0.1.0")
    git(source, "tag", "v0.1.0")

    result = copie.copy(
        extra_answers={"service_name": "orders"}, template_dir=source, vcs_ref="v0.1.0"
    )
    assert result.exception is None, result.exception
    project: Path = result.project_dir
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "created from the template")

    # The user writes business logic, grows the spec, regenerates, commits.
    handler = project / "orders/handlers/get_greeting.py"
    handler.write_text(handler.read_text().replace("    return {", "    # mine\n    return {"))
    spec = project / "service.yaml"
    spec.write_text(
        spec.read_text() + "  - name: get_farewell\n"
        "    method: GET\n"
        "    path: /v1/farewell\n"
        "    scopes: [orders:read]\n"
        "    response:\n"
        "      farewell: str\n"
    )
    generated = shoestring(project, "generate", ".")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "business logic")

    # The template improves its wiring and its starter spec, and releases v0.2.0.
    app = source / "template/passenger_wsgi.py.jinja"
    app.write_text(app.read_text() + "\n# improved in v0.2.0\n")
    starter = source / "template/service.yaml.jinja"
    starter.write_text(starter.read_text().replace("get_greeting", "get_welcome"))
    git(source, "commit", "-q", "-am", "template v0.2.0")
    git(source, "tag", "v0.2.0")

    run_update(
        dst_path=project, defaults=True, overwrite=True, unsafe=True, vcs_ref="v0.2.0", quiet=True
    )

    assert (project / "passenger_wsgi.py").read_text().endswith("# improved in v0.2.0\n")
    assert "    # mine\n" in handler.read_text()
    assert "get_farewell" in spec.read_text() and "get_welcome" not in spec.read_text()
    assert (project / "orders/handlers/get_farewell.py").is_file()
    assert not (project / "orders/handlers/get_welcome.py").exists()
    for path in files(project):
        assert not path.name.endswith(".rej"), path
        if path.is_file():
            content = path.read_bytes()
            assert b"<<<<<<< before updating" not in content, path
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v0.2.0"
    check = shoestring(project, "generate", "--check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
