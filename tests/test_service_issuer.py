"""SERVICE_ISSUER must be the service's name: a peer's inbox knows the sender of a message only by
the issuer of its token, and compares it with the `from:` of its subscriptions and the `source`
of each message, which are the sender's service name. A service configured with another issuer
would start, and then have every delivery refused; it is refused at start-up instead, by every
command that signs tokens or serves, with the setting to change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, run_shoestring
from support import free_port

OTHER_ISSUER = "https://orders.example.com"


@pytest.fixture(scope="module")
def orders(tmp_path_factory) -> Path:
    """The orders example (it publishes to payments, so its worker delivers), on SQLite."""
    root = tmp_path_factory.mktemp("issuer") / "orders"
    run_shoestring("new", str(EXAMPLES / "orders" / "service.yaml"), "-o", str(root))
    return root


def run(root: Path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{root / 'var' / 'orders.db'}",
        "PAYMENTS_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
        **settings,
    }
    try:
        return subprocess.run(
            [sys.executable, "-m", "orders", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # `serve` that started serves until killed
        raise AssertionError(f"`orders {' '.join(args)}` did not refuse to start") from exc


@pytest.mark.parametrize(
    "command",
    [
        ["serve", "--port", str(free_port())],
        ["worker", "--max-seconds", "1"],
        ["token", "--scope", "orders:write"],
    ],
    ids=["serve", "worker", "token"],
)
def test_a_service_issuer_other_than_the_name_is_refused_at_start_up(
    orders: Path, command: list[str]
) -> None:
    run(orders, "migrate")
    result = run(orders, *command, SERVICE_ISSUER=OTHER_ISSUER)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"SERVICE_ISSUER='{OTHER_ISSUER}'" in result.stderr
    assert "compare it with the service name, 'orders'" in result.stderr
    assert "remove SERVICE_ISSUER (it defaults to 'orders') or set it to 'orders'" in result.stderr


def test_the_service_name_as_issuer_is_accepted(orders: Path) -> None:
    run(orders, "keys", "generate")
    for issuer in ("orders", ""):
        result = run(orders, "token", "--scope", "orders:write", SERVICE_ISSUER=issuer)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(".") == 2  # a compact JWS
