# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Settings: read from the environment and `.env`, checked once at start-up.

Every problem is collected before anything fails, so one start-up error lists all of them:

    invalid settings (set them in the environment or in /srv/orders/.env):
      - MAX_BODY_BYTES='lots': must be a whole number of bytes, e.g. 1048576
      - PAYMENTS_URL is missing: the service spec needs it (an http(s) URL)

The environment wins over `.env`, so a hosting panel's variables override the file.

This module knows no feature: it defines a `Setting`, the parsers, the general settings
(`core_settings`) and how a list of settings is read and checked (`load`). Each feature module
declares its own settings (`auth.auth_settings`, `ratelimit.RATE_LIMIT_SETTINGS`, ...) and
`Service.setting_rules` (service.py) collects them; keys the spec adds (peer URLs) come from
`_generated/service.json`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .db import DatabaseError, DatabaseURL, redact

if TYPE_CHECKING:
    from .service import Service


class SettingsError(Exception):
    """One or more settings are missing or wrong; `problems` lists each with its fix."""

    def __init__(self, problems: list[str], env_file: Path | None = None) -> None:
        self.problems = problems
        where = f"the environment or in {env_file}" if env_file else "the environment"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid settings (set them in {where}):\n{lines}")


def number(
    low: float, high: float, whole: bool = False, unit: str = ""
) -> Callable[[str], Any]:
    """A parser of a number from `low` to `high` (a whole one if `whole`), `unit` naming what it
    counts in its error ("must be a number of seconds from 0.1 to 60")."""
    kind = ("a whole number" if whole else "a number") + (f" of {unit}" if unit else "")

    def parse(raw: str) -> Any:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high) or (whole and value != int(value)):
            raise ValueError(f"must be {kind} from {low:g} to {high:g}")
        return int(value) if whole else value

    return parse


def _parse_database_url(raw: str) -> str:
    try:
        DatabaseURL.parse(raw)
    except DatabaseError as exc:
        raise ValueError(str(exc)) from None
    return raw


def _parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _parse_positive_int(raw: str) -> int:
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ValueError("must be a whole number of bytes, e.g. 1048576") from None
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _parse_http_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL such as https://payments.example.com")
    return raw.strip().rstrip("/")


def _parse_days(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of days, e.g. 7 (or 0.5 for twelve hours)") from None
    if value < 0:
        raise ValueError("must be 0 or more days")
    return value


def _parse_var_dir(raw: str) -> Path:
    """`var` (the default: var/ in the service's folder), or an existing, writable folder."""
    if raw.strip() in ("var", "var/"):
        return Path("var")
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise ValueError(
            "must be an absolute path such as /home/cpuser/orders-var (a folder outside the "
            "service's folder, so that no web server serving that folder reaches it)"
        )
    if not path.is_dir():
        raise ValueError(f"is not a folder: create it (mkdir -m 700 {path}) or fix the path")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"is not writable by this user (uid {os.getuid()}): fix its owner")
    return path


# The paths SERVICE_VAR_DIR moves: `var/...` relative to the service's folder.
_SQLITE_IN_VAR = re.compile(r"^(sqlite(?:\+\w+)?:///)var/")


def _move_var(values: dict[str, Any], var_dir: Path) -> None:
    """Point the SQLite database and the signing keys written as `var/...` into `var_dir`."""
    url = values.get("DATABASE_URL")
    if url is not None:
        values["DATABASE_URL"] = _SQLITE_IN_VAR.sub(lambda m: f"{m[1]}{var_dir}/", url)
    keys_dir = values.get("SERVICE_KEYS_DIR")
    if keys_dir is not None and not Path(keys_dir).is_absolute():
        parts = Path(keys_dir).parts
        if parts and parts[0] == "var":
            values["SERVICE_KEYS_DIR"] = str(var_dir.joinpath(*parts[1:]))


