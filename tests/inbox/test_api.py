"""The messages API on real PostgreSQL: keys, ingest in both forms, errors, reading, re-running."""

from __future__ import annotations

import json
import random

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.inbox.models import Message, MessageStatus
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db


@pytest.fixture
def client():
    _, key = ApiKey.issue("tests")
    return APIClient(HTTP_X_API_KEY=key)


def post_raw(client, raw: bytes):
    return client.post("/api/v1/messages", raw, content_type="message/rfc822")


def test_every_call_needs_a_valid_key():
    anonymous = APIClient()
    for method, url in (("post", "/api/v1/messages"), ("get", "/api/v1/messages"),
                        ("get", "/api/v1/messages/1")):  # fmt: skip
        response = getattr(anonymous, method)(url)
        assert response.status_code == 401
        assert "X-API-Key" in response.json()["error"]["message"]
    wrong = APIClient(HTTP_X_API_KEY="msk_not-a-key")
    assert wrong.get("/api/v1/messages").status_code == 401


def test_keys_are_stored_hashed_and_revocable(capsys):
    call_command("create_api_key", "crm")
    key = capsys.readouterr().out.strip()
    stored = ApiKey.objects.get(name="crm")
    assert key.startswith("msk_") and key not in (stored.key_hash, stored.key_start)
    assert APIClient(HTTP_X_API_KEY=key).get("/api/v1/messages").status_code == 200
    from apps.accounts import authentication

    ApiKey.objects.filter(id=stored.id).update(revoked_at="2026-01-01T00:00:00Z")
    authentication._seen.clear()
    assert APIClient(HTTP_X_API_KEY=key).get("/api/v1/messages").status_code == 401


def test_raw_message_is_accepted_once(client):
    raw = raw_message("Please refund my order.", message_id="<once@normal.test>")
    first = post_raw(client, raw)
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "queued" and body["created"] is True
    assert body["url"].endswith(f"/api/v1/messages/{body['id']}")
    again = post_raw(client, raw)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert Message.objects.filter(message_id_header="<once@normal.test>").count() == 1
    stored = Message.objects.get(id=body["id"])
    assert bytes(stored.raw) == raw and stored.source == "api"


def test_json_forms(client):
    raw = raw_message("Order 1234 never arrived.", message_id="<json-raw@normal.test>")
    response = client.post("/api/v1/messages", {"raw": raw.decode()}, format="json")
    assert response.status_code == 202
    fields = {"from": "Dana <dana@example.com>", "to": ["support@example.com"],
              "subject": "Login fails", "text": "I cannot log in since Monday.",
              "message_id": "<fields@example.com>"}  # fmt: skip
    response = client.post("/api/v1/messages", fields, format="json")
    assert response.status_code == 202
    stored = Message.objects.get(id=response.json()["id"])
    assert stored.from_address == "dana@example.com" and stored.subject == "Login fails"
    assert client.post("/api/v1/messages", fields, format="json").status_code == 200


def test_the_same_json_fields_are_the_same_message(client):
    fields = {"from": "Dana <dana@example.com>", "to": ["support@example.com"],
              "subject": "Refund", "text": "Please refund order 77."}  # fmt: skip
    first = client.post("/api/v1/messages", fields, format="json")
    assert first.status_code == 202
    again = client.post("/api/v1/messages", fields, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    stored = Message.objects.get(id=first.json()["id"])
    assert stored.message_id_header.endswith("@json.mailscore>")
    other = client.post("/api/v1/messages", {**fields, "text": "Order 78 too."}, format="json")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert Message.objects.count() == 2


def test_raw_bytes_in_json_and_as_rfc822_are_the_same_message(client):
    raw = b"From: a@example.com\nSubject: no id\n\nThe same bytes twice.\n"
    first = client.post("/api/v1/messages", {"raw": raw.decode()}, format="json")
    assert first.status_code == 202
    again = post_raw(client, raw)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "body, content_type",
    [
        (random.Random(7).randbytes(4096), "message/rfc822"),
        (b"just some words, no headers", "message/rfc822"),
        (json.dumps({"raw": "garbage, not mail"}).encode(), "application/json"),
    ],
    ids=["random-binary", "plain-words", "json-raw-garbage"],
)
def test_input_that_is_not_mail_gets_a_failed_row_and_422(client, body, content_type):
    response = client.post("/api/v1/messages", body, content_type=content_type)
    assert response.status_code == 422
    answer = response.json()
    assert set(answer) == {"id", "url", "status", "created", "error"}
    assert answer["status"] == "failed" and answer["created"] is True
    said = answer["error"]["message"]
    assert answer["error"]["code"] == "not_rfc822"
    assert "not an RFC 822 message" in said and "message/rfc822" in said
    row = Message.objects.get(id=answer["id"])
    assert row.status == MessageStatus.FAILED and row.failed_step == "ingest"
    assert row.failure_reason in said and row.source == "api"
    stored = body if content_type == "message/rfc822" else b"garbage, not mail"
    assert bytes(row.raw) == stored and row.size == len(stored)

    again = client.post("/api/v1/messages", body, content_type=content_type)
    assert again.status_code == 422
    assert again.json()["id"] == answer["id"] and again.json()["created"] is False
    assert Message.objects.count() == 1
    detail = client.get(f"/api/v1/messages/{answer['id']}").json()
    assert detail["failed_step"] == "ingest" and detail["failure_reason"] == row.failure_reason

    rerun = client.post(f"/api/v1/messages/{answer['id']}/rerun")
    assert rerun.status_code == 409 and "refused at ingest" in rerun.json()["error"]["message"]
    assert Message.objects.get(id=answer["id"]).status == MessageStatus.FAILED


