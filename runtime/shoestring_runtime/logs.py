# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Structured logs: one JSON object per line, each carrying the request id and trace id.

    {"time": "2024-05-01T12:30:00.123Z", "level": "INFO", "logger": "orders.http",
     "message": "POST /v1/orders 201", "request_id": "9f2c...", "trace_id": "4bf92f35...",
     "method": "POST", "path": "/v1/orders", "status": 201, "duration_ms": 12.4}

Ids come from the caller when it sends them (`X-Request-Id`, W3C `traceparent`) so one
operation can be followed across services; otherwise they are made up here. Passenger and
systemd both collect stderr, where these lines go.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# Accept a caller's request id only if it is short and plain, so it is safe in logs and headers.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Waitress warns "Task queue depth is N" each time a request waits for a free thread: under
# load, once per request. One line per interval says the same (with how many were held back).
QUEUE_WARNING_INTERVAL_SECONDS = 60.0

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def trace_id_from(traceparent: str | None) -> str | None:
    """The trace id of a valid `traceparent` header, else None."""
    match = _TRACEPARENT.match((traceparent or "").strip().lower())
    if not match or match.group(1) == "ff" or set(match.group(2)) == {"0"}:
        return None
    if set(match.group(3)) == {"0"}:
        return None
    return match.group(2)


def incoming_ids(headers: Mapping[str, str]) -> tuple[str, str]:
    """(request_id, trace_id) for a request: the caller's when valid, fresh ones otherwise."""
    request_id = (headers.get("X-Request-Id") or "").strip()
    if not _REQUEST_ID.match(request_id):
        request_id = secrets.token_hex(16)
    trace_id = trace_id_from(headers.get("traceparent")) or new_trace_id()
    return request_id, trace_id


def traceparent(trace_id: str, span_id: str | None = None) -> str:
    """A `traceparent` header value continuing `trace_id` (sampled)."""
    return f"00-{trace_id}-{span_id or new_span_id()}-01"


@contextmanager
def bound_ids(request_id: str | None, trace_id: str | None) -> Iterator[None]:
    """Stamp every log line written inside the block with these ids (also for a worker's job)."""
    tokens = (_request_id.set(request_id), _trace_id.set(trace_id))
    try:
        yield
    finally:
        _request_id.reset(tokens[0])
        _trace_id.reset(tokens[1])


def bind_ids(request_id: str | None, trace_id: str | None) -> tuple[Any, Any]:
    """Like `bound_ids` for code split across hooks (Flask's before/after request)."""
    return _request_id.set(request_id), _trace_id.set(trace_id)


def unbind_ids(tokens: tuple[Any, Any]) -> None:
    _request_id.reset(tokens[0])
    _trace_id.reset(tokens[1])


class JSONFormatter(logging.Formatter):
    """Formats a record as one line of JSON with the current ids and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id, trace_id = _request_id.get(), _trace_id.get()
        if request_id:
            entry["request_id"] = request_id
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


# One encoder for every line (json.dumps with `default=` would build a new one each time);
# values JSON has no form for (a datetime, a UUID) are logged as their str().
_ENCODER = json.JSONEncoder(default=str)


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def utc_timestamp(created: float) -> str:
    """`created` (Unix seconds) as ISO 8601 UTC with milliseconds: 2024-05-01T12:30:00.123Z."""
    seconds = int(created)
    return f"{_utc_second(seconds)}.{int((created - seconds) * 1000):03d}Z"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the moment (test runners replace it per test)."""

    def __init__(self) -> None:
        super().__init__()
        self._shoestring = True

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stderr


class Throttle(logging.Filter):
    """Lets one record through per `seconds`; the next one that passes carries `suppressed`,
    the number held back meanwhile. For messages that repeat under load."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return False
            self._next = now + self.seconds
            held, self._held = self._held, 0
        if held:
            record.suppressed = held
        return True


def configure_logging(package: str, level: str) -> logging.Logger:
    """Send the package's logs (and the web server's) as JSON lines to stderr at `level`.

    Safe to call more than once (tests create many apps): the handler is installed once.
    """
    for name in (package, "waitress"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(getattr(handler, "_shoestring", False) for handler in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(JSONFormatter())
            logger.addHandler(handler)
        logger.propagate = False  # the root logger would print the same line again, unformatted
    queue = logging.getLogger("waitress.queue")
    if not any(isinstance(found, Throttle) for found in queue.filters):
        # Logged by waitress's I/O thread while it holds the task queue's lock: a line per
        # request would slow every thread down just when the service is busiest.
        queue.addFilter(Throttle(QUEUE_WARNING_INTERVAL_SECONDS))
    return logging.getLogger(package)
