"""The shop service (specs/shop.yaml), which most of the runtime's tests run on, and the
plugin's helpers bound to it: what a generated service's tests import from its package
(`SERVICE`, `create_app`) and from its tests/conftest.py (`bearer`, `settings_for`...)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from flask import Flask

from shoestring_runtime import create_app as build_app
from shoestring_runtime import testing
from shoestring_runtime.settings import Settings

from .services import generated_service

SERVICE = generated_service("shop")


def create_app(
    settings: Settings | None = None, handlers: Mapping[str, Any] | None = None
) -> Flask:
    """The shop's app, as its package's `create_app` builds it."""
    return build_app(SERVICE, settings, handlers)


bearer = functools.partial(testing.bearer, SERVICE)
request_headers = functools.partial(testing.request_headers, SERVICE)
service_environment = functools.partial(testing.service_environment, SERVICE)
settings_for = functools.partial(testing.settings_for, SERVICE)