def _parse_claim_method(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("auto", "skip_locked", "compare_and_set"):
        raise ValueError("must be auto, skip_locked or compare_and_set")
    return value


@dataclass(frozen=True)
class Setting:
    """One environment key: its default (None = required), parser and meaning."""

    name: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


def core_settings(package: str) -> list[Setting]:
    """The general settings of the service whose package is `package`: its database, `var/`
    folder, logs, body size, retention and claims."""
    return [
        Setting(
            "DATABASE_URL",
            f"sqlite:///var/{package}.db",
            _parse_database_url,
            "where the data lives: sqlite:///var/app.db or mysql://user:password@host:3306/name",
            secret=True,
        ),
        Setting(
            "SERVICE_VAR_DIR",
            "var",
            _parse_var_dir,
            "folder of the service's signing keys and SQLite databases: `var/` in DATABASE_URL and "
            "SERVICE_KEYS_DIR means this folder. Outside the service's folder on shared hosting",
        ),
        Setting("LOG_LEVEL", "INFO", _parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        Setting(
            "MAX_BODY_BYTES",
            "1048576",
            _parse_positive_int,
            "largest request body accepted, in bytes (larger ones get 413)",
        ),
        Setting(
            "MESSAGE_RETENTION_DAYS",
            "7",
            _parse_days,
            "days to keep handled (DONE) queue and outbox rows before the worker deletes them",
        ),
        Setting(
            "CLAIM_METHOD",
            "auto",
            _parse_claim_method,
            "how workers claim messages: auto (SKIP LOCKED where the server has it), skip_locked "
            "or compare_and_set",
        ),
    ]


def spec_setting(name: str) -> Setting:
    """The rule for a key the spec adds. Peer URLs (`*_URL`) must be http(s) URLs."""
    parse = _parse_http_url if name.endswith("_URL") else str
    meaning = "an http(s) URL" if name.endswith("_URL") else "a value"
    return Setting(name, None, parse, f"the service spec needs it ({meaning})")


@dataclass(frozen=True)
class Settings:
    """The validated settings of the running service."""

    service: Service
    database_url: str
    log_level: str
    max_body_bytes: int
    values: Mapping[str, Any] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()  # the names `describe` redacts

    @property
    def root(self) -> Path:
        """The service's folder: relative paths in settings (`var/keys`) start there."""
        return self.service.root

    def __getitem__(self, name: str) -> Any:
        """Any setting by its environment name: `settings["PAYMENTS_URL"]`."""
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def log_level_number(self) -> int:
        return logging.getLevelName(self.log_level)

    def describe(self) -> dict[str, str]:
        """Every setting as text with secrets redacted, for `check` and logs."""
        shown = {}
        for name, value in sorted(self.values.items()):
            shown[name] = mask(str(value)) if name in self.secrets else str(value)
        return shown


def mask(value: str) -> str:
    """A secret as it may be shown: a URL without its password, anything else as ***."""
    return redact(value) if "://" in value else "***"


def load(
    rules: list[Setting],
    environ: Mapping[str, str] | None,
    env_file: Path | None,
    only: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Read and parse the settings `rules` name (those among `only`, when given); raise
    `SettingsError` listing every problem.

    `environ` defaults to `os.environ`; `env_file` fills in keys the environment lacks. A
    command that needs a few settings (`migrate`, `keys`) reads `only` those, so a peer URL not
    configured yet does not stop it.
    """
    wanted = rules
    if only is not None:
        names = set(only)
        wanted = [rule for rule in rules if rule.name in names]
    return _parse(rules, wanted, _read(environ, env_file), env_file)


def _read(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    source: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)
    return source


def _parse(
    known: list[Setting],
    rules: list[Setting],
    source: Mapping[str, str],
    env_file: Path | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    if {"DATABASE_URL", "SERVICE_KEYS_DIR"} & {rule.name for rule in rules}:
        # Where `var/` is decides where those two point, so it is checked whenever they are.
        rules = rules + [r for r in known if r.name == "SERVICE_VAR_DIR" and r not in rules]
    for rule in rules:
        raw = source.get(rule.name, "")
        if raw.strip() == "":
            if rule.default is None:
                problems.append(f"{rule.name} is missing: {rule.help}")
                continue
            raw = rule.default
        try:
            values[rule.name] = rule.parse(raw)
        except ValueError as exc:
            shown = mask(raw) if rule.secret else raw
            problems.append(f"{rule.name}={shown!r}: {exc}")
    if problems:
        raise SettingsError(problems, env_file)
    if values.get("SERVICE_VAR_DIR", Path("var")).is_absolute():
        _move_var(values, values["SERVICE_VAR_DIR"])
    return values
