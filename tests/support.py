"""Helpers shared by this repo's tests: chassis modules imported in place, and served services."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
CHASSIS = REPO / "template" / "{{package}}" / "chassis"


def chassis_module(name: str) -> Any:
    """Import template/{{package}}/chassis/<name>.py as it runs in a service (relative imports
    resolve inside the chassis), without generating one."""
    package = "chassis_under_test"
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(CHASSIS)]
        sys.modules[package] = module
    return importlib.import_module(f"{package}.{name}")


def start_server(
    command: list[str], *, cwd: Path, env: dict[str, str], name: str, url: str
) -> subprocess.Popen:
    """Start a server process and wait until its /livez answers (30 s at most)."""
    server = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"{name} exited: {server.stderr.read().decode()}")
        try:
            requests.get(url + "/livez", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    stop_server(server)
    raise AssertionError(f"{name} did not answer at {url} within 30 s")


def stop_server(server: subprocess.Popen | None) -> None:
    """Stop a server started by `start_server`: SIGTERM, then SIGKILL after 10 s."""
    if server is not None and server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
