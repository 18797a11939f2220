# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The audit log: who did what, when, in the same transaction as the change itself.

Endpoints marked `audit: true` in the spec get a row per successful call; code may add its own:

    audit.record(ctx.db, action="refund_issued", actor=..., request_id=ctx.request_id,
                 trace_id=ctx.trace_id, detail={"order_id": order_id})

Because the row is written through the open transaction, it exists exactly when the change does.
"""

from __future__ import annotations

import json
from typing import Any

from .db import Connection, utcnow


def record(
    conn: Connection,
    *,
    action: str,
    actor: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row."""
    conn.execute(
        "INSERT INTO audit_log (occurred_at, action, actor, request_id, trace_id, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            utcnow(),
            action,
            actor,
            request_id,
            trace_id,
            json.dumps(detail or {}, sort_keys=True, default=str),
        ),
    )
