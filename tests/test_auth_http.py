"""Service identity end to end: the orders and payments examples, generated, given keys with their
own `keys` command, served by waitress on loopback ports, calling each other with tokens minted by
their own `token` command.

orders trusts payments by its JWKS URL (the payments server's /.well-known/jwks.json); payments
trusts nobody but itself. Rotation and retirement happen on the live payments server, and orders
follows them by refetching the JWKS (no restart anywhere).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import requests
from conftest import EXAMPLES, run_shoestring
from support import free_port, start_server, stop_server

pytestmark = [pytest.mark.slow]

CUSTOMER = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
ORDER = {"customer_id": CUSTOMER, "amount_cents": 1250, "currency": "EUR"}


@dataclass
class Service:
    """A generated service, its settings, and its server process."""

    name: str
    root: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    server: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "LOG_LEVEL": "WARNING", **self.settings}

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        """`python -m <name> ARGS` in the service's folder, as its operator would run it."""
        result = subprocess.run(
            [sys.executable, "-m", self.name, *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (result.returncode == 0) == ok, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    def token(self, *args: str) -> str:
        return self.cli("token", *args).stdout.strip()

    def start(self) -> None:
        command = [sys.executable, "-m", self.name, "serve", "--port", str(self.port)]
        self.server = start_server(
            command, cwd=self.root, env=self.env(), name=self.name, url=self.url
        )

    def stop(self) -> None:
        stop_server(self.server)

    def audit_rows(self) -> int:
        """Rows in the audit table: create_order writes one each time its handler commits."""
        path = self.settings["DATABASE_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    base = tmp_path_factory.mktemp("identity")
    orders = Service("orders", base / "orders", free_port())
    payments = Service("payments", base / "payments", free_port())
    orders.settings = {
        "DATABASE_URL": f"sqlite:///{base / 'orders.db'}",
        "PAYMENTS_URL": payments.url,
        "TRUSTED_ISSUERS": f"payments={payments.url}/.well-known/jwks.json",
        # Short caches so that the test sees rotation and retirement within seconds.
        "JWKS_REFETCH_COOLDOWN_SECONDS": "0",
        "JWKS_CACHE_SECONDS": "2",
    }
    payments.settings = {
        "DATABASE_URL": f"sqlite:///{base / 'payments.db'}",
        "ORDERS_URL": orders.url,
    }
    for service in (orders, payments):
        run_shoestring(
            "new", str(EXAMPLES / service.name / "service.yaml"), "-o", str(service.root)
        )
        service.cli("keys", "generate")
        service.cli("migrate")
    try:
        payments.start()
        orders.start()
        yield {"orders": orders, "payments": payments}
    finally:
        orders.stop()
        payments.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_orders(orders: Service, token: str | None) -> requests.Response:
    headers = bearer(token) if token is not None else {}
    return requests.get(
        orders.url + "/v1/orders", params={"customer_id": CUSTOMER}, headers=headers, timeout=10
    )


def test_keys_are_private_files_and_the_public_keys_are_published(services):
    orders = services["orders"]
    folder = orders.root / "var" / "keys"
    (pem,) = folder.glob("*.pem")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct(pem.stat().st_mode & 0o777) == "0o600"
    jwks = requests.get(orders.url + "/.well-known/jwks.json", timeout=10)
    assert jwks.status_code == 200
    (key,) = jwks.json()["keys"]
    assert key["kid"] == pem.stem and key["kty"] == "OKP" and key["alg"] == "EdDSA"
    assert "d" not in key


def test_public_paths_need_no_token(services):
    orders = services["orders"]
    for path in ("/livez", "/readyz", "/openapi.json", "/.well-known/jwks.json"):
        status = requests.get(orders.url + path, timeout=10).status_code
        assert status in (200, 503), path  # /readyz may report a problem, never ask for a token


def test_own_token_from_the_cli_calls_the_service(services):
    orders = services["orders"]
    response = get_orders(orders, orders.token("--scope", "orders:read"))
    assert response.status_code == 200, response.text


def test_missing_token_is_401_with_a_bearer_challenge(services):
    response = get_orders(services["orders"], None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="orders"'
    assert response.headers["Content-Type"] == "application/problem+json"


def test_token_without_the_scope_is_403_naming_it(services):
    orders = services["orders"]
    response = get_orders(orders, orders.token("--scope", "orders:write orders:readx"))
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="orders:read"' in challenge
    assert response.json()["status"] == 403


def test_refused_write_leaves_no_trace_and_accepted_write_does(services):
    orders = services["orders"]
    before = orders.audit_rows()
    forged = jwt.encode(
        {
            "iss": "orders",
            "sub": "x",
            "aud": "orders",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "scope": "orders:write",
        },
        "a-secret-the-attacker-guessed-32b",
        algorithm="HS256",
    )
    for token in (None, forged, orders.token("--scope", "orders:read")):
        headers = {"Idempotency-Key": os.urandom(8).hex(), **(bearer(token) if token else {})}
        response = requests.post(orders.url + "/v1/orders", json=ORDER, headers=headers, timeout=10)
        assert response.status_code in (401, 403), response.text
    assert orders.audit_rows() == before
    headers = {
        "Idempotency-Key": os.urandom(8).hex(),
        **bearer(orders.token("--scope", "orders:write")),
    }
    response = requests.post(orders.url + "/v1/orders", json=ORDER, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    assert orders.audit_rows() == before + 1


def test_peer_token_for_this_service_is_accepted(services):
    orders, payments = services["orders"], services["payments"]
    token = payments.token("--audience", "orders", "--scope", "orders:read")
    assert get_orders(orders, token).status_code == 200


def test_peer_token_meant_for_the_peer_itself_is_refused(services):
    orders, payments = services["orders"], services["payments"]
    token = payments.token("--scope", "orders:read")  # audience: payments
    response = get_orders(orders, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_service_that_trusts_nobody_refuses_a_peer_token(services):
    orders, payments = services["orders"], services["payments"]
    token = orders.token("--audience", "payments", "--scope", "payments:write")
    response = requests.post(
        payments.url + "/v1/payments",
        json={"order_id": CUSTOMER, "amount_cents": 5},
        headers={"Idempotency-Key": "k-1", **bearer(token)},
        timeout=10,
    )
    assert response.status_code == 401
    assert "not trusted" in response.json()["detail"]


def test_peer_rotation_and_retirement_reach_the_verifier_without_restarts(services):
    orders, payments = services["orders"], services["payments"]
    old_kid = payments.cli("keys", "list").stdout.splitlines()[1].split()[0]
    old_token = payments.token("--audience", "orders", "--scope", "orders:read", "--ttl", "600")
    assert get_orders(orders, old_token).status_code == 200

    payments.cli("keys", "rotate", "--alg", "RS256")
    published = requests.get(payments.url + "/.well-known/jwks.json", timeout=10).json()["keys"]
    assert [k["alg"] for k in published] == ["RS256", "EdDSA"]
    new_token = payments.token("--audience", "orders", "--scope", "orders:read")
    assert jwt.get_unverified_header(new_token)["kid"] == published[0]["kid"]
    # orders has never seen the new kid: it refetches the payments JWKS and accepts the token.
    assert get_orders(orders, new_token).status_code == 200
    assert get_orders(orders, old_token).status_code == 200  # the old key is still published

    payments.cli("keys", "retire", "--", old_kid)  # a kid may start with "-"
    listing = payments.cli("keys", "list").stdout
    assert f"{old_kid}  EdDSA  retired" in listing
    time.sleep(2.2)  # orders' JWKS_CACHE_SECONDS
    assert get_orders(orders, old_token).status_code == 401
    assert get_orders(orders, new_token).status_code == 200


def test_attacks_over_http_get_401_not_500(services):
    orders = services["orders"]
    valid = orders.token("--scope", "orders:read")
    header, payload, _signature = valid.split(".")
    for token in (
        f"{header}.{payload}.",
        f"{header}.{payload}.AAAA",
        "eyJhbGciOiJub25lIn0." + payload + ".",
        "x" * 12_000,
        "not.a.token",
    ):
        response = get_orders(orders, token)
        assert response.status_code == 401, (token[:40], response.text)
