"""The spec side of calls between services: `peers: <peer>: calls:` is validated like an
endpoint, becomes part of the model, and turns into a typed client (`_generated/peers.py`) that
is ruff-clean, formatted, importable, and says in its signatures what the calls take."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from shoestring.peers import peers_module
from shoestring.spec import load_spec_text

BASE = """
shoestring: 1
service: {name: orders}
endpoints:
  - {name: ping, method: GET, path: /v1/ping}
"""
CALLS = """
peers:
  payments:
    url_env: PAYMENTS_URL
    scopes: [payments:read]
    calls:
      capture_payment:
        method: POST
        path: /v1/payments
        description: Capture a payment for an order.
        scopes: [payments:write]
        timeout_seconds: 2.5
        request: {order_id: uuid, amount_cents: int, note: str?, from: str?}
        response: {payment_id: uuid, status: "enum[captured, declined]", lines: [{sku: str}]}
      get_payment:
        method: GET
        path: /v1/payments/{payment_id}
        request: {payment_id: uuid, verbose: bool?}
        response: {payment_id: uuid}
  billing-api:
    url_env: BILLING_URL
    calls:
      close_books:
        method: DELETE
        path: /v1/books
"""


def load(text: str):
    return load_spec_text("service.yaml", textwrap.dedent(text))


def test_calls_become_part_of_the_model_with_their_defaults():
    result = load(BASE + CALLS)
    assert result.ok, [str(problem) for problem in result.problems]
    payments = result.spec["peers"]["payments"]
    capture = payments["calls"]["capture_payment"]
    assert (capture["method"], capture["path"], capture["timeout_seconds"]) == (
        "POST", "/v1/payments", 2.5)
    assert capture["scopes"] == ["payments:write"]
    assert capture["request"]["required"] == ["order_id", "amount_cents"]
    assert capture["request"]["additionalProperties"] is False  # what we send is exact
    assert "additionalProperties" not in capture["response"]  # what we read is tolerant
    get = payments["calls"]["get_payment"]
    assert get["scopes"] == ["payments:read"]  # the peer's scopes when the call names none
    assert get["path_params"] == ["payment_id"] and get["timeout_seconds"] is None
    assert result.spec["settings"] == ["BILLING_URL", "PAYMENTS_URL"]
    # A peer used by calls only is not "unused".
    assert not [p for p in result.problems if p.code == "unused"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('{method: GET, path: "/v1/payments/{payment_id}", request: {id: uuid}}',
         "path parameter 'payment_id' is not a request field"),
        ('{method: GET, path: "/v1/payments/{payment_id}", request: {payment_id: uuid?}}',
         "path parameter 'payment_id' must be a required text, number or boolean field"),
        ("{method: GET, path: /v1/payments, request: {filter: {status: str}}}",
         "request field 'filter' goes in the query string"),
        ("{method: FETCH, path: /v1/payments}", "method must be one of"),
        ("{method: POST, path: payments}", "call 'c' to peer 'payments': path 'payments'"),
        ("{method: POST, path: /v1/payments, retries: 3}", "unknown key 'retries'"),
        ("{method: POST, path: /v1/payments, timeout_seconds: 0}", "timeout_seconds"),
        ("{method: POST, path: /v1/payments, request: {amount: money}}", "unknown type 'money'"),
    ],
    ids=["undeclared-param", "optional-param", "nested-query", "method", "path", "unknown-key",
         "timeout", "field-type"],
)
def test_a_broken_call_is_reported_where_it_is(call: str, message: str):
    text = BASE + f"peers:\n  payments:\n    url_env: PAYMENTS_URL\n    calls:\n      c: {call}\n"
    result = load(text)
    assert not result.ok
    found = [str(problem) for problem in result.errors]
    assert any(message in text for text in found), found
    assert all(problem.line >= 7 for problem in result.errors)  # inside peers:, not elsewhere


def test_no_endpoint_may_take_the_inbox_route():
    result = load(BASE.replace("{name: ping, method: GET, path: /v1/ping}",
                               "{name: take, method: POST, path: /v1/inbox}"))
    assert [problem.code for problem in result.errors] == ["route-collision"]
    assert "where the chassis receives the messages peers deliver" in result.errors[0].message


def generated(tmp_path: Path, spec_text: str) -> Path:
    result = load(spec_text)
    assert result.ok, [str(problem) for problem in result.errors]
    package = tmp_path / "svc"
    (package / "_generated").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_generated" / "__init__.py").write_text("")
    path = package / "_generated" / "peers.py"
    path.write_bytes(peers_module(result.spec, "# Generated for a test."))
    return path


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, "--isolated", "--line-length",
                           "88", "--target-version", "py310", "."], cwd=cwd,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("with_calls", [True, False], ids=["calls", "no-calls"])
def test_the_generated_client_is_ruff_clean_and_formatted(tmp_path: Path, with_calls: bool):
    path = generated(tmp_path, BASE + (CALLS if with_calls else ""))
    checked = ruff("check", "--extend-select", "E,W,F,I,UP,B", cwd=path.parent)
    assert checked.returncode == 0, checked.stdout
    formatted = ruff("format", "--check", "--diff", cwd=path.parent)
    assert formatted.returncode == 0, formatted.stdout


def test_the_generated_client_says_what_each_call_takes_and_returns(tmp_path: Path):
    source = generated(tmp_path, BASE + CALLS).read_text()
    assert "class PaymentsClient(PeerClient):" in source
    assert "class BillingApiClient(PeerClient):" in source
    assert "self.billing_api = BillingApiClient(connector, ctx)" in source
    capture = source[source.index("    def capture_payment("):source.index("    def get_payment(")]
    assert "order_id: str,\n" in capture and "amount_cents: int,\n" in capture
    assert "note: str | None = None," in capture
    assert "from_: str | None = None," in capture  # a keyword gets a trailing underscore
    assert "idempotency_key: str | None = None," in capture  # POST: not idempotent by itself
    assert '"from": from_' in capture and 'optional=("note", "from")' in capture
    assert ") -> PaymentsCapturePaymentResponse:" in capture
    get = source[source.index("    def get_payment("):]
    assert "idempotency_key" not in get.split("class Peers")[0]  # GET is idempotent
    assert 'status: Literal["captured", "declined"]' in source
    assert "lines: list[dict[str, Any]]" in source


def test_the_generated_client_imports_and_binds_to_a_context(tmp_path: Path):
    generated(tmp_path, BASE + CALLS)
    # The runtime's PeerClient with its HTTP call replaced by a recorder: this test is about the
    # generated module (names, optional fields, the binding), not the HTTP underneath.
    script = textwrap.dedent("""
        from shoestring_runtime.peers import PeerClient
        def record(self, name, data, **options):
            self.calls = [*getattr(self, "calls", []), (name, data, options)]
            return {"name": name}
        PeerClient.call = record
        from svc._generated.peers import Peers
        peers = Peers(object(), object())
        print(peers.payments.capture_payment(order_id="o", amount_cents=1, from_="x"))
        print(peers.payments.calls)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert first == "{'name': 'capture_payment'}"
    assert "'from': 'x'" in second and "'note': None" in second
    assert "'optional': ('note', 'from')" in second and "'idempotency_key': None" in second


def test_the_spec_schema_documents_calls():
    from shoestring.spec import schema_text

    definitions = yaml.safe_load(schema_text())["$defs"]
    assert set(definitions["peerCall"]["properties"]) == {
        "method", "path", "description", "scopes", "timeout_seconds", "request", "response"}
    assert definitions["peer"]["properties"]["calls"]["additionalProperties"] == {
        "$ref": "#/$defs/peerCall"}
