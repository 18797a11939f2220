# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""Messages as CloudEvents 1.0, and the catalog of the messages this service knows.

Every message travels as a CloudEvents JSON envelope:

    {"specversion": "1.0", "id": "6f1c...", "source": "orders", "type": "order.created.v1",
     "dataschema": "urn:shoestring:orders:messages:order.created.v1",
     "time": "2024-05-01T12:30:00.123Z", "datacontenttype": "application/json",
     "traceparent": "00-<trace id>-<span id>-01", "data": {...}}

The type carries the major version (`order.created.v1`), so a consumer can tell versions apart
without opening the data. The catalog reads `_generated/service.json`: which messages this
service publishes (with their schemas and destinations), which it subscribes to, and the retry
policies.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .claim import DEFAULT_POLICY, RetryPolicy
from .logs import utc_timestamp
from .schemas import compile_check, to_jsonable, validation_errors, validator_for

SPECVERSION = "1.0"
_TYPE = re.compile(r"^(?P<name>.+)\.v(?P<version>[1-9][0-9]*)$")


class MessageError(ValueError):
    """A message cannot be published, enqueued or handled as it is; the text says why and how
    to fix it."""


class UnknownMessage(MessageError):
    """The (type, version) is not in the service spec."""


class InvalidMessage(MessageError):
    """The data does not match the schema of its (type, version)."""

    def __init__(self, type_: str, version: int, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        listed = "; ".join(f"{error['pointer'] or '/'} {error['detail']}" for error in errors)
        super().__init__(f"{type_} v{version} data does not match its schema: {listed}")


def event_type(type_: str, version: int) -> str:
    """`order.created`, 1 -> `order.created.v1`."""
    return f"{type_}.v{version}"


def parse_event_type(value: str) -> tuple[str, int]:
    """`order.created.v1` -> (`order.created`, 1); MessageError when there is no version."""
    match = _TYPE.match(value or "")
    if not match:
        raise MessageError(
            f"CloudEvents type {value!r} carries no major version: expected e.g. 'order.created.v1'"
        )
    return match["name"], int(match["version"])


def envelope(
    *,
    source: str,
    type_: str,
    version: int,
    data: Any,
    dataschema: str,
    traceparent: str,
    id_: str | None = None,
) -> dict[str, Any]:
    """A CloudEvents 1.0 envelope (JSON format) around `data`."""
    return {
        "specversion": SPECVERSION,
        "id": id_ or str(uuid.uuid4()),
        "source": source,
        "type": event_type(type_, version),
        "dataschema": dataschema,
        "time": utc_timestamp(time.time()),
        "datacontenttype": "application/json",
        "traceparent": traceparent,
        "data": data,
    }


@dataclass
class Catalog:
    """The messages of this service, from `_generated/service.json`."""

    service: str
    messages: dict[str, Any]
    subscriptions: list[dict[str, Any]]
    retry_policies: dict[str, Any]
    converters: Callable[[], Mapping[tuple[str, int, int], Any]] | None = None
    _validators: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    _by_key: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    _policies: dict[tuple[str, int], RetryPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Looked up for every message the worker handles.
        self._by_key = {(s["message"], int(s["version"])): s for s in self.subscriptions}

    @classmethod
    def load(
        cls,
        model: dict[str, Any],
        converters: Callable[[], Mapping[tuple[str, int, int], Any]] | None = None,
    ) -> Catalog:
        """The catalog of the spec model `model`; `converters` loads the user's converters
        between versions (`Service.converters`), which `publish_also` needs."""
        return cls(
            service=model["service"]["name"],
            messages=model.get("messages") or {},
            subscriptions=model.get("subscriptions") or [],
            retry_policies=model.get("retry_policies") or {},
            converters=converters,
        )

    # -- publishing -----------------------------------------------------------------------

    def published_schema(self, type_: str, version: int) -> dict[str, Any]:
        """The schema of a message this service publishes; UnknownMessage when it does not."""
        message = self.messages.get(type_)
        if message is None:
            known = ", ".join(sorted(self.messages)) or "none"
            raise UnknownMessage(
                f"{self.service} does not publish {type_!r} (it publishes: {known}): declare it "
                "under `messages:` in service.yaml and run `shoestring generate`"
            )
        versions = message.get("versions") or {}
        if str(version) not in versions:
            raise UnknownMessage(
                f"{type_} has no version {version} (versions: {', '.join(sorted(versions))}): "
                f"add it under `messages: {type_}: versions:` in service.yaml and run "
                "`shoestring generate`"
            )
        return versions[str(version)].get("schema") or {"type": "object"}

    def destinations(self, type_: str) -> list[str]:
        """The peers a published message goes to (the spec's `to:`)."""
        return list((self.messages.get(type_) or {}).get("to") or [])

    def dataschema(self, type_: str, version: int) -> str:
        """The CloudEvents dataschema URI of a message version."""
        schema = self.published_schema(type_, version)
        name = event_type(type_, version)
        return schema.get("$id") or f"urn:shoestring:{self.service}:messages:{name}"

    # -- consuming ------------------------------------------------------------------------

    def subscription(self, type_: str, version: int) -> dict[str, Any] | None:
        """The spec's subscription to (type, version), or None."""
        return self._by_key.get((type_, version))

    def local_subscription(self, type_: str, version: int) -> bool:
        """True when this service subscribes to a message it publishes itself (`from:` itself):
        such messages go straight into its own queue."""
        subscription = self.subscription(type_, version)
        return subscription is not None and subscription.get("from") == self.service

    def retry_policy(self, type_: str, version: int) -> RetryPolicy:
        """The retry policy of the subscription to (type, version); the spec's `default` policy,
        else the chassis default, for background jobs and the outbox."""
        policy = self._policies.get((type_, version))
        if policy is None:
            subscription = self.subscription(type_, version)
            name = (subscription or {}).get("retry") or "default"
            spec = self.retry_policies.get(name)
            policy = RetryPolicy.from_spec(spec) if spec else DEFAULT_POLICY
            self._policies[(type_, version)] = policy
        return policy

    def default_policy(self) -> RetryPolicy:
        policy = self.retry_policies.get("default")
        return RetryPolicy.from_spec(policy) if policy else DEFAULT_POLICY

    # -- validation -----------------------------------------------------------------------

    def check_published(self, type_: str, version: int, data: Any) -> Any:
        """`data` in its JSON form, validated against the published schema (InvalidMessage)."""
        schema = self.published_schema(type_, version)
        return self._check("published", type_, version, to_jsonable(data), schema)

    def check_received(self, type_: str, version: int, data: Any) -> Any:
        """`data` (parsed JSON) validated against this service's subscription schema of
        (type, version), or its published schema for a job it enqueues to itself."""
        subscription = self.subscription(type_, version)
        if subscription is None:
            return self.check_published(type_, version, data)
        schema = subscription.get("schema") or {"type": "object"}
        return self._check("received", type_, version, data, schema)

    def _check(self, kind: str, type_: str, version: int, data: Any, schema: dict) -> Any:
        key = (kind, type_, version)
        checks = self._validators.get(key)
        if checks is None:
            checks = self._validators[key] = (compile_check(schema), validator_for(schema))
        quick, validator = checks
        if quick is not None and quick(data):
            return data
        # The full validator decides (and explains) whenever the quick check cannot say yes.
        errors = validation_errors(validator, data)
        if errors:
            raise InvalidMessage(type_, version, errors)
        return data
