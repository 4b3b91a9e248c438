"""Tier 1: each step called directly on stored messages, against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from django.db import connection

from apps.inbox.dispatch import claim_queued
from apps.inbox.models import Message, MessageStatus
from apps.verification.models import VerificationResult
from tasks import pipeline
from tests.pipeline.conftest import SAMPLES

pytestmark = pytest.mark.django_db


def stored(message_id: int) -> Message:
    return Message.objects.get(id=message_id)


def test_dispatch_claims_queued_messages_once(ingest):
    first, second = ingest("one"), ingest("two")
    assert claim_queued(10) == [first.id, second.id]
    assert claim_queued(10) == []
    assert stored(first.id).status == MessageStatus.PROCESSING


def test_steps_store_results_versions_and_durations(ingest, farm_settings):
    messages = [ingest(body, subject=subject) for body, subject in SAMPLES]
    ids = claim_queued(10)
    assert ids == [m.id for m in messages]

    assert pipeline.classify(ids) == ids
    billing = stored(messages[0].id)
    assert billing.category == "billing"
    assert 0 < billing.category_confidence <= 1
    record = billing.steps["classify"]
    assert record["run"] == 1 and record["error"] is None and record["batch"] == 3
    assert "all-MiniLM-L6-v2" in record["version"] and record["duration_ms"] > 0

    assert pipeline.prioritize(ids) == ids
    assert stored(messages[0].id).priority in {"P1", "P2", "P3", "P4"}
    assert pipeline.summarize(ids) == ids
    summarized = stored(messages[1].id)
    assert summarized.summary and summarized.steps["summarize"]["reencoded"] is False
    assert pipeline.draft_reply(ids) == ids
    drafted = stored(messages[0].id)
    assert drafted.draft_reply and drafted.sender_trust

    assert pipeline.verify_sender(ids) == ids
    done = stored(messages[0].id)
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
    claim_queued(10)
    pipeline.classify(ids)
    before = stored(ids[0]).steps["classify"]
    assert pipeline.classify(ids) == ids
    assert stored(ids[0]).steps["classify"] == before  # not run again
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inbox_message WHERE id = %s", ids)
        assert cursor.fetchone()[0] == 1


def test_summarize_encodes_again_when_the_stored_vectors_are_gone(ingest, farm_settings):
    import redis
    from django.conf import settings

    ids = [ingest(SAMPLES[1][0]).id]
    claim_queued(10)
    pipeline.classify(ids)
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"mailscore:encoding:*:{ids[0]}:*"):
        client.delete(key)
    pipeline.prioritize(ids)
    pipeline.summarize(ids)
    message = stored(ids[0])
    assert message.summary and message.steps["summarize"]["reencoded"] is True


def test_a_message_that_breaks_a_step_fails_alone(ingest, farm_settings):
    good, bad = ingest(SAMPLES[0][0]), ingest(SAMPLES[2][0])
    ids = claim_queued(10)
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize):
        step(ids)
    # A stored deadline without its text (as an older release might have written) breaks the
    # draft of that message only.
    Message.objects.filter(id=bad.id).update(
        category="sales", priority_result={"deadlines": [{"due": "2026-03-03"}]}
    )
    handed_on = pipeline.draft_reply(ids)
    assert handed_on == [good.id]
    failed = stored(bad.id)
    assert failed.status == MessageStatus.FAILED and failed.failed_step == "draft_reply"
    assert "KeyError" in failed.failure_reason and failed.steps["draft_reply"]["error"]
    assert stored(good.id).draft_reply
    assert pipeline.verify_sender(handed_on) == [good.id]
    assert stored(bad.id).status == MessageStatus.FAILED


def test_a_failed_message_is_not_processed_further(ingest, farm_settings):
    message = ingest(SAMPLES[0][0])
    ids = claim_queued(10)
    pipeline.mark_failed(ids, "classify", "operator stopped it")
    assert pipeline.classify(ids) == []
    assert stored(message.id).category == ""
