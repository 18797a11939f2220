"""Handles order.created v1 from orders.

This module is yours: `shoestring generate` created it once and never touches it again.

`event` is the message's data, already valid against
payments/_generated/schemas/subscriptions/order.created.v1.json. What `handle` writes
through ctx.db commits in one transaction with the message's completion, so each message
takes effect once; raise an exception to have the message retried under the 'patient'
retry policy.
"""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, event: dict[str, Any]) -> None:
    """Act on the message: replace this docstring with the real work."""
