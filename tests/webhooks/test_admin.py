"""The admin's webhook actions: a test ping sent at once, a new secret, a retry now."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.webhooks.conftest import endpoint_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback_allowed", "eager")]

ENDPOINTS = reverse("admin:webhooks_webhookendpoint_changelist")
DELIVERIES = reverse("admin:webhooks_webhookdelivery_changelist")


def test_a_test_ping_is_sent_at_once_and_its_answer_shown(reviewer_client, receiver,
                                                          documented_verifier):  # fmt: skip
    endpoint = endpoint_for(receiver.url())
    response = reviewer_client.post(ENDPOINTS, {"action": "send_test_ping",
                                                "_selected_action": [endpoint.id]}, follow=True)  # fmt: skip
    assert "the test ping was delivered (200)" in response.content.decode()
    [got] = receiver.received
    assert got.headers["X-Mailscore-Event"] == "ping"
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])

    receiver.answers = [(503, {})]
    response = reviewer_client.post(ENDPOINTS, {"action": "send_test_ping",
                                                "_selected_action": [endpoint.id]}, follow=True)  # fmt: skip
    assert "the test ping was not delivered" in response.content.decode()
    ping = WebhookDelivery.objects.filter(last_status_code=503).get()
    assert ping.status == DeliveryStatus.FAILED  # a ping is tried once

    page = reviewer_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[ping.id]))
    content = page.content.decode()
    assert "The receiver answered 503" in content and "127.0.0.1" in content


def test_the_secret_is_shown_and_rotated(reviewer_client, receiver, documented_verifier):
    endpoint = endpoint_for(receiver.url())
    page = reviewer_client.get(reverse("admin:webhooks_webhookendpoint_change",
                                       args=[endpoint.id]))  # fmt: skip
    assert endpoint.secret in page.content.decode()
    listing = reviewer_client.get(ENDPOINTS)
    assert [e.id for e in listing.context["cl"].result_list] == [endpoint.id]

    old = endpoint.secret
    response = reviewer_client.post(ENDPOINTS, {"action": "rotate_secret",
                                                "_selected_action": [endpoint.id]}, follow=True)  # fmt: skip
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in response.content.decode()

    reviewer_client.post(ENDPOINTS, {"action": "send_test_ping", "_selected_action": [endpoint.id]})
    [got] = receiver.received
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])
    assert not documented_verifier(old, got.body, got.headers["X-Mailscore-Signature"])


def test_retry_now_tries_a_failed_delivery_again(reviewer_client, receiver,
                                                 django_capture_on_commit_callbacks):  # fmt: skip
    endpoint = endpoint_for(receiver.url())
    failed = WebhookDelivery.objects.create(
        endpoint=endpoint, event="message.triaged", event_id="6f1c0a52-0000-4000-8000-000000000001",
        payload={"event": "message.triaged", "data": {}}, status=DeliveryStatus.FAILED,
        attempts=1, last_status_code=404, finished_at=timezone.now(),
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer_client.post(DELIVERIES, {"action": "retry_now",
                                                     "_selected_action": [failed.id]}, follow=True)  # fmt: skip
    assert "1 delivery will be tried again now." in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.DELIVERED and failed.attempts == 2
    assert len(receiver.received) == 1

    listing = reviewer_client.get(DELIVERIES, {"status__exact": "delivered"})
    assert [d.id for d in listing.context["cl"].result_list] == [failed.id]
    # A receiver's X-Mailscore-Delivery finds the delivery; other words search the errors.
    found = reviewer_client.get(DELIVERIES, {"q": str(failed.id)})
    assert [d.id for d in found.context["cl"].result_list] == [failed.id]
    assert reviewer_client.get(DELIVERIES, {"q": "not an id"}).status_code == 200
