"""The AsyncAPI 3.0 document of a service's messages, built from the spec model.

The OpenAPI document describes what a service serves over HTTP; this one describes what it
publishes and consumes:

- one channel per message type (`order.created`), holding a message per major version;
- one `send` operation per published type, listing its live versions (deprecated ones say so,
  and `publish_also` says which versions one publish writes), and one `receive` operation per
  subscription, named after its handler;
- messages as they travel: CloudEvents 1.0 envelopes in structured JSON mode, whose `type`
  carries the major version (`order.created.v1`) and whose `data` is the version's schema
  (under components/schemas, named like the CloudEvents type).

Payload schemas use the AsyncAPI schema format, a superset of JSON Schema draft 07; the spec's
compiled fields only use keywords the two share (full-form schemas are the author's to keep so).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from .spec import converter_name

ASYNCAPI_VERSION = "3.0.0"
CONTENT_TYPE = "application/cloudevents+json"


def asyncapi_document(spec: Mapping[str, Any], *, version: str) -> dict[str, Any]:
    """The AsyncAPI document of `spec`'s messages; `version` is the document's info.version."""
    service = spec["service"]
    package = service["package"]
    document = _Document(service["name"])
    for name, message in sorted((spec.get("messages") or {}).items()):
        document.publish(name, message, package)
    for subscription in spec.get("subscriptions") or []:
        document.receive(subscription, spec)
    info: dict[str, Any] = {"title": service["name"], "version": version}
    description = "\n\n".join(part for part in (service.get("description"), document.summary())
                              if part)
    if description:
        info["description"] = description
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": CONTENT_TYPE,
        "channels": document.channels,
        "operations": document.operations,
        "components": {"messages": document.messages, "schemas": document.schemas},
    }


class _Document:
    def __init__(self, service: str) -> None:
        self.service = service
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}
        self.published: list[str] = []  # "order.created v1 (deprecated), v2" per type
        self.consumed: list[str] = []

    def summary(self) -> str:
        parts = []
        if self.published:
            parts.append("Publishes: " + "; ".join(self.published) + ".")
        if self.consumed:
            parts.append("Consumes: " + "; ".join(self.consumed) + ".")
        return " ".join(parts)

    def channel(self, name: str, description: str) -> dict[str, Any]:
        key = _key(name)
        if key not in self.channels:
            channel: dict[str, Any] = {"address": name, "title": name, "messages": {}}
            if description:
                channel["description"] = description
            self.channels[key] = channel
        return self.channels[key]

    def message(self, name: str, number: int, schema: Any, source: str, *,
                deprecated: bool, note: str) -> str:
        """Add the message of one version (once); returns its key in the channel."""
        key = f"{_key(name)}_v{number}"
        if key in self.messages:
            return key
        event_type = f"{name}.v{number}"
        data = copy.deepcopy(schema) if isinstance(schema, Mapping) else {"type": "object"}
        if deprecated:
            data["deprecated"] = True
        self.schemas[event_type] = data
        message: dict[str, Any] = {
            "name": event_type,
            "title": f"{name} version {number}" + (" (deprecated)" if deprecated else ""),
            "summary": note,
            "contentType": CONTENT_TYPE,
            "payload": _envelope(event_type, source, f"#/components/schemas/{event_type}"),
            "x-message-version": number,
        }
        if deprecated:
            message["tags"] = [{"name": "deprecated"}]
        self.messages[key] = message
        return key

    def publish(self, name: str, message: Mapping[str, Any], package: str) -> None:
        versions = message.get("versions") or {}
        channel = self.channel(name, message.get("description", ""))
        references = []
        described = []
        for text in sorted(versions, key=int):
            version = versions[text]
            number = int(text)
            also = list(version.get("publish_also") or [])
            note = f"{name} v{number}, published by {self.service}."
            if version.get("deprecated"):
                note += " Deprecated: consumers should move to a newer version."
            if also:
                listed = ", ".join(f"v{target}" for target in also)
                modules = ", ".join(f"{package}/handlers/{converter_name(name, number, t)}.py"
                                    for t in also)
                note += f" Publishing it also publishes {listed} (converted by {modules})."
            key = self.message(name, number, version.get("schema"), self.service,
                               deprecated=bool(version.get("deprecated")), note=note)
            channel["messages"][key] = {"$ref": f"#/components/messages/{key}"}
            references.append({"$ref": f"#/channels/{_key(name)}/messages/{key}"})
            described.append(f"v{number}" + (" (deprecated)" if version.get("deprecated") else ""))
        self.published.append(f"{name} {', '.join(described)}")
        targets = list(message.get("to") or [])
        operation: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_key(name)}"},
            "title": f"Publish {name}",
            "summary": f"Publishes {name} ({', '.join(described)})"
            + (f" to {', '.join(targets)}" if targets else "") + ".",
            "messages": references,
            "x-destinations": targets,
        }
        self.operations[f"publish_{_key(name)}"] = operation

    def receive(self, subscription: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
        name, number = subscription["message"], int(subscription["version"])
        source = subscription["from"]
        published = (spec.get("messages") or {}).get(name, {}).get("versions", {}).get(str(number))
        channel = self.channel(name, "")
        if source == self.service and published is not None:
            key = f"{_key(name)}_v{number}"  # its own message: already described as published
        else:
            key = self.message(name, number, subscription.get("schema"), source,
                               deprecated=False,
                               note=f"{name} v{number} from {source}, as {self.service} reads it "
                               "(the fields it declares; others are ignored).")
        channel["messages"].setdefault(key, {"$ref": f"#/components/messages/{key}"})
        self.consumed.append(f"{name} v{number} from {source}")
        self.operations[subscription["handler"]] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{_key(name)}"},
            "title": f"Handle {name} v{number}",
            "summary": f"Handles {name} v{number} from {source} "
            f"(retry policy '{subscription['retry']}').",
            "messages": [{"$ref": f"#/channels/{_key(name)}/messages/{key}"}],
        }


def _envelope(event_type: str, source: str, data_ref: str) -> dict[str, Any]:
    """The schema of a CloudEvents 1.0 envelope (structured JSON mode) around one version."""
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "Unique per message; receivers drop repeats."},
            "source": {"const": source, "description": "The publishing service."},
            "type": {"const": event_type, "description": "Message type and major version."},
            "dataschema": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "traceparent": {"type": "string", "description": "W3C trace context."},
            "data": {"$ref": data_ref},
        },
    }


def _key(name: str) -> str:
    """A message type as a component key: `order.created` -> `order_created`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
