"""Tier 1: each step called directly on stored messages, against real PostgreSQL and Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.inbox import claims
from apps.inbox.models import Message, MessageStatus
from apps.verification.models import VerificationResult
from tasks import pipeline
from tests.pipeline.conftest import SAMPLES

pytestmark = pytest.mark.django_db


def stored(message_id: int) -> Message:
    return Message.objects.get(id=message_id)


def claim_queued(limit: int) -> dict:
    """A claimed batch as dispatch hands it to the chain."""
    claim = claims.claim_queued(limit, lease_seconds=60)
    return {"claim": claim.token, "ids": claim.message_ids}


def ids_of(batch: dict) -> list[int]:
    return batch["ids"]


def test_dispatch_claims_queued_messages_once(ingest):
    first, second = ingest("one"), ingest("two")
    assert ids_of(claim_queued(10)) == [first.id, second.id]
    assert ids_of(claim_queued(10)) == []
    claimed = stored(first.id)
    assert claimed.status == MessageStatus.PROCESSING and claimed.claims == 1
    assert claimed.claim is not None and claimed.lease_expires_at is not None


def test_steps_store_results_versions_and_durations(ingest, farm_settings):
    messages = [ingest(body, subject=subject) for body, subject in SAMPLES]
    batch = claim_queued(10)
    ids = ids_of(batch)
    assert ids == [m.id for m in messages]

    assert pipeline.classify(batch) == batch
    billing = stored(messages[0].id)
    assert billing.category == "billing"
    assert 0 < billing.category_confidence <= 1
    record = billing.steps["classify"]
    assert record["run"] == 1 and record["error"] is None and record["batch"] == 3
    assert "all-MiniLM-L6-v2" in record["version"] and record["duration_ms"] > 0

    assert billing.parsed["subject"] == billing.subject and billing.parsed["headers"]

    assert pipeline.prioritize(batch) == batch
    assert stored(messages[0].id).priority in {"P1", "P2", "P3", "P4"}
    assert pipeline.summarize(batch) == batch
    summarized = stored(messages[1].id)
    assert summarized.summary and summarized.steps["summarize"]["reencoded"] is False
    assert pipeline.draft_reply(batch) == batch
    drafted = stored(messages[0].id)
    assert drafted.draft_reply and drafted.sender_trust
    assert drafted.sender_result["trust"]["level"] == drafted.sender_trust

    # The last step ends the claim: nothing is handed on.
    assert pipeline.verify_sender(batch) == {"claim": batch["claim"], "ids": []}
    done = stored(messages[0].id)
    assert done.claim is None and done.lease_expires_at is None
    assert done.status in (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW)
    assert done.sender_verdict == "deliverable"
    assert set(done.steps) == {
        "classify",
        "prioritize",
        "summarize",
        "draft_reply",
        "verify_sender",
    }
    row = VerificationResult.objects.get(message_id=done.id)
    assert row.address == "alice@normal.test" and row.verdict == "deliverable"


def test_a_finished_step_is_a_no_op(ingest, farm_settings):
    ids = [ingest(SAMPLES[0][0]).id]
    batch = claim_queued(10)
    pipeline.classify(batch)
    before = stored(ids[0]).steps["classify"]
    assert pipeline.classify(batch) == batch
    assert stored(ids[0]).steps["classify"] == before  # not run again
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inbox_message WHERE id = %s", ids)
        assert cursor.fetchone()[0] == 1


def test_summarize_encodes_again_when_the_stored_vectors_are_gone(ingest, farm_settings):
    import redis
    from django.conf import settings

    ids = [ingest(SAMPLES[1][0]).id]
    batch = claim_queued(10)
    pipeline.classify(batch)
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"mailscore:encoding:*:{ids[0]}:*"):
        client.delete(key)
    pipeline.prioritize(batch)
    pipeline.summarize(batch)
    message = stored(ids[0])
    assert message.summary and message.steps["summarize"]["reencoded"] is True


def test_a_message_that_breaks_a_step_fails_alone(ingest, farm_settings):
    good, bad = ingest(SAMPLES[0][0]), ingest(SAMPLES[2][0])
    batch = claim_queued(10)
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize):
        step(batch)
    # A stored deadline without its text (as an older release might have written) breaks the
    # draft of that message only.
    Message.objects.filter(id=bad.id).update(
        category="sales", priority_result={"deadlines": [{"due": "2026-03-03"}]}
    )
    handed_on = pipeline.draft_reply(batch)
    assert handed_on == {"claim": batch["claim"], "ids": [good.id]}
    failed = stored(bad.id)
    assert failed.status == MessageStatus.FAILED and failed.failed_step == "draft_reply"
    assert "KeyError" in failed.failure_reason and failed.steps["draft_reply"]["error"]
    assert stored(good.id).draft_reply
    pipeline.verify_sender(handed_on)
    assert stored(good.id).status in (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW)
    assert stored(bad.id).status == MessageStatus.FAILED and stored(bad.id).claim is None


def test_a_failed_message_is_not_processed_further(ingest, farm_settings):
    message = ingest(SAMPLES[0][0])
    batch = claim_queued(10)
    Message.objects.filter(id=message.id).update(status=MessageStatus.FAILED)
    assert pipeline.classify(batch)["ids"] == []
    assert stored(message.id).category == ""


def expire(batch: dict) -> None:
    Message.objects.filter(id__in=batch["ids"]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_chain_whose_claim_was_taken_back_writes_nothing(ingest, farm_settings):
    message = ingest(SAMPLES[0][0])
    lost = claim_queued(10)
    pipeline.classify(lost)
    expire(lost)  # its worker died: nothing renewed the lease
    assert claims.requeue_expired(max_claims=5) == claims.Swept(requeued=1, failed=0)
    assert stored(message.id).status == MessageStatus.QUEUED

    current = claim_queued(10)
    assert current["claim"] != lost["claim"] and stored(message.id).claims == 2
    # The lost chain comes back (a redelivered task): it finds nothing of its own.
    assert pipeline.prioritize(lost)["ids"] == []
    assert stored(message.id).priority == ""
    # The new claim resumes at the first step not recorded for the run.
    before = stored(message.id).steps["classify"]
    for step in (pipeline.classify, pipeline.prioritize):
        current = step(current)
    assert current["ids"] == [message.id]
    assert stored(message.id).steps["classify"] == before and stored(message.id).priority


def test_a_message_whose_chain_is_lost_too_often_fails_with_the_reason(ingest):
    message = ingest(SAMPLES[0][0])
    for _ in range(3):
        expire(claim_queued(10))
        claims.requeue_expired(max_claims=3)
    failed = stored(message.id)
    assert failed.status == MessageStatus.FAILED and failed.failed_step == "chain"
    assert "lost 3 times" in failed.failure_reason and failed.claim is None


def test_a_claim_the_chain_could_not_start_goes_back_to_the_queue(ingest):
    message = ingest(SAMPLES[0][0])
    batch = claim_queued(10)
    assert claims.release(batch["claim"]) == 1
    released = stored(message.id)
    assert released.status == MessageStatus.QUEUED and released.claims == 0


@pytest.mark.django_db(transaction=True)
def test_a_running_step_keeps_renewing_its_lease(ingest):
    message = ingest(SAMPLES[0][0])
    batch = claim_queued(10)
    expire(batch)
    with claims.leased(batch["claim"], batch["ids"], lease_seconds=0.6):
        first = stored(message.id).lease_expires_at
        assert first > timezone.now()  # renewed on entry
        time.sleep(0.5)  # past two renewals
        assert stored(message.id).lease_expires_at > first
    assert claims.requeue_expired(max_claims=5).requeued == 0


def test_language_is_stored_and_unplaceable_foreign_mail_ends_in_review(ingest, farm_settings):
    finnish = ingest("Hei, voisitteko kertoa milloin seuraava päivitys tulee ja mitä siinä muuttuu? "
                     "Kiitos paljon avusta.", subject="Kysymys")  # fmt: skip
    english = ingest(SAMPLES[0][0], subject=SAMPLES[0][1])
    batch = claim_queued(10)
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize, pipeline.draft_reply):
        step(batch)
    pipeline.verify_sender(batch)
    done = stored(finnish.id)
    assert done.language == "fi" and done.category_result["review"] == "language"
    assert done.status == MessageStatus.NEEDS_REVIEW
    assert stored(english.id).language == "en"
    assert stored(english.id).category_result["review"] is None


def test_business_mail_from_a_sender_that_is_not_who_it_claims_ends_in_review(
    ingest, farm_settings
):
    """Phishing written as an invoice reads like one: the heads file it as billing, so the
    sender's failed identity has to send it to a person."""
    body, subject = SAMPLES[0]  # a double charge on an invoice: billing
    imitated = ingest(body, subject=subject, sender="PayPal Billing <service@paypa1.com>")
    genuine = ingest(body, subject=subject)
    batch = claim_queued(10)
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize, pipeline.draft_reply):
        step(batch)
    pipeline.verify_sender(batch)
    imitated, genuine = stored(imitated.id), stored(genuine.id)
    assert imitated.category == genuine.category == "billing"
    assert imitated.category_result["review"] is None  # the heads alone saw nothing wrong
    assert imitated.sender_trust == "suspicious"
    assert imitated.status == MessageStatus.NEEDS_REVIEW
    assert genuine.sender_trust != "suspicious"
    assert genuine.status == MessageStatus.TRIAGED
