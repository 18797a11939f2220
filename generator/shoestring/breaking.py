"""Breaking changes: what a new spec breaks for the peers and clients of the old one.

`compare(old, new)` walks two spec models and reports every change that an unchanged peer or
client would notice, each as a `Finding` naming its rule, where it is in the new spec
(file:line:col; for a removal, the parent in the new spec and the old position), and how to make
the change without breaking anyone. `shoestring breaking --against REF` compares with a git ref
or a file; `shoestring generate` compares with the spec the manifest last accepted.

Direction decides what breaks:

- a published message is read by consumers: it may gain optional fields, nothing else; each
  version is a contract of its own, and a change is a new version (`publish_also` keeps the old
  one flowing while consumers move);
- a request is read by the service: the new schema must accept everything the old one did;
- a response is read by clients: the new schema may only produce what the old one could;
- a subscription is this service reading: it may not refuse messages the old one accepted,
  because some are already waiting in its queue.

Rules have stable ids (in the style of `buf breaking`) and sit in nested groups, so a team
chooses how strict to be: WIRE (an unchanged peer or client fails as soon as this deploys),
CONSUMERS (also messages already stored and clients' code; the default), STRICT (also
renames and widened responses). `breaking: {use: GROUP, except: [RULE, ...]}` in the spec, or
`--rules` and `--ignore` on the command line, choose.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import LoadResult, load_spec_text
from .spec.checks import route_shape
from .spec.compatibility import (
    EXACT,
    LOWER,
    UPPER,
    accepts_type,
    json_types,
    narrowed,
    split_null,
    type_text,
)
from .spec.document import Node, locate
from .spec.positions import ITEMS, field_path

WIRE, CONSUMERS, STRICT = "WIRE", "CONSUMERS", "STRICT"
GROUPS = (WIRE, CONSUMERS, STRICT)
DEFAULT_GROUP = CONSUMERS


@dataclass(frozen=True)
class Rule:
    """A kind of breaking change; `group` is the narrowest group that contains it."""

    id: str
    group: str
    summary: str


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


RULES: dict[str, Rule] = _rules(
    # Messages this service publishes: consumers read them.
    Rule("MESSAGE_REMOVED", WIRE, "a published message is no longer published"),
    Rule("MESSAGE_VERSION_REMOVED", WIRE, "a published version of a message is gone"),
    Rule("MESSAGE_DESTINATION_REMOVED", WIRE, "a peer no longer receives a message (`to:`)"),
    Rule("FIELD_REMOVED", WIRE, "a field of a published message version is gone"),
    Rule("FIELD_TYPE_CHANGED", WIRE, "a field of a published message version changed type"),
    Rule("FIELD_MADE_OPTIONAL", WIRE, "a required field of a published message may be missing"),
    Rule("FIELD_MADE_REQUIRED", CONSUMERS,
         "an optional message field became required: stored messages lack it"),
    Rule("REQUIRED_FIELD_ADDED", CONSUMERS,
         "a required field was added to an existing message version: stored messages lack it"),
    Rule("ENUM_VALUE_REMOVED", CONSUMERS,
         "a value of a message field's enum is gone: stored messages may hold it"),
    Rule("FIELD_CONSTRAINT_NARROWED", CONSUMERS,
         "a message field accepts less (maxLength lowered, minimum raised, pattern changed...)"),
    # Subscriptions: this service reads what peers publish.
    Rule("SUBSCRIPTION_REMOVED", CONSUMERS,
         "a subscription is gone: queued messages lose their handler, the publisher still sends"),
    Rule("SUBSCRIPTION_NARROWED", CONSUMERS,
         "a subscription refuses messages it accepted before (queued messages among them)"),
    # Endpoints: clients call them.
    Rule("ENDPOINT_REMOVED", WIRE, "an endpoint is gone"),
    Rule("ENDPOINT_METHOD_CHANGED", WIRE, "an endpoint answers another HTTP method"),
    Rule("ENDPOINT_PATH_CHANGED", WIRE, "an endpoint moved to another path"),
    Rule("ENDPOINT_SCOPE_ADDED", WIRE, "an endpoint needs a scope existing tokens lack"),
    Rule("ENDPOINT_IDEMPOTENCY_KEY_REQUIRED", WIRE,
         "an endpoint now requires the Idempotency-Key header"),
    Rule("ENDPOINT_STATUS_CHANGED", CONSUMERS, "an endpoint answers another success status"),
    Rule("ENDPOINT_RENAMED", STRICT,
         "an endpoint was renamed (same route): its OpenAPI operationId changes"),
    Rule("REQUEST_FIELD_REMOVED", WIRE,
         "a request field is gone: clients still send it and unknown fields are refused"),
    Rule("REQUEST_FIELD_ADDED_REQUIRED", WIRE, "a required request field was added"),
    Rule("REQUEST_FIELD_MADE_REQUIRED", WIRE, "an optional request field became required"),
    Rule("REQUEST_FIELD_TYPE_CHANGED", WIRE,
         "a request field no longer accepts the type it accepted"),
    Rule("REQUEST_ENUM_VALUE_REMOVED", WIRE, "a request field no longer accepts an enum value"),
    Rule("REQUEST_FIELD_CONSTRAINT_NARROWED", WIRE,
         "a request field accepts less (maxLength lowered, minimum raised, pattern changed...)"),
    Rule("RESPONSE_FIELD_REMOVED", WIRE, "a response field is gone"),
    Rule("RESPONSE_FIELD_MADE_OPTIONAL", WIRE, "a required response field may be missing"),
    Rule("RESPONSE_FIELD_TYPE_CHANGED", WIRE, "a response field changed type"),
    Rule("RESPONSE_ENUM_VALUE_ADDED", STRICT,
         "a response field may hold a value clients do not know"),
)


def rules_of(group: str) -> list[str]:
    """The rule ids a group applies: its own and those of the narrower groups."""
    depth = GROUPS.index(group)
    return [rule.id for rule in RULES.values() if GROUPS.index(rule.group) <= depth]


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.col}


@dataclass(frozen=True)
class RemovedField:
    """A field a published message version no longer has: `steps` from its fields mapping
    (property names and `ITEMS`), for the tools that look for what still uses it."""

    message: str
    version: int
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    """One breaking change: the rule, what changed, where, and how to do it compatibly.
    `removed` names the field when the change removed one from a published message."""

    rule: str
    message: str
    fix: str
    location: Location
    old_location: Location | None = None
    removed: RemovedField | None = field(default=None, compare=False)

    @property
    def group(self) -> str:
        return RULES[self.rule].group

    def format(self) -> str:
        """`file:line:col: RULE: message (was at file:line:col) — fix`."""
        text = f"{self.location}: {self.rule}: {self.message}"
        if self.old_location is not None:
            text += f" (was at {self.old_location})"
        return f"{text} — {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "group": self.group,
            "message": self.message,
            "fix": self.fix,
            **self.location.to_dict(),
            "old": self.old_location.to_dict() if self.old_location else None,
        }


@dataclass(frozen=True)
class Side:
    """One spec of a comparison: its model, and its document for positions when there is one
    (a spec accepted in the manifest has no YAML any more)."""

    spec: Mapping[str, Any]
    file: str
    root: Node | None = None

    @classmethod
    def of(cls, result: LoadResult, file: str) -> Side:
        assert result.spec is not None
        return cls(result.spec, file, result.root)

    def at(self, path: list[str | int], *, at_key: bool = False) -> Location:
        line, col = locate(self.root, path, at_key=at_key)
        return Location(self.file, line, col)


@dataclass
class Policy:
    """Which rules apply: a group, less the rules excepted."""

    use: str = DEFAULT_GROUP
    excepted: set[str] = field(default_factory=set)

    @classmethod
    def from_spec(cls, root: Node | None) -> Policy:
        """The `breaking:` section of a spec (the loader has checked its shape and ids)."""
        data = root.value if root is not None and isinstance(root.value, dict) else {}
        section = data.get("breaking") or {}
        return cls(section.get("use", DEFAULT_GROUP), set(section.get("except", [])))

    def applies(self, rule: str) -> bool:
        return rule in rules_of(self.use) and rule not in self.excepted


def compare(old: Side, new: Side, policy: Policy | None = None) -> list[Finding]:
    """Every breaking change from `old` to `new` that `policy` applies, in the new spec's order."""
    policy = policy or Policy()
    comparison = _Comparison(old, new)
    comparison.messages()
    comparison.subscriptions()
    comparison.endpoints()
    found = [finding for finding in comparison.findings if policy.applies(finding.rule)]
    return sorted(found, key=lambda f: (f.location.line, f.location.col, f.rule, f.message))


