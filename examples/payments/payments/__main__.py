"""`python -m <package>` runs the service's command line (see chassis/cli.py)."""

from . import SERVICE
from .chassis.cli import run

run(SERVICE)
