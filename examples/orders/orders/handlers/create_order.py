"""POST /v1/orders: Place an order.

This module is yours: `shoestring generate` created it once and never touches it again.

`data` is the request (path parameters, then the query string for GET and DELETE or the
JSON body), already valid against
orders/_generated/schemas/endpoints/create_order.request.json. Return the response body:
it must be valid against create_order.response.json in the same folder.
"""

from typing import Any

from shoestring_runtime import Context


def handle(ctx: Context, data: dict[str, Any]) -> dict[str, Any]:
    # An example that satisfies the response schema, so the service answers from the
    # start. Replace it with the real work: read and write through ctx.db, publish with
    # ctx.publish(...); all of it commits in one transaction when this function returns.
    return {"order_id": "00000000-0000-4000-8000-000000000000", "status": "pending"}
