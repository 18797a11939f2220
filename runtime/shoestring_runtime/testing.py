"""The pytest plugin of shoestring services: real databases, the migrated service, its app, a
client and tokens.

A service's `tests/conftest.py` loads it and names the service its fixtures build on:

    pytest_plugins = ["shoestring_runtime.testing"]

    @pytest.fixture(scope="session")
    def service() -> Service:
        return SERVICE

TEST_DATABASE_URL chooses the database (the `database_server` fixture; override it to choose
otherwise, as the runtime's own tests do to run on both engines):

- unset: a fresh SQLite file for the test session;
- `mysql://user:password@host:3306/anything`: a fresh database `t_<random>` is created on that
  server for the session and dropped afterwards (the user needs CREATE and DROP), e.g.
  `TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test pytest`.

The helpers that need to know the service (`bearer`, `settings_for`, `service_environment`,
`request_headers`) take it as their first argument.

PYTEST_DONT_REWRITE: a service's conftest imports these helpers before pytest loads the plugin,
and the plugin checks nothing with `assert` itself.
"""

from __future__ import annotations

import atexit
import functools
import ipaddress
import itertools
import json
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pymysql
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .app import create_app
from .db import Database
from .examples import example_for
from .keys import KeyStore, mint_token
from .migrate import migrate
from .schemas import Endpoint, endpoints
from .service import Service
from .settings import Settings

__all__ = [
    "CallerClient",
    "bearer",
    "client_of",
    "endpoint_url",
    "endpoints",
    "example_for",
    "fresh_database",
    "new_address",
    "new_subject",
    "peer_issuers",
    "request_headers",
    "service_environment",
    "session_keys",
    "settings_for",
    "uses_mysql",
]


def uses_mysql(server_url: str) -> bool:
    """Whether `server_url` (a `database_server`) names a MySQL/MariaDB server; "" is SQLite."""
    return urlsplit(server_url).scheme.split("+")[0] in ("mysql", "mariadb")


