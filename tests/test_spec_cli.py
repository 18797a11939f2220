"""`shoestring schema` and `shoestring validate`: output formats, exit codes, hostile input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import EXAMPLES, run_shoestring
from jsonschema import Draft202012Validator
from shoestring.cli import main

SPECS = Path(__file__).parent / "specs"
EXAMPLE_SPECS = sorted(EXAMPLES.glob("*/service.yaml"))
VALID_SPECS = [*EXAMPLE_SPECS, *sorted((SPECS / "valid").glob("*.yaml"))]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_both_example_specs_exist() -> None:
    assert [path.parent.name for path in EXAMPLE_SPECS] == ["orders", "payments"]


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda path: path.parent.name + "/" + path.name)
def test_valid_spec_validates_clean(spec: Path) -> None:
    result = invoke("validate", str(spec))
    assert result.exit_code == 0, result.output
    assert result.output == f"{spec}: valid\n"


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda path: path.parent.name)
def test_valid_spec_in_json_is_an_empty_list(spec: Path) -> None:
    result = invoke("validate", str(spec), "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output) == []


def test_json_format_lists_every_problem_with_its_fields(tmp_path: Path) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text(
        "shoestring: 1\n"
        "service: {name: orders}\n"
        "endpionts: []\n"
        "endpoints:\n"
        "  - {name: a, method: GET, path: /v1/a, rate_limit: nope}\n"
        "  - {name: a, method: GET, path: /v1/a}\n"
    )
    result = invoke("validate", str(spec), "--format", "json")
    assert result.exit_code == 1
    problems = json.loads(result.output)
    assert [(p["line"], p["column"], p["code"]) for p in problems] == [
        (3, 1, "unknown-key"),
        (5, 53, "undefined-reference"),
        (6, 12, "duplicate"),
        (6, 34, "route-collision"),
    ]
    for problem in problems:
        assert set(problem) == {"file", "line", "column", "message", "hint", "code", "severity"}
        assert problem["file"] == str(spec)
        assert problem["severity"] == "error"
    assert problems[0]["hint"] == "did you mean 'endpoints'?"


def test_text_format_reports_every_problem_not_just_the_first(tmp_path: Path) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text("shoestring: 2\nservice: {name: json}\nextra: 1\n")
    result = invoke("validate", str(spec))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        (f"{spec}:1:13: 'shoestring' must be 1, not 2 — this generator reads spec format 1: "
        "write `shoestring: 1`"),
        (f"{spec}:2:17: service name 'json' makes the package name 'json', which would shadow "
        "the module 'json' that services use — rename the service, e.g. 'json-service', or "
        "set `package:` under service:"),
        (f"{spec}:3:1: unknown key 'extra' at the top of the spec — allowed keys: shoestring, "
        "service, messages, subscriptions, endpoints, rate_limits, retry_policies, peers, "
            "breaking"),
    ]


def test_warnings_do_not_fail_validation(tmp_path: Path) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text("shoestring: 1\nservice: {name: orders}\n"
                    "rate_limits: {spare: {limit: 1, per: day, key: ip}}\n")
    result = invoke("validate", str(spec))
    assert result.exit_code == 0
    assert f"{spec}:3:15: warning: 'spare' under rate_limits: is not used" in result.output
    assert result.output.endswith(f"{spec}: valid (1 warning)\n")


def test_missing_file_exits_2_with_a_location(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = invoke("validate", str(missing))
    assert result.exit_code == 2
    assert result.output.startswith(f"{missing}:1:1: the file does not exist — check the path")


def test_directory_exits_2(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path))
    assert result.exit_code == 2
    assert "this is a directory" in result.output


def test_ten_megabytes_of_junk_is_refused_quickly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(os.urandom(10 * 1024 * 1024))
    started = time.monotonic()
    result = invoke("validate", str(junk), "--format", "json")
    assert time.monotonic() - started < 2
    assert result.exit_code == 2
    [problem] = json.loads(result.output)
    assert (problem["line"], problem["column"], problem["code"]) == (1, 1, "too-large")


def test_a_megabyte_of_valid_yaml_is_refused_quickly(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    rows = b"".join(b"x-k%d: [a, {b: c, d: [1, 2, 3]}]\n" % i for i in range(28000))
    spec.write_bytes(b"shoestring: 1\nservice: {name: a}\n" + rows)
    assert spec.stat().st_size < 1024 * 1024
    started = time.monotonic()
    result = invoke("validate", str(spec))
    assert time.monotonic() - started < 10
    assert result.exit_code == 2
    assert "more than 100000 values" in result.output


def test_binary_junk_below_the_size_limit_is_unreadable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(bytes(range(256)) * 64)
    result = invoke("validate", str(junk))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_cli_in_a_subprocess_exit_codes_and_no_traceback(tmp_path: Path) -> None:
    valid = run_shoestring("validate", str(EXAMPLE_SPECS[0]), check=False)
    assert valid.returncode == 0, valid.stderr
    broken = run_shoestring("validate", str(SPECS / "broken" / "undefined_rate_limit.yaml"),
                            check=False)
    assert broken.returncode == 1
    assert "undefined_rate_limit.yaml:8:17: endpoint 'create_order' uses rate limit " \
           "'per_clinet_60m' which is not defined — did you mean 'per_client_60m'?" \
           in broken.stderr
    for name in ("tabs.yaml", "billion_laughs.yaml"):
        unreadable = run_shoestring("validate", str(SPECS / "broken" / name), check=False)
        assert unreadable.returncode == 2, (name, unreadable.stderr)
        assert "Traceback" not in unreadable.stderr
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(os.urandom(10 * 1024 * 1024))
    result = run_shoestring("validate", str(junk), "--format", "json", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert json.loads(result.stdout)[0]["code"] == "too-large"


def test_schema_command_prints_a_valid_json_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("spec", VALID_SPECS, ids=lambda path: path.parent.name + "/" + path.name)
def test_schema_accepts_valid_specs_as_an_editor_reads_them(spec: Path) -> None:
    # An editor sees YAML keys as strings (`1:` is "1"), which a JSON round trip reproduces.
    schema = json.loads(invoke("schema").output)
    data = json.loads(json.dumps(yaml.safe_load(spec.read_text()), default=str))
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(data)]
    assert errors == []


def test_schema_rejects_what_validate_rejects_structurally() -> None:
    schema = json.loads(invoke("schema").output)
    validator = Draft202012Validator(schema)
    for name in ("unknown_top_key", "method_unknown", "version_zero", "path_without_version",
                 "missing_path", "rate_limit_bad_per", "wrong_format_version"):
        data = yaml.safe_load((SPECS / "broken" / f"{name}.yaml").read_text())
        assert not validator.is_valid(json.loads(json.dumps(data))), name


def test_python_dash_m_shoestring_runs_the_cli() -> None:
    result = run_shoestring("--help")
    assert "validate" in result.stdout and "schema" in result.stdout
