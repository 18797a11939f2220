# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The inbox: where peers deliver the messages this service subscribes to.

    POST /v1/inbox
    Authorization: Bearer <a token of the sending service, aud = this service, scope inbox:deliver>
    Content-Type: application/cloudevents-batch+json

    [{"specversion": "1.0", "id": "6f1c...", "source": "orders", "type": "order.created.v1",
      "data": {...}, ...}, ...]

    200 {"results": [{"index": 0, "id": "6f1c...", "status": "accepted"},
                     {"index": 1, "id": "a2b9...", "status": "duplicate"},
                     {"index": 2, "id": "c0de...", "status": "rejected",
                      "detail": "order.created v2 data does not match its schema: ..."}]}

The body is a batch of CloudEvents (the JSON batch format of the CloudEvents HTTP binding; plain
`application/json` is accepted too). For the whole request:

- the token must verify (auth.py: a trusted issuer, this service as audience, unexpired) and
  grant `inbox:deliver` (401/403 otherwise, and nothing is stored); its issuer is the sender,
  and its subject must be the same name (a service's own token: a trusted peer cannot claim
  to be another one);
- an empty batch is a probe (a sender's circuit breaker asking whether we are back): it is
  answered once the database answers.

For each message, in the order sent:

- the envelope must be a CloudEvent 1.0 with an id of at most 64 characters, a `type` carrying
  its major version (`order.created.v1`), and `source` equal to the sender: a service delivers
  only its own messages;
- this service must subscribe to that (type, version) `from:` the sender; a version it does
  not read of a type it reads from the sender is `ignored` (acknowledged, not stored: during a
  migration the publisher sends several versions, see `publish_also`);
- the data must match the subscription's schema;
- it is then stored in `message_queue` for the worker, deduplicated on (source, id): a message
  delivered again (the sender never got our answer) is a `duplicate`, stored once.

A message that fails a check is `rejected` with the reason, and the sender dead-letters it: it
will not become acceptable by being sent again. Accepted messages are stored in one transaction;
if that fails the request fails (5xx) and the sender retries the whole batch.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, request

from . import auth
from .context import runtime
from .db import Connection, retry_on_deadlock
from .events import Catalog, MessageError, parse_event_type
from .problems import Problem
from .queue import insert, row_values
from .routes import json_response, read_json_body

log = logging.getLogger(__name__)

INBOX_PATH = "/v1/inbox"
DELIVER_SCOPE = "inbox:deliver"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
EXTENSION = "inbox"
MAX_MESSAGES = 1000
MAX_ID_LENGTH = 64  # message_queue.message_id
MAX_SOURCE_LENGTH = 200  # message_queue.source
ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
# A version of a message this service reads from the sender, but not this version: during a
# migration the publisher sends several (`publish_also`), each receiver keeps those it reads.
IGNORED = "ignored"


def install(app: Flask, catalog: Catalog | None = None) -> None:
    """Mount `POST /v1/inbox` on `app`. `catalog` (default: the app's spec) says which messages
    are subscribed to, from whom, with which schemas."""
    if catalog is None:
        catalog = Catalog.load(app.extensions["chassis"].service)
    app.extensions[EXTENSION] = catalog
    app.add_url_rule(INBOX_PATH, "inbox", receive, methods=["POST"])


def receive() -> Response:
    """The inbox endpoint: authenticate the sender, check each message, store the good ones."""
    identity = auth.authenticate([DELIVER_SCOPE])  # 401/403 problem responses on failure
    g.identity = identity
    # The sender is the issuer, the one name tied to the key that signed the token. A subject
    # other than the issuer would let any trusted peer claim to be another one (it chooses its
    # own `sub`), so a delivery token must be the sending service's own: sub == iss.
    if identity.subject != identity.issuer:
        raise Problem(
            403,
            f"a delivery token must name its issuer as its subject (iss {identity.issuer!r}, "
            f"sub {identity.subject!r}): deliver with the sending service's own token",
        )
    sender = identity.issuer
    batch = read_json_body()
    if not isinstance(batch, list):
        raise Problem(
            400,
            "the body must be a JSON array of CloudEvents (Content-Type: "
            f"{BATCH_CONTENT_TYPE}), e.g. [] to check that the inbox answers",
        )
    if len(batch) > MAX_MESSAGES:
        raise Problem(413, f"a batch holds at most {MAX_MESSAGES} messages; send smaller batches")
    catalog: Catalog = current_app.extensions[EXTENSION]
    results: list[dict[str, Any]] = []
    acceptable: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (result, event)
    for index, event in enumerate(batch):
        result: dict[str, Any] = {"index": index}
        if isinstance(event, dict) and isinstance(event.get("id"), str):
            result["id"] = event["id"]
        reason = check(catalog, sender, event)
        if reason is None:
            acceptable.append((result, event))
        elif reads_another_version(catalog, sender, event):
            result.update(status=IGNORED, detail=reason)
        else:
            result.update(status=REJECTED, detail=reason)
        results.append(result)
    state = runtime()
    if acceptable:
        new_ids = retry_on_deadlock(lambda: store(state.db, sender, acceptable), state.db.dialect)
        for result, event in acceptable:
            result["status"] = ACCEPTED if event["id"] in new_ids else DUPLICATE
            new_ids.discard(event["id"])  # the same id twice in one batch: the second is a copy
    else:
        state.db.ping()  # a probe: say we are up only if the database answers too
    _log(sender, results)
    return json_response({"results": results}, 200)


def check(catalog: Catalog, sender: str, event: Any) -> str | None:
    """Why `event` from `sender` cannot be accepted, or None when it can."""
    if not isinstance(event, dict):
        return "a message must be a JSON object (a CloudEvent)"
    if event.get("specversion") != "1.0":
        return f"specversion must be '1.0', not {event.get('specversion')!r}"
    message_id = event.get("id")
    if not isinstance(message_id, str) or not message_id or len(message_id) > MAX_ID_LENGTH:
        return f"id must be a non-empty string of at most {MAX_ID_LENGTH} characters"
    source = event.get("source")
    if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_LENGTH:
        return f"source must be a non-empty string of at most {MAX_SOURCE_LENGTH} characters"
    if source != sender:
        return (
            f"source {source!r} is not the sender: the token says {sender!r}, and a service "
            "delivers only its own messages"
        )
    content_type = event.get("datacontenttype", "application/json")
    if content_type != "application/json" and not str(content_type).endswith("+json"):
        return f"datacontenttype must be application/json, not {content_type!r}"
    try:
        type_, version = parse_event_type(event.get("type") if isinstance(event.get("type"), str)
                                          else "")
    except MessageError as exc:
        return str(exc)
    subscription = catalog.subscription(type_, version)
    if subscription is None or subscription.get("from") != sender:
        return (
            f"{catalog.service} does not subscribe to {type_} v{version} from {sender}: add the "
            f"subscription to {catalog.service}'s service.yaml, or stop sending it there (`to:`)"
        )
    if "data" not in event:
        return "the message has no data"
    try:
        catalog.check_received(type_, version, event["data"])
    except MessageError as exc:
        return str(exc)
    return None


def reads_another_version(catalog: Catalog, sender: str, event: Any) -> bool:
    """True for a well-formed message from `sender` whose type this service subscribes to from
    it in other versions only: it is acknowledged and dropped (`ignored`), not dead-lettered."""
    if not isinstance(event, dict) or event.get("source") != sender:
        return False
    if event.get("specversion") != "1.0" or not isinstance(event.get("id"), str):
        return False
    try:
        type_, version = parse_event_type(str(event.get("type") or ""))
    except MessageError:
        return False
    read = [int(s["version"]) for s in catalog.subscriptions
            if s["message"] == type_ and s.get("from") == sender]
    return bool(read) and version not in read


def store(
    db: Any, sender: str, acceptable: list[tuple[dict[str, Any], dict[str, Any]]]
) -> set[str]:
    """Insert the acceptable messages into the queue in one transaction; return the ids that
    were new (the others were there already)."""
    events = [event for _result, event in acceptable]
    with db.transaction() as conn:
        known = _known_ids(conn, sender, [event["id"] for event in events])
        fresh = [event for event in events if event["id"] not in known]
        # The unique key (source, message_id) is the real deduplication: a copy that arrives in
        # a concurrent request between the read above and this insert is dropped here, and both
        # requests call it accepted (stored once either way).
        unique = {event["id"]: event for event in fresh}
        insert(conn, [row_values(event) for event in unique.values()])
    return set(unique)


def _known_ids(conn: Connection, sender: str, ids: list[str]) -> set[str]:
    marks = ", ".join(["%s"] * len(ids))
    rows = conn.fetchall(
        f"SELECT message_id FROM message_queue WHERE source = %s AND message_id IN ({marks})",
        (sender, *ids),
    )
    return {row["message_id"] for row in rows}


def _log(sender: str, results: list[dict[str, Any]]) -> None:
    counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0, IGNORED: 0}
    for result in results:
        counts[result["status"]] += 1
    log.info("inbox.received", extra={"sender": sender, **counts})
    for result in results:
        if result["status"] == REJECTED:
            log.warning(
                "inbox.rejected",
                extra={"sender": sender, "message_id": result.get("id"),
                       "reason": result["detail"], "path": request.path},
            )
