"""Inputs that once made the API answer 500, found by fuzzing it from its schema: each now gets a
400 that names the field and says what is accepted."""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest

from apps.inbox.models import Message, MessageStatus
from tests.pipeline.conftest import raw_message
from tests.review.conftest import raw_message as review_message
from tests.review.conftest import store

pytestmark = pytest.mark.django_db

FIELDS = {"from": "Dana <dana@example.com>", "to": ["support@example.com"],
          "subject": "Login fails", "text": "I cannot log in since Monday.",
          "message_id": "<line-breaks@example.com>", "date": "Tue, 01 Dec 2026 09:30:00 +0000"}  # fmt: skip


@pytest.mark.parametrize(
    "moment",
    [
        "2026-01-01T00:00:00+16:00",  # PostgreSQL takes offsets up to 15:59
        "2026-01-01T00:00:00-16:00",
        "2026-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00+01:00",  # before the first day of the calendar in UTC
        "9999-12-31T23:59:59-01:00",  # after its last
    ],
)
@pytest.mark.parametrize("name", ["received_after", "received_before"])
def test_a_date_filter_postgresql_cannot_take_is_a_400(api, name, moment):
    response = api.get("/api/v1/messages", {name: moment})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == [name]
    assert "ISO 8601" in error["message"] and "UTC offset under 16 hours" in error["message"]


def test_a_date_filter_with_any_offset_under_16_hours_means_the_same_instant(api):
    created = api.post("/api/v1/messages", raw_message("Hello"), content_type="message/rfc822")
    received_at = Message.objects.get(id=created.json()["id"]).received_at

    def ids_received(name: str, moment) -> list[int]:
        response = api.get("/api/v1/messages", {name: moment.isoformat()})
        assert response.status_code == 200, response.content
        return [message["id"] for message in response.json()["results"]]

    far_east = timezone(timedelta(hours=15, minutes=59))
    far_west = timezone(-timedelta(hours=15, minutes=59))
    before, after = received_at - timedelta(minutes=1), received_at + timedelta(minutes=1)
    assert ids_received("received_after", before.astimezone(far_east)) == [created.json()["id"]]
    assert ids_received("received_after", after.astimezone(far_west)) == []
    assert ids_received("received_before", after.astimezone(far_west)) == [created.json()["id"]]


# A trailing line break ended the message's header block early (a 500 at ingest); one inside
# the value would start a header of the sender's choosing.
@pytest.mark.parametrize("after", ["", "Bcc: x@evil.test"], ids=["trailing", "inside"])
@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
@pytest.mark.parametrize("name", ["from", "to", "subject", "message_id", "date"])
def test_a_line_break_in_a_header_field_is_a_400_naming_it(api, name, line_break, after):
    value = f"{FIELDS[name] if name != 'to' else 'support@example.com'}{line_break}{after}"
    body = {**FIELDS, name: [value] if name == "to" else value}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "line_break" and list(error["fields"]) == [name]
    assert f'"{name}" cannot contain a line break' in error["message"]
    assert not Message.objects.exists()


def test_a_to_given_as_one_string_is_checked_too(api):
    response = api.post("/api/v1/messages", {**FIELDS, "to": "a@example.com\r\nBcc: b@evil.test"},
                        format="json")  # fmt: skip
    assert response.status_code == 400 and list(response.json()["error"]["fields"]) == ["to"]


def test_line_breaks_in_the_text_are_the_body_and_fine(api):
    response = api.post("/api/v1/messages", {**FIELDS, "text": "line one\r\nline two\rthree\n"},
                        format="json")  # fmt: skip
    assert response.status_code == 202, response.content


# PostgreSQL stores no NUL in text, and UTF-8 has no unpaired surrogate (JSON spells one
# "\ud800"): both made the insert fail with a 500.
@pytest.mark.parametrize("name", ["from", "subject", "message_id", "date"])
def test_a_nul_in_a_header_field_is_a_400_naming_it(api, name):
    body = {**FIELDS, name: FIELDS[name][:3] + "\x00" + FIELDS[name][3:]}
    response = api.post("/api/v1/messages", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_character" and list(error["fields"]) == [name]
    assert "NUL" in error["message"]


@pytest.mark.parametrize("name", ["from", "subject", "text", "raw"])
def test_an_unpaired_surrogate_is_a_400_naming_the_field(api, name):
    # json.dumps writes no lone surrogate: its escape is spliced in at the value's start.
    body = {"raw": "From: a@example.com\n\nbody"} if name == "raw" else FIELDS
    text = json.dumps(body).replace(f'"{name}": "', f'"{name}": "\\ud800', 1)
    assert "\\ud800" in text
    response = api.post("/api/v1/messages", text, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == [name] and "unpaired surrogate" in error["message"]


def test_a_nul_in_a_raw_messages_header_is_dropped_not_a_500(api):
    raw = b"From: Dana\x00 <dana@example.com>\nSubject: Log\x00in fails\nMessage-ID: <n\x00ul@x>\n\nHi\n"
    response = api.post("/api/v1/messages", raw, content_type="message/rfc822")
    assert response.status_code == 202, response.content
    stored = Message.objects.get(id=response.json()["id"])
    assert stored.subject == "Login fails" and stored.from_address == "dana@example.com"
    assert stored.message_id_header == "<nul@x>" and bytes(stored.raw) == raw


@pytest.mark.usefixtures("team_configuration")
@pytest.mark.parametrize("value", ["\\u0000", "\\ud800"], ids=["NUL", "surrogate"])
def test_feedback_text_that_cannot_be_stored_is_a_400(api, value):
    message = store(review_message("Where is my refund?"), status=MessageStatus.NEEDS_REVIEW)
    response = api.post(f"/api/v1/messages/{message.id}/feedback",
                        f'{{"draft": "Hello{value}"}}', content_type="application/json")  # fmt: skip
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["fields"]) == ["draft"] and "which is not text" in error["message"]
