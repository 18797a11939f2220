# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Transports: how the worker hands a destination its outbox rows.

The worker drains the outbox destination by destination (`outbox.relay_batch`: the claim, lease,
fencing, backoff and dead letters of claim.py). What carries the rows to the destination is its
transport: anything with the two methods of `Transport`. The worker and the outbox know nothing
else about it. Today each destination is a peer's inbox over HTTP: `relay.PeerTransport`, behind
the peer's circuit breaker, made for every destination of the spec by `relay.transports`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .claim import Claimed


class Transport(Protocol):
    """Carries one destination's outbox rows to it."""

    def ready(self) -> bool:
        """Whether to claim the destination's rows now; the worker asks before every batch. False
        (the destination is known to be down) leaves its rows waiting, NEW, spending no attempt."""
        ...

    def deliver(self, rows: list[Claimed]) -> Mapping[int, str | None]:
        """Deliver `rows`; return, for every row id, None when the destination has the message
        or the error text when it does not (an `outbox.Rejected` text when it refused it for
        good: the row becomes a dead letter at once). Rows missing from the answer count as
        failed; raising fails the whole batch with that error."""
        ...
