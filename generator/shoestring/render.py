"""Spec model -> the files the generator owns in a service, as bytes; no I/O here.

`render(spec)` returns two sets of files, paths relative to the service's root:

- `generated`: everything under `<package>/_generated/` — the generator's, rewritten wholesale
  when its content changes. Each carries a DO-NOT-EDIT header naming the generator version
  and the spec file, but no hash of the spec (the manifest records it), so that a one-line
  spec change rewrites only the files whose content depends on it;
- `stubs`: one module per endpoint and per subscription under `<package>/handlers/` — created
  when missing and never touched again, because the user writes the business logic there.

Output depends on nothing but the spec and the generator version: keys are sorted, nothing
carries a timestamp, so the same spec gives byte-identical files on every machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2

from . import __version__
from .asyncapi import asyncapi_document
from .converters import conversions, converter_stub, converters_module
from .literal import WIDTH, Code, docstring_text, layout, wrap
from .openapi import openapi_document
from .peers import peers_module
from .spec import example_for

SPEC_FILE = "service.yaml"
# The registry format: how `<package>/_generated/` is laid out and what the runtime may expect in
# it, written as `"format"` into `_generated/service.json`. The runtime reads the formats it
# declares (shoestring_runtime.schemas.REGISTRY_FORMATS) and refuses any other at start-up, so a
# change the runtime of an earlier version cannot read takes the next number. Format 0 (no key) was
# written for the chassis copied into each service, before the runtime became a library.
REGISTRY_FORMAT = 1
# The first shoestring-runtime release that reads REGISTRY_FORMAT: `shoestring generate` refuses to
# write for a service whose lock pins an older one (generate.check_runtime).
FIRST_RUNTIME_READING_FORMAT = "0.1.0"
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("shoestring", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # the output is Python source, not HTML
)


@dataclass(frozen=True)
class Rendered:
    """The files of one generation: path (POSIX, relative to the service root) -> content."""

    spec_sha256: str
    generated: dict[str, bytes] = field(default_factory=dict)
    stubs: dict[str, bytes] = field(default_factory=dict)


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """The hash of the spec model in canonical JSON.

    The model, not the file, is hashed: comments and layout changes in service.yaml leave the
    manifest alone, while any change of meaning shows there.
    """
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def render(spec: Mapping[str, Any], *, version: str = __version__) -> Rendered:
    """Every file the generator owns for `spec` (the normalised model of `load_spec`)."""
    files = _Files(spec, version)
    return Rendered(spec_sha256=spec_sha256(spec), generated=files.generated(), stubs=files.stubs())


def document_version(document: Mapping[str, Any]) -> str:
    """The info.version of an OpenAPI or AsyncAPI document: a hash of its own content.

    A hash of the whole spec would change the API documents on every spec edit, even one that
    touches neither; this one changes exactly when the document does.
    """
    unversioned = {**document, "info": {**document["info"], "version": ""}}
    canonical = json.dumps(unversioned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _versioned(document: dict[str, Any]) -> dict[str, Any]:
    document["info"]["version"] = document_version(document)
    return document


class _Files:
    def __init__(self, spec: Mapping[str, Any], version: str) -> None:
        self.spec = spec
        self.package = spec["service"]["package"]
        self.origin = f"shoestring {version} from {SPEC_FILE}"

    # -- paths ----------------------------------------------------------------------------

    @property
    def generated_dir(self) -> str:
        return f"{self.package}/_generated"

    def endpoint_schema(self, name: str, part: str) -> str:
        return f"{self.generated_dir}/schemas/endpoints/{name}.{part}.json"

    def message_schema(self, message: str, version: int | str) -> str:
        return f"{self.generated_dir}/schemas/messages/{message}.v{version}.json"

    def subscription_schema(self, message: str, version: int | str) -> str:
        return f"{self.generated_dir}/schemas/subscriptions/{message}.v{version}.json"

    def handler(self, name: str) -> str:
        return f"{self.package}/handlers/{name}.py"

    # -- generated files ------------------------------------------------------------------

    def generated(self) -> dict[str, bytes]:
        spec = self.spec
        files: dict[str, bytes] = {
            f"{self.generated_dir}/__init__.py": self._template(
                "generated_init.py.jinja", header=self._python_header()
            ),
            f"{self.generated_dir}/registry.py": self._registry(),
            f"{self.generated_dir}/service.json": self._json(
                {**spec, "format": REGISTRY_FORMAT}
            ),
            f"{self.generated_dir}/openapi.json": self._json(
                _versioned(openapi_document(spec, version=""))
            ),
            f"{self.generated_dir}/asyncapi.json": self._json(
                _versioned(asyncapi_document(spec, version=""))
            ),
            f"{self.generated_dir}/converters.py": converters_module(spec, self._python_header()),
            # ctx.peers: typed clients of the peer endpoints the spec says this service calls.
            f"{self.generated_dir}/peers.py": peers_module(spec, self._python_header()),
            # The contract tests: what the spec promises, checked on the running service (the
            # fixtures come from the runtime's pytest plugin, which conftest.py at the service's
            # root loads).
            f"{self.generated_dir}/test_contract.py": self._contract_tests(),
        }
        for endpoint in spec.get("endpoints", []):
            name = endpoint["name"]
            for part in ("request", "response"):
                files[self.endpoint_schema(name, part)] = self._schema(
                    endpoint.get(part), f"{name} {part}"
                )
        for message, published in sorted(spec.get("messages", {}).items()):
            for number, version in sorted(published.get("versions", {}).items()):
                files[self.message_schema(message, number)] = self._schema(
                    version.get("schema"),
                    f"{message} v{number}",
                    published.get("description"),
                    deprecated=bool(version.get("deprecated")),
                )
        for subscription in spec.get("subscriptions", []):
            message, number = subscription["message"], subscription["version"]
            files[self.subscription_schema(message, number)] = self._schema(
                subscription.get("schema"), f"{message} v{number} from {subscription['from']}"
            )
        return dict(sorted(files.items()))

    def _registry(self) -> bytes:
        endpoints = [endpoint["name"] for endpoint in self.spec.get("endpoints", [])]
        subscriptions = list(self.spec.get("subscriptions", []))
        modules = sorted({*endpoints, *(s["handler"] for s in subscriptions)}, key=_natural_order)
        handlers = {name: Code(f"{name}.handle") for name in sorted(endpoints)}
        subscribers = {
            (s["message"], int(s["version"])): Code(f"{s['handler']}.handle")
            for s in sorted(subscriptions, key=lambda s: (s["message"], int(s["version"])))
        }
        return self._template(
            "registry.py.jinja",
            header=self._python_header(),
            handler_import=_from_import("..handlers", modules) if modules else "",
            handlers=layout(handlers, prefix="HANDLERS: dict[str, Callable[..., Any]] = "),
            subscribers=layout(
                subscribers,
                prefix="SUBSCRIBERS: dict[tuple[str, int], Callable[..., Any]] = ",
            ),
        )

    def _contract_tests(self) -> bytes:
        """test_contract.py: one parametrized test per concern, over the endpoints and message
        versions of the spec it applies to, each calling its check in shoestring_runtime.contract
        (the `contract` fixture)."""
        endpoints = list(self.spec.get("endpoints", []))
        names = [endpoint["name"] for endpoint in endpoints]
        with_body = [e["name"] for e in endpoints if e["method"].upper() not in _NO_BODY]
        idempotent = [endpoint["name"] for endpoint in endpoints if endpoint.get("idempotent")]
        scoped = [endpoint["name"] for endpoint in endpoints if endpoint.get("scopes")]
        limited = [endpoint["name"] for endpoint in endpoints if endpoint.get("rate_limit")]
        published = [
            f"{message}.v{number}"
            for message, declared in sorted(self.spec.get("messages", {}).items())
            for number in sorted(declared.get("versions", {}), key=int)
        ]
        subscribed = [
            f"{subscription['message']}.v{subscription['version']}"
            for subscription in self.spec.get("subscriptions", [])
        ]
        service = self.spec["service"]["name"]
        docstring = _docstring(
            f"The contract of {service}: what {SPEC_FILE} promises, checked on the running "
            "service, on the database TEST_DATABASE_URL names (a SQLite file when unset).",
            "Each test runs one check of shoestring_runtime.contract (the `contract` fixture) "
            "for every endpoint or message version it applies to; the checks come with the "
            "runtime, so a fix to them arrives as a runtime version. An endpoint with path "
            "parameters may answer the example request 404, as a handler that finds no such row "
            "does. Test what your handlers do in tests/ (tests/test_handlers.py shows how).",
        )

        def listed(name: str, values: list[str]) -> str:
            return layout(values, prefix=f"{name} = ") if values else ""

        return self._template(
            "test_contract.py.jinja",
            header=self._python_header(),
            docstring=docstring,
            endpoints=listed("ENDPOINTS", names),
            with_body=listed("WITH_BODY", with_body),
            idempotent=listed("IDEMPOTENT", idempotent),
            scoped=listed("SCOPED", scoped),
            limited=listed("LIMITED", limited),
            published=listed("PUBLISHED", published),
            subscribed=listed("SUBSCRIBED", subscribed),
        )

    def _schema(
        self,
        schema: Any,
        title: str,
        description: str | None = None,
        *,
        deprecated: bool = False,
    ) -> bytes:
        document = copy.deepcopy(schema) if isinstance(schema, Mapping) else {"type": "object"}
        document.setdefault("$schema", JSON_SCHEMA)
        document.setdefault("title", title)
        if description:
            document.setdefault("description", description)
        if deprecated:  # the JSON Schema annotation; consumers' tooling can warn on it
            document["deprecated"] = True
        return self._json(document)

    def _json(self, document: dict[str, Any]) -> bytes:
        marked = {**document, "x-generated-by": f"{self.origin}; do not edit"}
        text = json.dumps(marked, indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    def _python_header(self) -> str:
        return (
            f"# Generated by {self.origin}.\n"
            f"# DO NOT EDIT: `shoestring generate` rewrites this file; change {SPEC_FILE} instead."
        )

    # -- handler stubs --------------------------------------------------------------------

    def stubs(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for endpoint in self.spec.get("endpoints", []):
            files[self.handler(endpoint["name"])] = self._endpoint_stub(endpoint)
        for subscription in self.spec.get("subscriptions", []):
            files[self.handler(subscription["handler"])] = self._subscription_stub(subscription)
        for conversion in conversions(self.spec):  # publish_also: see converters.py
            files[self.handler(conversion.module)] = converter_stub(self.spec, conversion)
        return dict(sorted(files.items()))

    def _endpoint_stub(self, endpoint: Mapping[str, Any]) -> bytes:
        name = endpoint["name"]
        title = f"{endpoint['method']} {endpoint['path']}"
        if endpoint.get("description"):
            title += f": {endpoint['description']}"
        docstring = _docstring(
            title,
            _OWNERSHIP,
            f"`data` is the request (path parameters, then the query string for GET and DELETE "
            f"or the JSON body), already valid against "
            f"{self.endpoint_schema(name, 'request')}. Return the response body: it must be "
            f"valid against {name}.response.json in the same folder.",
        )
        example = example_for(endpoint.get("response") or {"type": "object"})
        return self._template(
            "endpoint_handler.py.jinja",
            docstring=docstring,
            body=layout(example, indent=1, prefix="return "),
        )

    def _subscription_stub(self, subscription: Mapping[str, Any]) -> bytes:
        message, number = subscription["message"], subscription["version"]
        docstring = _docstring(
            f"Handles {message} v{number} from {subscription['from']}.",
            _OWNERSHIP,
            f"`event` is the message's data, already valid against "
            f"{self.subscription_schema(message, number)}. What `handle` writes through ctx.db "
            f"commits in one transaction with the message's completion, so each message takes "
            f"effect once; raise an exception to have the message retried under the "
            f"'{subscription.get('retry', 'default')}' retry policy.",
        )
        return self._template("subscription_handler.py.jinja", docstring=docstring)

    def _template(self, name: str, **context: Any) -> bytes:
        return _templates.get_template(name).render(**context).encode("utf-8")


# The methods whose request is the query string (shoestring_runtime.schemas.Endpoint.has_body).
_NO_BODY = ("GET", "DELETE", "HEAD")

_OWNERSHIP = (
    "This module is yours: `shoestring generate` created it once and never touches it again."
)


def _docstring(*paragraphs: str) -> str:
    """A module docstring of `paragraphs`, each wrapped to fit the formatter's width.

    Descriptions from the spec land here as they are written: any language, emoji, quotes,
    backslashes; `docstring_text` keeps them valid Python and `wrap` counts wide characters.
    """
    quotes = '"""'
    # The quotes count towards the first line's width, and towards the last one's when the
    # docstring closes on it.
    texts = [docstring_text(text) for text in paragraphs]
    texts[0] = quotes + texts[0]
    if len(texts) == 1:
        texts[0] += quotes
    body = "\n\n".join("\n".join(wrap(text, WIDTH)) for text in texts)
    return body + '\n"""' if len(texts) > 1 else body


def _natural_order(name: str) -> list[str | int]:
    """The order isort and ruff give imported names: digit runs compare as numbers (v2 < v10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _from_import(module: str, names: list[str]) -> str:
    """`from module import a, b`, wrapped one name per line when it does not fit."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= WIDTH:
        return line
    return "\n".join([f"from {module} import (", *(f"    {name}," for name in names), ")"])
