"""The rules of a spec that its JSON Schema cannot express.

References resolve (rate limits, retry policies, peers, path parameters), names are unique and
make valid Python modules, routes do not collide, GET and DELETE requests fit in a query string,
and every field declaration compiles. The checks run on a document that may also be malformed,
so each one looks only at the parts that have the right shape; the schema reports the rest.
"""

from __future__ import annotations

import keyword
import re
import sys
from typing import Any

from jsonschema import Draft202012Validator

from .compatibility import incompatible
from .document import Node, locate
from .examples import example_for
from .fields import compile_fields_checked
from .positions import field_path
from .problems import ERROR, WARNING, Problem, did_you_mean
from .structure import describe

SERVICE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
MESSAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*([.-][a-z0-9_]+)*$")
ENDPOINT_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
PACKAGE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
VERSION_KEY = re.compile(r"^[1-9][0-9]*$")
PATH = re.compile(r"^/v[1-9][0-9]*(/([A-Za-z0-9._~-]+|\{[A-Za-z_][A-Za-z0-9_]*\}))*$")
PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
QUERY_METHODS = {"GET", "DELETE"}
INBOX_PATH = "/v1/inbox"  # the chassis's inbox (chassis/inbox.py): POST there is taken
SCALAR_TYPES = {"string", "integer", "number", "boolean", "null"}

# Top-level modules a service imports or sits beside: a package of the same name would shadow
# them (`import flask` finding the service) or collide with a folder of the generated service.
TAKEN_MODULE_NAMES = frozenset({
    "attr", "attrs", "blinker", "certifi", "cffi", "charset_normalizer", "click", "copier",
    "cryptography", "dotenv", "flask", "idna", "iniconfig", "itsdangerous", "jinja2", "jsonschema",
    "jsonschema_specifications", "jwt", "markupsafe", "migrations", "packaging", "passenger_wsgi",
    "pika", "pip", "pkg_resources", "pluggy", "pycparser", "pymysql", "pytest", "_pytest",
    "referencing", "requests", "rpds", "ruff", "setuptools", "shoestring", "tests",
    "typing_extensions", "urllib3", "var", "waitress", "werkzeug", "wheel", "yaml",
})
# Settings the chassis reads itself; a peer's url_env must not reuse them.
CHASSIS_SETTINGS = frozenset({"DATABASE_URL", "LOG_LEVEL", "TEST_DATABASE_URL"})


def package_name(service_name: str) -> str:
    """The default Python package of a service: its name in lowercase with '-' as '_'."""
    return service_name.lower().replace("-", "_")


def handler_name(message: str, version: int) -> str:
    """The handler module of a subscription: `on_<message with . and - as _>_v<N>`."""
    return f"on_{re.sub(r'[.-]', '_', message)}_v{version}"


def converter_name(message: str, version: int, target: int) -> str:
    """The module converting a message version for `publish_also`: `<message>_v<N>_to_v<M>`."""
    return f"{re.sub(r'[.-]', '_', message)}_v{version}_to_v{target}"


def path_params(path: str) -> list[str]:
    """The `{name}` parameters of an endpoint path, in path order."""
    return PATH_PARAM.findall(path)


def route_shape(path: str) -> str:
    """The path with parameter names erased: two paths of the same shape match the same URLs."""
    return PATH_PARAM.sub("{}", path)


