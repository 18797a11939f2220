# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Health endpoints, in the `application/health+json` format (draft-inadarei-api-health-check).

- `GET /livez`: the process is up and answering. Touches nothing else, so a slow database never
  gets a live process restarted.
- `GET /readyz`: the service can do its work. Runs every registered check (the database by
  default); 200 with status "pass" or "warn", 503 with status "fail" when any check fails.

To add a check, register a function returning a `Check`:

    health.add_check(app, "outbox:backlogAge", check_outbox_backlog)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app

from .context import Runtime, runtime

HEALTH_JSON = "application/health+json"
_SEVERITY = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    """The outcome of one check: its status and what it observed."""

    status: str  # "pass" | "warn" | "fail"
    component_type: str = "component"
    observed_value: Any = None
    observed_unit: str | None = None
    output: str | None = None  # why it warns or fails; never a secret

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "componentType": self.component_type,
            "status": self.status,
            "time": dt.datetime.now(dt.timezone.utc)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
        }
        if self.observed_value is not None:
            entry["observedValue"] = self.observed_value
        if self.observed_unit:
            entry["observedUnit"] = self.observed_unit
        if self.output:
            entry["output"] = self.output
        return entry


def check_database(state: Runtime) -> Check:
    """The database answers a trivial query; reports how long it took."""
    started = time.perf_counter()
    try:
        state.db.ping()
    except Exception as exc:
        state.log.warning("readiness: database check failed", exc_info=True)
        return Check("fail", "datastore", output=f"{type(exc).__name__}: {exc}")
    elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
    return Check("pass", "datastore", elapsed_ms, "ms")


def add_check(app: Flask, name: str, check: Callable[[Runtime], Check]) -> None:
    """Make `/readyz` run `check` under `name` ("component:measurement", as in
    "database:responseTime")."""
    app.extensions["chassis"].health_checks[name] = check


def register_health(app: Flask) -> None:
    app.add_url_rule("/livez", "health.livez", livez, methods=["GET"])
    app.add_url_rule("/readyz", "health.readyz", readyz, methods=["GET"])
    add_check(app, "database:responseTime", check_database)


def livez() -> Response:
    return _health_response({"status": "pass"}, 200)


def readyz() -> Response:
    state = runtime()
    checks: dict[str, list[dict[str, Any]]] = {}
    worst = "pass"
    for name, check in state.health_checks.items():
        try:
            outcome = check(state)
        except Exception as exc:  # a broken check says so instead of breaking the endpoint
            state.log.exception("readiness check %s raised", name)
            outcome = Check("fail", output=f"the check raised {type(exc).__name__}")
        checks[name] = [outcome.to_dict()]
        if _SEVERITY.get(outcome.status, 2) > _SEVERITY[worst]:
            worst = outcome.status if outcome.status in _SEVERITY else "fail"
    body = {
        "status": worst,
        "serviceId": state.service.get("service", {}).get("name", ""),
        "description": state.service.get("service", {}).get("description", ""),
        "checks": checks,
    }
    return _health_response(body, 503 if worst == "fail" else 200)


def _health_response(body: dict[str, Any], status: int) -> Response:
    response = Response(current_app.json.dumps(body), status=status, mimetype=HEALTH_JSON)
    response.headers["Cache-Control"] = "no-store"
    return response
