"""`shoestring upgrade`: move a service made with the runtime copied into it to the runtime library.

Until the runtime became the `shoestring-runtime` library, every service carried it as
`<package>/chassis/`, its wiring imported it and its `tests/` held the template's tests of it.
The upgrade brings such a service to today's layout in one step, or refuses and changes nothing:

1. Check, writing nothing. Every file in `<package>/chassis/` must be a version the template
   shipped (template_history.json, written from git history by scripts/template_history.py);
   the service must be a git work tree without uncommitted changes (the upgrade replaces the
   files the template owns with today's, and `git diff` shows the user what that changed, their
   own edits included); every import of the chassis in the user's modules must have a
   counterpart in `shoestring_runtime`; the spec must be valid.
2. Render today's template (Copier, the answers of `.copier-answers.yml`) and write every file it
   owns into the service: wiring, `<package>/app.py` (created), lock files, deploy/, README,
   tests/... Files the template once had and no longer has are removed; files the template never
   had (the user's tests, say) are kept. `service.yaml`, handlers, migrations, `.env` and `var/`
   are never touched, except that imports of the chassis in the user's modules are rewritten to
   `shoestring_runtime`.
3. Run the generator (`_generated/` in today's registry format, the manifest), then remove
   `<package>/chassis/`, last: an upgrade stopped half-way runs again.

A service without `<package>/chassis/` is already upgraded: nothing to do (later template
improvements come with `copier update`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .breaking import since_accepted
from .generate import ANSWERS_FILE, GenerateError, Plan, apply_plan, check_package, plan_generation
from .manifest import MANIFEST_PATH, ManifestError, load_manifest
from .new import (
    copier_answers,
    copy_local_template,
    default_template,
    record_template,
    relative_src_path,
    template_version,
)
from .render import SPEC_FILE
from .spec import load_spec

HISTORY = Path(__file__).resolve().parent / "template_history.json"
# What `shoestring_runtime` exports (its __all__; tests/test_upgrade.py keeps the two equal).
RUNTIME_EXPORTS = frozenset({
    "Check", "Context", "Problem", "Service", "add_check", "create_app", "run_cli",
    "unavailable_app",
})
# Folders of a service that hold no file of the template or of the user's code.
_NOT_SERVICE_CODE = {"__pycache__", ".venv", "venv", "var", "vendor", ".git", "node_modules"}


class UpgradeError(Exception):
    """The service cannot be upgraded; `problems` say what to do, nothing was changed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Upgrade:
    """What an upgrade did (or, when `already_upgraded`, why it did nothing)."""

    root: Path
    package: str
    already_upgraded: bool = False
    replaced: list[str] = field(default_factory=list)  # template files whose content changed
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # files the template no longer has
    rewritten: list[str] = field(default_factory=list)  # user modules: chassis imports rewritten
    generation: Plan | None = None


def upgrade_service(root: Path) -> Upgrade:
    """Upgrade the chassis-era service at `root` (see the module doc); raise UpgradeError, having
    changed nothing, when it cannot be done."""
    spec = _load_spec(root)
    package = spec["service"]["package"]
    chassis = root / package / "chassis"
    if not chassis.is_dir():
        return Upgrade(root=root, package=package, already_upgraded=True)

    problems = modified_chassis_files(root, package)
    problems += _git_problems(root)
    rewrites, import_problems = _plan_rewrites(root, package)
    problems += import_problems
    if (root / package / "app.py").exists():
        problems.append(
            f"{package}/app.py: today's wiring imports the service's own app module from this "
            f"name; rename your {package}/app.py (and what imports it), commit, and run again"
        )
    problems += _generation_problems(root, spec)
    if problems:
        raise UpgradeError(problems)

    result = Upgrade(root=root, package=package)
    with tempfile.TemporaryDirectory(prefix="shoestring-upgrade-") as scratch:
        skeleton = Path(scratch) / "service"
        _render_skeleton(root, spec, skeleton)
        today = _template_owned(skeleton, package)
        for path in today:
            content = (skeleton / path).read_bytes()
            target = root / path
            if not target.exists():
                result.created.append(path)
            elif target.read_bytes() != content:
                result.replaced.append(path)
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            shutil.copymode(skeleton / path, target)
    for path in _obsolete_template_files(root, package, set(today)):
        (root / path).unlink()
        result.removed.append(path)
    for path, text in rewrites.items():
        (root / path).write_text(text, encoding="utf-8")
        result.rewritten.append(path)
    result.generation = plan_generation(root, spec)
    apply_plan(result.generation)
    shutil.rmtree(chassis)
    return result


