"""What the tests of this service run on, wherever pytest starts in it: the runtime's pytest
plugin (shoestring_runtime.testing: a real database, migrated, the app, a client, tokens), told
which service it tests and how app.py builds the app. It serves the tests in tests/ and the
contract tests in orders/_generated/, and binds the plugin's helpers to this service for
the tests that import them (`from conftest import bearer`).

TEST_DATABASE_URL chooses the database:

- unset: a fresh SQLite file for the test session;
- `mysql://user:password@host:3306/anything`: a fresh database `t_<random>` is created on that
  server for the session and dropped afterwards (the user needs CREATE and DROP), e.g.
  `TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test pytest`.
"""

import functools
from collections.abc import Callable

import pytest
from flask import Flask
from shoestring_runtime import Service, testing
from shoestring_runtime.testing import (
    client_of,
    endpoint_url,
    fresh_database,
    new_address,
    new_subject,
    peer_issuers,
)

from orders import SERVICE
from orders.app import create_app

# Only a conftest.py at the root of the tests may name plugins (pytest refuses it elsewhere).
pytest_plugins = ["shoestring_runtime.testing"]


@pytest.fixture(scope="session")
def service() -> Service:
    """The service the plugin's fixtures (`settings`, `db`, `app`, `client`, `contract`...)
    test."""
    return SERVICE


@pytest.fixture(scope="session")
def app_factory() -> Callable[..., Flask]:
    """How the plugin's `app` fixture builds the app: as app.py does, your routes included."""
    return create_app


# The plugin's helpers bound to this service, for the tests that import them from here.
bearer = functools.partial(testing.bearer, SERVICE)
request_headers = functools.partial(testing.request_headers, SERVICE)
service_environment = functools.partial(testing.service_environment, SERVICE)
settings_for = functools.partial(testing.settings_for, SERVICE)

__all__ = [
    "bearer",
    "client_of",
    "endpoint_url",
    "fresh_database",
    "new_address",
    "new_subject",
    "peer_issuers",
    "request_headers",
    "service_environment",
    "settings_for",
]
