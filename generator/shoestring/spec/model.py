"""The normalised spec model: what the renderer and the chassis read (docs/internals.md §2).

Built only from a spec that passed every check, so it can rely on the shapes the checks proved.
Every default is filled in and every field is compiled to JSON Schema; the result is plain
JSON-able data with a stable key order.
"""

from __future__ import annotations

import copy
from typing import Any

from .checks import handler_name, package_name, path_params

OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


def build_model(data: dict[str, Any], compiled: dict[tuple, dict[str, Any]]) -> dict[str, Any]:
    """The model of a valid spec; `compiled` maps each fields location to its JSON Schema."""
    service = data["service"]
    peers = data.get("peers") or {}
    return {
        "shoestring": data["shoestring"],
        "service": {
            "name": service["name"],
            "package": service.get("package") or package_name(service["name"]),
            "description": service.get("description", ""),
        },
        "messages": _messages(data.get("messages") or {}, compiled),
        "subscriptions": [
            _subscription(index, entry, compiled)
            for index, entry in enumerate(data.get("subscriptions") or [])
        ],
        "endpoints": [
            _endpoint(index, entry, compiled)
            for index, entry in enumerate(data.get("endpoints") or [])
        ],
        "rate_limits": {
            name: {"limit": policy["limit"], "per": policy["per"], "key": policy["key"]}
            for name, policy in (data.get("rate_limits") or {}).items()
        },
        "retry_policies": {
            name: {
                "max_attempts": policy["max_attempts"],
                "base_seconds": policy["base_seconds"],
                "max_seconds": policy["max_seconds"],
            }
            for name, policy in (data.get("retry_policies") or {}).items()
        },
        "peers": {
            name: {
                "url_env": peer["url_env"],
                "scopes": list(peer.get("scopes", [])),
                "calls": {
                    call: _call(name, call, entry, peer, compiled)
                    for call, entry in (peer.get("calls") or {}).items()
                },
            }
            for name, peer in peers.items()
        },
        "settings": sorted({peer["url_env"] for peer in peers.values()}),
    }


def _messages(messages: dict[str, Any], compiled: dict[tuple, dict[str, Any]]) -> dict[str, Any]:
    model: dict[str, Any] = {}
    for name, message in messages.items():
        versions = message["versions"]
        model[name] = {
            "description": message.get("description", ""),
            "to": list(message.get("to", [])),
            "versions": {
                version: {
                    "schema": copy.deepcopy(
                        compiled[("messages", name, "versions", version, "fields")]),
                    "deprecated": versions[version].get("deprecated", False),
                    "publish_also": sorted(versions[version].get("publish_also", [])),
                }
                for version in sorted(versions, key=int)
            },
        }
    return model


def _subscription(index: int, entry: dict[str, Any], compiled: dict[tuple, Any]) -> dict[str, Any]:
    schema = tolerant(compiled.get(("subscriptions", index, "fields"), OBJECT_SCHEMA))
    return {
        "message": entry["message"],
        "version": entry["version"],
        "from": entry["from"],
        "retry": entry["retry"],
        "handler": handler_name(entry["message"], entry["version"]),
        "schema": schema,
    }


def tolerant(schema: dict[str, Any]) -> dict[str, Any]:
    """A subscription's schema open to fields it does not declare, at every level of its
    compact objects: a consumer reads the fields it names and ignores the rest, so a publisher
    may add optional fields to a version without breaking anyone (the tolerant reader)."""
    opened = copy.deepcopy(schema)
    _open_object(opened)
    return opened


def _open_object(schema: Any) -> None:
    # Compact types compile objects as {"type": "object", ..., "additionalProperties": false}
    # and lists as {"type": "array" (or [..., "null"]), "items": ...}; full-form schemas that
    # say something else are left as their author wrote them.
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind == "object" and schema.get("additionalProperties") is False:
        del schema["additionalProperties"]
        for child in schema.get("properties", {}).values():
            _open_object(child)
    elif kind == "array" or (isinstance(kind, list) and "array" in kind):
        _open_object(schema.get("items"))


def _call(peer_name: str, name: str, entry: dict[str, Any], peer: dict[str, Any],
          compiled: dict[tuple, Any]) -> dict[str, Any]:
    """A call this service makes to a peer's endpoint (`peers: <peer>: calls: <name>`). The
    response is read tolerantly: fields the peer adds later do not break the caller."""
    at = ("peers", peer_name, "calls", name)
    return {
        "method": entry["method"],
        "path": entry["path"],
        "description": entry.get("description", ""),
        "scopes": list(entry.get("scopes", peer.get("scopes", []))),
        "timeout_seconds": entry.get("timeout_seconds"),
        "path_params": path_params(entry["path"]),
        "request": copy.deepcopy(compiled[(*at, "request")]),
        "response": tolerant(compiled[(*at, "response")]),
    }


def _endpoint(index: int, entry: dict[str, Any], compiled: dict[tuple, Any]) -> dict[str, Any]:
    method = entry["method"]
    return {
        "name": entry["name"],
        "method": method,
        "path": entry["path"],
        "status": entry.get("status", 201 if method == "POST" else 200),
        "description": entry.get("description", ""),
        "scopes": list(entry.get("scopes", [])),
        "rate_limit": entry.get("rate_limit"),
        "idempotent": entry.get("idempotent", False),
        "audit": entry.get("audit", False),
        "path_params": path_params(entry["path"]),
        "request": copy.deepcopy(compiled[("endpoints", index, "request")]),
        "response": copy.deepcopy(compiled[("endpoints", index, "response")]),
    }
