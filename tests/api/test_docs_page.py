"""The API's docs page works offline (everything it loads is our own static files), and the
OpenAPI schema validates and describes every answer."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture
def static_client(settings) -> Client:
    # How `manage.py up` and local settings serve static files: WhiteNoise, from the installed
    # apps' static folders. A new client loads the middleware with this setting.
    settings.WHITENOISE_USE_FINDERS = True
    return Client()


def test_the_docs_page_loads_nothing_from_another_host(static_client):
    response = static_client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert not re.search(r"https?://", page), re.findall(r"https?://[^\s\"']+", page)
    references = REFERENCE.findall(page)
    assert references and all(ref.startswith("/static/") for ref in references), references
    assert '"/api/v1/schema"' in page
    for reference in references:
        served = static_client.get(reference)
        assert served.status_code == 200, reference
        assert b"".join(served.streaming_content), reference


def test_swagger_ui_is_the_one_shipped_with_the_sidecar(static_client):
    page = static_client.get("/api/v1/docs").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert '"validatorUrl": null' in page  # no badge fetched from validator.swagger.io


def test_the_schema_validates_without_warnings(tmp_path):
    # Raises on any warning of drf-spectacular, and on a schema OpenAPI 3 does not accept.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "api.yaml")
    assert (tmp_path / "api.yaml").stat().st_size > 0


def test_the_schema_names_the_key_and_documents_the_errors():
    schema = Client().get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "A key from `python manage.py create_api_key NAME` or the admin.",
    }  # fmt: skip
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    paths = schema["paths"]
    expected = {
        ("/api/v1/messages", "get"): "200 400 401 403 404 429 503",
        ("/api/v1/messages", "post"): "200 202 400 401 403 413 415 422 429 503",
        ("/api/v1/messages/{id}", "get"): "200 401 403 404 429 503",
        ("/api/v1/messages/{id}/rerun", "post"): "202 401 403 404 409 429 503",
        ("/api/v1/messages/{id}/feedback", "post"): "201 400 401 403 404 409 413 429 503",
        ("/api/v1/validate", "post"): "200 400 401 403 413 415 429 503",
        ("/api/v1/jobs", "post"): "202 400 401 403 413 415 429 503",
        ("/api/v1/jobs", "get"): "200 401 403 404 429 503",
        ("/api/v1/jobs/{id}", "get"): "200 401 403 404 429 503",
        ("/api/v1/jobs/{id}", "delete"): "200 401 403 404 409 429 503",
        ("/api/v1/jobs/{id}/results", "get"): "200 401 403 404 429 503",
    }
    for (path, method), listed in expected.items():
        statuses = set(listed.split())
        operation = paths[path][method]
        assert set(operation["responses"]) == statuses, (path, method)
        assert operation["security"] == [{"ApiKey": []}, {"AdminSession": []}]
        for status in statuses - {"200", "201", "202", "422"}:
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (path, status)
    refused = paths["/api/v1/messages"]["post"]["responses"]["422"]["content"]
    assert refused["application/json"]["schema"] == {"$ref": "#/components/schemas/Refused"}
    retry = paths["/api/v1/messages"]["post"]["responses"]["503"]["headers"]
    assert "Retry-After" in retry
