"""The admin's session as a way into the API: staff users only, every scope, CSRF on unsafe
methods, and declared in the schema beside the key."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from apps.accounts.authentication import HEADER

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("dana", password="pw-dana-1", is_staff=True)


def test_a_signed_in_staff_user_reads_and_writes_without_a_key(staff):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get("/api/v1/messages").status_code == 200
    assert client.get("/api/v1/jobs").status_code == 200
    # An unsafe method without the CSRF token is refused: a page elsewhere cannot post for them.
    response = client.post("/api/v1/jobs", {"emails": ["a@example.test"]}, format="json")
    assert response.status_code == 403
    assert "csrf" in response.json()["error"]["message"].lower()
    token = get_random_string(32)  # the cookie's secret, as a page's form would carry it
    client.cookies["csrftoken"] = token
    response = client.post(
        "/api/v1/jobs", {"emails": ["a@example.test"]}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 202, response.content


def test_a_signed_in_user_who_is_not_staff_needs_a_key(django_user_model):
    user = django_user_model.objects.create_user("eve", password="pw-eve-1")
    client = Client()
    client.force_login(user)
    response = client.get("/api/v1/messages")
    assert response.status_code == 401
    assert HEADER in response.json()["error"]["message"]


def test_the_schema_declares_the_key_and_the_session():
    schema = APIClient().get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header",
                                 "name": HEADER}  # fmt: skip
    assert schemes["AdminSession"]["in"] == "cookie"
    operation = schema["paths"]["/api/v1/jobs"]["post"]
    assert {"ApiKey": []} in operation["security"] and {"AdminSession": []} in operation["security"]
