"""Fixtures: the runtime's pytest plugin (shoestring_runtime.testing) gives a real database,
migrated, the app built on it, a client and tokens; this file tells it which service to test.

TEST_DATABASE_URL chooses the database:

- unset: a fresh SQLite file for the test session;
- `mysql://user:password@host:3306/anything`: a fresh database `t_<random>` is created on that
  server for the session and dropped afterwards (the user needs CREATE and DROP), e.g.
  `TEST_DATABASE_URL=mysql://root@127.0.0.1:3306/test pytest`.
"""

from __future__ import annotations

import functools

import pytest
from shoestring_runtime import Service, testing
from shoestring_runtime.testing import (
    client_of,
    endpoint_url,
    fresh_database,
    new_address,
    new_subject,
    peer_issuers,
)

from payments import SERVICE
from payments.app import create_app

pytest_plugins = ["shoestring_runtime.testing"]


@pytest.fixture(scope="session")
def service() -> Service:
    """The service the plugin's fixtures (`settings`, `db`, `app`, `client`, `call`...) test."""
    return SERVICE


@pytest.fixture(scope="session")
def app_factory():
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
