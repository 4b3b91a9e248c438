"""Every API error, triggered for real, answers one JSON shape:
{"error": {"code", "message", "fields"?}}; non-API paths keep Django's pages."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.core.api import exception_handler
from apps.inbox.models import Message, MessageStatus
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db


def error_of(response, status: int, code: str) -> dict:
    """The error in a response, after checking its status, its shape and its code."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    error = body["error"]
    assert set(error) <= {"code", "message", "fields", "accepted"}, error
    assert error["code"] == code and error["message"], error
    assert "Traceback" not in response.content.decode()
    return error


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_an_unknown_route_under_api_is_a_json_404(api, method):
    error = error_of(getattr(api, method)("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in error["message"] and "/api/v1/schema" in error["message"]
    # No key at all: still the API's 404, and no CSRF page for a POST.
    error_of(getattr(Client(), method)("/api/v2/messages"), 404, "not_found")


@pytest.mark.parametrize("path", ["/api/v1/messages/", "/api/v1/messages/1/", "/api/v1/schema/"])
def test_a_trailing_slash_is_a_404_naming_the_route_without_it(api, path):
    error = error_of(api.get(path), 404, "not_found")
    assert f"use {path.rstrip('/')}" in error["message"], error


def test_paths_outside_the_api_keep_djangos_404_page():
    response = Client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    admin = Client().get("/admin/no-such-page/")
    assert admin.status_code in (302, 404) and not admin["Content-Type"].startswith("application")


def test_an_unknown_message_is_a_404(api):
    error_of(api.get("/api/v1/messages/999999999"), 404, "not_found")
    error_of(api.get("/api/v1/messages/not-a-number"), 404, "not_found")
    error_of(api.get("/api/v1/messages", {"cursor": "not-a-cursor"}), 404, "not_found")


def test_a_method_a_route_does_not_take_is_a_405(api):
    error = error_of(api.delete("/api/v1/messages"), 405, "method_not_allowed")
    assert "DELETE" in error["message"]
    error_of(api.put("/api/v1/messages/1/rerun"), 405, "method_not_allowed")


def test_no_key_or_a_wrong_key_is_a_401_saying_how_to_authenticate():
    response = APIClient().get("/api/v1/messages")
    error = error_of(response, 401, "authentication_failed")
    assert "X-API-Key" in error["message"] and response["WWW-Authenticate"] == "X-API-Key"
    wrong = APIClient(HTTP_X_API_KEY="msk_not-a-key").post("/api/v1/messages", b"x",
                                                            content_type="message/rfc822")  # fmt: skip
    assert "not a valid" in error_of(wrong, 401, "authentication_failed")["message"]


def test_a_body_over_the_message_limit_is_a_413(api, settings):
    settings.MAILSCORE_MAX_MESSAGE_BYTES = 1000
    big = raw_message("x" * 2000)
    error = error_of(api.post("/api/v1/messages", big, content_type="message/rfc822"), 413,
                     "too_large")  # fmt: skip
    assert "1,000 bytes" in error["message"]
    as_json = api.post("/api/v1/messages", {"raw": big.decode()}, format="json")
    assert "1,000 bytes" in error_of(as_json, 413, "too_large")["message"]
    assert not Message.objects.exists()


def test_a_body_over_djangos_ceiling_is_a_413_not_a_500(api, settings):
    # Feedback reads its body whole; Django refuses past DATA_UPLOAD_MAX_MEMORY_SIZE.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"draft": "x" * 5000})
    response = api.post("/api/v1/messages/1/feedback", body, content_type="application/json")
    error_of(response, 413, "too_large")


def test_another_content_type_is_a_415_saying_what_is_accepted(api):
    response = api.post("/api/v1/messages", b"a=b",
                        content_type="application/x-www-form-urlencoded")  # fmt: skip
    error = error_of(response, 415, "unsupported_media_type")
    assert "application/x-www-form-urlencoded" in error["message"]
    assert "message/rfc822" in error["message"]


def test_invalid_json_is_a_400(api):
    response = api.post("/api/v1/messages", b"{not json", content_type="application/json")
    assert "not valid JSON" in error_of(response, 400, "invalid_json")["message"]
    feedback = api.post("/api/v1/messages/1/feedback", b"{not json",
                        content_type="application/json")  # fmt: skip
    assert "not valid JSON" in error_of(feedback, 400, "invalid_json")["message"]


def test_a_field_error_names_the_field(api):
    response = api.post("/api/v1/messages", {"from": "a@example.com", "subject": "x"},
                        format="json")  # fmt: skip
    error = error_of(response, 400, "required")
    assert list(error["fields"]) == ["text"] and '"text" is required' in error["message"]
    unknown = api.post("/api/v1/messages", {"sender": "a", "cc": "b"}, format="json")
    error = error_of(unknown, 400, "unknown_field")
    assert sorted(error["fields"]) == ["cc", "sender"]


def test_a_bad_filter_is_a_400_naming_the_filter(api):
    response = api.get("/api/v1/messages", {"status": "lost", "received_after": "yesterday"})
    error = error_of(response, 400, "invalid")
    assert set(error["fields"]) == {"status", "received_after"}
    assert "lost" in " ".join(error["fields"]["status"])
    assert "ISO 8601" in " ".join(error["fields"]["received_after"])


def test_not_mail_is_a_422_that_keeps_the_stored_rows_id(api):
    response = api.post("/api/v1/messages", b"just some words", content_type="message/rfc822")
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"id", "url", "status", "created", "error"}
    assert body["status"] == "failed" and body["url"].endswith(f"/api/v1/messages/{body['id']}")
    error = error_of(response, 422, "not_rfc822")
    assert "not an RFC 822 message" in error["message"]
    assert Message.objects.get(id=body["id"]).failure_reason in error["message"]


def test_a_rerun_the_chain_still_holds_is_a_409(api):
    message_id = api.post("/api/v1/messages", raw_message("Where is my parcel?"),
                          content_type="message/rfc822").json()["id"]  # fmt: skip
    assert Message.objects.get(id=message_id).status == MessageStatus.QUEUED
    error = error_of(api.post(f"/api/v1/messages/{message_id}/rerun"), 409, "not_finished")
    assert "queued" in error["message"]


def test_a_key_without_the_scope_is_a_403_naming_it():
    _, key = ApiKey.issue("reader", scopes="read")
    response = APIClient(HTTP_X_API_KEY=key).post("/api/v1/messages", raw_message("Hi"),
                                                  content_type="message/rfc822")  # fmt: skip
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert re.fullmatch(r"[a-z_]+", error["code"]) and "'write' scope" in error["message"]
    assert error["required_scope"] == "write" and error["key_scopes"] == ["read"]


def test_too_many_requests_is_a_429_with_retry_after(api, settings):
    settings.MAILSCORE_THROTTLE_READ = "2/min"
    for _ in range(2):
        assert api.get("/api/v1/messages").status_code == 200
    response = api.get("/api/v1/messages")
    error = error_of(response, 429, "throttled")
    assert "2 read requests per minute" in error["message"]
    assert 1 <= int(response["Retry-After"]) <= 60


def test_an_unexpected_error_is_a_500_without_a_traceback(caplog):
    try:
        {}["missing"]
    except KeyError as exc:
        response = exception_handler(exc, {"view": None})
    assert response.status_code == 500
    assert response.data == {"error": {"code": "internal_error", "message":
                                       "Internal error; it has been logged. Try again later."}}  # fmt: skip
    assert "Traceback" in caplog.text and "missing" not in json.dumps(response.data)