def _load_spec(root: Path) -> dict[str, Any]:
    spec_file = root / SPEC_FILE
    if not spec_file.is_file():
        raise UpgradeError([
            (f"no {SPEC_FILE} in {root}: run `shoestring upgrade` in the root directory of a "
            f"service (where {SPEC_FILE} and .copier-answers.yml are)")
        ])
    loaded = load_spec(spec_file)
    if not loaded.ok:
        raise UpgradeError(
            [problem.format() for problem in loaded.problems]
            + [f"fix {SPEC_FILE} (`shoestring validate {spec_file}`), then run the upgrade again"]
        )
    return loaded.spec


# --- the chassis --------------------------------------------------------------------------


def shipped_chassis() -> dict[str, set[str]]:
    """Every version the template shipped of each chassis file: path in chassis/ -> sha256s."""
    history = json.loads(HISTORY.read_text(encoding="utf-8"))
    return {path: set(digests) for path, digests in history["chassis"].items()}


def modified_chassis_files(root: Path, package: str) -> list[str]:
    """A problem per file in `<package>/chassis/` that no template version had, with its fix."""
    chassis = root / package / "chassis"
    shipped = shipped_chassis()
    problems = []
    for file in sorted(chassis.rglob("*")):
        relative = file.relative_to(chassis)
        if not file.is_file() or "__pycache__" in relative.parts:
            continue
        name = relative.as_posix()
        shown = f"{package}/chassis/{name}"
        if name not in shipped:
            problems.append(
                f"{shown}: added to the chassis (the template never shipped it): move it out of "
                f"chassis/ (into {package}/, and import it from there) or delete it"
            )
        elif hashlib.sha256(file.read_bytes()).hexdigest() not in shipped[name]:
            problems.append(
                f"{shown}: changed since the template shipped it: move your change into "
                f"{package}/handlers/ or {package}/app.py (after the upgrade), or restore the "
                f"file from version control (git checkout <commit> -- {shown})"
            )
    return problems


# --- checks -------------------------------------------------------------------------------


def _git_problems(root: Path) -> list[str]:
    """Why the files the template owns cannot be replaced safely: not in git, or uncommitted."""
    commit = "git add -A && git commit -m 'Before shoestring upgrade'"
    try:
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=root, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        inside = None
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return [
            (f"{root} is not in a git work tree: the upgrade replaces the files the template "
            f"owns (your edits to them included) and `git diff` is how you review that; run "
            f"`git init && {commit}` in {root}, then the upgrade again")
        ]
    status = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=all", "--", "."],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout
    if status.strip():
        changed = ", ".join(line[3:] for line in status.splitlines()[:5])
        return [
            (f"{root} has uncommitted changes ({changed}"
            f"{', ...' if len(status.splitlines()) > 5 else ''}): commit them (`{commit}`) so "
            f"that `git diff` shows what the upgrade changed, then run it again")
        ]
    return []


def _generation_problems(root: Path, spec: dict[str, Any]) -> list[str]:
    """What would stop the generator after the upgrade, asked before anything is written."""
    try:
        check_package(root, spec)
        manifest = load_manifest(root)
    except (GenerateError, ManifestError) as exc:
        return [str(exc)]
    findings = since_accepted(
        manifest.accepted_spec if manifest else None,
        load_spec(root / SPEC_FILE),
        SPEC_FILE,
        accepted_in=str(root / MANIFEST_PATH),
    )
    problems = [finding.format() for finding in findings]
    if findings:
        problems.append(
            f"{SPEC_FILE} breaks the spec accepted last: make the change compatibly (each line "
            "says how), or set it back, then run the upgrade again"
        )
    return problems


# --- imports of the chassis ---------------------------------------------------------------


def _chassis_import(package: str) -> re.Pattern[str]:
    """`from ..chassis[.module] import names` (relative, or absolute through the package)."""
    return re.compile(
        r"^(?P<indent>[ \t]*)from[ \t]+(?:\.+|" + re.escape(package) + r"\.)chassis"
        r"(?:\.(?P<module>[\w.]+))?[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n]*)",
        re.MULTILINE,
    )


