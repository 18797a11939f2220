"""`shoestring check system.yaml`: the services of a system fit together, or every misfit is
reported where it is, with its fix.

systems/broken/ holds one of each misfit (marked `# <-` in its specs); systems/fits/ is the
same shop done right; examples/system.yaml is the repository's example, kept consistent.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES
from shoestring.cli import main
from shoestring.system import check_system, load_system

SYSTEMS = Path(__file__).parent / "systems"
BROKEN = SYSTEMS / "broken"


def position(file: Path, token: str, after: str = "") -> tuple[str, int, int]:
    """file:line:col of the first `token` after the first `after` in `file`."""
    text = file.read_text()
    offset = text.index(token, text.index(after) if after else 0)
    line = text.count("\n", 0, offset) + 1
    return str(file), line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def check(path: Path) -> list:
    system = load_system(path)
    assert system.ok, [problem.format() for problem in system.problems]
    return check_system(system)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


# -- what does not fit ----------------------------------------------------------------------

# (code, file, the token it points at, searched after this text), in the order reported.
EXPECTED = [
    ("target-not-subscribed", "orders.yaml", "shipping", "to: [payments, "),
    ("version-not-published", "orders.yaml", "1", "message: payment.captured\n    version: "),
    ("no-publisher", "orders.yaml", "refund.issued", ""),
    ("missing-scope", "orders.yaml", "capture_payment", "calls:"),
    ("incompatible-call", "orders.yaml", "note", "capture_payment"),
    ("incompatible-call", "orders.yaml", "receipt", "capture_payment"),
    ("unknown-endpoint", "orders.yaml", "/v1/refunds", ""),
    ("incompatible-field", "payments.yaml", "amount_cents", ""),
    ("incompatible-field", "payments.yaml", "currency", ""),
    ("route-collision", "shipping.yaml", "/v1/orders/{id}", ""),
    ("unused-scope", "orders.yaml", "payments:read", "scopes: ["),
    ("unconsumed", "payments.yaml", "2", "versions:\n      "),
]


def test_every_misfit_is_reported_where_it_is() -> None:
    found = [(p.code, p.file, p.line, p.col) for p in check(BROKEN / "system.yaml")]
    expected = [(code, *position(BROKEN / file, token, after))
                for code, file, token, after in EXPECTED]
    assert found == expected


def test_a_dangling_subscription_a_version_mismatch_and_a_missing_scope_say_how_to_fix_them(
) -> None:
    problems = {p.code: p for p in check(BROKEN / "system.yaml") if p.code in (
        "no-publisher", "version-not-published", "missing-scope")}
    dangling = problems["no-publisher"]
    assert dangling.message == ("orders subscribes to refund.issued v1 from payments, but "
                                "payments does not publish refund.issued")
    assert dangling.hint == "payments publishes payment.captured"
    version = problems["version-not-published"]
    assert version.message.endswith("but payments publishes payment.captured v2 only")
    assert "`publish_also: [1]`" in version.hint
    scope = problems["missing-scope"]
    assert scope.message == (
        "orders' call 'capture_payment' to payments (POST /v1/payments): payments' "
        "'capture_payment' needs scope payments:write, which payments does not grant orders "
        "(granted: payments:read)")
    assert scope.hint.startswith("add payments:write under `peers: payments: scopes:`")
    file, line, col = position(BROKEN / "payments.yaml", "scopes", "name: capture_payment")
    assert f"needs it at {file}:{line}:{col})" in scope.hint


def test_field_misfits_name_the_publishers_declaration() -> None:
    fields = [p for p in check(BROKEN / "system.yaml") if p.code == "incompatible-field"]
    assert [p.message for p in fields] == [
        ("payments reads order.created v1 from orders: field 'amount_cents' is read as string "
        "but published as integer"),
        ("payments reads order.created v1 from orders: it requires field 'currency', which is "
        "not published"),
    ]
    file, line, col = position(BROKEN / "orders.yaml", "amount_cents")
    assert fields[0].hint.endswith(f"(orders declares it at {file}:{line}:{col})")


def test_the_command_lists_every_finding_and_exits_1() -> None:
    result = run("check", str(BROKEN / "system.yaml"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXPECTED)
    file, line, col = position(BROKEN / "orders.yaml", "refund.issued")
    assert f"{file}:{line}:{col}: orders subscribes to refund.issued v1" in result.stdout
    assert [line for line in lines if ": warning: " in line] == lines[-2:]
    assert "3 services, 10 errors, 2 warnings: the services do not fit" in result.stderr


def test_the_command_speaks_json() -> None:
    result = run("check", str(BROKEN / "system.yaml"), "--format", "json")
    assert result.exit_code == 1
    found = json.loads(result.stdout)
    assert {"file", "line", "column", "message", "hint", "code", "severity"} <= set(found[0])
    assert [item["code"] for item in found] == [code for code, *_ in EXPECTED]


# -- what fits ------------------------------------------------------------------------------


def test_services_that_fit_pass_with_the_deprecated_version_still_read_as_a_warning() -> None:
    result = run("check", str(SYSTEMS / "fits" / "system.yaml"))
    assert result.exit_code == 0, result.output
    [warning] = result.stdout.splitlines()
    assert "warning: order.created v1 is deprecated but still read by payments" in warning
    assert "3 services, 0 errors, 1 warning: the services fit together" in result.stderr


def test_the_example_system_fits() -> None:
    problems = check(EXAMPLES / "system.yaml")
    assert [p for p in problems if p.is_error] == [], [p.format() for p in problems]


# -- field compatibility in detail -----------------------------------------------------------


def two_services(tmp_path: Path, published: str, read: str) -> list:
    (tmp_path / "system.yaml").write_text("services: [a.yaml, b.yaml]\n")
    (tmp_path / "a.yaml").write_text(textwrap.dedent(f"""\
        shoestring: 1
        service: {{name: a}}
        messages:
          thing.done:
            to: [b]
            versions:
              1:
                fields: {published}
        peers: {{b: {{url_env: B_URL}}}}
        """))
    (tmp_path / "b.yaml").write_text(textwrap.dedent(f"""\
        shoestring: 1
        service: {{name: b}}
        subscriptions:
          - message: thing.done
            version: 1
            from: a
            retry: default
            fields: {read}
        retry_policies: {{default: {{max_attempts: 3, base_seconds: 1, max_seconds: 9}}}}
        peers: {{a: {{url_env: A_URL}}}}
        """))
    return [p.message.split(": ", 1)[1] for p in check(tmp_path / "system.yaml")
            if p.code == "incompatible-field"]


@pytest.mark.parametrize("published, read, expected", [
    ("{n: int}", "{n: int}", []),
    ("{n: int, extra: str}", "{n: int}", []),  # the reader ignores what it does not declare
    ("{n: int}", "{n: float}", []),  # every integer is a number
    ("{n: float}", "{n: int}", ["field 'n' is read as integer but published as number"]),
    ("{n: int?}", "{n: int}",
     ["it requires field 'n', which is published as optional (it may be missing or null)"]),
    ("{n: int?}", "{n: int?}", []),
    ("{s: 'enum[a, b, c]'}", "{s: 'enum[a, b]'}",
     ["field 's' may be published as c, which the reader's enum lacks"]),
    ("{s: str}", "{s: 'enum[a, b]'}",
     ["field 's' is read as one of a, b but published as any value of its type"]),
    ("{s: 'enum[a]'}", "{s: str}", []),
    ("{id: uuid}", "{id: str}", []),
    ("{id: str}", "{id: uuid}", ["field 'id' is read as string (uuid) but published as string"]),
    ("{lines: [{sku: str}]}", "{lines: [{sku: str, qty: int}]}",
     ["it requires field 'lines[].qty', which is not published"]),
    ("{code: {schema: {type: string, maxLength: 9}}}",
     "{code: {schema: {type: string, maxLength: 3, examples: [abc]}}}",
     ["field 'code' is read more strictly than published (maxLength lowered to 3 from 9)"]),
])
def test_a_reader_must_accept_everything_the_publisher_may_send(
    tmp_path: Path, published: str, read: str, expected: list[str]
) -> None:
    assert two_services(tmp_path, published, read) == expected


# -- reading the system file -----------------------------------------------------------------


def test_a_spec_missing_from_the_system_is_located_at_its_entry(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text("services:\n  - orders.yaml\n")
    result = run("check", str(tmp_path / "system.yaml"))
    assert result.exit_code == 2
    assert f"{tmp_path / 'system.yaml'}:2:5: cannot read the spec" in result.stderr
    assert "paths are relative to the system file" in result.stderr


def test_an_invalid_spec_is_reported_with_its_own_locations(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text("services: [bad.yaml]\n")
    (tmp_path / "bad.yaml").write_text("shoestring: 1\nservice: {name: bad}\nendpoints: 3\n")
    result = run("check", str(tmp_path / "system.yaml"))
    assert result.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:3:12: 'endpoints' must be a list" in result.stderr


def test_system_file_mistakes_are_explained(tmp_path: Path) -> None:
    system = tmp_path / "system.yaml"
    system.write_text("servces: [a.yaml]\n")
    result = run("check", str(system))
    assert result.exit_code == 2
    assert f"{system}:1:1: unknown key 'servces' in the system file — did you mean " \
        "'services'?" in result.stderr
    assert "the system file lists no services" in result.stderr
    system.write_text("services: [a.yaml\n")
    assert run("check", str(system)).exit_code == 2


def test_a_service_listed_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text("services: [a.yaml, b.yaml]\n")
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("shoestring: 1\nservice: {name: same}\n")
    result = run("check", str(tmp_path / "system.yaml"))
    assert result.exit_code == 1
    assert "is service 'same' again (already listed at line 1" in result.stderr


def test_references_to_services_outside_the_system_are_errors(tmp_path: Path) -> None:
    (tmp_path / "system.yaml").write_text("services: [a.yaml]\n")
    (tmp_path / "a.yaml").write_text(textwrap.dedent("""\
        shoestring: 1
        service: {name: a}
        messages:
          thing.done: {to: [ghost], versions: {1: {fields: {}}}}
        subscriptions:
          - {message: other.done, version: 1, from: ghost, retry: default}
        retry_policies: {default: {max_attempts: 3, base_seconds: 1, max_seconds: 9}}
        peers:
          ghost:
            url_env: GHOST_URL
            calls: {haunt: {method: GET, path: /v1/house}}
        """))
    codes = [p.code for p in check(tmp_path / "system.yaml") if p.is_error]
    assert codes == ["unknown-target", "no-publisher", "unknown-peer"]


def test_calls_must_fit_the_endpoint_they_reach() -> None:
    calls = {p.code + ":" + p.message.split(" (POST /v1/payments)")[-1]: p
             for p in check(BROKEN / "system.yaml") if p.code in ("incompatible-call",)}
    assert sorted(calls) == [
        ("incompatible-call: reads a response that does not fit: it requires field 'receipt', "
        "which is not answered"),
        ("incompatible-call: sends a request that does not fit: field 'note' is not one the "
        "peer accepts"),
    ]
    [unknown] = [p for p in check(BROKEN / "system.yaml") if p.code == "unknown-endpoint"]
    assert unknown.message == ("orders' call 'refund_payment' to payments (POST /v1/refunds) "
                               "goes to a route payments does not serve")
    assert unknown.hint == "did you mean 'POST /v1/payments'?"


@pytest.mark.parametrize("sent, accepted, expected", [
    ("{order_id: uuid}", "{order_id: uuid}", []),
    ("{order_id: uuid, amount: int}", "{order_id: uuid, amount: int?}", []),
    ("{order_id: uuid}", "{order_id: uuid, amount: int}",
     ["it requires field 'amount', which is not sent"]),
    ("{order_id: str}", "{order_id: uuid}",
     ["field 'order_id' is read as string (uuid) but sent as string"]),
    ("{lines: [{sku: str, gift: bool}]}", "{lines: [{sku: str}]}",
     ["field 'lines[].gift' is not one the peer accepts"]),
])
def test_a_call_sends_what_the_endpoint_accepts(
    tmp_path: Path, sent: str, accepted: str, expected: list[str]
) -> None:
    (tmp_path / "system.yaml").write_text("services: [a.yaml, b.yaml]\n")
    (tmp_path / "a.yaml").write_text(textwrap.dedent(f"""\
        shoestring: 1
        service: {{name: a}}
        peers:
          b:
            url_env: B_URL
            calls:
              do_it: {{method: POST, path: /v1/things, request: {sent}}}
        """))
    (tmp_path / "b.yaml").write_text(textwrap.dedent(f"""\
        shoestring: 1
        service: {{name: b}}
        endpoints:
          - {{name: make_thing, method: POST, path: /v1/things, request: {accepted}}}
        """))
    found = [p.message.split("does not fit: ", 1)[1] for p in check(tmp_path / "system.yaml")
             if p.code == "incompatible-call"]
    assert found == expected
