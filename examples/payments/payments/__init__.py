"""The service package. `SERVICE` describes it to the runtime (shoestring_runtime); `app.py`
builds the WSGI app and lists the service's own commands."""

from pathlib import Path

from shoestring_runtime import Service

# The runtime learns where this service lives from here, never from its own files.
SERVICE = Service(package=__name__, folder=Path(__file__).resolve().parent)

__all__ = ["SERVICE"]
