"""`shoestring generate`: what it writes, what it leaves alone, and what `--check` reports.

These tests run the generator on a directory holding only a service.yaml (no Copier, no
chassis): the generator's behaviour does not depend on the skeleton around it.
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi
from shoestring import __version__
from shoestring.manifest import MANIFEST_PATH
from shoestring.render import REGISTRY_FORMAT, spec_sha256
from shoestring.spec import load_spec
from support import shoestring, tree

RUFF = [sys.executable, "-m", "ruff"]
# A strict, configuration-independent standard for "looks hand-written": ruff's default rules
# plus pycodestyle, pyflakes, isort, pyupgrade and bugbear, at the formatters' default width.
STRICT_RUFF = ["--isolated", "--line-length", "88", "--target-version", "py310"]

SPEC: dict[str, Any] = {
    "shoestring": 1,
    "service": {"name": "shop", "description": "Takes orders."},
    "messages": {
        "order.created": {
            "description": "An order was placed.",
            "to": ["billing"],
            "versions": {
                1: {"deprecated": True, "fields": {"order_id": "uuid", "amount_cents": "int"}},
                2: {"fields": {"order_id": "uuid", "amount_cents": "int", "currency": "str"}},
            },
        }
    },
    "subscriptions": [
        {
            "message": "invoice.paid",
            "version": 1,
            "from": "billing",
            "retry": "default",
            "fields": {"invoice_id": "uuid", "order_id": "uuid"},
        }
    ],
    "endpoints": [
        {
            "name": "create_order",
            "method": "POST",
            "path": "/v1/orders",
            "description": "Place an order.",
            "scopes": ["shop:write"],
            "rate_limit": "per_client",
            "idempotent": True,
            "request": {"customer_id": "uuid", "amount_cents": "int", "note": "str?"},
            "response": {"order_id": "uuid", "status": "enum[pending, paid]"},
        },
        {
            "name": "get_order",
            "method": "GET",
            "path": "/v1/orders/{order_id}",
            "description": "Read one order.",
            "scopes": ["shop:read"],
            "request": {"order_id": "uuid", "expand": "bool?"},
            "response": {
                "order_id": "uuid",
                "amount_cents": "int",
                "lines": [{"sku": "str", "quantity": "int", "price": "decimal"}],
                "created_at": "datetime",
            },
        },
    ],
    "rate_limits": {"per_client": {"limit": 60, "per": "minute", "key": "client"}},
    "retry_policies": {"default": {"max_attempts": 10, "base_seconds": 2, "max_seconds": 3600}},
    "peers": {"billing": {"url_env": "BILLING_URL"}},
}

GENERATED = "shop/_generated"
# Removing an endpoint or a subscription breaks its callers: generate asks for a reason.
ALLOW_REMOVAL = ("--allow-breaking", "no client calls it any more")


def write_spec(root: Path, spec: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "service.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def generate(root: Path, *options: str, expect: int = 0):
    return shoestring("generate", *options, str(root), expect=expect)


def model_of(root: Path) -> dict[str, Any]:
    result = load_spec(root / "service.yaml")
    assert result.spec is not None, [p.format() for p in result.problems]
    return result.spec


@pytest.fixture
def service(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    write_spec(root, SPEC)
    generate(root)
    return root


# -- what is written ----------------------------------------------------------------------


def test_generate_writes_the_files_the_contract_lists(service: Path) -> None:
    assert sorted(tree(service)) == [
        MANIFEST_PATH,
        "service.yaml",
        f"{GENERATED}/__init__.py",
        f"{GENERATED}/asyncapi.json",
        f"{GENERATED}/converters.py",
        f"{GENERATED}/openapi.json",
        f"{GENERATED}/peers.py",
        f"{GENERATED}/registry.py",
        f"{GENERATED}/schemas/endpoints/create_order.request.json",
        f"{GENERATED}/schemas/endpoints/create_order.response.json",
        f"{GENERATED}/schemas/endpoints/get_order.request.json",
        f"{GENERATED}/schemas/endpoints/get_order.response.json",
        f"{GENERATED}/schemas/messages/order.created.v1.json",
        f"{GENERATED}/schemas/messages/order.created.v2.json",
        f"{GENERATED}/schemas/subscriptions/invoice.paid.v1.json",
        f"{GENERATED}/service.json",
        f"{GENERATED}/test_contract.py",
        "shop/handlers/create_order.py",
        "shop/handlers/get_order.py",
        "shop/handlers/on_invoice_paid_v1.py",
    ]


def test_registry_maps_endpoints_and_subscriptions_to_handler_modules(service: Path) -> None:
    source = (service / GENERATED / "registry.py").read_text()
    assert "from ..handlers import create_order, get_order, on_invoice_paid_v1\n" in source
    assert '    "create_order": create_order.handle,\n' in source
    assert '    "get_order": get_order.handle,\n' in source
    assert '    ("invoice.paid", 1): on_invoice_paid_v1.handle,\n' in source


def test_service_json_is_the_spec_model_and_the_manifest_records_every_file(
    service: Path,
) -> None:
    model = model_of(service)
    written = json.loads((service / GENERATED / "service.json").read_text())
    assert written.pop("x-generated-by").startswith(f"shoestring {__version__} from service.yaml")
    assert written.pop("format") == REGISTRY_FORMAT  # the registry format, for the runtime
    assert written == json.loads(json.dumps(model))

    manifest = json.loads((service / MANIFEST_PATH).read_text())
    assert manifest["generator"] == __version__
    assert manifest["spec_sha256"] == spec_sha256(model)
    assert manifest["accepted_spec"] == json.loads(json.dumps(model))
    assert set(manifest["files"]) == {p for p in tree(service) if p.startswith(GENERATED)}
    assert set(manifest["stubs"]) == {p for p in tree(service) if "/handlers/" in p}


def test_every_generated_file_names_the_generator_version_and_the_spec_file(
    service: Path,
) -> None:
    origin = f"shoestring {__version__} from service.yaml"
    for path, content in tree(service).items():
        if not path.startswith(GENERATED):
            continue
        text = content.decode()
        if path.endswith(".py"):
            assert text.startswith(f"# Generated by {origin}.\n# DO NOT EDIT"), path
        else:
            assert json.loads(text)["x-generated-by"] == f"{origin}; do not edit", path


def test_the_contract_tests_name_the_spec_s_endpoints_and_message_versions(
    service: Path,
) -> None:
    text = (service / GENERATED / "test_contract.py").read_text()
    assert 'ENDPOINTS = ["create_order", "get_order"]' in text
    assert 'WITH_BODY = ["create_order"]' in text
    assert 'PUBLISHED = ["order.created.v1", "order.created.v2"]' in text
    assert 'SUBSCRIBED = ["invoice.paid.v1"]' in text
    # One parametrized test per concern, each a call of its check in the runtime.
    assert text.count("@pytest.mark.parametrize(") == text.count("    contract.") > 0


def test_message_and_endpoint_schemas_are_the_compiled_json_schemas(service: Path) -> None:
    model = model_of(service)
    schemas = service / GENERATED / "schemas"
    v2 = json.loads((schemas / "messages/order.created.v2.json").read_text())
    assert v2["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert v2["title"] == "order.created v2"
    assert "deprecated" not in v2
    v1 = json.loads((schemas / "messages/order.created.v1.json").read_text())
    assert v1["deprecated"] is True
    assert (
        v2["properties"]
        == model["messages"]["order.created"]["versions"]["2"]["schema"]["properties"]
    )
    request = json.loads((schemas / "endpoints/create_order.request.json").read_text())
    jsonschema.validate(
        {"customer_id": "00000000-0000-4000-8000-000000000000", "amount_cents": 5}, request
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"customer_id": "nope", "amount_cents": 5}, request)


def test_generated_python_is_ruff_clean_and_formatted(service: Path) -> None:
    _assert_ruff_clean(service)


def _assert_ruff_clean(root: Path) -> None:
    check = subprocess.run(
        [*RUFF, "check", *STRICT_RUFF, "--extend-select", "E,W,F,I,UP,B", "."],
        cwd=root,
        capture_output=True,
        check=False,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = subprocess.run(
        [*RUFF, "format", *STRICT_RUFF, "--check", "--diff", "."],
        cwd=root,
        capture_output=True,
        check=False,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_openapi_document_is_valid_openapi_3_1(service: Path) -> None:
    document = json.loads((service / GENERATED / "openapi.json").read_text())
    validate_openapi(document)
    assert document["openapi"] == "3.1.0"

    create = document["paths"]["/v1/orders"]["post"]
    assert create["security"] == [{"bearer": ["shop:write"]}]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/create_order.request"
    }
    assert {"201", "400", "401", "403", "409", "422", "429"} <= set(create["responses"])
    idempotency_key = create["parameters"][0]
    assert (idempotency_key["name"], idempotency_key["in"]) == ("Idempotency-Key", "header")
    assert idempotency_key["required"] is True
    assert create["x-rate-limit"] == {
        "policy": "per_client",
        "limit": 60,
        "per": "minute",
        "key": "client",
    }

    read = document["paths"]["/v1/orders/{order_id}"]["get"]
    assert "requestBody" not in read
    parameters = {(p["name"], p["in"]): p["required"] for p in read["parameters"]}
    assert parameters == {("order_id", "path"): True, ("expand", "query"): False}
    assert "404" in read["responses"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_endpoint_stub_returns_an_example_valid_against_the_response_schema(
    service: Path,
) -> None:
    for name in ("create_order", "get_order"):
        stub = (service / "shop/handlers" / f"{name}.py").read_text()
        assert "never touches it again" in stub
        tree_ = ast.parse(stub)
        handle = next(n for n in tree_.body if isinstance(n, ast.FunctionDef))
        assert ast.unparse(handle.args) == "ctx: Context, data: dict[str, Any]"
        returned = next(n for n in ast.walk(handle) if isinstance(n, ast.Return))
        example = ast.literal_eval(returned.value)
        schema = json.loads(
            (service / GENERATED / f"schemas/endpoints/{name}.response.json").read_text()
        )
        jsonschema.validate(example, schema)


def test_subscription_stub_takes_the_context_and_the_event(service: Path) -> None:
    stub = (service / "shop/handlers/on_invoice_paid_v1.py").read_text()
    handle = next(n for n in ast.parse(stub).body if isinstance(n, ast.FunctionDef))
    assert ast.unparse(handle.args) == "ctx: Context, event: dict[str, Any]"
    assert ast.unparse(handle.returns) == "None"
    assert stub.startswith('"""Handles invoice.paid v1 from billing.')


