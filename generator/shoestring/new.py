"""`shoestring new`: a service directory from a spec — Copier's skeleton, then generation.

The steps: Copier renders the template (copier.yml + template/) with answers taken from the
spec; the spec is written as the service's service.yaml, byte for byte; the generator then
writes the spec-derived code. Copier's own post-copy task (which runs the generator) is skipped,
since the generator runs right after with the user's spec rather than the template's starter.

Where `copier update` finds the template later: `.copier-answers.yml` records `_src_path` and
`_commit`. For a template given as a URL (`gh:owner/shoestring`, `https://...git`), Copier
records both itself. For a local checkout — the default, the checkout this package runs from —
the template is rendered from a plain copy of its files (uncommitted edits included, no git
state involved), `_src_path` is the checkout's path relative to the service (or `--src-path`),
and `_commit` is the release tag of the checkout's version, `v<version>` from its
pyproject.toml: generator and template are released together from one repository, tagged
`v<version>`, so that tag holds the template this service came from. (A checkout between two
releases records the version its pyproject.toml names; `copier update` needs that tag to exist.)
Both values are the same on every machine, which keeps the committed examples reproducible.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .generate import ANSWERS_FILE, Plan, apply_plan, plan_generation, project_version
from .render import SPEC_FILE

DATABASES = ("sqlite", "mysql")
# Files of a checkout that are never part of the template (caches of tools run in it).
_NOT_TEMPLATE = ("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".mypy_cache")


class NewServiceError(Exception):
    """The service cannot be created; the message says what to do instead."""


@dataclass(frozen=True)
class NewService:
    root: Path
    package: str
    plan: Plan


def find_template() -> Path | None:
    """The template this installation carries: its checkout's, else the one inside the package.

    An editable install runs from a checkout, whose copier.yml and template/ are the template
    (uncommitted edits included). An installed wheel carries a copy of both as `_template/`
    (setup.py puts it there).
    """
    package = Path(__file__).resolve().parent
    for candidate in (package.parents[1], package / "_template"):
        if (candidate / "copier.yml").is_file() and (candidate / "template").is_dir():
            return candidate
    return None


def copier_answers(spec: dict[str, Any], database: str = "sqlite") -> dict[str, str]:
    """The answers to copier.yml's questions that make the skeleton match `spec`."""
    service = spec["service"]
    return {
        "service_name": service["name"],
        "package": service["package"],
        "description": service.get("description") or "",
        "database": database,
    }


def create_service(
    spec_file: Path,
    spec: dict[str, Any],
    out: Path,
    *,
    template: str | None = None,
    src_path: str | None = None,
    database: str = "sqlite",
    force: bool = False,
) -> NewService:
    """Create the service of `spec` (loaded from `spec_file`) in `out`; see the module doc."""
    if out.exists() and not out.is_dir():
        raise NewServiceError(f"{out} is a file: choose a directory for the new service")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise NewServiceError(
            f"{out} is not empty: choose a new directory, or pass --force to render into it "
            f"(files the template owns are overwritten, {SPEC_FILE} is replaced, your handler "
            f"modules are kept)"
        )
    source = template if template is not None else default_template()
    answers = copier_answers(spec, database)
    if Path(source).is_dir():
        copy_local_template(Path(source), out, answers, force=force)
        commit = f"v{template_version(Path(source))}"
        record_template(out, src_path or relative_src_path(Path(source), out), commit)
    else:
        _run_copier(source, out, answers, force=force)
        if src_path is not None:
            record_template(out, src_path, None)

    # The user's spec, verbatim: comments and layout are theirs.
    (out / SPEC_FILE).write_bytes(spec_file.read_bytes())
    plan = plan_generation(out, spec)
    apply_plan(plan)
    return NewService(root=out, package=spec["service"]["package"], plan=plan)


def default_template() -> str:
    found = find_template()
    if found is None:
        raise NewServiceError(
            "this installation of shoestring carries no template (it was installed without "
            "its package data): reinstall it, or pass --template with a checkout of the "
            "shoestring repository or its git URL"
        )
    return str(found)


def copy_local_template(
    checkout: Path, out: Path, answers: dict[str, str], *, force: bool
) -> None:
    if not (checkout / "copier.yml").is_file():
        raise NewServiceError(
            f"{checkout} has no copier.yml: --template takes the root of a shoestring checkout"
        )
    with tempfile.TemporaryDirectory(prefix="shoestring-template-") as snapshot:
        shutil.copy2(checkout / "copier.yml", Path(snapshot) / "copier.yml")
        shutil.copytree(
            checkout / "template",
            Path(snapshot) / "template",
            ignore=shutil.ignore_patterns(*_NOT_TEMPLATE),
        )
        _run_copier(snapshot, out, answers, force=force)


def _run_copier(source: str, out: Path, answers: dict[str, str], *, force: bool) -> None:
    # Imported here: Copier is heavy to import, and only `new` needs it.
    from copier import run_copy

    try:
        run_copy(
            source,
            out,
            data=answers,
            defaults=True,
            unsafe=True,  # the template's own task, skipped below, is its only unsafe feature
            skip_tasks=True,
            overwrite=force,
            quiet=True,
        )
    except Exception as exc:  # Copier reports template and VCS failures with many types
        raise NewServiceError(f"Copier could not render the template {source}: {exc}") from exc


def record_template(out: Path, src_path: str, commit: str | None) -> None:
    """Rewrite `_src_path` (and `_commit`) in the answers file Copier wrote."""
    answers_file = out / ANSWERS_FILE
    text = answers_file.read_text(encoding="utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    answers = yaml.safe_load(text) or {}
    answers["_src_path"] = src_path
    if commit is not None:
        answers["_commit"] = commit
    # The layout of Copier's own answers file (`to_nice_yaml`), so `copier update` rewrites
    # it without a diff.
    body = yaml.safe_dump(answers, indent=4, allow_unicode=True, default_flow_style=False)
    answers_file.write_text(header + body, encoding="utf-8")


def template_version(checkout: Path) -> str:
    """The shoestring version of a checkout (its pyproject.toml), else this package's version."""
    return project_version(checkout) or __version__


def relative_src_path(checkout: Path, out: Path) -> str:
    try:
        return Path(os.path.relpath(checkout.resolve(), out.resolve())).as_posix()
    except ValueError:  # another drive on Windows: only the absolute path can work
        return checkout.resolve().as_posix()