# -- schemas ------------------------------------------------------------------------------------

MESSAGE, REQUEST, RESPONSE, SUBSCRIPTION = "message", "request", "response", "subscription"
# What a kind of change is called for each kind of schema; None: the change breaks no one.
_FIELD_RULES: dict[str, dict[str, str | None]] = {
    "removed": {MESSAGE: "FIELD_REMOVED", REQUEST: "REQUEST_FIELD_REMOVED",
                RESPONSE: "RESPONSE_FIELD_REMOVED", SUBSCRIPTION: None},
    "added_required": {MESSAGE: "REQUIRED_FIELD_ADDED", REQUEST: "REQUEST_FIELD_ADDED_REQUIRED",
                       RESPONSE: None, SUBSCRIPTION: "SUBSCRIPTION_NARROWED"},
    "made_required": {MESSAGE: "FIELD_MADE_REQUIRED", REQUEST: "REQUEST_FIELD_MADE_REQUIRED",
                      RESPONSE: None, SUBSCRIPTION: "SUBSCRIPTION_NARROWED"},
    "made_optional": {MESSAGE: "FIELD_MADE_OPTIONAL", REQUEST: None,
                      RESPONSE: "RESPONSE_FIELD_MADE_OPTIONAL", SUBSCRIPTION: None},
    "type_changed": {MESSAGE: "FIELD_TYPE_CHANGED", REQUEST: "REQUEST_FIELD_TYPE_CHANGED",
                     RESPONSE: "RESPONSE_FIELD_TYPE_CHANGED",
                     SUBSCRIPTION: "SUBSCRIPTION_NARROWED"},
    "enum_removed": {MESSAGE: "ENUM_VALUE_REMOVED", REQUEST: "REQUEST_ENUM_VALUE_REMOVED",
                     RESPONSE: None, SUBSCRIPTION: "SUBSCRIPTION_NARROWED"},
    "enum_added": {MESSAGE: None, REQUEST: None, RESPONSE: "RESPONSE_ENUM_VALUE_ADDED",
                   SUBSCRIPTION: None},
    "narrowed": {MESSAGE: "FIELD_CONSTRAINT_NARROWED",
                 REQUEST: "REQUEST_FIELD_CONSTRAINT_NARROWED", RESPONSE: None,
                 SUBSCRIPTION: "SUBSCRIPTION_NARROWED"},
}
# Keywords that only describe; they never change what a schema accepts.
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "deprecated",
                          "$comment", "readOnly", "writeOnly"})
