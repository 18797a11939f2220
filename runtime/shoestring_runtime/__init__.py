"""shoestring-runtime: the machinery every shoestring service runs on.

A generated service holds its spec, its handlers, its migrations and a few lines of wiring; this
library holds the rest (database and dialect, queue, outbox, inbox, relay, worker, auth and keys,
rate limits, idempotency, breaker, health, logs, settings, the docs page and the command line).
The service pins it exactly in its lock, so a fix reaches it as a version bump.

The public surface is what this module exports (see README.md); every other module is internal
and may change between versions:

    SERVICE = Service(package=__name__, folder=Path(__file__).resolve().parent)
    app = create_app(SERVICE)              # the WSGI app: passenger_wsgi.py, `serve`
    app = unavailable_app(SERVICE, exc)    # answers 503 when create_app raised `exc`
    run_cli(SERVICE)                       # the command line: `python -m <package>`

    def handle(ctx: Context, data: dict) -> dict: ...   # a handler, one per endpoint or message
"""

from .app import create_app, unavailable_app
from .cli import run as run_cli
from .context import Context
from .health import Check, add_check
from .problems import Problem
from .service import Service

__version__ = "0.1.0"

__all__ = [
    "Check",
    "Context",
    "Problem",
    "Service",
    "add_check",
    "create_app",
    "run_cli",
    "unavailable_app",
]
