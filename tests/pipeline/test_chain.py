"""Tier 2: the whole chain run eagerly, in this process, on real PostgreSQL and Redis."""

from __future__ import annotations

import pytest

from apps.inbox.ingest import rerun
from apps.inbox.models import Message, MessageStatus
from mailscore.celery import app
from tasks.dispatch import dispatch
from tests.pipeline.conftest import SAMPLES

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


def test_dispatch_runs_the_chain_on_a_batch(ingest, farm_settings, eager):
    ids = [ingest(body, subject=subject).id for body, subject in SAMPLES]
    assert dispatch.apply().get() == ids
    for message in Message.objects.filter(id__in=ids):
        assert message.status in (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW)
        assert {s["batch"] for s in message.steps.values()} == {3}
        assert message.category and message.priority and message.summary
        assert message.sender_verdict == "deliverable"


def test_batches_are_capped_and_the_end_of_a_chain_dispatches_the_rest(ingest, farm_settings,
                                                                        eager, settings):  # fmt: skip
    settings.MAILSCORE_PIPELINE_BATCH = 2
    ids = [ingest(body).id for body, _ in SAMPLES]
    assert dispatch.apply().get() == ids[:2]
    batches = {m.id: {s["batch"] for s in m.steps.values()} for m in Message.objects.all()}
    assert batches == {ids[0]: {2}, ids[1]: {2}, ids[2]: {1}}
    assert set(Message.objects.values_list("status", flat=True)) <= {"triaged", "needs_review"}


def test_every_task_goes_to_the_queue_its_decorator_names():
    from tasks import pipeline

    routes = {
        task.name: app.amqp.router.route({}, task.name)["queue"].name
        for task in (dispatch, pipeline.classify, pipeline.prioritize, pipeline.summarize,
                     pipeline.draft_reply, pipeline.verify_sender)
    }  # fmt: skip
    assert routes == {
        "mailscore.pipeline.dispatch": "triage",
        "mailscore.pipeline.classify": "triage",
        "mailscore.pipeline.prioritize": "triage",
        "mailscore.pipeline.summarize": "generate",
        "mailscore.pipeline.draft_reply": "generate",
        "mailscore.pipeline.verify_sender": "verify",
    }


def test_rerun_runs_a_finished_message_again(ingest, farm_settings, eager):
    message = ingest(SAMPLES[0][0])
    dispatch.apply()
    first = Message.objects.get(id=message.id)
    queued, busy = rerun([message.id])
    assert queued == [message.id] and busy == []
    again = Message.objects.get(id=message.id)
    assert again.status == MessageStatus.QUEUED and again.runs == 2 and again.steps == {}
    dispatch.apply()
    second = Message.objects.get(id=message.id)
    assert second.status == first.status and second.category == first.category
    assert {s["run"] for s in second.steps.values()} == {2}


def test_a_message_in_flight_is_not_rerun(ingest):
    message = ingest("text")
    Message.objects.filter(id=message.id).update(status=MessageStatus.PROCESSING)
    assert rerun([message.id]) == ([], [message.id])
