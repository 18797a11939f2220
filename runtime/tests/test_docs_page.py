"""GET /docs: the API page for people, rendered by the service from its OpenAPI document.

Self-contained (no script, nothing from another origin), public like /openapi.json, and it
shows every operation with its scopes, fields and errors; all text is escaped.
"""

from __future__ import annotations

import copy
import json
import re

from shoestring_runtime.docs import CONTENT_SECURITY_POLICY, render
from shoestring_runtime.schemas import endpoints

from .shop import SERVICE

DOCUMENT = json.loads((SERVICE.generated_dir / "openapi.json").read_text(encoding="utf-8"))
ENDPOINTS = endpoints(SERVICE.model)


def test_the_page_is_public_html_with_a_strict_content_security_policy(client):
    response = client.get("/docs")  # no token
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_loads_nothing_from_anywhere(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page


def test_the_page_shows_every_operation_with_its_scopes_fields_and_errors(client):
    page = client.get("/docs").get_data(as_text=True)
    for endpoint in ENDPOINTS:
        assert f"<code>{endpoint.path}</code>" in page, endpoint.name
        for scope in endpoint.scopes:
            assert f"<code>{scope}</code>" in page
        for field in endpoint.request.get("properties", {}):
            assert f"<code>{field}</code>" in page, (endpoint.name, field)
        for field in endpoint.response.get("properties", {}):
            assert f"<code>{field}</code>" in page, (endpoint.name, field)
        if endpoint.idempotent:
            assert "<code>Idempotency-Key</code>" in page
        if endpoint.rate_limit:
            assert "<code>RateLimit</code>" in page and "Retry-After" in page
    for status in ("400", "401", "403", "413", "415", "422", "500"):
        assert f"<td>{status}</td>" in page
    assert "application/problem+json" in page


def test_everything_from_the_document_is_escaped():
    document = copy.deepcopy(DOCUMENT)
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    document["info"]["title"] = hostile
    document["info"]["description"] = f"`{hostile}` and {hostile}"
    document["paths"]["/<b>odd</b>"] = {
        "post": {
            "operationId": '"><script>',
            "summary": hostile,
            "description": hostile,
            "parameters": [
                {"name": hostile, "in": "query", "schema": {"type": "string", "pattern": hostile}}
            ],
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {hostile: {"enum": [hostile], "description": hostile}},
                        }
                    }
                }
            },
            "responses": {"200": {"description": hostile}},
            "security": [{"bearer": [hostile]}],
        }
    }
    page = render(document)
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page
    assert 'id="op---' in page  # the anchor keeps only letters, digits, - and _


def test_a_schema_that_refers_to_itself_does_not_hang_the_page():
    document = copy.deepcopy(DOCUMENT)
    document["components"]["schemas"]["Loop"] = {"$ref": "#/components/schemas/Loop"}
    document["paths"]["/loop"] = {
        "get": {
            "operationId": "loop",
            "responses": {
                "200": {
                    "description": "loops",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Loop"}}
                    },
                }
            },
        }
    }
    assert "<code>/loop</code>" in render(document)
