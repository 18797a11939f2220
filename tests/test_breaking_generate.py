"""`shoestring generate` compares the spec with the one it accepted last (the manifest's
`accepted_spec`) and refuses breaking changes unless the user gives a reason.

Like tests/test_generate.py, these run the generator on a folder holding only a service.yaml;
tests/test_evolution.py evolves a complete service.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shoestring.manifest import MANIFEST_PATH
from support import shoestring, tree

BASE = (Path(__file__).parent / "specs" / "evolution" / "base.yaml").read_text()


def generate(root: Path, *options: str, expect: int = 0):
    return shoestring("generate", *options, str(root), expect=expect)




@pytest.fixture
def service(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "service.yaml").write_text(BASE)
    generate(root)
    return root


def test_generate_refuses_a_breaking_change_and_writes_nothing(service: Path) -> None:
    before = tree(service)
    (service / "service.yaml").write_text(BASE.replace("      total: int\n", ""))
    result = generate(service, expect=1)
    assert "service.yaml:55:5: RESPONSE_FIELD_REMOVED: endpoint 'create_order' response no " \
        "longer has field 'total'" in result.stderr
    assert "refusing to generate: 1 breaking change" in result.stderr
    assert '--allow-breaking "<why it is safe>"' in result.stderr
    after = tree(service)
    assert after.pop("service.yaml") != before.pop("service.yaml")
    assert after == before


def test_allow_breaking_generates_and_records_the_reason_with_the_findings(service: Path) -> None:
    (service / "service.yaml").write_text(BASE.replace("      total: int\n", ""))
    result = generate(service, "--allow-breaking", "no client reads total since release 7")
    assert "allowed: 1 breaking change (no client reads total since release 7)" in result.stderr
    manifest = json.loads((service / MANIFEST_PATH).read_text())
    [allowed] = manifest["allowed_breaking"]
    assert allowed["reason"] == "no client reads total since release 7"
    assert allowed["findings"] == [{
        "rule": "RESPONSE_FIELD_REMOVED",
        "message": "endpoint 'create_order' response no longer has field 'total'",
        "location": "service.yaml:55:5",
    }]
    assert allowed["spec_sha256"] == manifest["spec_sha256"]
    assert "total" not in json.dumps(manifest["accepted_spec"]["endpoints"][0]["response"])

    # The accepted spec moved on: the same spec generates again without a reason...
    generate(service, "--check")
    # ...and the next allowed change is recorded after the first.
    (service / "service.yaml").write_text(
        BASE.replace("      total: int\n", "").replace("[shop:read]", "[shop:read, shop:admin]"))
    generate(service, expect=1)
    generate(service, "--allow-breaking", "every token carries shop:admin")
    manifest = json.loads((service / MANIFEST_PATH).read_text())
    assert [entry["reason"] for entry in manifest["allowed_breaking"]] == [
        "no client reads total since release 7", "every token carries shop:admin"]


def test_a_compatible_change_generates_without_a_reason(service: Path) -> None:
    (service / "service.yaml").write_text(
        BASE.replace("      total: int\n", "      total: int\n      eta: date?\n"))
    result = generate(service)
    assert "breaking" not in result.stderr
    assert "allowed_breaking" not in json.loads((service / MANIFEST_PATH).read_text())


def test_check_and_dry_run_list_the_breaking_changes_and_write_nothing(service: Path) -> None:
    before = tree(service)
    (service / "service.yaml").write_text(BASE.replace("remark: str?", "remark: str"))
    check = generate(service, "--check", expect=1)
    assert "REQUEST_FIELD_MADE_REQUIRED" in check.stderr
    assert "generating needs --allow-breaking" in check.stderr
    dry = generate(service, "--dry-run")
    assert "REQUEST_FIELD_MADE_REQUIRED" in dry.stderr and "dry run" in dry.stdout
    after = tree(service)
    after.pop("service.yaml"), before.pop("service.yaml")
    assert after == before


def test_the_spec_can_relax_the_rules_generate_applies(service: Path) -> None:
    text = BASE.replace("note: str?", "note: str", 1)  # FIELD_MADE_REQUIRED: CONSUMERS only
    (service / "service.yaml").write_text(text)
    generate(service, expect=1)
    (service / "service.yaml").write_text(text + "\nbreaking: {use: WIRE}\n")
    generate(service)


def test_allow_breaking_needs_a_reason(service: Path) -> None:
    (service / "service.yaml").write_text(BASE.replace("      total: int\n", ""))
    result = generate(service, "--allow-breaking", " ", expect=2)
    assert "--allow-breaking needs a reason" in result.stderr


def test_allow_breaking_without_breaking_changes_records_nothing(service: Path) -> None:
    result = generate(service, "--allow-breaking", "just in case")
    assert "no breaking changes to allow" in result.stderr
    assert "allowed_breaking" not in json.loads((service / MANIFEST_PATH).read_text())