class Checker:
    """Runs the checks over one document; `compiled` maps each fields location to its schema."""

    def __init__(self, file: str, root: Node) -> None:
        self.file = file
        self.root = root
        self.data: dict[str, Any] = root.value if isinstance(root.value, dict) else {}
        self.problems: list[Problem] = []
        self.compiled: dict[tuple, dict[str, Any]] = {}
        self.suggested: set[str] = set()  # names offered as did-you-mean for a misspelling

    def add(self, path: list | tuple, message: str, hint: str = "", code: str = "invalid", *,
            at_key: bool = False, severity: str = ERROR) -> None:
        line, col = locate(self.root, list(path), at_key=at_key)
        self.problems.append(Problem(self.file, line, col, message, hint, code, severity))

    def reference_hint(self, name: str, defined: dict[str, Any], fallback: str) -> str:
        """Did-you-mean for an undefined name; the likely target then counts as used."""
        match = did_you_mean(name, defined)
        if match is None:
            return fallback
        self.suggested.add(match)
        return f"did you mean '{match}'?"

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    def entries(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        value = self.data.get(name)
        if not isinstance(value, list):
            return []
        return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]

    def run(self) -> list[Problem]:
        self.compile_fields()
        self.check_examples()
        self.check_service()
        self.check_messages()
        self.check_subscriptions()
        self.check_local_subscriptions()
        self.check_endpoints()
        self.check_handler_modules()
        self.check_policies_and_peers()
        return self.problems

    # -- fields ----------------------------------------------------------------------------

    def field_locations(self) -> list[tuple[tuple, str]]:
        """Every mapping of fields in the spec, with the name of its owner."""
        found: list[tuple[tuple, str]] = []
        for message, entry in self.section("messages").items():
            versions = entry.get("versions") if isinstance(entry, dict) else None
            for version, body in (versions.items() if isinstance(versions, dict) else []):
                if isinstance(body, dict) and "fields" in body:
                    found.append((("messages", message, "versions", version, "fields"),
                                  f"message '{message}' version {version}"))
        for index, entry in self.entries("subscriptions"):
            if entry.get("fields") is not None:
                where = describe(self.root, ["subscriptions", index])[0]
                found.append((("subscriptions", index, "fields"), where))
        for index, entry in self.entries("endpoints"):
            where = describe(self.root, ["endpoints", index])[0]
            for part in ("request", "response"):
                found.append((("endpoints", index, part), f"{where} {part}"))
        for peer, name, _call in self.peer_calls():
            where = describe(self.root, ["peers", peer, "calls", name])[0]
            for part in ("request", "response"):
                found.append((("peers", peer, "calls", name, part), f"{where} {part}"))
        return found

    def peer_calls(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(peer, call name, call) of every well-shaped call under `peers: <peer>: calls:`."""
        found = []
        for peer, entry in self.section("peers").items():
            calls = entry.get("calls") if isinstance(entry, dict) else None
            for name, call in (calls.items() if isinstance(calls, dict) else []):
                if isinstance(call, dict):
                    found.append((peer, name, call))
        return found

    def compile_fields(self) -> None:
        for path, _ in self.field_locations():
            owner: Any = self.data
            for step in path[:-1]:
                owner = owner[step]
            schema, issues = compile_fields_checked(owner.get(path[-1]))
            for issue in issues:
                self.add([*path, *issue.path], issue.message, issue.hint, issue.code,
                         at_key=issue.at_key)
            if not issues:
                self.compiled[path] = schema

    def check_examples(self) -> None:
        """Stubs and generated tests use `example_for`; each schema must accept its example."""
        for path, where in self.field_locations():
            schema = self.compiled.get(path)
            if schema is None:
                continue
            errors = list(Draft202012Validator(schema).iter_errors(example_for(schema)))
            if errors:
                steps = list(errors[0].absolute_path)
                field = steps[0] if steps else None
                detail = errors[0].message
                detail = detail if len(detail) <= 100 else detail[:97] + "..."
                self.add([*path, *steps[:1]],
                         f"{where}: no example value satisfies the schema of field '{field}' "
                         f"({detail})",
                         "add `examples: [<a valid value>]` to its full-form schema", "no-example")

    # -- names -----------------------------------------------------------------------------

    def check_service(self) -> None:
        service = self.data.get("service")
        if not isinstance(service, dict):
            return
        name, explicit = service.get("name"), service.get("package")
        if isinstance(explicit, str):
            if not PACKAGE_NAME.match(explicit):
                return  # the schema reports a malformed package
            package, where = explicit, ["service", "package"]
            keyword_message = f"package '{package}' is a Python keyword"
            shadow_message = f"package '{package}' would shadow the module '{package}'"
            hint = f"choose another package, e.g. '{package}_service'"
        elif isinstance(name, str) and SERVICE_NAME.match(name):
            package, where = package_name(name), ["service", "name"]
            source = f"service name '{name}' makes the package name '{package}'"
            keyword_message = f"{source}, a Python keyword"
            shadow_message = f"{source}, which would shadow the module '{package}'"
            hint = (f"rename the service, e.g. '{name}-service', or set `package:` under "
                    "service:")
        else:
            return  # the schema reports a missing or malformed name
        if keyword.iskeyword(package):
            self.add(where, keyword_message, hint, "bad-name")
        elif package in sys.stdlib_module_names or package in TAKEN_MODULE_NAMES:
            self.add(where, f"{shadow_message} that services use", hint, "bad-name")

    def check_handler_modules(self) -> None:
        """Endpoints and subscriptions each own handlers/<module>.py; no two may share one."""
        owners: dict[str, str] = {}
        for index, entry in self.entries("endpoints"):
            name = entry.get("name")
            if not isinstance(name, str) or not ENDPOINT_NAME.match(name):
                continue
            if keyword.iskeyword(name) or (name.startswith("__") and name.endswith("__")):
                self.add(["endpoints", index, "name"],
                         f"endpoint name '{name}' cannot be a Python module name "
                         f"(handlers/{name}.py)", f"rename it, e.g. '{name}_item'", "bad-name")
                continue
            if name in owners:
                self.add(["endpoints", index, "name"],
                         f"endpoint name '{name}' is already used by {owners[name]}",
                         "give every endpoint its own name", "duplicate")
                continue
            owners[name] = f"the endpoint at line {locate(self.root, ['endpoints', index])[0]}"
        subscribed: set[tuple[str, int]] = set()
        for index, entry in self.entries("subscriptions"):
            message, version = entry.get("message"), entry.get("version")
            if not _is_message(message) or not _is_version(version):
                continue
            if (message, version) in subscribed:
                continue  # a repeated subscription, reported by check_subscriptions
            subscribed.add((message, version))
            module = handler_name(message, version)
            if module in owners:
                hint = ("rename the endpoint" if owners[module].startswith("the endpoint") else
                        "message types that differ only in '.', '-' and '_' share a handler "
                        "module: rename one of them")
                self.add(["subscriptions", index, "message"],
                         f"the subscription to '{message}' v{version} needs handlers/{module}.py, "
                         f"already used by {owners[module]}", hint, "duplicate")
                continue
            line = locate(self.root, ["subscriptions", index])[0]
            owners[module] = f"the subscription at line {line}"
        for message, entry in self.section("messages").items():
            versions = entry.get("versions") if isinstance(entry, dict) else None
            for text, body in (versions.items() if isinstance(versions, dict) else []):
                also = body.get("publish_also") if isinstance(body, dict) else None
                if not _is_message(message) or not VERSION_KEY.match(text) \
                        or not isinstance(also, list):
                    continue
                for index, target in enumerate(also):
                    if not _is_version(target):
                        continue
                    module = converter_name(message, int(text), target)
                    if module in owners:
                        self.add(["messages", message, "versions", text, "publish_also", index],
                                 f"message '{message}' version {text} needs handlers/{module}.py "
                                 f"to convert to version {target}, already used by "
                                 f"{owners[module]}", "rename the endpoint", "duplicate")

    # -- messages and subscriptions --------------------------------------------------------

    def check_messages(self) -> None:
        peers = self.section("peers")
        messages_node = self.root.child("messages")
        for message, entry in self.section("messages").items():
            if not isinstance(entry, dict):
                continue
            versions_node = messages_node.child(message).child("versions") \
                if messages_node and messages_node.child(message) else None
            if versions_node is not None and versions_node.kind == "map":
                for text, (key, _) in versions_node.entries.items():
                    if VERSION_KEY.match(text) and key.scalar_type != "int":
                        self.add(["messages", message, "versions", text],
                                 f"message '{message}' version '{text}' is written as text",
                                 f"versions are whole numbers: write {text}: without quotes",
                                 "wrong-type", at_key=True)
            versions = entry.get("versions")
            if isinstance(versions, dict):
                self.check_publish_also(message, versions)
            targets = entry.get("to")
            for index, peer in enumerate(targets if isinstance(targets, list) else []):
                if isinstance(peer, str) and SERVICE_NAME.match(peer) and peer not in peers:
                    self.add(["messages", message, "to", index],
                             f"message '{message}' is sent to peer '{peer}' which is not defined",
                             self.reference_hint(peer, peers, f"add it under peers: {{{peer}: "
                                             f"{{url_env: {_env_name(peer)}}}}}"),
                             "undefined-reference")

    def check_publish_also(self, message: str, versions: dict[str, Any]) -> None:
        """`publish_also` names other versions of the same message."""
        known = sorted(int(text) for text in versions if VERSION_KEY.match(text))
        for text, body in versions.items():
            also = body.get("publish_also") if isinstance(body, dict) else None
            if not VERSION_KEY.match(text) or not isinstance(also, list):
                continue
            for index, target in enumerate(also):
                if not _is_version(target):
                    continue  # the schema reports it
                where = ["messages", message, "versions", text, "publish_also", index]
                if target == int(text):
                    others = [version for version in known if version != target]
                    self.add(where, f"message '{message}' version {text} lists itself under "
                             "publish_also",
                             f"list the other versions to publish beside version {text}, e.g. "
                             f"[{others[0]}]" if others else "remove it: a version is always "
                             "published itself", "wrong-value")
                elif target not in known:
                    self.add(where, f"message '{message}' version {text} also publishes version "
                             f"{target}, which the message does not have",
                             f"its versions are {', '.join(map(str, known))}; keep version "
                             f"{target} under versions: while it is published",
                             "undefined-reference")

    def check_subscriptions(self) -> None:
        peers, policies = self.section("peers"), self.section("retry_policies")
        own_name = self.section("service").get("name")
        seen: dict[tuple[str, int], int] = {}
        for index, entry in self.entries("subscriptions"):
            where = describe(self.root, ["subscriptions", index])[0]
            source = entry.get("from")
            # `from:` the service itself is a local background job (`ctx.enqueue`, or a message
            # it publishes and handles itself): no peer involved.
            if (isinstance(source, str) and SERVICE_NAME.match(source) and source not in peers
                    and source != own_name):
                self.add(["subscriptions", index, "from"],
                         f"{where} expects it from peer '{source}' which is not defined",
                         self.reference_hint(source, peers, f"add it under peers: {{{source}: "
                                         f"{{url_env: {_env_name(source)}}}}}"),
                         "undefined-reference")
            retry = entry.get("retry")
            if isinstance(retry, str) and retry not in policies:
                self.add(["subscriptions", index, "retry"],
                         f"{where} uses retry policy '{retry}' which is not defined",
                         self.reference_hint(retry, policies, f"add it under retry_policies: "
                                         f"{{{retry}: {{max_attempts: 10, base_seconds: 2, "
                                         "max_seconds: 3600}}"), "undefined-reference")
            message, version = entry.get("message"), entry.get("version")
            if _is_message(message) and _is_version(version):
                if (message, version) in seen:
                    self.add(["subscriptions", index, "version"],
                             f"'{message}' version {version} is subscribed to twice (first at "
                             f"line {seen[(message, version)]})",
                             "subscribe to each message version once", "duplicate")
                else:
                    seen[(message, version)] = locate(self.root, ["subscriptions", index])[0]

    def check_local_subscriptions(self) -> None:
        """A subscription `from:` this service to a message it publishes reads what the service
        itself writes: its fields must fit the published version, as `shoestring check` proves
        between two services (the same comparison), or every such message fails its handler's
        schema."""
        own_name = self.section("service").get("name")
        for index, entry in self.entries("subscriptions"):
            message, version = entry.get("message"), entry.get("version")
            if entry.get("from") != own_name or not _is_message(message) \
                    or not _is_version(version):
                continue
            published_at = ("messages", message, "versions", str(version), "fields")
            writer = self.compiled.get(published_at)
            reader = self.compiled.get(("subscriptions", index, "fields"))
            if writer is None or reader is None:
                continue  # a job it only enqueues, or fields reported already
            base: list[str | int] = ["subscriptions", index, "fields"]
            for steps, text, hint, published in incompatible(writer, reader, []):
                declared = field_path(self.root, list(published_at),
                                      steps if published else steps[:-1])
                line = locate(self.root, declared, at_key=True)[0]
                what = "declares it" if published else "declares its fields"
                self.add(field_path(self.root, base, steps),
                         f"the subscription to '{message}' v{version} from {own_name} itself "
                         f"reads what {own_name} publishes: {text}",
                         f"{hint} (message '{message}' version {version} {what} at line {line})",
                         "incompatible-field", at_key=True)

    # -- endpoints -------------------------------------------------------------------------

    def check_endpoints(self) -> None:
        limits = self.section("rate_limits")
        routes: dict[tuple[str, str], tuple[str, str]] = {}
        for index, entry in self.entries("endpoints"):
            where = describe(self.root, ["endpoints", index])[0]
            method, path = entry.get("method"), entry.get("path")
            limit = entry.get("rate_limit")
            if isinstance(limit, str) and limit not in limits:
                self.add(["endpoints", index, "rate_limit"],
                         f"{where} uses rate limit '{limit}' which is not defined",
                         self.reference_hint(limit, limits, f"add it under rate_limits: {{{limit}: "
                                         "{limit: 60, per: minute, key: client}}"),
                         "undefined-reference")
            if method == "POST" and path == INBOX_PATH:
                self.add(["endpoints", index, "path"],
                         f"{where} uses POST {INBOX_PATH}, where the chassis receives the "
                         "messages peers deliver", "choose another path", "route-collision")
            if isinstance(path, str) and PATH.match(path):
                self.check_path(index, where, path)
                if isinstance(method, str):
                    shape = (method, route_shape(path))
                    if shape in routes:
                        other, other_path = routes[shape]
                        hint = ("paths that differ only in parameter names match the same URLs; "
                                "merge the endpoints or change one path") \
                            if other_path != path else "change the method or the path"
                        self.add(["endpoints", index, "path"],
                                 f"{where} has the same route as {other} ({method} {other_path})",
                                 hint, "route-collision")
                    else:
                        routes[shape] = (where, path)
            request = self.compiled.get(("endpoints", index, "request"))
            if isinstance(method, str) and method in QUERY_METHODS and request is not None:
                params = path_params(path) if isinstance(path, str) else []
                for field, schema in request["properties"].items():
                    if field not in params and not is_scalar(schema):
                        self.add(["endpoints", index, "request", field],
                                 f"{where} is a {method}, so request field '{field}' comes from "
                                 "the query string, where only text, numbers and booleans fit",
                                 "flatten it into scalar fields, or use POST for structured input",
                                 "query-not-scalar", at_key=True)
            response = self.compiled.get(("endpoints", index, "response"))
            if entry.get("status") == 204 and response is not None and response["properties"]:
                self.add(["endpoints", index, "status"],
                         f"{where} answers 204 No Content but declares response fields",
                         "remove the response fields or use status 200", "wrong-value")
            if method == "GET" and entry.get("idempotent") is True:
                self.add(["endpoints", index, "idempotent"],
                         f"{where} is a GET, which is idempotent already",
                         "remove `idempotent: true`", "no-effect", severity=WARNING)

    def check_path(self, index: int, where: str, path: str) -> None:
        request = self.compiled.get(("endpoints", index, "request"))
        params = path_params(path)
        for position, name in enumerate(params):
            if name in params[:position]:
                self.add(["endpoints", index, "path"],
                         f"{where} path '{path}' has parameter '{{{name}}}' twice",
                         "give each path parameter its own name", "duplicate")
                continue
            if request is None:
                continue  # the request fields did not compile; their problems are reported
            schema = request["properties"].get(name)
            if schema is None:
                self.add(["endpoints", index, "path"],
                         f"{where} path parameter '{name}' is not a request field",
                         f"add `{name}: str` (or int, uuid, ...) under request:",
                         "undefined-reference")
            elif name not in request["required"]:
                self.add(["endpoints", index, "request", name],
                         f"{where} path parameter '{name}' is declared optional",
                         "a path always has its parameters: remove the '?'", "wrong-value",
                         at_key=True)
            elif not is_scalar(schema) or "array" in _types(schema):
                self.add(["endpoints", index, "request", name],
                         f"{where} path parameter '{name}' must be text, a number or a boolean",
                         "declare it as str, int, uuid, enum[...], ...", "wrong-type",
                         at_key=True)

    # -- policies and peers ----------------------------------------------------------------

    def check_policies_and_peers(self) -> None:
        for name, policy in self.section("retry_policies").items():
            if not isinstance(policy, dict):
                continue
            base, most = policy.get("base_seconds"), policy.get("max_seconds")
            if _is_number(base) and _is_number(most) and most < base:
                self.add(["retry_policies", name, "max_seconds"],
                         f"retry policy '{name}' waits at most {most}s, less than its first "
                         f"wait of {base}s", f"raise max_seconds to at least {base}",
                         "wrong-value")
        used_envs: dict[str, str] = {}
        for name, peer in self.section("peers").items():
            env = peer.get("url_env") if isinstance(peer, dict) else None
            if not isinstance(env, str):
                continue
            if env in CHASSIS_SETTINGS:
                self.add(["peers", name, "url_env"],
                         f"peer '{name}' reads its URL from {env}, a setting the service uses "
                         "for itself", f"use another name, e.g. {_env_name(name)}", "bad-name")
            elif env in used_envs:
                self.add(["peers", name, "url_env"],
                         f"peers '{used_envs[env]}' and '{name}' both read their URL from {env}",
                         f"give each peer its own setting, e.g. {_env_name(name)}", "duplicate")
            else:
                used_envs[env] = name
        self.check_peer_calls()
        self.warn_unused()

    def check_peer_calls(self) -> None:
        """A call's path parameters are required scalar request fields; GET and DELETE send the
        other fields in the query string, so they must be scalars too (as for endpoints)."""
        for peer, name, call in self.peer_calls():
            where = describe(self.root, ["peers", peer, "calls", name])[0]
            at = ["peers", peer, "calls", name]
            request = self.compiled.get((*at, "request"))
            path, method = call.get("path"), call.get("method")
            if request is None or not isinstance(path, str) or not PATH.match(path):
                continue  # reported already (fields or path shape)
            params = path_params(path)
            for param in params:
                schema = request["properties"].get(param)
                if schema is None:
                    self.add([*at, "path"], f"{where} path parameter '{param}' is not a request "
                             "field", f"add `{param}: str` (or int, uuid, ...) under request:",
                             "undefined-reference")
                elif param not in request["required"] or not is_scalar(schema):
                    self.add([*at, "request", param], f"{where} path parameter '{param}' must be "
                             "a required text, number or boolean field",
                             "declare it as str, int, uuid, enum[...], ... without '?'",
                             "wrong-type", at_key=True)
            if method in QUERY_METHODS:
                for field, schema in request["properties"].items():
                    if field not in params and not is_scalar(schema):
                        self.add([*at, "request", field],
                                 f"{where} is a {method}, so request field '{field}' goes in the "
                                 "query string, where only text, numbers and booleans fit",
                                 "flatten it into scalar fields", "query-not-scalar",
                                 at_key=True)

    def warn_unused(self) -> None:
        endpoints = [entry for _, entry in self.entries("endpoints")]
        subscriptions = [entry for _, entry in self.entries("subscriptions")]
        used_limits = _names(entry.get("rate_limit") for entry in endpoints)
        used_retries = _names(entry.get("retry") for entry in subscriptions)
        used_peers = _names(entry.get("from") for entry in subscriptions)
        used_peers.update(peer for peer, _name, _call in self.peer_calls())
        for message in self.section("messages").values():
            targets = message.get("to") if isinstance(message, dict) else None
            if isinstance(targets, list):
                used_peers.update(peer for peer in targets if isinstance(peer, str))
        for section, used, what in (("rate_limits", used_limits, "endpoint"),
                                    ("retry_policies", used_retries, "subscription"),
                                    ("peers", used_peers, "subscription, message or call")):
            for name in self.section(section):
                if name not in used and name not in self.suggested:
                    self.add([section, name], f"'{name}' under {section}: is not used by any "
                             f"{what}", "remove it, or refer to it", "unused", at_key=True,
                             severity=WARNING)


def is_scalar(schema: Any) -> bool:
    """True when every value the schema accepts is text, a number, a boolean or null."""
    if not isinstance(schema, dict):
        return False
    for keyword_ in ("anyOf", "oneOf"):
        if keyword_ in schema:
            options = schema[keyword_]
            return isinstance(options, list) and all(is_scalar(option) for option in options)
    if "type" in schema:
        return bool(_types(schema)) and _types(schema) <= SCALAR_TYPES
    for keyword_ in ("enum", "const"):
        values = schema.get("enum", []) if keyword_ == "enum" else [schema.get("const")]
        if keyword_ in schema:
            return all(isinstance(value, (str, int, float, bool)) or value is None
                       for value in values)
    return False


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()


def _names(values: Any) -> set[str]:
    return {value for value in values if isinstance(value, str)}


def _is_message(value: Any) -> bool:
    return isinstance(value, str) and bool(MESSAGE_NAME.match(value))


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_URL"


