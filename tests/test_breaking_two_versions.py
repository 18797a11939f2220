"""Living with two versions of a message: `publish_also` in the spec, the converter module the
generator stubs once, and the table the chassis publishes through.

The chassis side (one `ctx.publish` writing both versions, both subscriptions handling them)
runs in a real service in tests/test_breaking_evolution.py.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from shoestring.cli import main
from shoestring.converters import Conversion, conversions, converter_stub
from shoestring.spec import load_spec_text

SPEC: dict[str, Any] = {
    "shoestring": 1,
    "service": {"name": "shop"},
    "messages": {
        "order.created": {
            "to": ["billing"],
            "versions": {
                1: {"deprecated": True, "fields": {"order_id": "uuid", "amount_cents": "int"}},
                2: {
                    "publish_also": [1],
                    "fields": {"order_id": "uuid", "amount_cents": "int", "currency": "str"},
                },
            },
        },
    },
    "peers": {"billing": {"url_env": "BILLING_URL"}},
}


CONVERTER_FILES = ("shop/_generated/converters.py", "shop/handlers/order_created_v2_to_v1.py")


def load(spec: dict[str, Any]):
    return load_spec_text("service.yaml", yaml.safe_dump(spec, sort_keys=False))


def model(spec: dict[str, Any]) -> dict[str, Any]:
    result = load(spec)
    assert result.ok, [problem.format() for problem in result.problems]
    return result.spec


def generate(root: Path, *options: str, expect: int = 0):
    result = CliRunner().invoke(main, ["generate", *options, str(root)])
    assert result.exit_code == expect, result.output
    return result


# -- the spec ------------------------------------------------------------------------------


def test_the_model_lists_the_versions_published_along() -> None:
    versions = model(SPEC)["messages"]["order.created"]["versions"]
    assert versions["1"]["publish_also"] == [] and versions["2"]["publish_also"] == [1]
    assert conversions(model(SPEC)) == [Conversion("order.created", 2, 1)]
    assert conversions(model(SPEC))[0].module == "order_created_v2_to_v1"


@pytest.mark.parametrize("also, message, hint", [
    ([3], ("message 'order.created' version 2 also publishes version 3, which the message "
           "does not have"),
     "its versions are 1, 2; keep version 3 under versions: while it is published"),
    ([2], "message 'order.created' version 2 lists itself under publish_also",
     "list the other versions to publish beside version 2, e.g. [1]"),
])
def test_publish_also_must_name_another_version_of_the_message(
    also: list[int], message: str, hint: str
) -> None:
    spec = copy.deepcopy(SPEC)
    spec["messages"]["order.created"]["versions"][2]["publish_also"] = also
    text = yaml.safe_dump(spec, sort_keys=False)
    [problem] = load_spec_text("service.yaml", text).errors
    assert (problem.message, problem.hint) == (message, hint)
    item = text.index(f"- {also[0]}", text.index("publish_also:"))  # the item under publish_also
    assert problem.line == text.count("\n", 0, item) + 1


def test_a_converter_module_may_not_take_an_endpoints_handler_module() -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"] = [{"name": "order_created_v2_to_v1", "method": "GET", "path": "/v1/x"}]
    [problem] = load(spec).errors
    assert problem.message.startswith(
        "message 'order.created' version 2 needs handlers/order_created_v2_to_v1.py to convert "
        "to version 1, already used by the endpoint at line")


# -- the converter stub ----------------------------------------------------------------------


def test_a_converter_that_can_copy_every_field_is_complete() -> None:
    spec = model(SPEC)
    text = converter_stub(spec, Conversion("order.created", 2, 1)).decode()
    assert 'SAME_FIELDS = ("order_id", "amount_cents")' in text
    namespace: dict[str, Any] = {}
    exec(compile(text, "order_created_v2_to_v1.py", "exec"), namespace)  # noqa: S102
    data = {"order_id": "00000000-0000-4000-8000-000000000000", "amount_cents": 5,
            "currency": "EUR"}
    assert namespace["convert"](data) == {"order_id": data["order_id"], "amount_cents": 5}


def test_a_converter_that_cannot_fill_a_field_refuses_until_written() -> None:
    spec = copy.deepcopy(SPEC)
    spec["messages"]["order.created"]["versions"][1]["fields"]["amount_cents"] = "str"
    text = converter_stub(model(spec), Conversion("order.created", 2, 1)).decode()
    namespace: dict[str, Any] = {}
    exec(compile(text, "order_created_v2_to_v1.py", "exec"), namespace)  # noqa: S102
    with pytest.raises(NotImplementedError, match="v1 needs amount_cents"):
        namespace["convert"]({"order_id": "x", "amount_cents": 5, "currency": "EUR"})
    assert "shop/handlers/order_created_v2_to_v1.py" in text


def test_generate_writes_the_stub_once_and_the_table_every_time(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "service.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    result = generate(root)
    assert "create  shop/handlers/order_created_v2_to_v1.py" in result.stdout
    table = (root / "shop/_generated/converters.py").read_text()
    assert "from ..handlers import order_created_v2_to_v1" in table
    assert '("order.created", 2, 1): order_created_v2_to_v1.convert,' in table
    ast.parse(table)
    for check in (["check", "--isolated", "--extend-select", "E,W,F,I,UP,B"],
                  ["format", "--isolated", "--check"]):
        lint = subprocess.run([sys.executable, "-m", "ruff", *check, *CONVERTER_FILES],
                              cwd=root, capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    stub = root / "shop/handlers/order_created_v2_to_v1.py"
    stub.write_text(stub.read_text().replace("SAME_FIELDS = (", "SAME_FIELDS = (  # mine\n", 1))
    edited = stub.read_bytes()
    generate(root)
    assert stub.read_bytes() == edited
    generate(root, "--check")


def test_dropping_publish_also_removes_the_untouched_converter(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "service.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    generate(root)
    spec = copy.deepcopy(SPEC)
    del spec["messages"]["order.created"]["versions"][2]["publish_also"]
    (root / "service.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = generate(root)
    assert "remove  shop/handlers/order_created_v2_to_v1.py" in result.stdout
    assert "CONVERTERS: dict[tuple[str, int, int], Converter] = {}" in (
        root / "shop/_generated/converters.py").read_text()


# -- a breaking change the converter does not know about --------------------------------------


def converter_after(root: Path, change, *options: str, expect: int = 0):
    """Generate SPEC in `root`, edit the converter as a user would (a comment and a docstring
    naming every field), then generate the spec `change` returns with `options`."""
    (root / "service.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    generate(root)
    stub = root / "shop/handlers/order_created_v2_to_v1.py"
    text = stub.read_text().replace(
        "def convert(data: dict[str, Any]) -> dict[str, Any]:\n",
        "def convert(data: dict[str, Any]) -> dict[str, Any]:\n"
        '    """Copies order_id and amount_cents; amount_cents is in cents."""\n'
        "    # amount_cents and currency: see the payments team's notes\n", 1)
    stub.write_text(text)
    spec = copy.deepcopy(SPEC)
    change(spec["messages"]["order.created"]["versions"])
    (root / "service.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return generate(root, *options, expect=expect), text


def test_allowing_a_field_removed_from_the_old_version_names_the_converter_still_copying_it(
    tmp_path: Path,
) -> None:
    def drop(versions: dict) -> None:
        del versions[1]["fields"]["amount_cents"]

    result, text = converter_after(tmp_path, drop, "--allow-breaking", "v1 readers moved")
    line = next(number for number, content in enumerate(text.splitlines(), 1)
                if content.startswith("SAME_FIELDS"))
    col = text.splitlines()[line - 1].index('"amount_cents"') + 1
    warnings = [text for text in result.stderr.splitlines() if "warning:" in text]
    assert warnings == [(
        f"shop/handlers/order_created_v2_to_v1.py:{line}:{col}: warning: still refers to field "
        "'amount_cents', which order.created v1 no longer has: every publish of v2 also "
        "publishes v1 through convert(), and v1's schema refuses what it no longer declares — "
        "stop copying 'amount_cents' into v1 (take it out of SAME_FIELDS, or build "
        "'amount_cents' as v1 now declares it)"
    )]
    assert "FIELD_REMOVED" in result.stderr
    # What the warning is about: the converter's output no longer fits v1.
    namespace: dict[str, Any] = {}
    exec(compile(text, "order_created_v2_to_v1.py", "exec"), namespace)  # noqa: S102
    v1 = json.loads((tmp_path / "shop/_generated/schemas/messages/order.created.v1.json")
                    .read_text())
    converted = namespace["convert"]({"order_id": "00000000-0000-4000-8000-000000000000",
                                      "amount_cents": 5, "currency": "EUR"})
    assert list(Draft202012Validator(v1).iter_errors(converted))


def test_a_refused_removal_names_the_converter_too(tmp_path: Path) -> None:
    def drop(versions: dict) -> None:
        del versions[2]["fields"]["amount_cents"]

    result, _ = converter_after(tmp_path, drop, expect=1)
    assert "refusing to generate" in result.stderr
    [warning] = [text for text in result.stderr.splitlines() if "warning:" in text]
    assert warning.startswith("shop/handlers/order_created_v2_to_v1.py:")
    assert ("still refers to field 'amount_cents', which order.created v2 no longer has: "
            "convert() receives v2 data without it — build what v1 needs from the fields v2 "
            "still has") in warning


def test_a_removed_field_the_converter_never_names_gives_no_warning(tmp_path: Path) -> None:
    def drop(versions: dict) -> None:
        del versions[2]["fields"]["currency"]  # named only in a comment of the converter

    result, _ = converter_after(tmp_path, drop, "--allow-breaking", "nobody read currency")
    assert "FIELD_REMOVED" in result.stderr
    assert "warning:" not in result.stderr