# Keywords compared here one by one; any other keyword is compared as a whole.
_UNDERSTOOD = frozenset({"type", "enum", "format", "properties", "required", "items",
                         "additionalProperties", "uniqueItems", *UPPER, *LOWER, *EXACT,
                         *_ANNOTATIONS})


@dataclass(frozen=True)
class _Where:
    """A schema being compared: its kind, what to call it, and where its fields are declared
    in each document (the mapping of fields)."""

    kind: str
    label: str  # "message 'order.created' v1", "endpoint 'create_order' request", ...
    new_base: list[str | int]
    old_base: list[str | int]
    fix: str  # how to make this kind of change without breaking anyone
    message: tuple[str, int] | None = None  # (type, version) of a published message's schema


def _opaque(schema: Mapping[str, Any]) -> str:
    """The keywords this module does not reason about, as canonical JSON."""
    rest = {key: value for key, value in schema.items()
            if key not in _UNDERSTOOD and not key.startswith("x-")}
    for key in ("additionalProperties", "items"):
        if key in schema and not isinstance(schema[key], (bool, dict)):
            rest[key] = schema[key]
    if isinstance(schema.get("additionalProperties"), dict):
        rest["additionalProperties"] = schema["additionalProperties"]
    return json.dumps(rest, sort_keys=True)


# -- the comparison -------------------------------------------------------------------------------


