"""Breaking-change rules: one case per rule, each located in the new spec, and the compatible
changes that must pass.

Every case edits a copy of specs/evolution/base.yaml and compares the result with it. A location
is given as the text it must point at (`token`, searched after `after`), so a case reads as the
edit and the place a user would look at.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from shoestring.breaking import (
    CONSUMERS,
    GROUPS,
    RULES,
    STRICT,
    WIRE,
    Policy,
    Side,
    compare,
    rules_of,
)
from shoestring.cli import main
from shoestring.spec import load_spec_text, schema

BASE_FILE = Path(__file__).parent / "specs" / "evolution" / "base.yaml"
BASE = BASE_FILE.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Anchor:
    """The first `token` after the first `after` (both text of a spec)."""

    token: str
    after: str = ""

    def find(self, text: str) -> tuple[int, int]:
        start = text.index(self.after) if self.after else 0
        offset = text.index(self.token, start)
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return line, col


@dataclass(frozen=True)
class Case:
    rule: str
    edits: list[tuple[str, str]]  # (old text, new text), applied once each, in order
    where: Anchor  # in the new spec
    was: Anchor | None = None  # in the old spec, for removals and changed values
    policy: str = CONSUMERS
    words: list[str] = field(default_factory=list)  # the message must say these

    def new_text(self) -> str:
        text = BASE
        for old, new in self.edits:
            assert old in text, f"{self.rule}: the base spec has no {old!r}"
            text = text.replace(old, new, 1)
        return text


CREATE = "name: create_order"
GET = "name: get_order"
CANCELLED = "order.cancelled:"
PAID = "message: invoice.paid"

CASES = [
    Case("MESSAGE_REMOVED",
         [(("  order.cancelled:\n    to: [billing]\n    versions:\n      1:\n"
           "        deprecated: true\n"
           "        fields: {order_id: uuid}\n      2:\n        fields: {order_id: uuid, reason: "
           "str}\n"), "")],
         Anchor("messages:"), Anchor("order.cancelled"), words=["order.cancelled", "1, 2"]),
    Case("MESSAGE_VERSION_REMOVED",
         [("      1:\n        deprecated: true\n        fields: {order_id: uuid}\n", "")],
         Anchor("versions:", CANCELLED), Anchor("1:", CANCELLED), words=["version 1"]),
    Case("MESSAGE_DESTINATION_REMOVED", [("to: [billing, audit]", "to: [billing]")],
         Anchor("to:"), Anchor("to:"), words=["'audit'"]),
    Case("FIELD_REMOVED", [("          amount_cents: int\n", "")],
         Anchor("fields:"), Anchor("amount_cents"), words=["'amount_cents'", "v1"]),
    Case("FIELD_REMOVED", [("          lines: [{sku: str, quantity: int}]",
                            "          lines: [{sku: str}]")],
         Anchor("{sku: str}"), Anchor("quantity"), words=["'lines[].quantity'"]),
    Case("FIELD_TYPE_CHANGED", [("amount_cents: int", "amount_cents: str")],
         Anchor("amount_cents"), Anchor("amount_cents"), words=["integer", "string"]),
    Case("FIELD_TYPE_CHANGED",
         [("order_id: uuid\n          amount", "order_id: str\n          amount")],
         Anchor("order_id"), Anchor("order_id"), words=["string (uuid)"]),
    Case("FIELD_MADE_OPTIONAL",
         [("order_id: uuid\n          amount", "order_id: uuid?\n          amount")],
         Anchor("order_id"), Anchor("order_id")),
    Case("FIELD_MADE_REQUIRED", [("note: str?", "note: str")], Anchor("note"), Anchor("note")),
    Case("REQUIRED_FIELD_ADDED",
         [("          lines: [{sku: str, quantity: int}]\n",
           "          lines: [{sku: str, quantity: int}]\n          placed_at: datetime\n")],
         Anchor("placed_at"), words=["'placed_at'"]),
    Case("ENUM_VALUE_REMOVED", [("status: enum[new, paid]", "status: enum[new]")],
         Anchor("status"), words=["'paid'"]),
    Case("FIELD_CONSTRAINT_NARROWED", [("maxLength: 20", "maxLength: 10")],
         Anchor("maxLength"), words=["maxLength lowered to 10 from 20"]),
    Case("FIELD_CONSTRAINT_NARROWED", [('pattern: "^[A-Z]+$"', 'pattern: "^[A-Z]{3}$"')],
         Anchor("pattern"), words=["pattern changed"]),
    Case("SUBSCRIPTION_REMOVED",
         [("  - message: invoice.voided\n    version: 1\n    from: billing\n    retry: default\n",
           "")],
         Anchor("subscriptions:"), Anchor("message: invoice.voided"), words=["invoice.voided"]),
    Case("SUBSCRIPTION_NARROWED", [("memo: str?", "memo: str")], Anchor("memo"), Anchor("memo")),
    Case("ENDPOINT_REMOVED",
         [(("  - name: get_order\n    method: GET\n    path: /v1/orders/{order_id}\n    scopes: "
           "[shop:read]\n    request:\n      order_id: uuid\n    response:\n      order_id: uuid\n"
           "      comment: str?\n"), "")],
         Anchor("endpoints:"), Anchor(GET), words=["'get_order'", "GET /v1/orders/{order_id}"]),
    Case("ENDPOINT_METHOD_CHANGED", [("method: GET", "method: DELETE")],
         Anchor("DELETE"), Anchor("GET", GET), words=["DELETE instead of GET"]),
    Case("ENDPOINT_PATH_CHANGED", [("path: /v1/orders/{order_id}", "path: /v1/order/{order_id}")],
         Anchor("/v1/order/{order_id}"), Anchor("/v1/orders/{order_id}")),
    Case("ENDPOINT_SCOPE_ADDED", [("[shop:read]", "[shop:read, shop:admin]")],
         Anchor("shop:admin"), words=["'shop:admin'"]),
    Case("ENDPOINT_IDEMPOTENCY_KEY_REQUIRED",
         [("    scopes: [shop:write]\n", "    scopes: [shop:write]\n    idempotent: true\n")],
         Anchor("true", CREATE)),
    Case("ENDPOINT_STATUS_CHANGED",
         [("    scopes: [shop:write]\n", "    scopes: [shop:write]\n    status: 200\n")],
         Anchor("200", CREATE), Anchor("name", CREATE), words=["200 instead of 201"]),
    Case("ENDPOINT_RENAMED", [("name: get_order", "name: read_order")],
         Anchor("read_order"), Anchor("get_order"), policy=STRICT),
    Case("REQUEST_FIELD_REMOVED", [("      remark: str?\n", "")],
         Anchor("request:", CREATE), Anchor("remark"), words=["'remark'"]),
    Case("REQUEST_FIELD_ADDED_REQUIRED",
         [("      remark: str?\n", "      remark: str?\n      coupon: str\n")],
         Anchor("coupon"), words=["'coupon'"]),
    Case("REQUEST_FIELD_MADE_REQUIRED", [("remark: str?", "remark: str")],
         Anchor("remark"), Anchor("remark")),
    Case("REQUEST_FIELD_TYPE_CHANGED",
         [("      amount_cents: int\n      currency", "      amount_cents: float\n      currency"),
          ("customer_id: uuid", "customer_id: int")],
         Anchor("customer_id"), Anchor("customer_id"), words=["string (uuid) to integer"]),
    Case("REQUEST_FIELD_TYPE_CHANGED",
         [("path: /v1/orders/{order_id}", "path: /v1/orders/{id}"),
          ("    request:\n      order_id: uuid\n", "    request:\n      id: int\n")],
         Anchor("id: int"), Anchor("order_id", "request:\n      order_id")),
    Case("REQUEST_ENUM_VALUE_REMOVED", [("currency: enum[EUR, USD]", "currency: enum[EUR]")],
         Anchor("currency"), words=["'USD'"]),
    Case("REQUEST_FIELD_CONSTRAINT_NARROWED", [("maximum: 100", "maximum: 50")],
         Anchor("maximum"), words=["maximum lowered to 50 from 100"]),
    Case("REQUEST_FIELD_CONSTRAINT_NARROWED", [("customer_id: uuid", "customer_id: enum[a, b]")],
         Anchor("customer_id"), words=["limited to the values a, b"]),
    Case("RESPONSE_FIELD_REMOVED", [("      total: int\n", "")],
         Anchor("response:", CREATE), Anchor("total"), words=["'total'"]),
    Case("RESPONSE_FIELD_MADE_OPTIONAL", [("total: int", "total: int?")],
         Anchor("total"), Anchor("total")),
    Case("RESPONSE_FIELD_TYPE_CHANGED", [("total: int", "total: float")],
         Anchor("total"), Anchor("total"), words=["integer to number"]),
    Case("RESPONSE_ENUM_VALUE_ADDED", [("state: enum[new, paid]", "state: enum[new, paid, sent]")],
         Anchor("state"), policy=STRICT, words=["'sent'"]),
]


def _side(text: str, name: str) -> Side:
    result = load_spec_text(name, text)
    assert result.ok, [problem.format() for problem in result.errors]
    return Side.of(result, name)


def _compare(new_text: str, policy: Policy | None = None) -> list:
    return compare(_side(BASE, "old.yaml"), _side(new_text, "new.yaml"), policy)


def test_every_rule_has_a_case() -> None:
    assert {case.rule for case in CASES} == set(RULES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{i}" for i, c in enumerate(CASES)])
def test_a_breaking_change_is_found_where_it_is(case: Case) -> None:
    text = case.new_text()
    findings = _compare(text, Policy(case.policy))
    assert [finding.rule for finding in findings] == [case.rule], [f.format() for f in findings]
    finding = findings[0]
    assert (finding.location.file, finding.location.line, finding.location.col) == (
        "new.yaml", *case.where.find(text))
    if case.was is None:
        assert finding.old_location is None
    else:
        assert finding.old_location is not None
        assert (finding.old_location.file, finding.old_location.line,
                finding.old_location.col) == ("old.yaml", *case.was.find(BASE))
    for word in case.words:
        assert word in finding.message, finding.format()
    assert finding.fix


COMPATIBLE = {
    "optional message field added": [
        ("note: str?", "note: str?\n          gift: bool?")],
    "message enum value added": [("status: enum[new, paid]", "status: enum[new, paid, sent]")],
    "new major version beside the old one": [
        ("          lines: [{sku: str, quantity: int}]\n",
         ("          lines: [{sku: str, quantity: int}]\n      2:\n        publish_also: [1]\n"
         "        fields: {order_id: uuid, amount_cents: int, currency: str}\n"))],
    "version deprecated": [("      1:\n        fields:", ("      1:\n        deprecated: true\n"
                            "        fields:"))],
    "new message and new destination": [
        ("to: [billing]\n", "to: [billing, audit]\n"),
        ("\nsubscriptions:", ("  order.shipped:\n    versions: {1: {fields: {order_id: uuid}}}\n"
         "\nsubscriptions:"))],
    "request enum value added": [("currency: enum[EUR, USD]", "currency: enum[EUR, USD, GBP]")],
    "optional request field added": [("      remark: str?\n", ("      remark: str?\n"
                                      "      coupon: str?\n"))],
    "request field made optional": [("customer_id: uuid", "customer_id: uuid?")],
    "request type widened": [("      amount_cents: int\n      currency",
                              "      amount_cents: float\n      currency")],
    "request constraint widened": [("maximum: 100", "maximum: 1000"), ("minimum: 1", "minimum: 0")],
    "request uuid relaxed to text": [("customer_id: uuid", "customer_id: str")],
    "response field added": [("      total: int\n", "      total: int\n      eta: date\n")],
    "response field made required": [("comment: str?", "comment: str")],
    "scope removed": [("[shop:read]", "[]")],
    "path parameter renamed": [("path: /v1/orders/{order_id}", "path: /v1/orders/{id}"),
                               ("    request:\n      order_id: uuid\n",
                                "    request:\n      id: uuid\n")],
    "endpoint and subscription added": [
        ("\nretry_policies:", ("  - name: list_orders\n    method: GET\n    path: /v1/orders\n"
         "\nretry_policies:")),
        ("\nendpoints:", ("  - message: invoice.sent\n    version: 1\n    from: billing\n"
         "    retry: default\n\nendpoints:"))],
    "subscription field made optional and one dropped": [
        ("      invoice_id: uuid\n      memo: str?\n", "      invoice_id: uuid?\n")],
    "descriptions, comments and layout": [
        ("  description: Sells things.", "  description: Sells many things.  # and more"),
        ("    to: [billing, audit]", ("    description: An order was placed.\n"
         "    to:\n      - billing\n      - audit"))],
}


@pytest.mark.parametrize("edits", COMPATIBLE.values(), ids=COMPATIBLE.keys())
def test_a_compatible_change_passes_even_the_strict_rules(edits: list[tuple[str, str]]) -> None:
    text = BASE
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    findings = _compare(text, Policy(STRICT))
    assert findings == [], [finding.format() for finding in findings]


# -- groups and policy --------------------------------------------------------------------


def test_groups_nest_from_wire_to_strict() -> None:
    wire, consumers, strict = (set(rules_of(group)) for group in GROUPS)
    assert wire < consumers < strict == set(RULES)
    assert "FIELD_REMOVED" in wire and "REQUIRED_FIELD_ADDED" not in wire
    assert "REQUIRED_FIELD_ADDED" in consumers and "ENDPOINT_RENAMED" not in consumers


def test_the_spec_names_every_rule_and_group_for_editors() -> None:
    section = schema()["$defs"]["breaking"]["properties"]
    assert section["use"]["enum"] == list(GROUPS)
    assert section["except"]["items"]["enum"] == list(RULES)


def test_a_narrower_group_leaves_out_what_only_a_wider_one_finds() -> None:
    text = BASE.replace("note: str?", "note: str", 1)  # FIELD_MADE_REQUIRED is in CONSUMERS
    assert [f.rule for f in _compare(text, Policy(CONSUMERS))] == ["FIELD_MADE_REQUIRED"]
    assert _compare(text, Policy(WIRE)) == []


def test_the_spec_chooses_the_group_and_excepts_rules() -> None:
    text = BASE.replace("note: str?", "note: str", 1).replace(
        "[shop:read]", "[shop:read, shop:admin]") + "\nbreaking:\n  use: STRICT\n" \
        "  except: [ENDPOINT_SCOPE_ADDED]\n"
    result = load_spec_text("new.yaml", text)
    policy = Policy.from_spec(result.root)
    assert policy.use == STRICT and policy.excepted == {"ENDPOINT_SCOPE_ADDED"}
    assert [f.rule for f in _compare(text, policy)] == ["FIELD_MADE_REQUIRED"]


def test_an_unknown_rule_in_the_spec_is_refused_with_a_suggestion() -> None:
    result = load_spec_text("new.yaml", BASE + "\nbreaking: {except: [FIELD_REMOVD]}\n")
    assert not result.ok
    assert "did you mean 'FIELD_REMOVED'?" in result.errors[0].format()


def test_a_baseline_without_a_document_gives_no_old_location() -> None:
    text = BASE.replace("      total: int\n", "")
    old = Side(_side(BASE, "old.yaml").spec, ".shoestring/manifest.json")
    [finding] = compare(old, _side(text, "new.yaml"))
    assert finding.rule == "RESPONSE_FIELD_REMOVED" and finding.old_location is None
    assert "(was at" not in finding.format()


def test_several_changes_are_all_reported_in_the_order_of_the_new_spec() -> None:
    text = (BASE.replace("total: int", "total: str")
            .replace("          amount_cents: int\n", "", 1)
            .replace("[shop:read]", "[shop:read, shop:admin]"))
    findings = _compare(text)
    assert [f.rule for f in findings] == [
        "FIELD_REMOVED", "RESPONSE_FIELD_TYPE_CHANGED", "ENDPOINT_SCOPE_ADDED"]
    assert [f.location.line for f in findings] == sorted(f.location.line for f in findings)


# -- the command ----------------------------------------------------------------------------


def _run(*args: str, cwd: Path | None = None):
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, ["breaking", *args])
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(main, ["breaking", *args])
    finally:
        os.chdir(previous)


def test_breaking_exits_0_without_changes_and_1_listing_them(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(BASE)
    new = tmp_path / "service.yaml"
    new.write_text(BASE)
    same = _run(str(new), "--against", str(old))
    assert same.exit_code == 0, same.output
    assert "no breaking changes" in same.stderr

    text = BASE.replace("      total: int\n", "")
    new.write_text(text)
    found = _run(str(new), "--against", str(old))
    assert found.exit_code == 1
    line = found.stdout.strip()
    parent, was = Anchor("response:", CREATE).find(text), Anchor("total").find(BASE)
    assert line.startswith(f"{new}:{parent[0]}:{parent[1]}: RESPONSE_FIELD_REMOVED: endpoint "
                           "'create_order' response no longer has field 'total'")
    assert f"(was at {old}:{was[0]}:{was[1]})" in line
    assert " — keep returning what clients read" in line
    assert "1 breaking change against" in found.stderr


def test_breaking_json_lists_rule_group_location_and_fix(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(BASE)
    new = tmp_path / "service.yaml"
    text = BASE.replace("[shop:read]", "[shop:read, shop:admin]")
    new.write_text(text)
    line, column = Anchor("shop:admin").find(text)
    result = _run(str(new), "--against", str(old), "--format", "json")
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)
    assert finding == {
        "rule": "ENDPOINT_SCOPE_ADDED", "group": "WIRE",
        "message": "endpoint 'get_order' now needs scope 'shop:admin', which tokens issued for "
                   "it so far lack",
        "fix": finding["fix"], "file": str(new), "line": line, "column": column, "old": None}


def test_breaking_rules_and_ignore_options(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(BASE)
    new = tmp_path / "service.yaml"
    new.write_text(BASE.replace("name: get_order", "name: read_order"))
    assert _run(str(new), "--against", str(old)).exit_code == 0
    assert _run(str(new), "--against", str(old), "--rules", "STRICT").exit_code == 1
    ignored = _run(str(new), "--against", str(old), "--rules", "STRICT",
                   "--ignore", "ENDPOINT_RENAMED")
    assert ignored.exit_code == 0, ignored.output


def test_breaking_exits_2_when_a_spec_cannot_be_read(tmp_path: Path) -> None:
    new = tmp_path / "service.yaml"
    new.write_text(BASE)
    broken = tmp_path / "old.yaml"
    broken.write_text("shoestring: 1\nservice: {name: [\n")
    result = _run(str(new), "--against", str(broken))
    assert result.exit_code == 2
    assert f"{broken}:" in result.stderr and "YAML syntax error" in result.stderr
    missing_ref = _run(str(new), "--against", "no-such-ref")
    assert missing_ref.exit_code == 2
    assert "give a file, or a git ref" in missing_ref.stderr


def test_breaking_reads_the_old_spec_from_a_git_ref(tmp_path: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    service = tmp_path / "orders"
    service.mkdir()
    spec = service / "service.yaml"
    spec.write_text(BASE)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "v1")
    git("tag", "v1")
    text = BASE.replace("      total: int\n", "")
    spec.write_text(text)

    result = _run("--against", "v1", cwd=service)
    assert result.exit_code == 1, result.output
    parent, was = Anchor("response:", CREATE).find(text), Anchor("total").find(BASE)
    assert result.stdout.startswith(f"service.yaml:{parent[0]}:{parent[1]}: "
                                    "RESPONSE_FIELD_REMOVED")
    assert f"(was at v1:service.yaml:{was[0]}:{was[1]})" in result.stdout
    assert _run("--against", "HEAD", "--format", "json", cwd=service).exit_code == 1
    git("commit", "-q", "-am", "v2")
    assert _run("--against", "HEAD", cwd=service).exit_code == 0
