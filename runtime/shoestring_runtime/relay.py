# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The relay: delivers the outbox to peers over HTTP, in batches, behind each peer's breaker.

    python -m <package> worker --max-seconds 55     # the worker relays as well as it handles

Every peer in the `to:` lists of the spec's messages gets a `PeerTransport`, a
`transports.Transport` that plugs into the outbox's delivery (`outbox.relay_batch`: the claim,
lease, fencing, backoff and dead letters of claim.py, shared with the queue). In each pass of the
worker, per peer:

1. `ready()` asks the peer's circuit breaker (breaker.py). While it is open the peer is skipped:
   its rows wait, NEW, and spend no attempt. When its cool-down is over, one process of the whole
   service wins the trial and probes the peer with an empty batch (a probe costs no message an
   attempt); an answer closes the breaker and delivery resumes.
2. `relay_batch` claims a batch of the peer's rows and hands them to `deliver`, which POSTs
   them as a CloudEvents batch to `{PEER_URL}/v1/inbox` (inbox.py) with a short-lived token of
   this service (audience: the peer's name, scope `inbox:deliver`), in requests of at most
   RELAY_MAX_BATCH_BYTES, each with a timeout (RELAY_TIMEOUT_SECONDS).
3. The inbox answers per message. Accepted, duplicate and ignored rows (a version the peer does
   not read) are marked delivered (fenced on the lease); a rejected row becomes a dead letter at
   once, with the peer's reason; any other outcome is a failed attempt, retried with backoff,
   dead-lettered after the last one.

What goes wrong, and what it costs:

- the peer cannot be reached, times out, or answers 408/429/502/503/504 (down, overloaded), or
  401/403/404/405 (it does not trust this service, or the URL is wrong: nothing can be delivered
  until someone fixes it): the batch is retried with backoff and the breaker counts a failure;
  BREAKER_FAILURE_THRESHOLD of them in a row open it (a Retry-After on 429/503 opens it at once,
  for that long), after which the rows wait without spending attempts;
- 413 (the batch is larger than the peer accepts): it is split in halves and sent again; a single
  message that is too large is rejected (dead letter: it will never fit);
- 500 or another error for a batch of several message types: each type is sent on its own, so a
  type the peer chokes on does not hold up the others; that type's rows are retried with backoff.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from .breaker import CLOSED, Breaker, BreakerOpen, Permit
from .claim import Claimed
from .events import Catalog
from .health import Check
from .inbox import BATCH_CONTENT_TYPE, DELIVER_SCOPE, INBOX_PATH
from .jsonbody import COMPACT
from .outbox import Rejected
from .peers import (
    CONNECT_TIMEOUT_SECONDS,
    UNAVAILABLE_STATUSES,
    Connector,
    connector_for,
    problem_detail,
    read_body,
    retry_after_seconds,
)
from .transports import Transport

log = logging.getLogger(__name__)

# Answers after which nothing at all can be delivered until someone changes a configuration: the
# peer does not trust this service's token (401, 403), or the URL has no inbox (404, 405).
REFUSING_STATUSES = frozenset({401, 403, 404, 405})
ACCEPTED = frozenset({"accepted", "duplicate", "ignored"})  # "ignored": a version it does not read


@dataclass
class _Down:
    """The peer cannot take anything now; the breaker counts it."""

    reason: str
    retry_after: float | None = None


@dataclass
class _Sent:
    answers: dict[int, str | None] = field(default_factory=dict)
    down: _Down | None = None


class PeerTransport:
    """Delivers outbox rows to one peer's inbox over HTTP (a `transports.Transport`), behind its
    breaker."""

    def __init__(
        self,
        peer: str,
        connector: Connector,
        *,
        base_url: str | None = None,
        timeout_seconds: float | None = None,
        max_batch_bytes: int | None = None,
    ) -> None:
        settings = connector.settings
        self.peer = peer
        self.connector = connector
        self.breaker: Breaker = connector.breaker(peer)
        self.url = (base_url or connector.base_url(peer)).rstrip("/") + INBOX_PATH
        self.timeout = float(timeout_seconds or settings.get("RELAY_TIMEOUT_SECONDS", 10.0))
        self.max_batch_bytes = int(max_batch_bytes or settings.get("RELAY_MAX_BATCH_BYTES", 262144))
        self._permit: Permit | None = None

    def __repr__(self) -> str:
        return f"<PeerTransport {self.peer} {self.url}>"

    # -- the breaker ----------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether to claim this peer's rows now. False while its breaker is open; when the
        cool-down is over and this process wins the trial, the trial is a probe (an empty
        batch), so finding the peer still down costs no message an attempt."""
        try:
            permit = self.breaker.allow()
        except BreakerOpen:
            return False
        if permit.trial:
            down = self._send([]).down
            if down is not None:
                self.breaker.failed(permit, down.reason, down.retry_after)
                return False
            self.breaker.succeeded(permit)
            log.info("relay.peer_back", extra={"peer": self.peer})
            permit = Permit(self.peer)
        self._permit = permit
        return True

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, rows: list[Claimed]) -> Mapping[int, str | None]:
        """Deliver `rows`; None for each row the peer has now, the error text (a `Rejected` when
        it refused the message for good) for the others."""
        permit, self._permit = self._permit, None
        if permit is None:
            permit = self.breaker.allow()  # BreakerOpen fails the batch (relay_batch catches it)
        answers: dict[int, str | None] = {}
        down: _Down | None = None
        for chunk in self._chunks(rows):
            if down is not None:  # the peer went away: the rest is not even tried
                answers.update({row.id: down.reason for row in chunk})
                continue
            sent = self._send(chunk)
            answers.update(sent.answers)
            down = sent.down
        if down is not None:
            self.breaker.failed(permit, down.reason, down.retry_after)
        else:
            self.breaker.succeeded(permit)
        return answers

    def _chunks(self, rows: Sequence[Claimed]) -> list[list[Claimed]]:
        """Consecutive runs of rows whose JSON array stays within max_batch_bytes (a row larger
        than that on its own travels alone)."""
        chunks: list[list[Claimed]] = []
        current: list[Claimed] = []
        size = 2
        for row in rows:
            length = len(_envelope_text(row).encode()) + 1
            if current and size + length > self.max_batch_bytes:
                chunks.append(current)
                current, size = [], 2
            current.append(row)
            size += length
        if current:
            chunks.append(current)
        return chunks

    def _send(self, rows: list[Claimed]) -> _Sent:
        body = "[" + ",".join(_envelope_text(row) for row in rows) + "]"
        token = self.connector.tokens.token(self.peer, [DELIVER_SCOPE])
        try:
            response = self.connector.session(self.peer).post(
                self.url,
                data=body.encode(),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": f"{BATCH_CONTENT_TYPE}; charset=utf-8",
                    "Accept": "application/json",
                    "X-Request-Id": secrets.token_hex(16),
                },
                timeout=(min(CONNECT_TIMEOUT_SECONDS, self.timeout), self.timeout),
                allow_redirects=False,
                stream=True,
            )
            answer = read_body(response)
        except (requests.RequestException, ValueError, OSError) as exc:
            return self._all(rows, _Down(f"{self.url} could not be reached: {exc}"))
        status = response.status_code
        if status == 200:
            return _Sent(self._read_results(rows, answer))
        detail = problem_detail(answer)
        if status in UNAVAILABLE_STATUSES:
            after = retry_after_seconds(response.headers.get("Retry-After"))
            reason = f"{self.peer} answered {status} ({detail})"
            return self._all(rows, _Down(reason, after if status in (429, 503) else None))
        if status in REFUSING_STATUSES:
            reason = _refusal(self.peer, self.connector.service, self.url, status, detail)
            log.error("relay.refused", extra={"peer": self.peer, "status": status,
                                              "reason": reason})
            return self._all(rows, _Down(reason))
        if not rows:
            return _Sent()  # a probe the peer answered, if oddly: it is up
        if status == 413 and len(rows) > 1:
            half = len(rows) // 2
            return _merge(self._send(rows[:half]), self._send(rows[half:]))
        if status == 413:
            return _Sent({rows[0].id: Rejected(
                f"{self.peer} refused the message as too large ({detail}): it is larger than "
                f"{self.peer} accepts (its MAX_BODY_BYTES)"
            )})
        groups = _by_type(rows)
        if len(groups) > 1:
            # One type may be what the peer chokes on: each type on its own, so the others pass.
            return _merge(*(self._send(group) for group in groups))
        error = f"{self.peer} answered {status} for {rows[0].message_type} v{rows[0].version}: "
        return _Sent({row.id: error + detail for row in rows})

    def _read_results(self, rows: list[Claimed], answer: bytes) -> dict[int, str | None]:
        try:
            results = json.loads(answer)["results"]
            by_id = {
                item["id"]: item for item in results if isinstance(item, dict) and "id" in item
            }
        except (ValueError, KeyError, TypeError) as exc:
            error = f"{self.peer}'s inbox answered 200 with a body it should not send ({exc})"
            return {row.id: error for row in rows}
        answers: dict[int, str | None] = {}
        for row in rows:
            result = by_id.get(row.message_id)
            status = result.get("status") if result else None
            detail = (result or {}).get("detail") or "no reason given"
            if status in ACCEPTED:
                answers[row.id] = None
            elif status == "rejected":
                answers[row.id] = Rejected(f"{self.peer} rejected the message: {detail}")
            elif result is None:
                answers[row.id] = f"{self.peer} did not report on this message"
            else:
                answers[row.id] = f"{self.peer} answered {status!r} for this message: {detail}"
        return answers

    def _all(self, rows: list[Claimed], down: _Down) -> _Sent:
        return _Sent({row.id: down.reason for row in rows}, down)


def _envelope_text(row: Claimed) -> str:
    # The envelope as stored (the outbox keeps it as JSON text): no second serialisation.
    return row.payload_text or COMPACT.encode(row.envelope)


def _by_type(rows: list[Claimed]) -> list[list[Claimed]]:
    groups: dict[tuple[str, int], list[Claimed]] = {}
    for row in rows:
        groups.setdefault((row.message_type, row.version), []).append(row)
    return list(groups.values())


def _merge(*parts: _Sent) -> _Sent:
    merged = _Sent()
    for part in parts:
        merged.answers.update(part.answers)
        merged.down = merged.down or part.down
    return merged


def _refusal(peer: str, service: str, url: str, status: int, detail: str) -> str:
    if status in (401, 403):
        return (
            f"{peer} refused this service's token ({status}: {detail}); check that {peer} lists "
            f"{service}'s issuer and JWKS in its TRUSTED_ISSUERS, that its SERVICE_AUDIENCE is "
            f"{peer!r}, and that its subscriptions name {service!r} as `from:`"
        )
    return (
        f"{url} has no inbox ({status}: {detail}); check the peer's base URL setting "
        f"(it must be the root of a shoestring service that subscribes to messages)"
    )


def destinations(catalog: Catalog) -> list[str]:
    """Every peer some published message goes to (the spec's `to:` lists), sorted."""
    return sorted({peer for message in catalog.messages.values() for peer in message.get("to", [])})


def transports(
    settings: Any, catalog: Catalog, connector: Connector | None = None
) -> dict[str, Transport]:
    """The HTTP transport of every destination of `catalog` (the spec's `to:` lists), for
    `Worker(transports=...)`."""
    connector = connector or Connector(settings, sender=catalog.service)
    return {peer: PeerTransport(peer, connector) for peer in destinations(catalog)}


def check_breakers(state: Any) -> Check:
    """`/readyz` check "breakers:open": warns while any peer's circuit breaker is not closed
    (this service is fine, but what it sends there waits)."""
    not_closed = [
        found for found in connector_for(state.settings).breakers.states()
        if found.state != CLOSED
    ]
    if not not_closed:
        return Check("pass", "component", 0)
    described = "; ".join(
        f"{found.name} {found.state} ({found.last_error or 'no error recorded'})"[:300]
        for found in not_closed
    )
    return Check("warn", "component", len(not_closed), output=described)
