"""Events recorded with the work that caused them and delivered, signed, to a real receiver on
loopback (allowed by MAILSCORE_WEBHOOK_ALLOWED_NETWORKS): retries, failures, no redirects."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.inbox.models import Message, MessageStatus
from apps.review.services import Decision, record_feedback
from apps.webhooks.events import emit, emit_job_completed
from apps.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from apps.webhooks.services import MAX_ATTEMPTS, retry_delay
from apps.webhooks.signals import message_triaged
from apps.webhooks.signing import signature_header
from mailscore.celery import app
from tasks.queues import CeleryQueue
from tasks.webhooks import deliver_webhook, send_due_webhooks
from tests.review.conftest import raw_message, store
from tests.webhooks.conftest import endpoint_for, running_receiver, tls_context

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed", "eager")]


def triage(message: Message, django_capture_on_commit_callbacks) -> None:
    """What the chain's last step does once it has stored a message's final status: announce it
    in the same transaction; deliveries go out when it commits."""
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message_triaged.send_robust(sender=Message, messages=[message])


def make_due(delivery: WebhookDelivery) -> None:
    """The retry's wait has passed (rather than waiting for it)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())


def test_a_triaged_message_is_delivered_signed(receiver, documented_verifier,
                                               django_capture_on_commit_callbacks):  # fmt: skip
    endpoint = endpoint_for(receiver.url())
    endpoint_for(receiver.url("/reviews-only"), WebhookEvent.MESSAGE_REVIEWED)
    inactive = endpoint_for(receiver.url("/inactive"))
    inactive.active = False
    inactive.save()
    message = store(raw_message(), category="billing", level="P1",
                    status=MessageStatus.NEEDS_REVIEW, confidence=0.3)  # fmt: skip

    triage(message, django_capture_on_commit_callbacks)

    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint == endpoint and delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    [entry] = delivery.attempt_log
    assert entry["outcome"] == "delivered" and entry["address"] == "127.0.0.1"

    [got] = receiver.received
    assert got.path == "/hook"
    assert got.headers["X-Mailscore-Event"] == "message.triaged"
    assert got.headers["X-Mailscore-Delivery"] == str(delivery.id)
    assert got.headers["Content-Type"] == "application/json"
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])
    assert not documented_verifier("whsec_another", got.body,
                                   got.headers["X-Mailscore-Signature"])  # fmt: skip
    payload = json.loads(got.body)
    assert payload["event"] == "message.triaged" and payload["id"] == str(delivery.event_id)
    assert payload["data"] == {
        "message_id": message.id,
        "status": "needs_review",
        "category": "billing",
        "priority": "P1",
        "sender_verdict": message.sender_verdict,
        "url": f"/api/v1/messages/{message.id}",
    }


def test_messages_that_did_not_finish_are_not_announced(receiver,
                                                        django_capture_on_commit_callbacks):  # fmt: skip
    endpoint_for(receiver.url())
    failed = store(raw_message(), status=MessageStatus.FAILED)
    processing = store(raw_message(), status=MessageStatus.PROCESSING)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message_triaged.send_robust(sender=Message, messages=[failed, processing])
    assert not WebhookDelivery.objects.exists() and not receiver.received


def test_nothing_is_sent_for_work_that_was_rolled_back(receiver,
                                                       django_capture_on_commit_callbacks):  # fmt: skip
    endpoint_for(receiver.url())
    message = store(raw_message())
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        message_triaged.send_robust(sender=Message, messages=[message])
        raise RuntimeError("the step's write failed")
    assert callbacks == [] and not WebhookDelivery.objects.exists() and not receiver.received


def test_a_500_is_retried_and_every_attempt_recorded(receiver,
                                                     django_capture_on_commit_callbacks):  # fmt: skip
    endpoint_for(receiver.url())
    receiver.answers = [(500, {})]
    before = timezone.now()
    triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_status_code == 500 and "500" in delivery.last_error
    # About a minute later, give or take the jitter.
    assert before + timedelta(seconds=45) < delivery.next_attempt_at
    assert delivery.next_attempt_at < timezone.now() + timedelta(seconds=75)
    assert send_due_webhooks() == 0  # not due yet

    make_due(delivery)
    assert send_due_webhooks() == 1

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 2
    assert [a["outcome"] for a in delivery.attempt_log] == ["retry", "delivered"]
    assert [a["status_code"] for a in delivery.attempt_log] == [500, 200]
    assert len(receiver.received) == 2
    assert {r.headers["X-Mailscore-Delivery"] for r in receiver.received} == {str(delivery.id)}
    assert deliver_webhook(str(delivery.id)) == "not due"  # delivered: never sent again
    assert len(receiver.received) == 2


