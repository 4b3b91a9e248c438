"""Ingest's contract when Redis cannot be reached from the web process: the row is kept and the
answer is 202; the sweep hands the message to the chain once Redis answers again."""

from __future__ import annotations

import logging
import socket

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.core.connections import redis_connection
from apps.inbox.models import Message, MessageStatus
from tasks.dispatch import PENDING_FLAG, sweep
from tests.pipeline.conftest import SAMPLES, raw_message

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.fixture
def redis_away(settings):
    """This process's Redis client pointed at a port where nothing listens."""
    real = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    redis_connection.cache_clear()
    yield
    settings.REDIS_URL = real
    redis_connection.cache_clear()


def test_ingest_keeps_the_message_and_answers_202_while_redis_is_away(redis_away, caplog):
    # Whatever level an earlier test's in-process Celery worker left the root logger at.
    caplog.set_level(logging.WARNING)
    _, key = ApiKey.issue("outage")
    response = APIClient(HTTP_X_API_KEY=key).post(
        "/api/v1/messages", raw_message(SAMPLES[0][0]), content_type="message/rfc822"
    )
    assert response.status_code == 202, response.content
    message = Message.objects.get(id=response.json()["id"])
    assert message.status == MessageStatus.QUEUED
    assert "waits for the sweep" in caplog.text


def test_the_sweep_dispatches_what_was_queued_during_the_outage(ingest, settings):
    message = ingest(SAMPLES[0][0])
    redis_connection().delete(PENDING_FLAG)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert sweep.apply().get() == {"requeued": 0, "failed": 0, "queued": True}
    assert redis_connection().get(PENDING_FLAG) == b"1"  # a dispatch is on its way
    assert Message.objects.get(id=message.id).status == MessageStatus.QUEUED


def test_the_api_answers_503_with_retry_after_when_the_database_is_away(settings):
    _, key = ApiKey.issue("db-outage")
    client = APIClient(HTTP_X_API_KEY=key)
    from django.db import connection

    real_port = connection.settings_dict.get("PORT")
    real_host = connection.settings_dict.get("HOST")
    connection.close()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", closed_port()
    try:
        response = client.post("/api/v1/messages", raw_message(SAMPLES[0][0]),
                               content_type="message/rfc822")  # fmt: skip
    finally:
        connection.close()
        connection.settings_dict["HOST"], connection.settings_dict["PORT"] = real_host, real_port
    assert response.status_code == 503
    error = response.json()["error"]
    assert response["Retry-After"] == "5" and error["code"] == "service_unavailable"
    assert "nothing was stored" in error["message"]