class _Comparison:
    def __init__(self, old: Side, new: Side) -> None:
        self.old = old
        self.new = new
        self.findings: list[Finding] = []

    def add(
        self,
        rule: str,
        message: str,
        fix: str,
        new_path: list[str | int],
        old_path: list[str | int] | None = None,
        *,
        at_key: bool = False,
        removed: RemovedField | None = None,
    ) -> None:
        location = self.new.at(new_path, at_key=at_key)
        old_location = None
        if old_path is not None and self.old.root is not None:
            old_location = self.old.at(old_path, at_key=at_key)
        self.findings.append(Finding(rule, message, fix, location, old_location, removed))

    # -- messages ----------------------------------------------------------------------------

    def messages(self) -> None:
        old_messages = self.old.spec.get("messages") or {}
        new_messages = self.new.spec.get("messages") or {}
        for name, old_message in old_messages.items():
            versions = sorted(old_message.get("versions", {}), key=int)
            new_message = new_messages.get(name)
            if new_message is None:
                listed = ", ".join(versions)
                self.add("MESSAGE_REMOVED",
                         f"message '{name}' (versions {listed}) is no longer published",
                         f"keep publishing '{name}' until no peer subscribes to it: mark its "
                         "versions `deprecated: true` first, and remove it with "
                         "--allow-breaking once `shoestring check` shows no subscriber",
                         ["messages"], ["messages", name], at_key=True)
                continue
            new_targets = set(new_message.get("to", []))
            for peer in old_message.get("to", []):
                if peer not in new_targets:
                    self.add("MESSAGE_DESTINATION_REMOVED",
                             f"message '{name}' is no longer sent to '{peer}'",
                             f"keep '{peer}' under `to:` until it no longer subscribes to "
                             f"'{name}'", ["messages", name, "to"], ["messages", name, "to"],
                             at_key=True)
            new_versions = new_message.get("versions", {})
            latest = max((int(version) for version in new_versions), default=0)
            for version in versions:
                if version not in new_versions:
                    self.add("MESSAGE_VERSION_REMOVED",
                             f"message '{name}' version {version} is no longer published",
                             f"keep version {version} (mark it `deprecated: true`) until no "
                             f"consumer reads it; remove it with --allow-breaking once "
                             f"`shoestring check` shows no subscriber",
                             ["messages", name, "versions"],
                             ["messages", name, "versions", version], at_key=True)
                    continue
                base = ["messages", name, "versions", version, "fields"]
                fix = (f"add version {latest + 1} with this change and keep version {version} "
                       f"as it was; `publish_also: [{version}]` on version {latest + 1} keeps "
                       f"version {version} flowing while consumers move")
                where = _Where(MESSAGE, f"message '{name}' v{version}", base, base, fix,
                               (name, int(version)))
                self.schema(where, old_message["versions"][version].get("schema"),
                            new_versions[version].get("schema"), [])

    # -- subscriptions -----------------------------------------------------------------------

    def subscriptions(self) -> None:
        new_index = {(entry["message"], int(entry["version"])): index
                     for index, entry in enumerate(self.new.spec.get("subscriptions") or [])}
        new_entries = self.new.spec.get("subscriptions") or []
        for old_index, entry in enumerate(self.old.spec.get("subscriptions") or []):
            key = (entry["message"], int(entry["version"]))
            label = f"subscription to '{key[0]}' v{key[1]}"
            if key not in new_index:
                self.add("SUBSCRIPTION_REMOVED",
                         f"the {label} from '{entry['from']}' is gone",
                         f"keep it until '{entry['from']}' stops sending it to this service and "
                         "the queue holds none of it (`python -m <package> queue` shows the "
                         "backlog)", ["subscriptions"], ["subscriptions", old_index],
                         at_key=True)
                continue
            index = new_index[key]
            base_new: list[str | int] = ["subscriptions", index, "fields"]
            base_old: list[str | int] = ["subscriptions", old_index, "fields"]
            where = _Where(SUBSCRIPTION, label, base_new, base_old,
                           "accept what the subscription accepted before (messages already "
                           "queued were checked against it): make the field optional, or "
                           f"subscribe to a new version of '{key[0]}'")
            self.schema(where, entry.get("schema"), new_entries[index].get("schema"), [])

    # -- endpoints ---------------------------------------------------------------------------

    def endpoints(self) -> None:
        old_list = list(self.old.spec.get("endpoints") or [])
        new_list = list(self.new.spec.get("endpoints") or [])
        new_by_name = {endpoint["name"]: index for index, endpoint in enumerate(new_list)}
        old_names = {endpoint["name"] for endpoint in old_list}
        routes = {(endpoint["method"], route_shape(endpoint["path"])): index
                  for index, endpoint in enumerate(new_list) if endpoint["name"] not in old_names}
        for old_index, old_endpoint in enumerate(old_list):
            name = old_endpoint["name"]
            index = new_by_name.get(name)
            route = (old_endpoint["method"], route_shape(old_endpoint["path"]))
            if index is None and route in routes:
                index = routes.pop(route)
                self.add("ENDPOINT_RENAMED",
                         f"endpoint '{name}' is now called '{new_list[index]['name']}' "
                         f"({old_endpoint['method']} {old_endpoint['path']})",
                         f"keep the name '{name}' if clients generated from openapi.json call "
                         "it by its operationId", ["endpoints", index, "name"],
                         ["endpoints", old_index, "name"])
            if index is None:
                self.add("ENDPOINT_REMOVED",
                         f"endpoint '{name}' ({old_endpoint['method']} {old_endpoint['path']}) "
                         "is gone",
                         "keep serving it until no client calls it (mark it deprecated in its "
                         "description); a replacement goes beside it, under a new path "
                         "version such as /v2/...", ["endpoints"], ["endpoints", old_index],
                         at_key=True)
                continue
            self.endpoint(old_index, old_endpoint, index, new_list[index])

    def endpoint(self, old_index: int, old: Mapping[str, Any], index: int,
                 new: Mapping[str, Any]) -> None:
        name = new["name"]
        label = f"endpoint '{name}'"
        beside = (f"keep {old['method']} {old['path']} as it is and add the new route as "
                  "another endpoint (a new path version such as /v2/... for a new contract)")
        if new["method"] != old["method"]:
            self.add("ENDPOINT_METHOD_CHANGED",
                     f"{label} answers {new['method']} instead of {old['method']}", beside,
                     ["endpoints", index, "method"], ["endpoints", old_index, "method"])
        same_route = route_shape(new["path"]) == route_shape(old["path"])
        if not same_route:
            self.add("ENDPOINT_PATH_CHANGED",
                     f"{label} moved from {old['path']} to {new['path']}", beside,
                     ["endpoints", index, "path"], ["endpoints", old_index, "path"])
        old_scopes = set(old.get("scopes", []))
        for position, scope in enumerate(new.get("scopes", [])):
            if scope not in old_scopes:
                self.add("ENDPOINT_SCOPE_ADDED",
                         f"{label} now needs scope '{scope}', which tokens issued for it so far "
                         "lack", f"grant '{scope}' to every caller's tokens first, then require "
                         "it; or require it only on a new path version",
                         ["endpoints", index, "scopes", position])
        if new.get("idempotent") and not old.get("idempotent"):
            self.add("ENDPOINT_IDEMPOTENCY_KEY_REQUIRED",
                     f"{label} now requires an Idempotency-Key header, which callers do not "
                     "send yet", "make it idempotent on a new path version, or once every "
                     "caller sends the header", ["endpoints", index, "idempotent"])
        if new.get("status") != old.get("status"):
            self.add("ENDPOINT_STATUS_CHANGED",
                     f"{label} answers {new.get('status')} instead of {old.get('status')}",
                     f"keep status {old.get('status')}, or change it on a new path version",
                     ["endpoints", index, "status"], ["endpoints", old_index, "status"])

        old_params = list(old.get("path_params", []))
        new_params = list(new.get("path_params", []))
        request_fix = ("accept every request the old schema accepted: keep the field (optional, "
                       "ignored by the handler if need be) and add new fields as optional; put "
                       "a different contract on a new path version (/v2/...)")
        request = _Where(REQUEST, f"{label} request", ["endpoints", index, "request"],
                         ["endpoints", old_index, "request"], request_fix)
        self.schema(request, _without(old.get("request"), old_params),
                    _without(new.get("request"), new_params), [])
        if same_route:
            # Path parameters are matched by position: renaming one changes no URL.
            old_props = (old.get("request") or {}).get("properties", {})
            new_props = (new.get("request") or {}).get("properties", {})
            for old_param, new_param in zip(old_params, new_params):
                if old_param in old_props and new_param in new_props:
                    self.value(request, old_props[old_param], new_props[new_param],
                               [new_param], [old_param])
        response = _Where(RESPONSE, f"{label} response", ["endpoints", index, "response"],
                          ["endpoints", old_index, "response"],
                          "keep returning what clients read: keep the field, required, with "
                          "its type; change the contract on a new path version (/v2/...)")
        self.schema(response, old.get("response"), new.get("response"), [])

    # -- schemas -----------------------------------------------------------------------------

    def field_finding(
        self,
        change: str,
        where: _Where,
        steps: list[str],
        message: str,
        *,
        old_steps: list[str] | None = None,
        removed: bool = False,
        keyword: str | None = None,
        fix: str | None = None,
    ) -> None:
        rule = _FIELD_RULES[change][where.kind]
        if rule is None:
            return
        old_steps = steps if old_steps is None else old_steps
        old_path = field_path(self.old.root, where.old_base, old_steps)
        if removed:
            # The field is gone: point at its parent in the new spec.
            new_path = field_path(self.new.root, where.new_base, steps[:-1])
            gone = RemovedField(*where.message, tuple(steps)) if where.message else None
            self.add(rule, message, fix or where.fix, new_path, old_path, at_key=True,
                     removed=gone)
            return
        new_path = field_path(self.new.root, where.new_base, steps, keyword)
        self.add(rule, message, fix or where.fix, new_path,
                 old_path if change in ("type_changed", "made_optional", "made_required")
                 else None, at_key=True)

    def schema(self, where: _Where, old: Any, new: Any, steps: list[str]) -> None:
        """Compare two object schemas property by property."""
        old = old if isinstance(old, dict) else {}
        new = new if isinstance(new, dict) else {}
        old_props = old.get("properties") or {}
        new_props = new.get("properties") or {}
        old_required = set(old.get("required") or [])
        new_required = set(new.get("required") or [])
        for name, old_schema in old_props.items():
            path = [*steps, name]
            shown = _show(path)
            if name not in new_props:
                self.field_finding("removed", where, path,
                                   f"{where.label} no longer has field '{shown}'", removed=True)
                continue
            old_core, old_null = split_null(old_schema)
            new_core, new_null = split_null(new_props[name])
            was_optional = old_null or name not in old_required
            is_optional = new_null or name not in new_required
            if is_optional and not was_optional:
                self.field_finding("made_optional", where, path,
                                   f"{where.label} field '{shown}' was required and is now "
                                   "optional")
            elif was_optional and not is_optional:
                self.field_finding("made_required", where, path,
                                   f"{where.label} field '{shown}' was optional and is now "
                                   "required",
                                   fix=_required_fix(where, shown))
            self.value(where, old_core, new_core, path, path)
        for name, new_schema in new_props.items():
            if name in old_props:
                continue
            _, nullable = split_null(new_schema)
            if name in new_required and not nullable:
                shown = _show([*steps, name])
                self.field_finding("added_required", where, [*steps, name],
                                   f"{where.label} has a new required field '{shown}'",
                                   fix=_required_fix(where, shown))

    def value(self, where: _Where, old: Any, new: Any, steps: list[str],
              old_steps: list[str]) -> None:
        """Compare the schemas of one field (null already split off)."""
        old, _ = split_null(old)
        new, _ = split_null(new)
        shown = _show(steps)
        label = f"{where.label} field '{shown}'"
        if _opaque(old) != _opaque(new):
            self.field_finding("type_changed", where, steps,
                               f"{label} changed its schema in a way that cannot be proven "
                               "compatible", old_steps=old_steps)
            return
        if json_types(old) != json_types(new) or old.get("format") != new.get("format"):
            if where.kind == REQUEST or where.kind == SUBSCRIPTION:
                breaks = not accepts_type(new, old)  # the reader must accept the old values
            elif where.kind == RESPONSE:
                breaks = not accepts_type(old, new)  # readers expect the old values
            else:
                breaks = True  # a message version is read and stored both
            if breaks:
                self.field_finding("type_changed", where, steps,
                                   f"{label} changed type from {type_text(old)} to "
                                   f"{type_text(new)}", old_steps=old_steps)
                return
        old_enum = [v for v in old.get("enum", []) if v is not None] if "enum" in old else None
        new_enum = [v for v in new.get("enum", []) if v is not None] if "enum" in new else None
        if old_enum is not None and new_enum is not None:
            for value in old_enum:
                if value not in new_enum:
                    fix = (f"keep '{value}' in the enum; the handler may refuse it with a "
                           "problem that says what to send instead") if where.kind == REQUEST \
                        else None
                    self.field_finding("enum_removed", where, steps,
                                       f"{label} no longer allows the value '{value}'", fix=fix)
            for value in new_enum:
                if value not in old_enum:
                    self.field_finding("enum_added", where, steps,
                                       f"{label} may now hold the value '{value}'",
                                       fix="clients that check the value against the old list "
                                       "need updating first; or add a new field")
        elif old_enum is not None and new_enum is None:
            self.field_finding("enum_added", where, steps,
                               f"{label} is no longer limited to the values "
                               f"{', '.join(map(str, old_enum))}",
                               fix="clients that check the value need updating first")
        for keyword, how in narrowed(old, new):
            if keyword == "additionalProperties" and "properties" in new:
                continue  # an object's fields are compared one by one below
            self.field_finding("narrowed", where, steps, f"{label}: {how}", keyword=keyword)
        if "object" in json_types(new) and ("properties" in old or "properties" in new):
            self.schema(where, old, new, steps)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            self.value(where, old["items"], new["items"], [*steps, ITEMS], [*old_steps, ITEMS])