def test_retries_back_off_and_then_give_up(receiver, django_capture_on_commit_callbacks):
    waits = [retry_delay(attempt) for attempt in range(1, MAX_ATTEMPTS + 1)]
    assert waits[-1] is None
    for wait, planned in zip(waits, (60, 300, 1800, 7200, 21600), strict=False):
        assert planned * 0.8 <= wait <= planned * 1.2
    assert retry_delay(1, retry_after="600") == 600  # a receiver's longer wait is honoured

    endpoint_for(receiver.url())
    receiver.answers = [(503, {})] * MAX_ATTEMPTS
    triage(store(raw_message()), django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    for _ in range(MAX_ATTEMPTS - 1):
        make_due(delivery)
        send_due_webhooks()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == MAX_ATTEMPTS
    assert "no more attempts" in delivery.last_error and delivery.next_attempt_at is None
    assert len(receiver.received) == MAX_ATTEMPTS


def test_a_410_fails_at_once(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver.url())
    receiver.answers = [(410, {})]
    triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_status_code == 410 and delivery.next_attempt_at is None
    assert "410" in delivery.last_error and "Only 429 and 5xx" in delivery.last_error
    assert send_due_webhooks() == 0 and len(receiver.received) == 1


def test_a_redirect_is_not_followed(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver.url())
    receiver.answers = [(302, {"Location": receiver.url("/elsewhere")})]
    triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.last_status_code == 302
    assert "redirects are not followed" in delivery.last_error
    assert receiver.url("/elsewhere") in delivery.last_error
    assert [r.path for r in receiver.received] == ["/hook"]


def test_a_host_name_is_connected_to_at_the_address_vetted(receiver, documented_verifier, settings,
                                                          django_capture_on_commit_callbacks):  # fmt: skip
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    endpoint = endpoint_for(receiver.url(host="localhost"))
    triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempt_log[0]["address"] == "127.0.0.1"
    [got] = receiver.received
    assert got.headers["Host"] == f"localhost:{receiver.port}"
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])


def test_https_is_checked_against_the_urls_host_at_the_vetted_address(
    certificate_authority, documented_verifier, django_capture_on_commit_callbacks
):
    with running_receiver(tls_context(certificate_authority, "localhost")) as receiver:
        endpoint = endpoint_for(receiver.url(host="localhost"))
        triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED, delivery.last_error
    assert delivery.attempt_log[0]["address"] == "127.0.0.1"
    [got] = receiver.received
    assert got.headers["Host"] == f"localhost:{receiver.port}"
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])


def test_a_certificate_for_another_name_is_not_trusted(certificate_authority,
                                                       django_capture_on_commit_callbacks):  # fmt: skip
    with running_receiver(tls_context(certificate_authority, "receiver.example")) as receiver:
        endpoint_for(receiver.url(host="localhost"))
        triage(store(raw_message()), django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1  # retried later
    assert "certificate verify failed" in delivery.last_error
    assert receiver.received == []


def test_a_reviewers_decision_is_delivered(receiver, reviewer, django_capture_on_commit_callbacks):
    endpoint_for(receiver.url(), WebhookEvent.MESSAGE_REVIEWED)
    message = store(raw_message(), category="sales", status=MessageStatus.NEEDS_REVIEW,
                    confidence=0.3)  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        feedback = record_feedback(message.id, Decision(category="billing", priority="P1"),
                                   user=reviewer)  # fmt: skip

    [got] = receiver.received
    assert got.headers["X-Mailscore-Event"] == "message.reviewed"
    data = json.loads(got.body)["data"]
    assert data["message_id"] == message.id and data["feedback_id"] == feedback.id
    assert data["action"] == feedback.action and "category sales -> billing" in data["action"]
    assert data["status"] == "triaged"
    assert data["decided"]["category"] == "billing" and data["decided"]["priority"] == "P1"
    assert data["by"] == {"source": "admin", "user": reviewer.get_username(), "api_key": None}


def test_job_completed_is_emitted_to_its_subscribers(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver.url(), WebhookEvent.JOB_COMPLETED)
    endpoint_for(receiver.url("/triage-only"))
    with django_capture_on_commit_callbacks(execute=True):
        [delivery_id] = emit_job_completed(17, {"status": "done", "addresses": 1000})
    [got] = receiver.received
    assert got.headers["X-Mailscore-Delivery"] == delivery_id
    assert json.loads(got.body)["data"] == {"job_id": 17, "status": "done", "addresses": 1000}


def test_an_event_that_cannot_be_recorded_does_not_fail_the_work(receiver,
                                                                 django_capture_on_commit_callbacks):  # fmt: skip
    endpoint_for(receiver.url(), WebhookEvent.JOB_COMPLETED)
    message = store(raw_message())
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        # PostgreSQL refuses a NUL character in JSON: the insert fails in the database.
        assert emit(WebhookEvent.JOB_COMPLETED, {"note": "a\x00b"}) == []
        message_triaged.send_robust(sender=Message, messages=[object()])  # not a message at all
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.DONE)
    assert Message.objects.get(pk=message.pk).status == MessageStatus.DONE
    assert not WebhookDelivery.objects.exists() and not receiver.received


def test_replayed_signatures_fail_the_documented_verifier(documented_verifier):
    secret, body = "whsec_test", b'{"event":"message.triaged"}'
    now = int(time.time())
    assert documented_verifier(secret, body, signature_header(secret, now, body))
    assert not documented_verifier(secret, body, signature_header(secret, now - 3600, body))
    assert not documented_verifier(secret, body, signature_header(secret, now + 3600, body))
    assert not documented_verifier(secret, body + b" ", signature_header(secret, now, body))
    assert not documented_verifier(secret, body, "v1=abc")
    assert not documented_verifier(secret, body, "garbage")


def test_deliveries_have_their_own_queue():
    route = app.amqp.router.route({}, deliver_webhook.name)
    assert route["queue"].name == CeleryQueue.WEBHOOKS == "webhooks"
