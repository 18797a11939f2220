"""`shoestring generate`: bring a service's spec-derived files in line with its service.yaml.

A run is a plan, then its application:

1. `plan_generation` renders the spec and compares the result with the service on disk and
   with the manifest of the last run. It decides which files to create, update and remove, and
   notes what `--check` reports as drift. It writes nothing.
2. `apply_plan` writes the files (each atomically), removes the stale ones, and writes the
   manifest last: a run that dies half-way leaves the old manifest, so the next run still knows
   every file the generator owns and simply does the work again.

Ownership rules, from the design: files under `<package>/_generated/` belong to the generator
and are rewritten wholesale; handler modules are created when missing and never touched again,
except that the untouched stub of an endpoint or subscription removed from the spec goes away
with it. A file the generator no longer produces is removed only if it still has the content
the generator wrote (the manifest's hash); an edited one is kept with a warning.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from . import __version__
from .manifest import MANIFEST_PATH, Manifest, load_manifest, sha256
from .render import FIRST_RUNTIME_READING_FORMAT, REGISTRY_FORMAT, SPEC_FILE, render

ANSWERS_FILE = ".copier-answers.yml"
LOCK_FILE = "requirements.txt"
RUNTIME = "shoestring-runtime"
# `shoestring-runtime==0.1.0` in a lock (pip normalises - _ . and case in names alike).
_RUNTIME_PIN = re.compile(
    r"^\s*shoestring[-_.]runtime\s*==\s*([^\s;\\#]+)", re.IGNORECASE | re.MULTILINE
)
CREATE, UPDATE, REMOVE = "create", "update", "remove"
# Only paths of these shapes are ever removed, whatever a (possibly damaged) manifest says.
_OWNED_FOLDERS = ("_generated", "handlers")


class GenerateError(Exception):
    """The service cannot be generated as it stands; the message says how to fix it."""


@dataclass(frozen=True)
class Change:
    action: str  # CREATE | UPDATE | REMOVE
    path: str


@dataclass
class Plan:
    """What a run would do in the service at `root`; `apply_plan` does it."""

    root: Path
    writes: dict[str, bytes] = field(default_factory=dict)
    removals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # what `--check` reports, one line per file

    created: set[str] = field(default_factory=set)

    def write(self, path: str, content: bytes, *, exists: bool) -> None:
        self.writes[path] = content
        if not exists:
            self.created.add(path)

    @property
    def changes(self) -> list[Change]:
        """Every change in path order, the manifest last."""
        found = [Change(CREATE if path in self.created else UPDATE, path) for path in self.writes]
        found += [Change(REMOVE, path) for path in self.removals]
        return sorted(found, key=lambda change: (change.path == MANIFEST_PATH, change.path))

    @property
    def nothing_to_do(self) -> bool:
        return not self.writes and not self.removals


def plan_generation(
    root: Path,
    spec: dict[str, Any],
    *,
    version: str = __version__,
    allowed_breaking: dict[str, Any] | None = None,
) -> Plan:
    """Compare what `spec` renders to with the service at `root`; decide, do not write.

    `allowed_breaking` ({"reason": ..., "findings": [...]}) records breaking changes the user
    accepted (`generate --allow-breaking`) in the manifest, after those accepted before.
    """
    check_package(root, spec)
    check_runtime(root, version)
    rendered = render(spec, version=version)
    old = load_manifest(root)
    plan = Plan(root=root)
    manifest = Manifest(
        generator=version, spec_sha256=rendered.spec_sha256, accepted_spec=dict(spec)
    )
    if old is not None:
        manifest.allowed_breaking = list(old.allowed_breaking)
    if allowed_breaking:
        manifest.allowed_breaking.append(
            {**allowed_breaking, "spec_sha256": rendered.spec_sha256, "generator": version}
        )

    for path, content in rendered.generated.items():
        manifest.files[path] = sha256(content)
        current = _read(root / path)
        if current == content:
            continue
        plan.write(path, content, exists=current is not None)
        if current is None:
            plan.drift.append(f"missing: {path}")
        elif old is None or path not in old.files:
            plan.drift.append(f"out of date: {path} (not in the manifest of a previous run)")
        elif old.files[path] == sha256(current):
            plan.drift.append(f"out of date: {path} (service.yaml or the generator changed)")
        else:
            plan.drift.append(f"edited: {path} (changed by hand; generate overwrites it)")
            plan.warnings.append(
                f"{path} was edited by hand: overwritten with the generated version "
                f"(put the change in {SPEC_FILE}, or in a handler module)"
            )

    for path, content in rendered.stubs.items():
        current = _read(root / path)
        if current is None:
            plan.write(path, content, exists=False)
            manifest.stubs[path] = sha256(content)
            plan.drift.append(f"missing: {path} (handler module; generate creates the stub)")
        elif old is not None and path in old.stubs:
            manifest.stubs[path] = old.stubs[path]
        elif current == content:
            manifest.stubs[path] = sha256(content)

    if old is not None:
        _plan_stale(plan, old, rendered.generated, rendered.stubs)

    manifest_bytes = manifest.to_bytes()
    current_manifest = _read(root / MANIFEST_PATH)
    if current_manifest != manifest_bytes:
        plan.write(MANIFEST_PATH, manifest_bytes, exists=current_manifest is not None)
        if not plan.drift:
            plan.drift.append(f"out of date: {MANIFEST_PATH}")
    return plan


def _plan_stale(
    plan: Plan, old: Manifest, generated: dict[str, bytes], stubs: dict[str, bytes]
) -> None:
    """Files the last run wrote that this run does not: remove the untouched, keep the edited."""
    # (recorded last time, written now, drift when removed, drift when kept, warning when kept)
    kinds = (
        (
            old.files,
            generated,
            "no longer generated",
            "no longer generated, edited by hand",
            (
                "is no longer generated but was edited by hand: kept; delete it once you no "
                "longer need it"
            ),
        ),
        (
            old.stubs,
            stubs,
            f"handler stub of something {SPEC_FILE} dropped",
            None,
            (
                f"handles something {SPEC_FILE} no longer declares and holds your code: kept, "
                "but nothing calls it any more; delete it once you no longer need it"
            ),
        ),
    )
    for recorded_files, written, removed, kept, warning in kinds:
        for path, recorded in sorted(recorded_files.items()):
            if path in written or not _owned(path):
                continue
            current = _read(plan.root / path)
            if current is None:
                continue
            if sha256(current) == recorded:
                plan.removals.append(path)
                plan.drift.append(f"stale: {path} ({removed})")
            else:
                if kept is not None:
                    plan.drift.append(f"stale: {path} ({kept})")
                plan.warnings.append(f"{path} {warning}")


def apply_plan(plan: Plan) -> None:
    """Write and remove what `plan` says; the manifest goes last (see the module docstring)."""
    for path, content in sorted(plan.writes.items(), key=lambda item: item[0] == MANIFEST_PATH):
        _write(plan.root / path, content)
    for path in plan.removals:
        target = plan.root / path
        target.unlink(missing_ok=True)
        _remove_empty_parents(target.parent, stop=plan.root)


def check_package(root: Path, spec: dict[str, Any]) -> None:
    """Refuse a spec whose package differs from the one the service was created with."""
    package = spec["service"]["package"]
    try:
        answers = yaml.safe_load((root / ANSWERS_FILE).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return
    except (OSError, yaml.YAMLError) as exc:
        raise GenerateError(f"{root / ANSWERS_FILE}: cannot read it ({exc})") from exc
    created_with = answers.get("package") if isinstance(answers, dict) else None
    if created_with and created_with != package:
        raise GenerateError(
            f"{SPEC_FILE} gives the package '{package}', but this service was created with "
            f"package '{created_with}' ({ANSWERS_FILE}): set `package: {created_with}` under "
            f"`service:` in {SPEC_FILE}"
        )


def check_runtime(root: Path, version: str = __version__) -> None:
    """Refuse to write `_generated/` for a runtime too old to read its registry format.

    The runtime is the one the service's lock pins (`shoestring-runtime==X` in requirements.txt);
    without a pin, the one installed next to this generator; with neither, nothing is checked (a
    service installs its runtime from its lock, which then names one).
    """
    where, runtime = _runtime_of(root)
    if runtime is None:
        return
    release = _release(runtime)
    if release is None:
        raise GenerateError(
            f"{where} names {RUNTIME} version {runtime!r}, which is not a version number: pin "
            f"it exactly, `{RUNTIME}=={FIRST_RUNTIME_READING_FORMAT}` or later"
        )
    if release >= (_release(FIRST_RUNTIME_READING_FORMAT) or ()):
        return
    if where == LOCK_FILE:
        fix = (
            f"refresh the lock to `{RUNTIME}=={version}` (set it in requirements.in, then "
            "recompile requirements.txt as its header says), then run `shoestring generate` again"
        )
    else:
        fix = f"install `{RUNTIME}=={version}` next to it, or pin it in {LOCK_FILE}"
    raise GenerateError(
        f"{where} has {RUNTIME} {runtime}, which cannot read the registry format "
        f"{REGISTRY_FORMAT} that shoestring {version} writes (runtimes read it from "
        f"{FIRST_RUNTIME_READING_FORMAT} on): {fix}"
    )


def pinned_runtime(root: Path) -> str | None:
    """The version of shoestring-runtime the lock of the service at `root` pins, if it pins
    one."""
    try:
        lock = (root / LOCK_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{root / LOCK_FILE}: cannot read it ({exc})") from exc
    pinned = _RUNTIME_PIN.search(lock)
    return pinned.group(1) if pinned else None


def project_version(folder: Path) -> str | None:
    """The version `folder/pyproject.toml` declares (shoestring's, the runtime's), if any."""
    try:
        pyproject = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    # The first top-level `version =` is [project]'s: [build-system] has none. (tomllib would
    # need Python 3.11.)
    found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    return found.group(1) if found else None


def _runtime_of(root: Path) -> tuple[str, str | None]:
    """(where it was found, the version) of the runtime the service at `root` runs on."""
    pinned = pinned_runtime(root)
    if pinned is not None:
        return LOCK_FILE, pinned
    try:
        return "the Python environment of this shoestring", installed_version(RUNTIME)
    except PackageNotFoundError:
        return "", None


def _release(version: str) -> tuple[int, ...] | None:
    """The release numbers of a version (`0.1.0rc1` -> (0, 1, 0)), padded so 0.1 == 0.1.0."""
    found = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    if found is None:
        return None
    numbers = tuple(int(part) for part in found.group(0).split("."))
    return numbers + (0,) * max(0, 4 - len(numbers))


def _owned(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        len(parts) >= 3
        and not PurePosixPath(path).is_absolute()
        and ".." not in parts
        and parts[1] in _OWNED_FOLDERS
    )


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, content: bytes) -> None:
    # Write beside the target, then rename over it: a reader (or a crash) never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def _remove_empty_parents(folder: Path, *, stop: Path) -> None:
    """Remove `folder` and its parents while they are empty, up to `_generated` (kept)."""
    while folder != stop and folder.name != "_generated" and folder.is_dir():
        if any(folder.iterdir()) or folder.name == "handlers":
            return
        folder.rmdir()
        folder = folder.parent
