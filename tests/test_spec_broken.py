"""Every broken spec under tests/specs/broken/ gets a located problem with a hint, never a traceback.

The table is the specification: file -> where the problem is reported, what the message says,
what the hint suggests, and the exit code of `shoestring validate`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from shoestring.cli import main
from shoestring.spec import load_spec

BROKEN = Path(__file__).parent / "specs" / "broken"

# file: (line, col, message fragment, hint fragment, exit code)
EXPECTED: dict[str, tuple[int, int, str, str, int]] = {
    "unknown_top_key.yaml": (3, 1, "unknown key 'endpionts'", "did you mean 'endpoints'?", 1),
    "unknown_endpoint_key.yaml": (7, 5, "unknown key 'scope' in endpoint 'create_order'",
                                  "did you mean 'scopes'?", 1),
    "undefined_rate_limit.yaml": (8, 17, ("endpoint 'create_order' uses rate limit "
                                  "'per_clinet_60m' which is not defined"),
                                  "did you mean 'per_client_60m'?", 1),
    "undefined_rate_limit_none_defined.yaml": (
        4, 70, "uses rate limit 'strict' which is not defined",
        "add it under rate_limits: {strict: {limit: 60, per: minute, key: client}}", 1),
    "undefined_retry_policy.yaml": (4, 68, "uses retry policy 'defualt' which is not defined",
                                    "did you mean 'default'?", 1),
    "undefined_from_peer.yaml": (6, 11, "from peer 'paymnets' which is not defined",
                                 "did you mean 'payments'?", 1),
    "undefined_to_peer.yaml": (5, 20, "sent to peer 'shiping' which is not defined",
                               "did you mean 'shipping'?", 1),
    "version_string.yaml": (5, 14, "version must be a whole number, not the text '1'",
                            "remove the quotes", 1),
    "version_zero.yaml": (4, 42, "version must be at least 1, not 0", "versions start at 1", 1),
    "version_float.yaml": (4, 42, "version must be a whole number, not 1.5",
                           "write a whole number", 1),
    "version_bool.yaml": (4, 42, "version must be a whole number, not true",
                          "write a whole number", 1),
    "version_key_negative.yaml": (6, 7, "has version '-1', not a positive whole number",
                                  "positive whole number", 1),
    "version_key_quoted.yaml": (6, 7, "version '1' is written as text", "without quotes", 1),
    "path_without_version.yaml": (6, 11, "path '/orders' must start with a version segment",
                                  "/v1/orders/{order_id}", 1),
    "path_collision.yaml": (10, 11, ("endpoint 'read_order' has the same route as endpoint "
                            "'get_order'"), "differ only in parameter names", 1),
    "path_param_undeclared.yaml": (6, 11, "path parameter 'order_id' is not a request field",
                                   "add `order_id: str`", 1),
    "path_param_optional.yaml": (8, 7, "path parameter 'order_id' is declared optional",
                                 "remove the '?'", 1),
    "method_lowercase.yaml": (5, 13, "method must be one of GET, POST, PUT, PATCH, DELETE",
                              "did you mean 'GET'?", 1),
    "method_unknown.yaml": (5, 13, "not the text 'FETCH'", "", 1),
    "get_with_nested_request.yaml": (9, 7, "request field 'filter' comes from the query string",
                                     "use POST", 1),
    "delete_with_list_request.yaml": (8, 7, "is a DELETE, so request field 'ids'", "flatten", 1),
    "duplicate_key.yaml": (5, 3, "duplicate key 'name' (first defined at line 3)",
                           "remove one of them", 1),
    "duplicate_endpoint_name.yaml": (5, 12, "endpoint name 'create_order' is already used",
                                     "its own name", 1),
    "duplicate_subscription.yaml": (5, 42, "'payment.captured' version 1 is subscribed to twice",
                                    "once", 1),
    "handler_collision.yaml": (6, 15, ("needs handlers/on_payment_captured_v1.py, already used by "
                               "the endpoint"), "rename the endpoint", 1),
    "subscription_handler_collision.yaml": (5, 15, "already used by the subscription at line 4",
                                            "rename one of them", 1),
    "service_name_stdlib.yaml": (3, 9, "package name 'json', which would shadow the module",
                                 "rename the service", 1),
    "service_name_dependency.yaml": (3, 9, "package name 'flask'", "rename the service", 1),
    "service_name_keyword.yaml": (3, 9, "package name 'class', a Python keyword",
                                  "rename the service", 1),
    "service_package_stdlib.yaml": (4, 12, "package 'logging' would shadow the module 'logging'",
                                    "'logging_service'", 1),
    "service_package_invalid.yaml": (4, 12, "package 'Orders-Pkg' is not valid",
                                     "lowercase Python identifier", 1),
    "service_name_invalid.yaml": (3, 9, "name '2fast' is not valid", "start with a letter", 1),
    "endpoint_name_invalid.yaml": (4, 11, "name 'create-order' is not valid",
                                   "Python identifier", 1),
    "endpoint_name_keyword.yaml": (4, 11, "endpoint name 'import' cannot be a Python module name",
                                   "rename it", 1),
    "field_name_invalid.yaml": (8, 7, "field name 'customer-id' is not an identifier",
                                "'customer_id'", 1),
    "field_type_unknown.yaml": (8, 21, "unknown type 'integer'", "did you mean 'int'?", 1),
    "field_type_misspelt.yaml": (9, 22, "unknown type 'datetme'", "did you mean 'datetime'?", 1),
    "field_enum_empty.yaml": (8, 15, "enum[...] needs values", "enum[pending, paid]", 1),
    "field_list_two_items.yaml": (8, 13, "exactly one item, not 2 items", "enum[a, b]", 1),
    "field_list_optional_item.yaml": (8, 13, "list items cannot be optional", "list[str]?", 1),
    "field_without_type.yaml": (8, 12, "field 'note' has no type", "compact type", 1),
    "full_form_invalid_schema.yaml": (10, 17, "'strin' is not a JSON Schema type",
                                      "did you mean 'string'?", 1),
    "full_form_keyword_typo.yaml": (9, 32, "'maxLenght' is not a JSON Schema keyword",
                                    "did you mean 'maxLength'?", 1),
    "full_form_ref.yaml": (9, 18, "'$ref' is not supported", "inline the schema", 1),
    "full_form_no_example.yaml": (9, 9, "no example value satisfies the schema of field 'code'",
                                  "add `examples:", 1),
    "request_not_a_mapping.yaml": (7, 14, "fields must be a mapping", "name: type", 1),
    "scopes_not_a_list.yaml": (7, 13, "scopes must be a list", "[orders:write]", 1),
    "list_where_map.yaml": (4, 3, "'rate_limits' must be a mapping, not a list",
                            "not a list of '- ' items", 1),
    "missing_path.yaml": (4, 5, "endpoint 'create_order' is missing 'path'", "path: /v1/", 1),
    "missing_format_version.yaml": (1, 1, "missing 'shoestring'", "shoestring: 1", 1),
    "wrong_format_version.yaml": (1, 13, "'shoestring' must be 1, not 2", "spec format 1", 1),
    "status_204_with_body.yaml": (7, 13, "answers 204 No Content but declares response fields",
                                  "remove the response fields", 1),
    "rate_limit_bad_per.yaml": (4, 36, "per must be one of second, minute, hour, day",
                                "did you mean 'minute'?", 1),
    "retry_max_below_base.yaml": (4, 59, "waits at most 10s, less than its first wait of 60s",
                                  "at least 60", 1),
    "peer_env_duplicate.yaml": (5, 23, "both read their URL from PEER_URL", "SHIPPING_URL", 1),
    "peer_env_reserved.yaml": (4, 23, "reads its URL from DATABASE_URL", "PAYMENTS_URL", 1),
    "local_job_field_type.yaml": (16, 7, ("the subscription to 'receipt.requested' v1 from "
                                  "mailer itself reads what mailer publishes: field 'order_id' "
                                  "is read as integer but published as string (uuid)"),
                                  "version 1 declares it at line 9", 1),
    "local_job_date_for_datetime.yaml": (16, 7, ("field 'due' is read as string (date) but "
                                         "published as string (date-time)"),
                                         "declare it as the sender does", 1),
    "local_job_extra_required_field.yaml": (12, 31, ("v1 from mailer itself reads what mailer "
                                            "publishes: it requires field 'email', which is not "
                                            "published"), "declare it optional", 1),
    "empty.yaml": (1, 1, "the spec is empty", "shoestring: 1", 1),
    "only_comments.yaml": (1, 1, "the spec is empty", "shoestring: 1", 1),
    "root_list.yaml": (1, 1, "must be a mapping of keys", "shoestring: 1", 1),
    "root_scalar.yaml": (1, 1, "not the text 'just some text'", "shoestring: 1", 1),
    "several_documents.yaml": (3, 1, "more than one YAML document", "second '---'", 1),
    "tabs.yaml": (3, 1, "YAML syntax error", "indent with spaces", 2),
    "syntax_unclosed.yaml": (3, 10, "YAML syntax error", "fix the YAML syntax", 2),
    "flow_enum_unquoted.yaml": (7, 28, "YAML syntax error", 'quote compact types', 2),
    "undefined_alias.yaml": (2, 10, "alias '*svc' refers to no anchor", "define '&svc'", 2),
    "billion_laughs.yaml": (8, 6, "more than 100000 values", "billion laughs", 2),
    "deep_nesting.yaml": (2, 58, "nests deeper than 50 levels", "right file", 2),
    "not_utf8.yaml": (3, 12, "not UTF-8", "save the spec as UTF-8", 2),
    "binary.yaml": (3, 11, "control character (U+0000)", "plain text", 2),
}


def test_every_broken_spec_has_an_expectation() -> None:
    on_disk = {path.name for path in BROKEN.iterdir()}
    assert on_disk == set(EXPECTED)
    assert len(EXPECTED) >= 25


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_spec_is_reported_where_it_breaks(name: str) -> None:
    line, col, message, hint, exit_code = EXPECTED[name]
    path = BROKEN / name
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == exit_code, result.output
    wanted = f"{path}:{line}:{col}: "
    lines = [text for text in result.output.splitlines() if text.startswith(wanted)]
    assert any(message in text for text in lines), f"{wanted}{message!r} not in:\n{result.output}"
    assert any(hint in text.split(" — ", 1)[-1] for text in lines if message in text), \
        f"hint {hint!r} missing in:\n{result.output}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_spec_has_no_model_and_each_error_a_hint(name: str) -> None:
    result = load_spec(BROKEN / name)
    assert result.spec is None
    assert result.errors
    for problem in result.errors:
        assert problem.hint, problem
        assert problem.line >= 1 and problem.col >= 1