def _required_fix(where: _Where, shown: str) -> str:
    if where.kind == REQUEST:
        return (f"declare '{shown}' optional (`<type>?`) so clients that do not send it still "
                "succeed; require it on a new path version (/v2/...)")
    return where.fix


def _without(schema: Any, fields: Iterable[str]) -> dict[str, Any]:
    """A request schema without its path parameters (clients send those in the URL)."""
    if not isinstance(schema, dict):
        return {}
    names = set(fields)
    return {
        **schema,
        "properties": {k: v for k, v in (schema.get("properties") or {}).items()
                       if k not in names},
        "required": [name for name in schema.get("required") or [] if name not in names],
    }


def _show(steps: list[str]) -> str:
    return ".".join(steps).replace(f".{ITEMS}", ITEMS)


# -- loading the old spec -------------------------------------------------------------------------


class BaselineError(Exception):
    """The spec to compare against cannot be read; the message says why and what to do."""


def load_baseline(against: str, spec_file: Path) -> tuple[LoadResult, str]:
    """The spec at `against`: a file when one exists at that path, else a git ref, read with
    `git show REF:<spec path>`. Returns the load result and the name to show for it."""
    candidate = Path(against)
    if candidate.is_file():
        return load_spec_text(str(candidate), candidate.read_bytes()), str(candidate)
    folder = spec_file.resolve().parent
    shown = f"{against}:{spec_file.name}"
    try:
        done = subprocess.run(
            ["git", "show", f"{against}:./{spec_file.name}"],
            cwd=folder, capture_output=True, check=False,
        )
    except FileNotFoundError as exc:
        raise BaselineError(f"'{against}' is not a file, and git is not installed to read it "
                            "as a ref") from exc
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BaselineError(
            f"cannot read {spec_file.name} at '{against}': "
            f"{reason[-1] if reason else 'git show failed'} — give a file, or a git ref (a "
            "commit, tag or branch such as main or HEAD~1) at which the spec exists")
    return load_spec_text(shown, done.stdout), shown


def since_accepted(
    accepted: Mapping[str, Any] | None, result: LoadResult, file: str, *, accepted_in: str
) -> list[Finding]:
    """The breaking changes of the loaded spec since the spec a manifest accepted (none when
    there is no accepted spec yet: a first generation breaks nobody)."""
    if not accepted or result.spec is None:
        return []
    return compare(Side(accepted, f"{accepted_in} (accepted spec)"), Side.of(result, file),
                   Policy.from_spec(result.root))


def allowance(reason: str, findings: list[Finding]) -> dict[str, Any]:
    """What the manifest records of breaking changes a user accepted, and why."""
    return {
        "reason": reason,
        "findings": [
            {"rule": finding.rule, "message": finding.message, "location": str(finding.location)}
            for finding in findings
        ],
    }