def rewrite_chassis_imports(text: str, package: str) -> str:
    """`text` with each `from ..chassis.context import Context` made
    `from shoestring_runtime import Context`: the public name when every imported name is one,
    else the same module of the runtime (`from shoestring_runtime.db import Database`)."""

    def rewrite(found: re.Match[str]) -> str:
        names = found["names"]
        imported = {
            item.split()[0]
            for line in names.strip("()").splitlines()
            for item in line.split("#", 1)[0].split(",")
            if item.strip()
        }
        public = not found["module"] or imported <= RUNTIME_EXPORTS
        module = "shoestring_runtime" if public else f"shoestring_runtime.{found['module']}"
        return f"{found['indent']}from {module} import {names}"

    return _chassis_import(package).sub(rewrite, text)


def _plan_rewrites(root: Path, package: str) -> tuple[dict[str, str], list[str]]:
    """The user's modules that import the chassis, rewritten; and the imports that cannot be."""
    rewrites: dict[str, str] = {}
    problems = []
    leftover = re.compile(r"^[ \t]*(?:from|import)[ \t][^\n]*\bchassis\b[^\n]*", re.MULTILINE)
    for path in _user_modules(root, package):
        text = (root / path).read_text(encoding="utf-8")
        new = rewrite_chassis_imports(text, package)
        for line in leftover.findall(new):
            problems.append(
                f"{path}: `{line.strip()}` imports the chassis in a way the upgrade cannot "
                f"rewrite: write it as `from shoestring_runtime import NAME` (or `from "
                f"shoestring_runtime.MODULE import NAME`), commit, and run again"
            )
        if new != text:
            rewrites[path] = new
    return rewrites, problems


def _user_modules(root: Path, package: str) -> list[str]:
    """The Python files of the service that are the user's: the package's modules outside the
    chassis, `_generated/` and the wiring, and the tests the template never had."""
    template_owned = _historical_template_files(package)
    found = []
    for folder in (root / package, root / "tests"):
        for file in sorted(folder.rglob("*.py")):
            path = file.relative_to(root).as_posix()
            parts = file.relative_to(root).parts
            if _NOT_SERVICE_CODE & set(parts) or parts[1:2] in (("chassis",), ("_generated",)):
                continue
            if path not in template_owned:
                found.append(path)
    return found


# --- the template -------------------------------------------------------------------------


def _render_skeleton(root: Path, spec: dict[str, Any], out: Path) -> None:
    """Today's template rendered into `out` with the service's answers, its answers file keeping
    `_src_path` and naming today's template release as `_commit` (for `copier update`)."""
    try:
        answers = yaml.safe_load((root / ANSWERS_FILE).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        answers = {}
    defaults = copier_answers(spec)
    questions = {key: str(answers.get(key, value)) for key, value in defaults.items()}
    checkout = Path(default_template())
    copy_local_template(checkout, out, questions, force=False)
    src_path = answers.get("_src_path") or relative_src_path(checkout, root)
    record_template(out, str(src_path), f"v{template_version(checkout)}")


def _template_owned(skeleton: Path, package: str) -> list[str]:
    """The files of the rendered template that the upgrade writes: all but the user's."""
    owned = []
    for file in sorted(skeleton.rglob("*")):
        if not file.is_file():
            continue
        path = file.relative_to(skeleton).as_posix()
        if not _users(path, package):
            owned.append(path)
    return owned


def _users(path: str, package: str) -> bool:
    """Whether the service's file `path` is the user's own, never written by the upgrade."""
    parts = path.split("/")
    return (
        path in (SPEC_FILE, ".env")
        or (parts[:2] == [package, "handlers"] and path != f"{package}/handlers/__init__.py")
        or parts[:2] == [package, "_generated"]
        or parts[0] == ".shoestring"
        or (parts[0] == "migrations" and path.endswith(".sql"))
    )


def _historical_template_files(package: str) -> set[str]:
    """Every file name the template ever had (outside the chassis), as named in a service."""
    history = json.loads(HISTORY.read_text(encoding="utf-8"))
    names = set()
    for path in history["template_files"]:
        name = path.replace("{{package}}", package).replace(
            "{{_copier_conf.answers_file}}", ANSWERS_FILE
        )
        names.add(name.removesuffix(".jinja"))
    return names


def _obsolete_template_files(root: Path, package: str, today: set[str]) -> list[str]:
    """Files of the service that the template once had and has no more."""
    return sorted(
        name for name in _historical_template_files(package)
        if name not in today and not _users(name, package) and (root / name).is_file()
    )
