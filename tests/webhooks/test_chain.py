"""The chain's last step announces the messages it finished, in the transaction that stores
their final status."""

from __future__ import annotations

import json

import pytest

from apps.inbox import claims
from apps.inbox.batch import ClaimedBatch
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageStatus
from apps.verification.steps import verify_sender
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from tests.pipeline.conftest import raw_message
from tests.verification.conftest import farm, farm_config, farm_settings  # noqa: F401
from tests.webhooks.conftest import endpoint_for

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("loopback_allowed", "eager", "farm_settings"),
]


def test_the_last_step_of_the_chain_sends_message_triaged(receiver, documented_verifier,
                                                         django_capture_on_commit_callbacks):  # fmt: skip
    endpoint = endpoint_for(receiver.url())
    message = ingest_raw(raw_message("Where is my order?"), source="api").message
    claim = claims.claim_queued(10, lease_seconds=60)
    assert claim.message_ids == [message.id]

    with django_capture_on_commit_callbacks(execute=True):
        verify_sender(ClaimedBatch(claim.token, claim.message_ids), smtp=False)

    message = Message.objects.get(id=message.id)
    # Not classified in this test, so no confidence: it needs review.
    assert message.status == MessageStatus.NEEDS_REVIEW
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED
    [got] = receiver.received
    assert documented_verifier(endpoint.secret, got.body, got.headers["X-Mailscore-Signature"])
    data = json.loads(got.body)["data"]
    assert data["message_id"] == message.id and data["status"] == "needs_review"
    assert data["sender_verdict"] == message.sender_verdict

    # Running the step again is a no-op for the message, and announces nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        verify_sender(ClaimedBatch(claim.token, claim.message_ids), smtp=False)
    assert WebhookDelivery.objects.count() == 1 and len(receiver.received) == 1