@pytest.mark.parametrize(
    "body, content_type, expected",
    [
        (b"", "message/rfc822", "empty"),
        (b"  \r\n", "message/rfc822", "empty"),
        (json.dumps({"raw": ""}).encode(), "application/json", "empty"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be an object"),
        (
            json.dumps({"from": "a@example.com", "subject": "x"}).encode(),
            "application/json",
            '"text" is required',
        ),
        (json.dumps({"raw": "x", "extra": 1}).encode(), "application/json", "come alone"),
        (json.dumps({"sender": "a@example.com"}).encode(), "application/json", "Unknown fields"),
        (
            json.dumps({"from": "a@example.com", "subject": "x", "text": "y", "to": 5}).encode(),
            "application/json",
            '"to" must be a string or a list of strings',
        ),
        (
            json.dumps({"from": "a@example.com", "subject": "x", "text": "y", "date": 5}).encode(),
            "application/json",
            '"date" must be a string',
        ),
        (
            json.dumps(
                {"from": "a@example.com", "subject": "x\nBcc: b@example.com", "text": "y"}
            ).encode(),  # fmt: skip
            "application/json",
            '"subject" cannot contain a line break',
        ),
    ],
)
def test_malformed_input_gets_400_saying_what_is_accepted(client, body, content_type, expected):
    response = client.post("/api/v1/messages", body, content_type=content_type)
    assert response.status_code == 400
    said = response.json()["error"]["message"]
    assert expected in said and "message/rfc822" in said
    assert Message.objects.count() == 0


def test_other_content_types_get_415(client):
    response = client.post(
        "/api/v1/messages", b"a=b", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415 and "message/rfc822" in response.json()["error"]["message"]


def test_oversize_gets_413(client, settings):
    settings.MAILSCORE_MAX_MESSAGE_BYTES = 1000
    big = raw_message("x" * 2000)
    response = post_raw(client, big)
    assert response.status_code == 413 and "1,000 bytes" in response.json()["error"]["message"]
    response = client.post("/api/v1/messages", {"raw": big.decode()}, format="json")
    assert response.status_code == 413
    assert Message.objects.count() == 0


def test_list_filter_detail_and_rerun(client):
    ids = [post_raw(client, raw_message(f"body {i}")).json()["id"] for i in range(3)]
    Message.objects.filter(id=ids[0]).update(status=MessageStatus.FAILED, failed_step="classify",
                                             failure_reason="boom")  # fmt: skip
    listing = client.get("/api/v1/messages", {"status": "failed"}).json()
    assert [m["id"] for m in listing["results"]] == [ids[0]]
    assert listing["results"][0]["failed_step"] == "classify"
    detail = client.get(f"/api/v1/messages/{ids[0]}").json()
    assert detail["failure_reason"] == "boom" and "raw" not in detail
    assert client.get("/api/v1/messages/999999999").status_code == 404

    response = client.post(f"/api/v1/messages/{ids[0]}/rerun")
    assert response.status_code == 202
    assert Message.objects.get(id=ids[0]).status == MessageStatus.QUEUED
    busy = client.post(f"/api/v1/messages/{ids[1]}/rerun")
    assert busy.status_code == 409 and "queued" in busy.json()["error"]["message"]


def test_schema_and_health_are_served():
    anonymous = APIClient()
    schema = anonymous.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/messages/{id}/rerun" in schema.json()["paths"]
    health = anonymous.get("/health").json()
    assert health["status"] == "ok" and health["version"] and health["timestamp"]
    checks = health["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "database": "ok", "redis": "ok", "queue": "ok", "models": "unknown"
    }  # fmt: skip
    assert all(check["latency_ms"] >= 0 for check in checks.values())
