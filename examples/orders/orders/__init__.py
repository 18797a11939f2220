"""The service package: `SERVICE` describes it to the runtime (shoestring_runtime), `create_app()`
builds the WSGI application."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from shoestring_runtime import Service
from shoestring_runtime import create_app as build_app
from shoestring_runtime.settings import Settings

# The runtime learns where this service lives from here, never from its own files.
SERVICE = Service(package=__name__, folder=Path(__file__).resolve().parent)


def create_app(
    settings: Settings | None = None, handlers: Mapping[str, Any] | None = None
) -> Flask:
    """The WSGI application of this service: settings from the environment and `.env` unless
    given, handlers from `_generated/registry.py` unless given."""
    return build_app(SERVICE, settings, handlers)


__all__ = ["SERVICE", "create_app"]
