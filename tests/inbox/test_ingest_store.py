"""Ingest's one-round-trip store: copies racing each other make one row, a copy finds the stored
row (its other fields load when read), and announcements to the chain are spread in time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.inbox import ingest
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageStatus
from apps.inbox.signals import messages_queued
from tests.pipeline.conftest import raw_message

COPIES = 8


@pytest.mark.django_db(transaction=True)
def test_copies_sent_at_once_make_one_row_whatever_received_at_each_derives():
    # A Date far in the future is not plausible: each copy takes the time of its own ingest as
    # received_at, so the unique (dedupe_key, received_at) constraint cannot tell them apart.
    future = (datetime.now(UTC) + timedelta(days=400)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    raw = (
        "From: dana@example.com\nSubject: racing\nMessage-ID: <race@store.test>\n"
        f"Date: {future}\n\nbody\n"
    ).encode()
    start = threading.Barrier(COPIES)
    results = []

    def send() -> None:
        start.wait()
        try:
            results.append(ingest_raw(raw, source="api"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(COPIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == COPIES
    assert sum(result.created for result in results) == 1
    assert len({result.message.id for result in results}) == 1
    assert Message.objects.filter(message_id_header="<race@store.test>").count() == 1


@pytest.mark.django_db
def test_a_copy_gets_the_stored_row_and_its_other_fields_when_read():
    raw = raw_message("hello again", message_id="<copy@store.test>")
    first = ingest_raw(raw, source="api")
    copy = ingest_raw(raw, source="file")
    assert first.created and not copy.created
    assert copy.message.id == first.message.id
    assert copy.message.status == MessageStatus.QUEUED
    assert copy.message.received_at == first.message.received_at
    # Not returned by the store statement: loaded on first read, from the first copy's row.
    assert copy.message.source == "api"
    assert copy.message.subject == first.message.subject
    assert bytes(copy.message.raw) == raw


@pytest.mark.django_db
def test_a_new_row_comes_back_as_stored():
    result = ingest_raw(raw_message("fresh", message_id="<fresh@store.test>"), source="api")
    stored = Message.objects.get(id=result.message.id)
    assert result.created and not result.message._state.adding
    assert (stored.status, stored.subject, stored.size) == (
        result.message.status, result.message.subject, result.message.size
    )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_announcements_within_the_interval_are_one_at_its_end(settings):
    settings.MAILSCORE_ANNOUNCE_SECONDS = 0.3
    ingest._announcements.reset()
    heard = []

    def receiver(**_) -> None:
        heard.append(time.monotonic())

    messages_queued.connect(receiver, dispatch_uid="test-announcements")
    try:
        for index in range(5):
            ingest_raw(raw_message(f"burst {index}", message_id=f"<burst-{index}@store.test>"),
                       source="api")  # fmt: skip
        assert len(heard) == 1  # the first at once, the others wait for the interval's end
        deadline = time.monotonic() + 5
        while len(heard) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert len(heard) == 2  # one more for all four
    finally:
        messages_queued.disconnect(dispatch_uid="test-announcements")
        ingest._announcements.reset()
