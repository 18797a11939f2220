"""Strict input in messages: a `date` or `date-time` must exist in a message received or
published, as in a request (test_strict_input.py proves the rest of
strict input, on the shop's endpoints)."""

from __future__ import annotations

import json

import pytest

from shoestring_runtime import inbox, outbox
from shoestring_runtime.events import Catalog, InvalidMessage, envelope
from shoestring_runtime.testing import peer_issuers

from .messaging_helpers import TRACEPARENT, rows
from .shop import bearer, create_app, settings_for

DAY = {"type": "string", "format": "date"}
MOMENT = {"type": "string", "format": "date-time"}

STAMPED = {
    "type": "object",
    "properties": {"on": DAY, "at": MOMENT},
    "required": ["on", "at"],
    "additionalProperties": False,
}
STAMPS = Catalog.load(
    {
        "service": {"name": "testsvc"},
        "messages": {"test.stamped": {"to": ["peer_a"], "versions": {"1": {"schema": STAMPED}}}},
        "subscriptions": [
            {"message": "test.stamped", "version": 1, "from": "peer_a", "schema": STAMPED}
        ],
        "retry_policies": {},
    }
)


def stamped(on: str, at: str = "2024-05-01T12:30:00Z") -> dict:
    return envelope(
        source="peer_a",
        type_="test.stamped",
        version=1,
        data={"on": on, "at": at},
        dataschema="urn:test:stamped.v1",
        traceparent=TRACEPARENT,
    )


def test_the_inbox_rejects_a_message_with_a_date_that_does_not_exist(database_url, mdb):
    app = create_app(settings_for(database_url, TRUSTED_ISSUERS=peer_issuers("peer_a")))
    app.extensions[inbox.EXTENSION] = STAMPS
    events = [stamped("2026-02-31"), stamped("2024-02-29", at="2024-05-01T10:00:60Z"),
              stamped("2024-02-29")]
    headers = {
        **bearer([inbox.DELIVER_SCOPE], subject="peer_a", issuer="peer_a"),
        "Content-Type": inbox.BATCH_CONTENT_TYPE,
    }
    response = app.test_client().post(inbox.INBOX_PATH, data=json.dumps(events), headers=headers)
    results = response.get_json()["results"]
    assert [result["status"] for result in results] == ["rejected", "rejected", "accepted"]
    assert "/on is not a day of the calendar" in results[0]["detail"]
    assert "/at has second 60" in results[1]["detail"]
    assert [row["message_id"] for row in rows(mdb)] == [events[2]["id"]]


def test_publishing_a_date_that_does_not_exist_raises_before_anything_is_written():
    outgoing = outbox.Outgoing()
    with pytest.raises(InvalidMessage, match="/on is not a day of the calendar"):
        outbox.publish(outgoing, STAMPS, "test.stamped", 1, {"on": "2023-02-29", "at":
                       "2024-05-01T12:30:00Z"}, traceparent=TRACEPARENT)
    assert len(outgoing) == 0
    outbox.publish(outgoing, STAMPS, "test.stamped", 1, {"on": "2024-02-29", "at":
                   "2024-05-01T12:30:00Z"}, traceparent=TRACEPARENT)
    assert len(outgoing) == 1
