"""Settings: read from the environment and `.env`, checked once at start-up.

Every problem is collected before anything fails, so one start-up error lists all of them:

    invalid settings (set them in the environment or in /srv/orders/.env):
      - MAX_BODY_BYTES='lots': must be a whole number of bytes, e.g. 1048576
      - PAYMENTS_URL is missing: the service spec needs it (an http(s) URL)

The environment wins over `.env`, so a hosting panel's variables override the file.
To add a chassis setting, add a `Setting` to `chassis_settings`; keys the spec adds (peer URLs)
come from `_generated/service.json`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .auth import auth_settings, issuer_problem
from .db import DatabaseError, DatabaseURL, redact
from .idempotency import IDEMPOTENCY_SETTINGS
from .peers import PEER_SETTINGS
from .ratelimit import RATE_LIMIT_SETTINGS

if TYPE_CHECKING:
    from .service import Service


class SettingsError(Exception):
    """One or more settings are missing or wrong; `problems` lists each with its fix."""

    def __init__(self, problems: list[str], env_file: Path | None = None) -> None:
        self.problems = problems
        where = f"the environment or in {env_file}" if env_file else "the environment"
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid settings (set them in {where}):\n{lines}")


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


def chassis_settings(service: Service) -> list[Setting]:
    """The rules of every setting the chassis reads, for `service`."""
    return [*_core_settings(service.package), *_feature_settings(service.root)]


def _core_settings(package: str) -> list[Setting]:
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


def _feature_settings(root: Path) -> list[Setting]:
    # Service identity and token verification (auth.py documents each key).
    rules = [Setting(*entry) for entry in auth_settings(root)]
    # Rate limits (ratelimit.py) and idempotency keys (idempotency.py).
    rules += [Setting(*entry) for entry in RATE_LIMIT_SETTINGS + IDEMPOTENCY_SETTINGS]
    # Calls to peers: timeouts, retries, the relay's batches, circuit breakers (peers.py).
    rules += [Setting(*entry) for entry in PEER_SETTINGS]
    return rules


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
        secret = {setting.name for setting in chassis_settings(self.service) if setting.secret}
        shown = {}
        for name, value in sorted(self.values.items()):
            shown[name] = mask(str(value)) if name in secret else str(value)
        return shown


def mask(value: str) -> str:
    """A secret as it may be shown: a URL without its password, anything else as ***."""
    return redact(value) if "://" in value else "***"


def load_settings(
    service: Service,
    environ: Mapping[str, str] | None,
    env_file: Path | None,
    spec_keys: list[str] | None = None,
) -> Settings:
    """Read, parse and check every setting of `service`; raise `SettingsError` listing all
    problems.

    `environ` defaults to `os.environ`; `env_file` fills in keys the environment lacks;
    `spec_keys` defaults to the keys in `_generated/service.json`.
    """
    if spec_keys is None:
        spec_keys = list(service.model.get("settings", []))
    chassis = chassis_settings(service)
    rules = chassis + [spec_setting(name) for name in spec_keys]
    values = _parse(chassis, rules, _read(environ, env_file), env_file)
    if values["SERVICE_ISSUER"]:
        problem = issuer_problem(values["SERVICE_ISSUER"], service.name)
        if problem is not None:
            raise SettingsError([problem], env_file)
    return Settings(
        service=service,
        database_url=values["DATABASE_URL"],
        log_level=values["LOG_LEVEL"],
        max_body_bytes=values["MAX_BODY_BYTES"],
        values=MappingProxyType(values),
    )


def load_database_url(
    service: Service, environ: Mapping[str, str] | None, env_file: Path | None
) -> str:
    """DATABASE_URL alone, checked: for commands that need only the database (`migrate`), so a
    peer URL not configured yet does not stop a schema migration."""
    return load_only(service, ["DATABASE_URL"], environ, env_file)["DATABASE_URL"]


def load_only(
    service: Service,
    names: Iterable[str],
    environ: Mapping[str, str] | None,
    env_file: Path | None,
) -> dict[str, Any]:
    """Some chassis settings alone, checked: for commands that need only those (`keys`,
    `token`), so a peer URL not configured yet does not stop them."""
    wanted = set(names)
    chassis = chassis_settings(service)
    rules = [setting for setting in chassis if setting.name in wanted]
    return _parse(chassis, rules, _read(environ, env_file), env_file)


def _read(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    source: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)
    return source


def _parse(
    chassis: list[Setting],
    rules: list[Setting],
    source: Mapping[str, str],
    env_file: Path | None,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    if {"DATABASE_URL", "SERVICE_KEYS_DIR"} & {rule.name for rule in rules}:
        # Where `var/` is decides where those two point, so it is checked whenever they are.
        rules = rules + [r for r in chassis if r.name == "SERVICE_VAR_DIR" and r not in rules]
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
