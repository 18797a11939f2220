"""`python -m <package>` runs the service's command line (`python -m <package> --help`)."""

from shoestring_runtime import run_cli

from . import SERVICE

run_cli(SERVICE)
