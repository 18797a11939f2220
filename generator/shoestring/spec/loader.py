"""`load_spec`: read a spec file, check it, and build its model — or say everything wrong with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import Checker
from .document import MAX_BYTES, Node, compose, read_text
from .model import build_model
from .problems import Problem
from .structure import check_structure

# Problems that mean the file could not be read as a YAML document at all (exit code 2).
UNREADABLE_CODES = frozenset({
    "cannot-read", "too-large", "not-utf8", "not-text", "yaml-syntax", "yaml-tag", "too-deep",
})


@dataclass
class LoadResult:
    """The outcome of `load_spec`: the model (None unless the spec is valid) and the problems.

    Problems are sorted by position; warnings may accompany a valid spec. `root` is the YAML
    document with the position of every key and value (None when unreadable), for tools that
    locate what they find in the spec (`document.locate(root, path)`).
    """

    spec: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    root: Node | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the spec is valid (it may still carry warnings)."""
        return self.spec is not None

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.is_error]

    @property
    def unreadable(self) -> bool:
        """True when the file could not be read as YAML (missing, binary, syntax error...)."""
        return any(problem.code in UNREADABLE_CODES for problem in self.problems)


def load_spec(path: str | Path) -> LoadResult:
    """Read and check the spec at `path`; every problem is located as file:line:col."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return _unreadable(file, "the file does not exist",
                           "check the path; a service keeps its spec in service.yaml at its root")
    except IsADirectoryError:
        return _unreadable(file, "this is a directory, not a spec file",
                           f"point at the spec inside it, e.g. {Path(file) / 'service.yaml'}")
    except OSError as exc:
        return _unreadable(file, f"cannot read the file: {exc.strerror or exc}",
                           "check the file's permissions")
    return load_spec_text(file, data)


def load_spec_text(file: str, data: bytes | str) -> LoadResult:
    """Check spec source given as bytes or text; `file` names it in the problems."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    text, problem = read_text(file, data)
    if problem is not None or text is None:
        return LoadResult(None, [problem] if problem else [])
    document = compose(file, text)
    problems = list(document.problems)
    if document.unreadable:
        return LoadResult(None, _sorted(problems))
    root = document.root
    if root is None:
        problems.append(Problem(
            file, 1, 1, "the spec is empty",
            "start it with `shoestring: 1` and `service: {name: my-service}`", "empty"))
        return LoadResult(None, _sorted(problems))
    problems.extend(check_structure(file, root))
    checker = Checker(file, root)
    problems.extend(checker.run())
    problems = _sorted(problems)
    if any(problem.is_error for problem in problems):
        return LoadResult(None, problems, root)
    return LoadResult(build_model(root.value, checker.compiled), problems, root)


def _unreadable(file: str, message: str, hint: str) -> LoadResult:
    return LoadResult(None, [Problem(file, 1, 1, message, hint, "cannot-read")])


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda problem: (problem.line, problem.col))
