"""Fixtures for the chain's tests: mail ingested for real, the verification farm for senders."""

from __future__ import annotations

import itertools

import pytest

from apps.inbox.ingest import ingest_raw
from tests.verification.conftest import farm, farm_config, farm_settings  # noqa: F401

_numbers = itertools.count(1)


def raw_message(body: str, *, subject: str = "Hello", sender: str = "Alice <alice@normal.test>",
                message_id: str | None = None) -> bytes:  # fmt: skip
    message_id = message_id or f"<pipeline-{next(_numbers)}@normal.test>"
    return (
        f"From: {sender}\nTo: support@mailscore.test\nSubject: {subject}\n"
        f"Message-ID: {message_id}\nDate: Mon, 02 Mar 2026 09:00:00 +0000\n\n{body}\n"
    ).encode()


@pytest.fixture(autouse=True)
def empty_queues():
    """Earlier tests leave dispatch requests in the broker (nothing consumes them there), and
    dispatch holds back while chain steps wait: start each test from empty queues, and without
    the flag that says a (purged) dispatch is on its way."""
    from apps.core.connections import redis_connection
    from mailscore.celery import app
    from tasks.dispatch import PENDING_FLAG
    from tasks.queues import CeleryQueue

    with app.connection_for_write() as connection:
        for queue in CeleryQueue:
            connection.default_channel.queue_purge(str(queue))
    redis_connection().delete(PENDING_FLAG)


@pytest.fixture
def ingest():
    def make(body: str, **fields):
        return ingest_raw(raw_message(body, **fields), source="api").message

    return make


SAMPLES = [
    (
        "I was charged twice for my subscription this month. Please refund the duplicate charge "
        "of $49 on invoice 20231.",
        "Double charge on my invoice",
    ),
    (
        "The app crashes every time I open the settings page since the last update. I have "
        "reinstalled it twice. Error code 0x80004005.",
        "App crashes on settings",
    ),
    (
        "Hi, could you tell me whether your enterprise plan includes single sign-on and what the "
        "price per seat is for 200 users?",
        "Question about enterprise pricing",
    ),
]
