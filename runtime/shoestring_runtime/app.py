# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The Flask application factory.

    app = create_app(service)             # settings from the environment and .env
    app = create_app(service, settings)   # tests pass their own

`service` is the package's `Service` (service.py), which its `__init__.py` builds.

Passenger (cPanel), gunicorn and `python -m <package> serve` all run the app this returns.
Every response an error produces is problem+json; nothing answers with an HTML page or a
traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from . import auth, docs, idempotency, inbox, ratelimit, relay
from .context import Runtime, runtime
from .db import Database, DatabaseError
from .health import add_check, register_health
from .logs import bind_ids, configure_logging, incoming_ids, unbind_ids
from .migrate import pending
from .problems import PROBLEM_JSON, Problem, problem_response
from .routes import Handler, register_endpoints
from .schemas import endpoints
from .service import Service
from .settings import Settings

# Health probes arrive every few seconds; their access lines are logged at DEBUG only.
QUIET_PATHS = frozenset({"/livez", "/readyz"})


def create_app(
    service: Service,
    settings: Settings | None = None,
    handlers: Mapping[str, Handler] | None = None,
) -> Flask:
    """Build the WSGI app of `service`: settings checked, routes from the endpoint table, health
    endpoints. `handlers` defaults to the service's registry.

    Raises `SettingsError` (listing every bad setting) or `GeneratedCodeMissing` (with the
    command that fixes it) instead of starting half-configured.
    """
    settings = service.load_settings() if settings is None else settings
    model = service.model
    handlers = service.registry.HANDLERS if handlers is None else handlers
    log = configure_logging(service.package, settings.log_level)

    app = Flask(service.package, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    db = Database(settings.database_url, base_dir=settings.root)
    app.extensions["chassis"] = Runtime(settings=settings, db=db, log=log, service=model)
    ratelimit.install(app)  # the spec's rate_limits, counted in the database (or Redis)
    idempotency.install(app)  # Idempotency-Key handling for endpoints marked idempotent

    _install_request_ids(app)
    _install_error_handlers(app)
    # Bearer tokens for every endpoint; serves this service's keys at /.well-known/jwks.json.
    auth.install(app, settings, service_name=service.name)
    register_health(app)
    # /readyz warns while a peer's circuit breaker is open (what goes there waits).
    add_check(app, "breakers:open", relay.check_breakers)
    # POST /v1/inbox: where peers deliver the messages this service subscribes to.
    inbox.install(app)
    register_endpoints(app, endpoints(model), handlers)
    for document in ("openapi.json", "asyncapi.json"):  # what it serves; what it publishes
        path = service.generated_dir / document
        if path.is_file():
            app.add_url_rule(f"/{document}", document, _document(path), methods=["GET"])
    docs.install(app, service.generated_dir / "openapi.json")  # /docs: the page for people
    _warn_about_pending_migrations(app, service.package)
    return app


def unavailable_app(service: Service, reason: BaseException) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering 503 problem+json to everything, for when `create_app` failed (bad
    settings, generated code missing). The reason goes to stderr (the server's log) once; the
    client learns only that the service is not configured."""
    print(f"{service.package} cannot start: {reason}", file=sys.stderr, flush=True)
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "the service is not configured correctly; its log says what to fix",
        }
    ).encode()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response(
            "503 Service Unavailable",
            [("Content-Type", PROBLEM_JSON), ("Content-Length", str(len(body)))],
        )
        return [body]

    return application


def _install_request_ids(app: Flask) -> None:
    """Give each request its ids (the caller's X-Request-Id and traceparent when sent), stamp
    them on every log line, echo X-Request-Id, and log one access line per request."""

    # These hooks run on every request: each reads the request and `g` once (every access
    # through Flask's proxies costs a context lookup).
    @app.before_request
    def start() -> None:
        state = g._get_current_object()
        environ = request.environ  # the two headers, without building request.headers
        state.request_id, state.trace_id = incoming_ids(
            {
                "X-Request-Id": environ.get("HTTP_X_REQUEST_ID", ""),
                "traceparent": environ.get("HTTP_TRACEPARENT", ""),
            }
        )
        state.id_tokens = bind_ids(state.request_id, state.trace_id)
        state.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        state = g._get_current_object()
        req = request._get_current_object()  # type: ignore[attr-defined]
        response.headers["X-Request-Id"] = getattr(state, "request_id", "")
        started = getattr(state, "started", None)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2) if started else 0.0
        method, path, status = req.method, req.path, response.status_code
        log = runtime().log
        level = 10 if path in QUIET_PATHS else 20  # DEBUG : INFO
        if log.isEnabledFor(level):
            # makeRecord + handle: the line Logger.log would write, without its walk up the
            # stack for the caller's file and line (the access line has no caller to show).
            record = log.makeRecord(
                log.name,
                level,
                "",
                0,
                "%s %s %s",
                (method, path, status),
                None,
                extra={"method": method, "path": path, "status": status, "duration_ms": elapsed_ms},
            )
            log.handle(record)
        return response

    @app.teardown_request
    def forget(_exc: BaseException | None) -> None:
        tokens = g.pop("id_tokens", None)
        if tokens is not None:
            unbind_ids(tokens)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def on_problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    def on_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 404:
            detail = f"there is no endpoint at {request.path}; check the path and its version"
        elif status == 405:
            allowed = dict(exc.get_headers()).get("Allow", "")
            headers["Allow"] = allowed
            detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        elif status == 413:
            detail = (
                f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes, the "
                "most this service accepts (MAX_BODY_BYTES)"
            )
        else:
            detail = exc.description or ""
        return problem_response(Problem(status, detail, headers=headers))

    @app.errorhandler(DatabaseError)
    def on_database_unreachable(exc: DatabaseError) -> Response:
        # Not a bug of this request: the database is down or refuses the connection. Clients
        # may retry; the log says what to fix.
        runtime().log.error("database unreachable in %s %s: %s", request.method, request.path, exc)
        return problem_response(
            Problem(
                503,
                "the service cannot reach its database right now; retry in a few seconds",
                headers={"Retry-After": "5"},
            )
        )

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        # The traceback goes to the log; the client gets the request id to quote.
        runtime().log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(
            Problem(
                500,
                "the service failed to handle this request; it is logged under this request_id",
            )
        )


def _document(path: Path) -> Callable[[], Response]:
    """A view serving the generated document at `path` (OpenAPI, AsyncAPI) as it is on disk."""

    def serve() -> Response:
        return Response(path.read_bytes(), mimetype="application/json")

    return serve


def _warn_about_pending_migrations(app: Flask, package: str) -> None:
    """Say so in the log when the schema is behind; the app still starts (readyz tells more)."""
    state: Runtime = app.extensions["chassis"]
    db: Database = state.db
    try:
        waiting = pending(db, state.settings.root)
    except Exception as exc:  # the database may be down at start; /readyz reports that
        state.log.warning("could not check for pending migrations: %s", exc)
        return
    if waiting:
        names = ", ".join(migration.name for migration in waiting)
        state.log.warning(
            "%d migration(s) pending (%s): run `python -m %s migrate`", len(waiting), names, package
        )
