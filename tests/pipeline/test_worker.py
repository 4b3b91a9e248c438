"""Tier 3: mail posted to the API comes out triaged through a real Celery worker, over the real
broker, with committed transactions (the chain starts only once ingest has committed)."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.inbox.models import Message, MessageStatus
from apps.verification.models import VerificationResult
from mailscore.celery import app
from tasks.queues import CeleryQueue
from tests.pipeline.conftest import SAMPLES, raw_message

pytestmark = pytest.mark.django_db(transaction=True)

FINISHED = (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED)


@pytest.fixture
def worker(farm_settings):  # the queues are emptied first by conftest.empty_queues
    with start_worker(app, pool="solo", perform_ping_check=False,
                      queues=[str(q) for q in CeleryQueue], shutdown_timeout=30) as started:  # fmt: skip
        yield started


def wait_finished(ids: list[int], timeout: float = 120.0) -> list[Message]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = list(Message.objects.filter(id__in=ids).order_by("id"))
        if all(m.status in FINISHED for m in messages):
            return messages
        time.sleep(0.2)
    raise AssertionError(f"not finished in {timeout}s: {[(m.id, m.status) for m in messages]}")


def test_mail_posted_to_the_api_comes_out_triaged(worker):
    _, key = ApiKey.issue("worker-test")
    client = APIClient(HTTP_X_API_KEY=key)
    ids = []
    for body, subject in SAMPLES:
        response = client.post("/api/v1/messages", raw_message(body, subject=subject),
                               content_type="message/rfc822")  # fmt: skip
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    greylisted = client.post(
        "/api/v1/messages", raw_message(SAMPLES[0][0], sender="Bob <bob@greylist.test>"),
        content_type="message/rfc822",
    ).json()["id"]  # fmt: skip

    messages = wait_finished([*ids, greylisted])
    for message in messages:
        assert message.status in (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW), (
            message.failure_reason
        )
        assert set(message.steps) == {"classify", "prioritize", "summarize", "draft_reply",
                                      "verify_sender"}  # fmt: skip
        for record in message.steps.values():
            assert record["error"] is None and record["version"] and record["duration_ms"] >= 0
        assert message.category and message.priority and message.summary
    by_id = {m.id: m for m in messages}
    assert by_id[ids[0]].category == "billing"
    # The greylisted sender was asked again after a countdown, not by a waiting worker.
    assert by_id[greylisted].steps["verify_sender"]["attempts"] >= 2
    assert by_id[greylisted].sender_verdict == "deliverable"
    assert VerificationResult.objects.filter(message_id__in=[*ids, greylisted]).count() == 4

    detail = client.get(f"/api/v1/messages/{ids[0]}").json()
    assert detail["status"] == by_id[ids[0]].status and detail["steps"]["classify"]["version"]


def test_ingest_wait_prints_each_message_as_the_workers_finish_it(worker, tmp_path, capsys):
    from django.core.management import call_command

    for index, (body, subject) in enumerate(SAMPLES[:2]):
        (tmp_path / f"{index}.eml").write_bytes(raw_message(body, subject=subject))
    call_command("ingest", str(tmp_path), "--wait", "--timeout", "120")
    out = capsys.readouterr().out
    assert "Stored 2 new messages, 0 already stored, 0 not ingested." in out
    rows = [line for line in out.splitlines() if subject_of(line)]
    assert len(rows) == 2 and all("triaged" in r or "needs_review" in r for r in rows)
    assert "Done: " in out


def subject_of(line: str) -> bool:
    return any(subject in line for _, subject in SAMPLES[:2])
