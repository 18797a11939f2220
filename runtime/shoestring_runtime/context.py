# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""`Context`: everything a handler gets besides its data.

    def handle(ctx: Context, data: dict) -> dict:
        ctx.db.execute("INSERT INTO orders (order_id, amount_cents) VALUES (%s, %s)", (...))
        ctx.log.info("order placed", extra={"order_id": order_id})
        return {"order_id": order_id}

`ctx.db` is the open transaction: whatever the handler writes commits together when it returns
and rolls back together when it raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from . import events, outbox, peers, queue
from .auth import Identity
from .db import Connection, Database
from .logs import traceparent
from .settings import Settings


@dataclass
class Runtime:
    """The process-wide parts of a running service, kept in `app.extensions["chassis"]`."""

    settings: Settings
    db: Database
    log: logging.Logger
    service: dict[str, Any]  # the spec model from _generated/service.json
    # /readyz runs each of these; see health.py. Name -> check function.
    health_checks: dict[str, Callable[[Runtime], Any]] = field(default_factory=dict)


def runtime() -> Runtime:
    """The `Runtime` of the app handling the current request."""
    return current_app.extensions["chassis"]


@dataclass
class Context:
    """The request (or message) being handled, and the transaction it runs in."""

    db: Connection
    log: logging.Logger | logging.LoggerAdapter
    request_id: str
    trace_id: str
    identity: Identity | None  # the verified caller (auth.py); None outside a request
    settings: Settings

    @property
    def traceparent(self) -> str:
        """A W3C `traceparent` continuing this trace, for outgoing calls and messages."""
        return traceparent(self.trace_id)

    # Messages published and jobs enqueued by the handler, written just before the transaction
    # commits (`flush_messages`), so they exist exactly when the handler's own writes do.
    outgoing: outbox.Outgoing = field(default_factory=outbox.Outgoing)
    # The messages of the spec (`_generated/service.json`), for validating what is published;
    # by default the catalog of the service the settings belong to.
    catalog: events.Catalog | None = None
    # The typed clients of the peers this service calls, made on first use of `peers` and kept
    # for the whole run: the Idempotency-Keys of its calls are numbered within it.
    _peers: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.catalog is None:
            self.catalog = self.settings.service.catalog

    @property
    def peers(self) -> Any:
        """Typed clients of the peers the spec says this service calls, from
        `_generated/peers.py`: `ctx.peers.payments.capture_payment(order_id=..., ...)`. Each call
        has a timeout, safe retries and the peer's circuit breaker (see chassis/peers.py)."""
        if self._peers is None:
            self._peers = peers.bind(self)
        return self._peers

    def publish(self, message_type: str, version: int, data: Any) -> dict[str, Any]:
        """Publish `data` as `message_type` version `version` to every peer the spec sends it to,
        in this transaction; return the CloudEvent.

        Raises `events.InvalidMessage` (naming the field) when the data breaks the message
        version's schema: nothing is written and the handler's transaction rolls back.
        """
        return outbox.publish(
            self.outgoing, self.catalog, message_type, version, data, traceparent=self.traceparent
        )

    def enqueue(
        self, message_type: str, version: int, data: Any, *, delay_seconds: float = 0
    ) -> dict[str, Any]:
        """Queue a background job for this service's worker, in this transaction, to run after
        `delay_seconds`; its handler is the subscriber of (message_type, version)."""
        return queue.enqueue(
            self.outgoing, self.catalog, message_type, version, data,
            traceparent=self.traceparent, delay_seconds=delay_seconds,
        )

    def flush_messages(self) -> None:
        """Write what `publish` and `enqueue` buffered (one INSERT per table). The code that owns
        the transaction calls it last, just before commit."""
        self.outgoing.flush(self.db)