@contextmanager
def fresh_database(folder: Path, server_url: str | None = None) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file in `folder`, or a database created on the
    MySQL/MariaDB server of `server_url` (default: TEST_DATABASE_URL) and dropped when the block
    ends."""
    if server_url is None:
        server_url = os.environ.get("TEST_DATABASE_URL", "")
    if not uses_mysql(server_url):
        yield f"sqlite:///{folder / 'test.db'}"
        return
    parts = urlsplit(server_url)
    name = f"t_{secrets.token_hex(6)}"
    server = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
        connect_timeout=5,
    )
    try:
        with server.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()


@functools.cache
def session_keys() -> KeyStore:
    """The signing key of the test session, in a temporary key directory removed at exit. Every
    configuration the tests build points SERVICE_KEYS_DIR there, and the requests they send
    carry tokens signed with it (`bearer`)."""
    folder = Path(tempfile.mkdtemp(prefix="keys-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = KeyStore(folder)
    store.generate()
    return store


def service_environment(service: Service, database_url: str, **overrides: str) -> dict[str, str]:
    """Environment variables of a valid configuration of `service` for tests: the given
    database, and harmless values for the keys its spec adds (peer URLs point at a closed
    port)."""
    environ = {
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "SERVICE_KEYS_DIR": str(session_keys().directory),
    }
    for key in service.model.get("settings", []):
        environ[key] = "http://127.0.0.1:9" if key.endswith("_URL") else "test"
    environ.update(overrides)
    return environ


def settings_for(service: Service, database_url: str, **overrides: str) -> Settings:
    """Settings of `service` built from `service_environment`."""
    environ = service_environment(service, database_url, **overrides)
    return service.load_settings(environ=environ, env_file=None)


def bearer(
    service: Service, scopes: Iterable[str] = (), subject: str = "tests", issuer: str | None = None
) -> dict[str, str]:
    """The Authorization header of a valid token for `service` granting `scopes`, signed with
    the session's key: by default the service's own token; `issuer` plays another service whose
    trusted key is the same (see `peer_issuers`)."""
    token = mint_token(
        session_keys(),
        issuer=issuer or service.name,
        audience=service.name,
        subject=subject,
        scopes=scopes,
    )
    return {"Authorization": f"Bearer {token}"}


def peer_issuers(*names: str) -> str:
    """A TRUSTED_ISSUERS value that trusts each of `names` as an issuer whose key is the
    session's (a pinned JWKS file), so tests can play peer services."""
    folder = Path(tempfile.mkdtemp(prefix="peers-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    jwks_file = folder / "peers.jwks.json"
    jwks_file.write_text(json.dumps(session_keys().jwks()), encoding="utf-8")
    return ";".join(f"{name}={jwks_file}" for name in names)


# Callers the tests play: every request of the suite comes from a token subject and an address
# of its own, so it counts in rate-limit buckets nobody else fills. A spec may allow as little as
# one request per minute per client, shared by every endpoint, or one per second per address;
# tests that shared a caller would get 429s from each other. Rate-limit tests send many
# requests as one caller on purpose, to prove the refusals.
_CALLERS = itertools.count(1)
_FIRST_ADDRESS = int(ipaddress.IPv4Address("198.18.0.0"))  # RFC 2544's range for tests: 2**17


def new_subject() -> str:
    """A token subject no other request of the test session uses."""
    return f"tests-{next(_CALLERS)}"


def new_address() -> str:
    """A client address (REMOTE_ADDR) no other request of the test session uses."""
    return str(ipaddress.IPv4Address(_FIRST_ADDRESS + next(_CALLERS) % 2**17))


class CallerClient(FlaskClient):
    """Flask's test client, each of whose requests comes from a new address (`new_address`)
    unless it names its own: `environ_base={"REMOTE_ADDR": ...}`."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        if not args or isinstance(args[0], str):  # a URL, not a prepared environ or request
            named = kwargs.get("environ_base") or {}
            kwargs["environ_base"] = {"REMOTE_ADDR": new_address(), **named}
        return super().open(*args, **kwargs)


def client_of(app: Flask) -> FlaskClient:
    """A test client of `app` whose requests each come from a new address (`CallerClient`)."""
    return CallerClient(app, app.response_class, use_cookies=True)


def request_headers(service: Service, endpoint: Endpoint) -> dict[str, str]:
    """Headers a call to `endpoint` of `service` needs besides the body's Content-Type: a token
    granting the endpoint's scopes to a new subject (a caller of its own, see `new_subject`),
    and a fresh Idempotency-Key for an idempotent endpoint (so every call is a new
    operation)."""
    headers = bearer(service, endpoint.scopes, subject=new_subject())
    if endpoint.idempotent:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return headers


def endpoint_url(endpoint: Endpoint, data: dict[str, Any]) -> str:
    """The endpoint's path with its parameters filled in from `data`, plus the query string
    (GET and DELETE) made of the other fields."""
    path = endpoint.path
    for name in endpoint.path_params:
        path = path.replace("{" + name + "}", str(data[name]))
    if endpoint.has_body:
        return path
    query = {
        key: _query_value(value) for key, value in data.items() if key not in endpoint.path_params
    }
    return f"{path}?{urlencode(query, doseq=True)}" if query else path


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(item) for item in value]
    return value


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def service() -> Service:
    """The service under test. The conftest.py that loads this plugin overrides it."""
    raise pytest.UsageError(
        "the shoestring_runtime.testing plugin needs a `service` fixture: add to "
        "tests/conftest.py\n\n    @pytest.fixture(scope='session')\n    def service():\n"
        "        return SERVICE  # from <package> import SERVICE\n"
    )


@pytest.fixture(scope="session")
def database_server() -> str:
    """Where the test databases are made: the MySQL/MariaDB server URL of TEST_DATABASE_URL, or
    "" for SQLite files."""
    return os.environ.get("TEST_DATABASE_URL", "")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory, database_server: str) -> Iterator[str]:
    """The session's database, empty."""
    with fresh_database(tmp_path_factory.mktemp("db"), database_server) as url:
        yield url


@pytest.fixture
def fresh_database_url(tmp_path: Path, database_server: str) -> Iterator[str]:
    """A database of its own for one test (migration tests start from nothing)."""
    with fresh_database(tmp_path, database_server) as url:
        yield url


@pytest.fixture(scope="session")
def settings(service: Service, database_url: str) -> Settings:
    """The service's settings on the session's database (`settings_for`)."""
    return settings_for(service, database_url)


@pytest.fixture(scope="session")
def db(service: Service, settings: Settings) -> Database:
    """The session's database, migrated: the runtime's tables, then the service's."""
    database = Database(settings.database_url)
    migrate(database, service.root)
    return database


@pytest.fixture(scope="session")
def app_factory(service: Service) -> Callable[[Settings], Flask]:
    """How the tests build the service's app from settings: the runtime's app of `service`. A
    service's conftest returns its own `create_app` (app.py), so that its routes and checks are
    part of what its tests call."""
    return functools.partial(create_app, service)


@pytest.fixture(scope="session")
def app(app_factory: Callable[[Settings], Flask], settings: Settings, db: Database) -> Flask:
    """The service's app on the session's migrated database."""
    return app_factory(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app whose requests each come from a new address."""
    return client_of(app)


@pytest.fixture
def auth_headers(service: Service) -> Callable[..., dict[str, str]]:
    """`auth_headers(scopes)`: the Authorization header of a valid token granting `scopes`, for
    a new subject each time (a caller of its own) unless `subject=` names one."""

    def headers(scopes: Iterable[str] = (), subject: str | None = None) -> dict[str, str]:
        return bearer(service, scopes, subject=subject or new_subject())

    return headers


@pytest.fixture
def call(service: Service, client: FlaskClient) -> Callable[..., TestResponse]:
    """`call(endpoint, data)`: send `data` to the endpoint the way a client would."""

    def send(endpoint: Endpoint, data: dict[str, Any], **kwargs: Any) -> TestResponse:
        headers = {**request_headers(service, endpoint), **kwargs.pop("headers", {})}
        if endpoint.has_body:
            body = {k: v for k, v in data.items() if k not in endpoint.path_params}
            kwargs.setdefault("json", body)
        return client.open(
            endpoint_url(endpoint, data), method=endpoint.method, headers=headers, **kwargs
        )

    return send


@pytest.fixture
def contract(service: Service, app: Flask, settings: Settings) -> Any:
    """The `Contract` of the service under test (shoestring_runtime.contract): the checks its
    generated contract tests (`<package>/_generated/test_contract.py`) call, one per concern."""
    from .contract import Contract  # it builds on this module's helpers

    return Contract(service, app, settings)
