"""Real HTTP servers on 127.0.0.1 for the relay, inbox and peer-client tests: another instance of
this service (a peer's inbox), or a scripted peer that answers what a test needs (503 with
Retry-After, a slow answer, a 500 for one message type) and records what it was sent."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

logging.getLogger("werkzeug").setLevel(logging.ERROR)


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app: Callable[..., Any], port: int = 0) -> Iterator[str]:
    """Serve the WSGI `app` on 127.0.0.1 (threaded) for the block; yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    query: str
    uri: str  # as sent, before any decoding: /v1/things/a%2Fb?verbose=true
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ScriptedPeer:
    """A WSGI app answering each request with the next scripted reply (the last one again once
    the script is used up), or with `answer(request)` when given; records every request."""

    def __init__(
        self,
        *replies: Reply,
        answer: Callable[[Received], Reply] | None = None,
    ) -> None:
        self.replies = list(replies) or [Reply()]
        self.answer = answer
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = Received(
            method=environ["REQUEST_METHOD"],
            path=environ["PATH_INFO"],
            query=environ.get("QUERY_STRING", ""),
            uri=environ.get("REQUEST_URI") or environ.get("RAW_URI") or "",
            headers={
                key[5:].replace("_", "-").title(): value
                for key, value in environ.items()
                if key.startswith("HTTP_")
            } | {"Content-Type": environ.get("CONTENT_TYPE", "")},
            body=environ["wsgi.input"].read(length) if length else b"",
        )
        with self._lock:
            self.received.append(request)
            position = len(self.received) - 1
        if self.answer is not None:
            reply = self.answer(request)
        else:
            reply = self.replies[min(position, len(self.replies) - 1)]
        if reply.delay:
            time.sleep(reply.delay)
        body = b"" if reply.body is None else json.dumps(reply.body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers += list(reply.headers.items())
        start_response(f"{reply.status} Status", headers)
        return [body]
