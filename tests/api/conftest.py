"""Fixtures for the API's contract tests: keys, clients, and the marker of the schema fuzz."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "schema: the API fuzzed from its OpenAPI schema (tests/api/test_schema_fuzz.py); "
        "deselect with -m 'not schema'",
    )


@pytest.fixture
def api_key(db) -> str:
    _, key = ApiKey.issue("api-contract")
    return key


@pytest.fixture
def api(api_key) -> APIClient:
    return APIClient(HTTP_X_API_KEY=api_key)
