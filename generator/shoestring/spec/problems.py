"""What is wrong with a spec, where, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One problem in a spec file, located at a 1-based line and column.

    `code` names the kind of problem (`unknown-key`, `undefined-reference`, ...) for tools;
    `hint` says how to fix it and may be empty. Warnings do not make a spec invalid.
    """

    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    code: str = "invalid"
    severity: str = ERROR

    @property
    def column(self) -> int:
        return self.col

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def format(self) -> str:
        """`file:line:col: message — hint`, the form editors and terminals link to."""
        label = "warning: " if self.severity == WARNING else ""
        text = f"{self.file}:{self.line}:{self.col}: {label}{self.message}"
        if self.hint:
            text += f" — {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["column"] = data.pop("col")
        return data


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word` (a misspelling, another case), or None if none is close."""
    options = sorted({choice for choice in choices if isinstance(choice, str)})
    by_lower = {choice.lower(): choice for choice in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def suggestion(word: str, choices: Iterable[str], *, fallback: str = "") -> str:
    """A hint: `did you mean 'x'?` when a choice is close, else `fallback`."""
    match = did_you_mean(word, choices)
    return f"did you mean '{match}'?" if match is not None else fallback
