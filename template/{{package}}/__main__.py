"""`python -m <package>` runs the service's command line (`python -m <package> --help`): the
runtime's commands and those app.py lists."""

from shoestring_runtime import run_cli

from . import SERVICE
from .app import COMMANDS, create_app

run_cli(SERVICE, create_app=create_app, commands=COMMANDS)