# -- determinism --------------------------------------------------------------------------


def test_two_runs_on_the_same_spec_give_byte_identical_trees(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_spec(first, SPEC)
    write_spec(second, SPEC)
    generate(first)
    generate(second)
    assert tree(first) == tree(second)


def test_a_second_run_changes_nothing(service: Path) -> None:
    before = {path: (service / path).stat().st_mtime_ns for path in tree(service)}
    result = generate(service)
    assert "nothing to do" in result.stdout
    assert {path: (service / path).stat().st_mtime_ns for path in tree(service)} == before


# -- regeneration -------------------------------------------------------------------------


def test_a_one_field_change_rewrites_only_the_files_that_depend_on_it(service: Path) -> None:
    before = {path: (service / path).stat().st_mtime_ns for path in tree(service)}
    contents = tree(service)
    spec = copy.deepcopy(SPEC)
    spec["messages"]["order.created"]["versions"][2]["fields"]["currency"] = {
        "schema": {"type": "string"},
        "description": "ISO 4217 code of the amount.",
    }
    write_spec(service, spec)

    result = generate(service)

    after = tree(service)
    assert sorted(after) == sorted(contents)
    changed = sorted(path for path in after if after[path] != contents[path])
    touched = sorted(path for path in after if (service / path).stat().st_mtime_ns != before[path])
    # The schema of the changed version, the documents that embed it, the spec model, the
    # manifest (it records the spec's hash): nothing else, not even its header.
    expected = [
        MANIFEST_PATH,
        "service.yaml",
        f"{GENERATED}/asyncapi.json",
        f"{GENERATED}/schemas/messages/order.created.v2.json",
        f"{GENERATED}/service.json",
    ]
    assert changed == expected
    assert touched == expected
    assert sorted(line.split()[-1] for line in result.stdout.splitlines() if "  " in line) == [
        path for path in expected if path != "service.yaml"
    ]
    manifest = json.loads((service / MANIFEST_PATH).read_text())
    assert manifest["spec_sha256"] == spec_sha256(model_of(service))

    settled = {path: (service / path).stat().st_mtime_ns for path in after}
    assert "nothing to do" in generate(service).stdout
    assert {path: (service / path).stat().st_mtime_ns for path in after} == settled
    assert tree(service) == after
    generate(service, "--check")


def test_api_documents_are_versioned_by_their_own_content(service: Path) -> None:
    openapi = json.loads((service / GENERATED / "openapi.json").read_text())
    spec = copy.deepcopy(SPEC)
    spec["messages"]["order.created"]["description"] = "An order was placed, or changed."
    write_spec(service, spec)
    generate(service)
    assert json.loads((service / GENERATED / "openapi.json").read_text()) == openapi

    spec["endpoints"][0]["description"] = "Place an order, now."
    write_spec(service, spec)
    generate(service)
    changed = json.loads((service / GENERATED / "openapi.json").read_text())
    assert changed["info"]["version"] != openapi["info"]["version"]
    assert changed["info"]["version"].startswith("sha256-")


def test_regeneration_keeps_handler_edits_and_stubs_what_the_spec_adds(service: Path) -> None:
    handler = service / "shop/handlers/create_order.py"
    edited = handler.read_text().replace(
        "    return {", '    ctx.log.info("order for %s", data["customer_id"])\n    return {'
    )
    handler.write_text(edited)

    spec = copy.deepcopy(SPEC)
    spec["messages"]["order.created"]["versions"][3] = {
        "fields": {"order_id": "uuid", "amount_cents": "int", "currency": "str", "tax": "int"}
    }
    spec["endpoints"].append(
        {
            "name": "cancel_order",
            "method": "DELETE",
            "path": "/v1/orders/{order_id}",
            "scopes": ["shop:write"],
            "request": {"order_id": "uuid"},
            "response": {"order_id": "uuid", "status": "enum[cancelled]"},
        }
    )
    write_spec(service, spec)
    result = generate(service)

    assert handler.read_text() == edited
    assert "create  shop/handlers/cancel_order.py" in result.stdout
    assert (service / GENERATED / "schemas/messages/order.created.v3.json").is_file()
    registry = (service / GENERATED / "registry.py").read_text()
    assert '"cancel_order": cancel_order.handle' in registry
    for path, content in tree(service).items():
        assert not path.endswith((".rej", ".orig", ".partial")), path
        assert b"<<<<<<<" not in content and b">>>>>>>" not in content, path
    generate(service, "--check")
    _assert_ruff_clean(service)


def test_removing_an_endpoint_removes_its_generated_files_and_untouched_stub(
    service: Path,
) -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"] = [e for e in spec["endpoints"] if e["name"] != "get_order"]
    write_spec(service, spec)
    result = generate(service, *ALLOW_REMOVAL)

    schemas = service / GENERATED / "schemas/endpoints"
    assert sorted(p.name for p in schemas.iterdir()) == [
        "create_order.request.json",
        "create_order.response.json",
    ]
    assert not (service / "shop/handlers/get_order.py").exists()
    assert f"remove  {GENERATED}/schemas/endpoints/get_order.request.json" in result.stdout
    assert "get_order" not in (service / GENERATED / "registry.py").read_text()
    manifest = json.loads((service / MANIFEST_PATH).read_text())
    assert not [path for path in [*manifest["files"], *manifest["stubs"]] if "get_order" in path]
    generate(service, "--check")


def test_removing_a_subscription_removes_its_empty_schema_folder(service: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["subscriptions"] = []
    write_spec(service, spec)
    generate(service, *ALLOW_REMOVAL)
    assert not (service / GENERATED / "schemas/subscriptions").exists()
    assert not (service / "shop/handlers/on_invoice_paid_v1.py").exists()
    assert (service / "shop/handlers").is_dir()


def test_edited_files_of_a_removed_endpoint_are_kept_with_a_warning(service: Path) -> None:
    schema = service / GENERATED / "schemas/endpoints/get_order.response.json"
    schema.write_text(schema.read_text().replace('"title"', '"$comment": "mine",\n  "title"'))
    handler = service / "shop/handlers/get_order.py"
    handler.write_text(handler.read_text() + "\n# my notes\n")

    spec = copy.deepcopy(SPEC)
    spec["endpoints"] = [e for e in spec["endpoints"] if e["name"] != "get_order"]
    write_spec(service, spec)
    result = generate(service, *ALLOW_REMOVAL)

    assert schema.is_file() and '"mine"' in schema.read_text()
    assert handler.is_file() and "# my notes" in handler.read_text()
    assert f"warning: {GENERATED}/schemas/endpoints/get_order.response.json" in result.stderr
    assert "warning: shop/handlers/get_order.py" in result.stderr
    assert not (service / GENERATED / "schemas/endpoints/get_order.request.json").exists()
    # Warned once: the kept files are the user's now, and the service is up to date.
    generate(service, "--check")


def test_a_deleted_handler_module_is_created_again(service: Path) -> None:
    (service / "shop/handlers/get_order.py").unlink()
    check = generate(service, "--check", expect=1)
    assert "missing: shop/handlers/get_order.py" in check.stdout
    generate(service)
    assert (service / "shop/handlers/get_order.py").is_file()


def test_a_hand_edited_generated_file_is_overwritten_with_a_warning(service: Path) -> None:
    registry = service / GENERATED / "registry.py"
    original = registry.read_bytes()
    registry.write_text(registry.read_text() + "EXTRA = 1\n")
    result = generate(service)
    assert registry.read_bytes() == original
    assert f"warning: {GENERATED}/registry.py was edited by hand" in result.stderr


# -- --check and --dry-run ----------------------------------------------------------------


def test_check_passes_on_an_up_to_date_service(service: Path) -> None:
    result = generate(service, "--check")
    assert "up to date" in result.stdout


def test_check_fails_on_a_hand_edited_generated_file(service: Path) -> None:
    openapi = service / GENERATED / "openapi.json"
    openapi.write_text(openapi.read_text().replace("3.1.0", "3.0.0"))
    before = tree(service)
    result = generate(service, "--check", expect=1)
    assert f"edited: {GENERATED}/openapi.json" in result.stdout
    assert "shoestring generate" in result.stderr
    assert tree(service) == before


def test_check_fails_after_a_spec_change_listing_what_is_out_of_date(service: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"][1]["response"]["note"] = "str?"
    spec["endpoints"] = spec["endpoints"][1:]
    write_spec(service, spec)
    before = tree(service)
    result = generate(service, "--check", expect=1)
    assert f"out of date: {GENERATED}/schemas/endpoints/get_order.response.json" in result.stdout
    assert f"stale: {GENERATED}/schemas/endpoints/create_order.request.json" in result.stdout
    assert "stale: shop/handlers/create_order.py" in result.stdout
    assert tree(service) == before


def test_check_fails_on_a_service_never_generated(tmp_path: Path) -> None:
    write_spec(tmp_path, SPEC)
    result = generate(tmp_path, "--check", expect=1)
    assert f"missing: {GENERATED}/registry.py" in result.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "service.yaml"]


def test_dry_run_lists_the_changes_and_writes_nothing(service: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"] = spec["endpoints"][:1]
    write_spec(service, spec)
    before = tree(service)
    result = generate(service, "--dry-run")
    assert f"update  {GENERATED}/registry.py" in result.stdout
    assert "remove  shop/handlers/get_order.py" in result.stdout
    assert "dry run: nothing written" in result.stdout
    assert tree(service) == before


# -- refusals -----------------------------------------------------------------------------


def test_generate_refuses_an_invalid_spec_naming_file_line_and_column(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"][0]["rate_limit"] = "per_clinet"
    write_spec(tmp_path, spec)
    result = generate(tmp_path, expect=1)
    spec_path = tmp_path / "service.yaml"
    assert f"{spec_path}:" in result.stderr
    line = next(
        number
        for number, text in enumerate(spec_path.read_text().splitlines(), start=1)
        if "per_clinet" in text
    )
    assert f"{spec_path}:{line}:" in result.stderr
    assert "per_client" in result.stderr  # the hint names the policy meant
    assert sorted(p.name for p in tmp_path.iterdir()) == ["service.yaml"]


def test_generate_needs_a_service_yaml(tmp_path: Path) -> None:
    result = generate(tmp_path, expect=1)
    assert "no service.yaml" in result.stderr and "shoestring new" in result.stderr


def test_generate_refuses_a_package_other_than_the_one_copier_created(tmp_path: Path) -> None:
    write_spec(tmp_path, SPEC)
    (tmp_path / ".copier-answers.yml").write_text("_src_path: x\npackage: storefront\n")
    result = generate(tmp_path, expect=1)
    assert "package 'storefront'" in result.stderr
    assert not (tmp_path / "shop").exists()


def test_a_damaged_manifest_is_reported_with_its_remedy(service: Path) -> None:
    (service / MANIFEST_PATH).write_text("{not json")
    result = generate(service, expect=1)
    assert "restore it from version control, or delete it" in result.stderr


def test_only_if_generated_skips_a_directory_without_a_manifest(tmp_path: Path) -> None:
    write_spec(tmp_path, SPEC)
    result = generate(tmp_path, "--only-if-generated")
    assert "skipped" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["service.yaml"]


def test_only_if_generated_regenerates_a_generated_service(service: Path) -> None:
    (service / "shop/handlers/get_order.py").unlink()
    generate(service, "--only-if-generated")
    assert (service / "shop/handlers/get_order.py").is_file()


def test_descriptions_with_quotes_and_backslashes_give_valid_stubs(tmp_path: Path) -> None:
    spec = copy.deepcopy(SPEC)
    spec["endpoints"][0]["description"] = 'Say """hi""" to C:\\orders, then "bye".'
    write_spec(tmp_path, spec)
    generate(tmp_path)
    stub = (tmp_path / "shop/handlers/create_order.py").read_text()
    docstring = ast.get_docstring(ast.parse(stub))
    assert docstring is not None
    assert docstring.startswith('POST /v1/orders: Say """hi""" to C:\\orders, then "bye".')
    _assert_ruff_clean(tmp_path)
