"""The lock files: exact versions that satisfy the ranges they are resolved from, on every Python.

Installs never resolve ranges: this repository's tests install `requirements-test.txt`, a
generated service installs its `requirements.txt` (production) or `requirements-dev.txt`
(tests and linting). `scripts/refresh_locks.sh` writes all three with uv; these tests catch a
range edited without a refresh, and a lock edited by hand into something that is no lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template"
SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a pip requirements file (no comments, no `-r`/`-c` options)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def environment(python: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
    }


def pins_for(lock: Path, python: str) -> dict[str, str]:
    """Package name -> the exact version `lock` installs on `python` (Linux, CPython)."""
    pins: dict[str, str] = {}
    for line in requirement_lines(lock):
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{lock.name}: two versions of {name} for Python {python}"
        pins[name] = str(requirement.specifier).removeprefix("==")
    return pins


def test_every_line_of_every_lock_is_an_exact_version():
    for lock in (REPO / "requirements-test.txt", *TEMPLATE.glob("requirements*.txt")):
        for line in requirement_lines(lock):
            specifiers = list(Requirement(line).specifier)
            assert len(specifiers) == 1 and specifiers[0].operator == "==", (
                f"{lock.relative_to(REPO)}: {line!r} is not an exact version: "
                "run scripts/refresh_locks.sh"
            )


def project_of(pyproject: Path) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]


def ranges_of(path: Path) -> list[Requirement]:
    """The requirements of a `.in` file, following its `-r` includes, and the ranges of the
    runtime's own dependencies where it asks for the runtime."""
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += ranges_of(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            found.append(Requirement(line))
            if canonicalize_name(found[-1].name) == "shoestring-runtime":
                runtime = project_of(REPO / "runtime" / "pyproject.toml")
                found += [Requirement(entry) for entry in runtime["dependencies"]]
    return found


def repository_ranges() -> list[Requirement]:
    """What pyproject.toml asks for: the generator's dependencies and the `test` extra."""
    project = project_of(REPO / "pyproject.toml")
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    return [Requirement(line) for line in declared]


@pytest.mark.parametrize("python", SUPPORTED_PYTHONS)
@pytest.mark.parametrize(
    "lock", ["requirements-test.txt", "template/requirements.txt", "template/requirements-dev.txt"]
)
def test_each_lock_satisfies_the_ranges_it_is_resolved_from(lock, python):
    if lock == "requirements-test.txt":
        ranges = repository_ranges()
    else:
        ranges = ranges_of(REPO / lock.replace(".txt", ".in"))
    pins = pins_for(REPO / lock, python)
    for requirement in ranges:
        if requirement.marker and not requirement.marker.evaluate(environment(python)):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} has no version of {name} for Python {python}: refresh it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement} (Python {python}): "
            "run scripts/refresh_locks.sh"
        )


@pytest.mark.parametrize("python", SUPPORTED_PYTHONS)
def test_a_service_tests_with_the_versions_it_runs_in_production(python):
    production = pins_for(TEMPLATE / "requirements.txt", python)
    development = pins_for(TEMPLATE / "requirements-dev.txt", python)
    for name, version in production.items():
        assert development.get(name) == version, (
            f"requirements-dev.txt pins {name}=={development.get(name)}, requirements.txt "
            f"=={version} (Python {python}): refresh both with scripts/refresh_locks.sh"
        )



def test_services_pin_the_runtime_of_this_checkout_made_with_the_generator_of_the_same_version():
    from shoestring import __version__ as generator_version
    from shoestring_runtime import __version__ as runtime_version

    declared = project_of(REPO / "runtime" / "pyproject.toml")["version"]
    assert runtime_version == declared == generator_version
    assert project_of(REPO / "pyproject.toml")["version"] == generator_version
    pinned = [
        str(requirement.specifier)
        for requirement in ranges_of(TEMPLATE / "requirements.in")
        if requirement.name == "shoestring-runtime"
    ]
    assert pinned == [f"=={declared}"], "template/requirements.in pins another runtime"
    for lock in TEMPLATE.glob("requirements*.txt"):
        for python in SUPPORTED_PYTHONS:
            assert pins_for(lock, python)["shoestring-runtime"] == declared, (
                f"{lock.name} pins another runtime than runtime/pyproject.toml's "
                f"{declared}: run scripts/refresh_locks.sh"
            )
