"""The service's own `app.py`: routes, readiness checks and commands of the user's, added
without editing the runtime, served by `python -m <package> serve` and by passenger_wsgi.py,
and kept by `shoestring generate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
from conftest import run_shoestring
from support import free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]
ORDERS_SPEC = REPO / "examples" / "orders" / "service.yaml"

APP = '''"""orders: the app, with a route, a check and a command of our own."""

import click
from flask import Flask
from shoestring_runtime import Check, add_check
from shoestring_runtime import create_app as build_app
from shoestring_runtime.settings import Settings

from . import SERVICE


def check_stock(state) -> Check:
    return Check("warn", observed_value=3, observed_unit="items", output="stock is low")


def create_app(settings: Settings | None = None) -> Flask:
    app = build_app(SERVICE, settings)
    app.add_url_rule("/v1/hello", "hello", lambda: {"hello": "from app.py"})
    add_check(app, "stock:count", check_stock)
    return app


@click.command()
@click.argument("name")
def greet(name: str) -> None:
    """Greet NAME."""
    click.echo(f"hello, {name}")


COMMANDS: list[click.Command] = [greet]
'''


def environment(service: Path) -> dict[str, str]:
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("TEST_")},
        "DATABASE_URL": f"sqlite:///{service / 'var' / 'test.db'}",
        "PAYMENTS_URL": "http://127.0.0.1:9",
        "SERVICE_KEYS_DIR": str(service / "var" / "keys"),
    }


def command(service: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orders", *args], cwd=service, env=environment(service),
        capture_output=True, text=True, check=False,
    )


def test_routes_checks_and_commands_of_app_py_are_served_and_kept(tmp_path: Path) -> None:
    service = tmp_path / "orders"
    run_shoestring("new", str(ORDERS_SPEC), "-o", str(service))
    (service / "orders" / "app.py").write_text(APP)
    assert command(service, "migrate").returncode == 0
    assert command(service, "keys", "generate").returncode == 0

    greeted = command(service, "greet", "Ada")
    assert (greeted.returncode, greeted.stdout) == (0, "hello, Ada\n"), greeted.stderr
    assert "greet" in command(service, "--help").stdout
    assert "migrate" in command(service, "--help").stdout  # the runtime's commands stay

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(
        [sys.executable, "-m", "orders", "serve", "--port", str(port)],
        cwd=service, env=environment(service), name="orders", url=url,
    )
    try:
        assert requests.get(url + "/v1/hello", timeout=5).json() == {"hello": "from app.py"}
        ready = requests.get(url + "/readyz", timeout=5)
        assert ready.status_code == 200  # a warning does not take the service out of rotation
        assert ready.json()["checks"]["stock:count"][0]["output"] == "stock is low"
        assert ready.json()["status"] == "warn"
        # The spec's endpoints are the runtime's, as before.
        assert requests.get(url + "/v1/orders/1", timeout=5).status_code == 401
    finally:
        stop_server(server)

    # passenger_wsgi.py serves the same app.
    probe = subprocess.run(
        [sys.executable, "-c", ("import passenger_wsgi as p; c = p.application; "
         "from werkzeug.test import Client; print(Client(c).get('/v1/hello').get_data(True))")],
        cwd=service, env=environment(service), capture_output=True, text=True, check=False,
    )
    assert probe.returncode == 0 and '"from app.py"' in probe.stdout, probe.stderr

    # Regenerating (and a spec change) keeps app.py as the user wrote it.
    run_shoestring("generate", str(service))
    assert (service / "orders" / "app.py").read_text() == APP


def test_a_command_named_like_one_of_the_runtime_is_refused(tmp_path: Path) -> None:
    service = tmp_path / "orders"
    run_shoestring("new", str(ORDERS_SPEC), "-o", str(service))
    app = (service / "orders" / "app.py").read_text()
    (service / "orders" / "app.py").write_text(
        app.replace(
            "COMMANDS: list[click.Command] = []",
            '@click.command("migrate")\ndef mine() -> None:\n    pass\n\n\n'
            "COMMANDS: list[click.Command] = [mine]",
        )
    )
    refused = command(service, "routes")
    assert refused.returncode == 1
    assert "migrate" in refused.stderr and "another name in app.py" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_error_in_app_py_gets_a_503_from_passenger_and_the_reason_in_the_log(
    tmp_path: Path,
) -> None:
    service = tmp_path / "orders"
    run_shoestring("new", str(ORDERS_SPEC), "-o", str(service))
    (service / "orders" / "app.py").write_text("raise RuntimeError('half-written app.py')\n")
    probe = subprocess.run(
        [sys.executable, "-c", ("import passenger_wsgi as p; "
         "from werkzeug.test import Client; r = Client(p.application).get('/livez'); "
         "print(r.status_code, r.headers['Content-Type'])")],
        cwd=service, env=environment(service), capture_output=True, text=True, check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["503", "application/problem+json"]
    assert "half-written app.py" in probe.stderr
