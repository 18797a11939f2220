"""The service package. `create_app()` builds the WSGI application."""

from .chassis.app import create_app

__all__ = ["create_app"]
