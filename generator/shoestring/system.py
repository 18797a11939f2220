"""A system: several services' specs seen together, and the proof that they fit.

`system.yaml` lists the specs of the services that talk to each other, by path relative to
itself:

    system: shop
    description: Orders and payments.
    services:
      - orders/service.yaml
      - payments/service.yaml

`check_system` proves what no single spec can:

- every subscription has a publisher of that message and version, which sends it to the
  subscriber, with the fields the subscriber requires, of types it accepts;
- every delivery target (`to:`) subscribes to the message;
- the endpoints a service calls (`peers: {name: {calls: [...]}}`) exist, and the scopes it is
  granted there (`scopes: [...]`) cover the scopes they need;
- no two services serve the same route (behind one domain or gateway they would collide);
- and, as warnings, what is published but never consumed, and deprecated versions still read.

Every finding is a `Problem` located at file:line:col in the spec it concerns (or in
system.yaml), with a hint, like the problems of a single spec.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import load_spec
from .spec.checks import route_shape
from .spec.compatibility import incompatible, json_types, split_null
from .spec.document import MAX_BYTES, Node, compose, locate, read_text
from .spec.positions import ITEMS, field_path
from .spec.problems import WARNING, Problem, did_you_mean, suggestion

SYSTEM_KEYS = ("system", "description", "services")
# Problems that mean the system could not be read at all (exit code 2).
UNREADABLE = frozenset({"cannot-read", "too-large", "not-utf8", "not-text", "yaml-syntax",
                        "yaml-tag", "too-deep", "not-a-system"})


@dataclass
class Service:
    """One service of the system: its spec model and document, and where system.yaml lists it."""

    name: str
    file: str
    spec: dict[str, Any]
    root: Node | None
    listed_at: tuple[int, int]

    def at(self, path: list[str | int], *, at_key: bool = False) -> tuple[str, int, int]:
        line, col = locate(self.root, path, at_key=at_key)
        return self.file, line, col

    def publishes(self, message: str, version: int) -> dict[str, Any] | None:
        versions = ((self.spec.get("messages") or {}).get(message) or {}).get("versions") or {}
        return versions.get(str(version))

    def route(self, method: str, path: str) -> tuple[int, dict[str, Any]] | None:
        """The endpoint (index, model) serving `method path`; parameter names may differ."""
        for index, endpoint in enumerate(self.spec.get("endpoints") or []):
            if endpoint["method"] == method and \
                    route_shape(endpoint["path"]) == route_shape(path):
                return index, endpoint
        return None


@dataclass
class System:
    """What `load_system` read: the services by name, and the problems found reading them."""

    file: str
    name: str
    description: str
    services: dict[str, Service] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def unreadable(self) -> bool:
        return any(problem.code in UNREADABLE for problem in self.problems)

    @property
    def ok(self) -> bool:
        return not any(problem.is_error for problem in self.problems)


def load_system(path: str | Path) -> System:
    """Read system.yaml and every spec it lists; problems of either are in `.problems`."""
    file = str(path)
    system = System(file, "", "")
    try:
        data = Path(path).read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        reason = "the file does not exist" if isinstance(exc, FileNotFoundError) \
            else f"cannot read the file: {exc.strerror or exc}"
        system.problems.append(Problem(file, 1, 1, reason, "a system file lists service specs: "
                                       "`services: [orders/service.yaml, ...]`", "cannot-read"))
        return system
    text, problem = read_text(file, data)
    if problem is not None or text is None:
        system.problems.extend([problem] if problem else [])
        return system
    document = compose(file, text)
    system.problems.extend(document.problems)
    root = document.root
    if document.unreadable:
        return system
    if root is None or root.kind != "map":
        system.problems.append(Problem(
            file, root.line if root else 1, root.col if root else 1,
            "a system file is a mapping with a list of service specs",
            "write `services: [orders/service.yaml, payments/service.yaml]`", "not-a-system"))
        return system
    for key, (key_node, _) in root.entries.items():
        if key not in SYSTEM_KEYS:
            system.problems.append(Problem(
                file, key_node.line, key_node.col, f"unknown key '{key}' in the system file",
                suggestion(key, SYSTEM_KEYS, fallback="allowed keys: " + ", ".join(SYSTEM_KEYS)),
                "unknown-key"))
    for key in ("system", "description"):
        node = root.child(key)
        if node is not None and not isinstance(node.value, str):
            system.problems.append(Problem(file, node.line, node.col, f"'{key}' must be text",
                                           f"write `{key}: ...`", "wrong-type"))
    system.name = root.value.get("system") if isinstance(root.value.get("system"), str) else ""
    description = root.value.get("description")
    system.description = description if isinstance(description, str) else ""
    services = root.child("services")
    if services is None or services.kind != "seq" or not services.items:
        where = services or root
        system.problems.append(Problem(
            file, where.line, where.col, "the system file lists no services",
            "add `services:` with one spec path per line, relative to this file, e.g. "
            "`services: [orders/service.yaml]`", "not-a-system"))
        return system
    folder = Path(file).parent
    for item in services.items:
        if not isinstance(item.value, str) or not item.value.strip():
            system.problems.append(Problem(file, item.line, item.col,
                                           "a service entry is the path of its spec",
                                           "write e.g. `- orders/service.yaml`", "wrong-type"))
            continue
        _load_service(system, folder, item)
    return system


def _load_service(system: System, folder: Path, item: Node) -> None:
    spec_path = folder / item.value
    result = load_spec(spec_path)
    if not result.ok or result.spec is None:
        if any(problem.code == "cannot-read" for problem in result.problems):
            system.problems.append(Problem(
                system.file, item.line, item.col, f"cannot read the spec {spec_path}",
                "paths are relative to the system file; "
                + "; ".join(problem.message for problem in result.errors), "cannot-read"))
        else:
            system.problems.extend(result.errors)
        return
    system.problems.extend(result.problems)  # a valid spec's warnings
    name = result.spec["service"]["name"]
    if name in system.services:
        first = system.services[name]
        system.problems.append(Problem(
            system.file, item.line, item.col,
            f"{spec_path} is service '{name}' again (already listed at line "
            f"{first.listed_at[0]}, {first.file})",
            "list each service once; two services need two names", "duplicate"))
        return
    system.services[name] = Service(name, str(spec_path), result.spec, result.root,
                                    (item.line, item.col))


def check_system(system: System) -> list[Problem]:
    """Everything that does not fit between the services, errors first by file and position."""
    checker = _Checker(system)
    checker.subscriptions()
    checker.deliveries()
    checker.calls()
    checker.routes()
    checker.unconsumed()
    return sorted(checker.problems, key=lambda p: (p.severity != "error", p.file, p.line, p.col))


class _Checker:
    def __init__(self, system: System) -> None:
        self.system = system
        self.services = system.services
        self.problems: list[Problem] = []

    def add(self, where: tuple[str, int, int], message: str, hint: str, code: str,
            severity: str = "error") -> None:
        file, line, col = where
        self.problems.append(Problem(file, line, col, message, hint, code, severity))

    # -- subscriptions -----------------------------------------------------------------------

    def subscriptions(self) -> None:
        for service in self.services.values():
            for index, subscription in enumerate(service.spec.get("subscriptions") or []):
                self.subscription(service, index, subscription)

    def subscription(self, service: Service, index: int, subscription: Mapping[str, Any]) -> None:
        message, version = subscription["message"], int(subscription["version"])
        source = subscription["from"]
        label = f"{service.name} subscribes to {message} v{version} from {source}"
        base: list[str | int] = ["subscriptions", index]
        publisher = self.services.get(source)
        if publisher is None:
            self.add(service.at([*base, "from"]),
                     f"{label}, which is not a service of {self.system.file}",
                     suggestion(source, self.services, fallback=f"add {source}'s spec to "
                                f"{self.system.file}, or subscribe to the service that "
                                f"publishes {message}"), "no-publisher")
            return
        published = (publisher.spec.get("messages") or {}).get(message)
        if published is None:
            others = [name for name, other in self.services.items()
                      if message in (other.spec.get("messages") or {})]
            hint = (f"{', '.join(others)} publishes it: change `from:`" if others else
                    f"{source} publishes {', '.join(sorted(publisher.spec.get('messages') or {}))}"
                    if publisher.spec.get("messages") else f"{source} publishes no messages")
            match = did_you_mean(message, publisher.spec.get("messages") or {})
            if match:
                hint = f"did you mean '{match}'?"
            self.add(service.at([*base, "message"]),
                     f"{label}, but {source} does not publish {message}", hint, "no-publisher")
            return
        versions = sorted(published.get("versions") or {}, key=int)
        version_spec = publisher.publishes(message, version)
        if version_spec is None:
            listed = ", ".join(f"v{v}" for v in versions)
            self.add(service.at([*base, "version"]),
                     f"{label}, but {source} publishes {message} {listed} only",
                     f"subscribe to a version {source} publishes ({listed}), or have {source} "
                     f"keep publishing v{version} (`publish_also: [{version}]` on its newest "
                     "version)", "version-not-published")
            return
        if source != service.name and service.name not in (published.get("to") or []):
            self.add(service.at(base),
                     f"{label}, but {source} does not send {message} to {service.name}",
                     f"add {service.name} to `to:` of {message} in {publisher.file} "
                     f"({_where(publisher.at(['messages', message, 'to'], at_key=True))})",
                     "not-delivered")
        self.fields(service, index, publisher, message, version)

    def fields(self, service: Service, index: int, publisher: Service, message: str,
               version: int) -> None:
        """The subscriber's declared fields against the publisher's schema of the version."""
        reader = (service.spec["subscriptions"][index].get("schema")) or {}
        writer = publisher.publishes(message, version).get("schema") or {}
        base: list[str | int] = ["subscriptions", index, "fields"]
        source_base: list[str | int] = ["messages", message, "versions", str(version), "fields"]
        for steps, text, hint, published in incompatible(writer, reader, []):
            path = field_path(service.root, base, steps)
            if published:
                origin = publisher.at(field_path(publisher.root, source_base, steps), at_key=True)
                hint += f" ({publisher.name} declares it at {_where(origin)})"
            else:
                origin = publisher.at(field_path(publisher.root, source_base, steps[:-1]),
                                      at_key=True)
                hint += f" ({publisher.name} declares the fields at {_where(origin)})"
            self.add(service.at(path, at_key=True),
                     f"{service.name} reads {message} v{version} from {publisher.name}: {text}",
                     hint, "incompatible-field")

    # -- deliveries --------------------------------------------------------------------------

    def deliveries(self) -> None:
        for service in self.services.values():
            for message, published in (service.spec.get("messages") or {}).items():
                for position, target in enumerate(published.get("to") or []):
                    where = service.at(["messages", message, "to", position])
                    receiver = self.services.get(target)
                    if receiver is None:
                        self.add(where, f"{service.name} sends {message} to {target}, which is "
                                 f"not a service of {self.system.file}",
                                 suggestion(target, self.services, fallback=f"add {target}'s "
                                            f"spec to {self.system.file}"), "unknown-target")
                        continue
                    subscribed = [s for s in receiver.spec.get("subscriptions") or []
                                  if s["message"] == message and s["from"] == service.name]
                    if not subscribed:
                        self.add(where, f"{service.name} sends {message} to {target}, which "
                                 "does not subscribe to it",
                                 f"remove {target} from `to:`, or subscribe to it in "
                                 f"{receiver.file}: `- {{message: {message}, version: "
                                 f"{max(map(int, published['versions']))}, from: "
                                 f"{service.name}, retry: default}}`", "target-not-subscribed")

    # -- calls and scopes --------------------------------------------------------------------

    def calls(self) -> None:
        for service in self.services.values():
            for peer_name, peer in (service.spec.get("peers") or {}).items():
                if not peer.get("calls") and not peer.get("scopes"):
                    continue
                self.peer_calls(service, peer_name, peer)

    def peer_calls(self, service: Service, peer_name: str, peer: Mapping[str, Any]) -> None:
        base: list[str | int] = ["peers", peer_name]
        callee = self.services.get(peer_name)
        if callee is None:
            self.add(service.at(base, at_key=True),
                     f"{service.name} calls {peer_name}, which is not a service of "
                     f"{self.system.file}", f"add {peer_name}'s spec to {self.system.file}",
                     "unknown-peer")
            return
        needed: set[str] = set()
        for name, call in (peer.get("calls") or {}).items():
            at: list[str | int] = [*base, "calls", name]
            label = f"{_owner(service.name)} call '{name}' to {peer_name} ({call['method']} " \
                f"{call['path']})"
            found = callee.route(call["method"], call["path"])
            if found is None:
                routes = [f"{e['method']} {e['path']}" for e in callee.spec.get("endpoints") or []]
                self.add(service.at([*at, "path"]),
                         f"{label} goes to a route {peer_name} does not serve",
                         suggestion(f"{call['method']} {call['path']}", routes,
                                    fallback=f"{peer_name} serves "
                                    + (", ".join(routes) or "no endpoints")), "unknown-endpoint")
                continue
            index, endpoint = found
            endpoint_at = ["endpoints", index]
            needed.update(endpoint["scopes"])
            missing = [scope for scope in endpoint["scopes"] if scope not in call["scopes"]]
            if missing:
                where = at + ["scopes"] if _has(service.root, [*at, "scopes"]) else at
                self.add(service.at(where, at_key=True),
                         f"{label}: {_owner(peer_name)} '{endpoint['name']}' needs scope "
                         f"{', '.join(missing)}, which {peer_name} does not grant {service.name} "
                         "(granted: "
                         f"{', '.join(call['scopes']) or 'none'})",
                         f"add {', '.join(missing)} under `peers: {peer_name}: scopes:` (or the "
                         f"call's own `scopes:`) in {service.file} ('{endpoint['name']}' needs it "
                         f"at {_where(callee.at([*endpoint_at, 'scopes'], at_key=True))})",
                         "missing-scope")
            self.call_fields(service, at, label, callee, endpoint_at, call, endpoint)
        granted = list(peer.get("scopes") or [])
        offered = {scope for endpoint in callee.spec.get("endpoints") or []
                   for scope in endpoint["scopes"]}
        for position, scope in enumerate(granted):
            if scope not in offered:
                self.add(service.at([*base, "scopes", position]),
                         f"{service.name} is granted scope '{scope}' by {peer_name}, which no "
                         f"endpoint of {peer_name} needs",
                         suggestion(scope, offered, fallback="remove it"), "unused-scope",
                         WARNING)
            elif scope not in needed and peer.get("calls"):
                self.add(service.at([*base, "scopes", position]),
                         f"{service.name} is granted scope '{scope}' by {peer_name} but calls "
                         "no endpoint that needs it", "remove it, or declare the call under "
                         "`calls:`", "unused-scope", WARNING)

    def call_fields(self, service: Service, at: list[str | int], label: str, callee: Service,
                    endpoint_at: list[str | int], call: Mapping[str, Any],
                    endpoint: Mapping[str, Any]) -> None:
        """What the call sends must suit the endpoint's request (which refuses unknown fields);
        what it expects back must be in the endpoint's response. Path parameters travel in the
        URL and are matched by position."""
        sent = _without(call["request"], call.get("path_params", []))
        accepted = _without(endpoint["request"], endpoint.get("path_params", []))
        checks = [
            ("request", sent, accepted, _unknown(sent, accepted, [])),
            ("response", endpoint["response"], call["response"], []),
        ]
        for part, writer, reader, unknown in checks:
            problems = [(steps, text, hint, True) for steps, text, hint in unknown]
            problems += list(incompatible(writer, reader, [],
                                           "sent" if part == "request" else "answered"))
            for steps, text, hint, published in problems:
                # The caller's side of the field: what it sends, or what it reads.
                side = service.at(field_path(service.root, [*at, part], steps), at_key=True)
                owner = callee.at(field_path(callee.root, [*endpoint_at, part],
                                             steps if published else steps[:-1]), at_key=True)
                words = "sends" if part == "request" else "reads"
                self.add(side, f"{label} {words} a {part} that does not fit: {text}",
                         f"{hint} ('{endpoint['name']}' declares its {part} at {_where(owner)})",
                         "incompatible-call")
    # -- routes ------------------------------------------------------------------------------

    def routes(self) -> None:
        seen: dict[tuple[str, str], tuple[Service, int]] = {}
        for service in self.services.values():
            for index, endpoint in enumerate(service.spec.get("endpoints") or []):
                route = (endpoint["method"], route_shape(endpoint["path"]))
                if route not in seen:
                    seen[route] = (service, index)
                    continue
                other, other_index = seen[route]
                first = other.spec["endpoints"][other_index]
                self.add(service.at(["endpoints", index, "path"]),
                         f"{_owner(service.name)} '{endpoint['name']}' ({endpoint['method']} "
                         f"{endpoint['path']}) has the route of {_owner(other.name)} "
                         f"'{first['name']}' ({_where(other.at(['endpoints', other_index]))})",
                         "behind one domain or gateway the two collide: give each service "
                         f"its own path prefix, e.g. /v1/{service.name}/...", "route-collision")

    # -- what nobody reads -------------------------------------------------------------------

    def unconsumed(self) -> None:
        readers: dict[tuple[str, str, int], list[str]] = {}
        for service in self.services.values():
            for subscription in service.spec.get("subscriptions") or []:
                key = (subscription["from"], subscription["message"], int(subscription["version"]))
                readers.setdefault(key, []).append(service.name)
        for service in self.services.values():
            for message, published in (service.spec.get("messages") or {}).items():
                for text, version in (published.get("versions") or {}).items():
                    where = service.at(["messages", message, "versions", text], at_key=True)
                    consumers = readers.get((service.name, message, int(text)), [])
                    if not consumers:
                        self.add(where, f"{service.name} publishes {message} v{text}, which no "
                                 f"service of {self.system.file} subscribes to",
                                 "subscribe to it where it is needed, or stop publishing it "
                                 "(mark it `deprecated: true` first)", "unconsumed", WARNING)
                    elif version.get("deprecated"):
                        readers_text = ", ".join(consumers)
                        self.add(where, f"{message} v{text} is deprecated but still read by "
                                 f"{readers_text}",
                                 f"move {readers_text} to a newer version before "
                                 f"{service.name} stops publishing v{text}", "deprecated-read",
                                 WARNING)


def _where(location: tuple[str, int, int]) -> str:
    return "{}:{}:{}".format(*location)


def _owner(name: str) -> str:
    """`orders` -> `orders'`, `shipping` -> `shipping's`."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def _unknown(
    writer: Mapping[str, Any], reader: Mapping[str, Any], steps: list[str]
) -> Iterator[tuple[list[str], str, str]]:
    """Fields the writer may send that a closed reader object (`additionalProperties: false`,
    as every request object is) does not declare: the reader refuses the whole request."""
    known = reader.get("properties") or {}
    for name, schema in (writer.get("properties") or {}).items():
        path = [*steps, name]
        if name not in known:
            if reader.get("additionalProperties") is False:
                shown = ".".join(path).replace(f".{ITEMS}", ITEMS)
                yield (path, f"field '{shown}' is not one the peer accepts",
                       "remove it from the call's request (the peer refuses unknown fields)")
            continue
        inner_writer, _ = split_null(schema)
        inner_reader, _ = split_null(known[name])
        while isinstance(inner_reader.get("items"), dict) and \
                isinstance(inner_writer.get("items"), dict):  # into lists, of lists...
            inner_writer, _ = split_null(inner_writer["items"])
            inner_reader, _ = split_null(inner_reader["items"])
            path = [*path, ITEMS]
        if "object" in json_types(inner_reader):
            yield from _unknown(inner_writer, inner_reader, path)


def _without(schema: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    """An object schema without the fields that travel in the URL."""
    return {
        **schema,
        "properties": {k: v for k, v in (schema.get("properties") or {}).items()
                       if k not in fields},
        "required": [name for name in schema.get("required") or [] if name not in fields],
    }


def _has(root: Node | None, path: list[str | int]) -> bool:
    node = root
    for step in path:
        node = node.child(step) if node is not None else None
    return node is not None
