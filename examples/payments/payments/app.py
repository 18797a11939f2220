"""The service's WSGI app and its own commands: yours to extend.

`shoestring generate` and `copier update` never touch this file. The runtime serves the
endpoints of service.yaml and its health, docs and inbox routes; add your own routes, health
checks and commands here, without editing anything of the runtime's.
"""

import click
from flask import Flask
from shoestring_runtime import create_app as build_app
from shoestring_runtime.settings import Settings

from . import SERVICE


def create_app(settings: Settings | None = None) -> Flask:
    """The WSGI app (passenger_wsgi.py, `python -m payments serve`, the tests): settings
    from the environment and `.env` unless given."""
    app = build_app(SERVICE, settings)
    # Your own routes and readiness checks go here, for example:
    #   app.add_url_rule("/hello", "hello", lambda: {"hello": "world"})
    #   add_check(app, "disk:free", check_disk)   # from shoestring_runtime import add_check
    return app


# Your own commands, run as `python -m payments NAME` (click commands):
#   @click.command()
#   def hello() -> None:
#       click.echo("hello")
COMMANDS: list[click.Command] = []
