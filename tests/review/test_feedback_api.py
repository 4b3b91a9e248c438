"""Feedback from integrations: POST /api/v1/messages/{id}/feedback, and the message's detail
showing the reviewed values and the feedback kept."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.inbox.models import MessageStatus
from apps.review.models import Feedback, ReplyExample
from tests.review.conftest import raw_message, store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("team_configuration")]


@pytest.fixture
def api():
    _, key = ApiKey.issue("feedback-test")
    return APIClient(HTTP_X_API_KEY=key)


def post(api, message_id: int, body) -> tuple[int, dict]:
    response = api.post(f"/api/v1/messages/{message_id}/feedback", body, format="json")
    return response.status_code, response.json()


def test_category_and_priority_are_stored_applied_and_shown(api):
    message = store(raw_message("I was charged twice this month.", subject="Double charge"),
                    category="sales", confidence=0.41, level="P3",
                    status=MessageStatus.NEEDS_REVIEW)  # fmt: skip

    status, body = post(api, message.id, {"category": "billing", "priority": "P2"})

    assert status == 201, body
    assert body["who"] == "API key feedback-test" and body["source"] == "api"
    assert body["model"]["category"] == "sales" and body["model"]["priority"] == "P3"
    assert body["decided"]["category"] == "billing" and body["decided"]["priority"] == "P2"
    assert body["action"] == "category sales -> billing, priority P3 -> P2"
    message.refresh_from_db()
    assert (message.reviewed_category, message.reviewed_priority) == ("billing", "P2")
    # The model's own answer is kept beside the reviewer's.
    assert message.category == "sales" and message.priority == "P3"
    assert message.status == MessageStatus.TRIAGED  # reviewed: no longer waiting for review
    feedback = Feedback.objects.get(message_id=message.id)
    assert feedback.text.startswith("Double charge\nI was charged twice")

    detail = api.get(f"/api/v1/messages/{message.id}").json()
    assert detail["review"]["category"] == "billing" and detail["review"]["priority"] == "P2"
    assert [f["id"] for f in detail["feedback"]] == [body["id"]]


@pytest.mark.parametrize("field", ["category", "priority"])
def test_either_field_alone(api, field):
    message = store(raw_message(), category="support", level="P2")
    value = {"category": "billing", "priority": "P0"}[field]
    status, body = post(api, message.id, {field: value})
    assert status == 201, body
    message.refresh_from_db()
    assert message.effective_category == ("billing" if field == "category" else "support")
    assert message.effective_priority == ("P0" if field == "priority" else "P2")


def test_a_draft_is_kept_as_a_reply_example(api):
    message = store(raw_message("Where is my refund for order 5512?"), category="billing")
    draft = "Hi Alice,\n\nYour refund for order 5512 was sent today.\n\nThe Support Team"
    status, body = post(api, message.id, {"category": "billing", "draft": draft})
    assert status == 201, body
    example = ReplyExample.objects.get(message_id=message.id)
    assert example.reply == draft and example.category == "billing"
    message.refresh_from_db()
    assert message.reviewed_draft == draft and message.draft_approved_at is not None


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"category": "refunds"}, "category", "Unknown category 'refunds'; accepted: incident"),
        ({"priority": "urgent"}, "priority", "accepted: P0, P1, P2, P3"),
        ({"priority": 1}, "priority", '"priority" must be a string'),
        ({"categroy": "billing"}, "categroy", "Unknown field 'categroy'. Accepted fields:"),
        ({}, "body", "Nothing to record"),
        (["billing"], "body", "must be a JSON object"),
        ({"draft": "  "}, "draft", "cannot be empty"),
        ({"done": "yes"}, "done", "must be true or false"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(api, body, field, says):
    message = store(raw_message(), category="support", level="P2")
    status, answer = post(api, message.id, body)
    assert status == 400, answer
    error = answer["error"]
    assert says in error["message"], answer
    # An error about the body as a whole names no field.
    assert error.get("fields", {}) == ({} if field == "body" else {field: [error["message"]]})
    if field == "category":
        assert "billing" in error["accepted"]
    if field == "priority" and "accepted" in error:
        assert error["accepted"] == ["P0", "P1", "P2", "P3"]
    assert not Feedback.objects.filter(message_id=message.id).exists()
    message.refresh_from_db()
    assert not message.reviewed_category and not message.reviewed_priority


def test_invalid_json_and_unknown_message(api):
    message = store(raw_message())
    response = api.post(f"/api/v1/messages/{message.id}/feedback", "{not json",
                        content_type="application/json")  # fmt: skip
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]
    status, _ = post(api, message.id + 1000, {"category": "billing"})
    assert status == 404


def test_a_message_the_chain_still_holds_is_not_reviewed(api):
    message = store(raw_message(), status=MessageStatus.PROCESSING)
    status, body = post(api, message.id, {"category": "billing"})
    assert status == 409 and body["error"]["code"] == "not_finished", body


def test_feedback_needs_a_key(client):
    message = store(raw_message())
    response = client.post(f"/api/v1/messages/{message.id}/feedback", {"category": "billing"},
                           content_type="application/json")  # fmt: skip
    assert response.status_code == 401


def test_done_takes_a_message_out_of_the_queue(api):
    message = store(raw_message(), status=MessageStatus.NEEDS_REVIEW)
    status, _ = post(api, message.id, {"confirm": True, "done": True})
    assert status == 201
    message.refresh_from_db()
    assert message.status == MessageStatus.DONE
    assert message.reviewed_category == message.category


def test_deleting_a_user_unassigns_their_messages(django_user_model):
    from apps.review.services import Decision, record_feedback

    colleague = django_user_model.objects.create_user("leaving", password="x")
    message = store(raw_message())
    record_feedback(message.id, Decision(assignee=colleague), user=colleague)
    colleague.delete()
    message.refresh_from_db()
    assert message.assignee_id is None and message.reviewed_by_id is None
    # The feedback stays, without its author.
    assert Feedback.objects.get(message_id=message.id).user_id is None
