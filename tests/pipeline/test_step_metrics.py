"""What the chain's steps, ingest and the sweep record in mailscore's metrics (this process's own
registry: the tests run without a multiprocess directory), and what the queue gauges read from
the real broker."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.core import metrics
from apps.core.connections import redis_connection
from apps.inbox import claims
from apps.inbox.models import Message, MessageStatus
from tasks import pipeline
from tasks.dispatch import dispatch
from tests.pipeline.conftest import SAMPLES

pytestmark = pytest.mark.django_db


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def finished_total(status: str) -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "mailscore_messages_finished"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["status"] == status
    )


def claim_queued(limit: int) -> dict:
    claim = claims.claim_queued(limit, lease_seconds=60)
    return {"claim": claim.token, "ids": claim.message_ids}


def test_steps_record_durations_inference_failures_and_finished(ingest, farm_settings):
    before = {
        "accepted": value("mailscore_messages_ingested_total", source="api", outcome="accepted"),
        "duplicate": value("mailscore_messages_ingested_total", source="api", outcome="duplicate"),
        "failures": value("mailscore_step_failures_total", step="draft_reply"),
        "failed": finished_total("failed"),
        "done": finished_total("triaged") + finished_total("needs_review"),
        "steps": {s: value("mailscore_step_duration_seconds_count", step=s) for s in metrics.STEPS},
        "encoder": value("mailscore_inference_batch_size_sum", model="encoder"),
        "chain": value(
            "mailscore_verifications_total", verdict="deliverable", reason="ok", source="chain"
        ),  # fmt: skip
        "2xx": value("mailscore_smtp_replies_total", code_class="2xx"),
    }
    good, bad = ingest(SAMPLES[0][0]), ingest(SAMPLES[2][0])
    ingest(SAMPLES[0][0], message_id=good.message_id_header)
    assert value("mailscore_messages_ingested_total", source="api", outcome="accepted") == (
        before["accepted"] + 2
    )
    assert value("mailscore_messages_ingested_total", source="api", outcome="duplicate") == (
        before["duplicate"] + 1
    )
    batch = claim_queued(10)
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize):
        step(batch)
    # As in test_steps: a stored deadline without its text breaks this message's draft only.
    Message.objects.filter(id=bad.id).update(
        category="sales", priority_result={"deadlines": [{"due": "2026-03-03"}]}
    )
    pipeline.verify_sender(pipeline.draft_reply(batch))

    for step in metrics.STEPS:
        assert value("mailscore_step_duration_seconds_count", step=step) == (
            before["steps"][step] + 1
        ), step
    assert value("mailscore_inference_batch_size_sum", model="encoder") == before["encoder"] + 2
    assert value("mailscore_step_failures_total", step="draft_reply") == before["failures"] + 1
    assert finished_total("failed") == before["failed"] + 1
    assert finished_total("triaged") + finished_total("needs_review") == before["done"] + 1
    # alice@normal.test: the farm's server accepts her, so the probe's replies are all 2xx.
    assert value("mailscore_verifications_total", verdict="deliverable", reason="ok",
                 source="chain") == before["chain"] + 1  # fmt: skip
    assert value("mailscore_smtp_replies_total", code_class="2xx") > before["2xx"]


def test_a_chain_lost_too_often_counts_as_a_chain_failure(ingest):
    before = value("mailscore_step_failures_total", step="chain")
    ingest(SAMPLES[1][0])
    for _ in range(2):
        batch = claim_queued(10)
        Message.objects.filter(id__in=batch["ids"]).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        claims.requeue_expired(max_claims=2)
    assert Message.objects.filter(failed_step="chain", status=MessageStatus.FAILED).exists()
    assert value("mailscore_step_failures_total", step="chain") == before + 1


def test_queue_gauges_read_the_broker():
    client = redis_connection()
    assert metrics.queue_depths(client)["triage"] == 0
    dispatch.apply_async()
    assert metrics.queue_depths(client)["triage"] == 1
    oldest = json.loads(client.lindex("triage", -1))
    published = float(oldest["headers"][metrics.PUBLISHED_AT_HEADER])
    ages = metrics.oldest_ages(client, now=published + 42)
    assert ages["triage"] == pytest.approx(42) and ages["verify"] == 0
