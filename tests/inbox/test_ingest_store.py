"""Ingest's one-round-trip store: copies racing each other make one row, a copy finds the stored
row (its other fields load when read), and announcements to the chain are spread in time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction

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
def test_every_field_is_stored_as_the_orms_own_save_stores_it():
    # The store prepares the fields a row leaves at their defaults once per process; each must
    # reach the row as Model.save would write it, on the second store as on the first.
    given = {"received_at", "source", "source_detail", "message_id_header", "from_address",
             "from_name", "subject", "sent_at", "size", "raw", "status"}  # fmt: skip
    set_apart = {"id", "dedupe_key", "ingested_at", "updated_at"}
    for index in range(2):
        result = ingest_raw(raw_message(f"fields {index}", message_id=f"<f{index}@store.test>"),
                            source="api", source_detail="key fields")  # fmt: skip
        row = Message.objects.get(id=result.message.id)
        saved = Message(dedupe_key=f"saved {index}", **{name: getattr(row, name) for name in given})
        saved.save()
        saved.refresh_from_db()
        for field in Message._meta.concrete_fields:
            if field.attname not in set_apart:
                assert getattr(row, field.attname) == getattr(saved, field.attname), field.name
        assert row.ingested_at <= row.updated_at <= saved.ingested_at


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


def _prepared_stores(cursor) -> list[tuple[str, int, int]]:
    cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements "
                   "WHERE name LIKE 'mailscore_store_%' ORDER BY name")  # fmt: skip
    return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_the_store_is_prepared_once_per_connection_and_planned_once_for_every_key():
    connection.close()
    for index in range(8):
        ingest_raw(
            raw_message(f"plan {index}", message_id=f"<plan{index}@store.test>"), source="api"
        )
    with connection.cursor() as cursor:
        ((name, generic, custom),) = _prepared_stores(cursor)
    # PostgreSQL plans the first five runs for their keys, then keeps one plan for all.
    assert (generic, custom) == (3, 5)
    # A new connection prepares it again, under the same name.
    connection.close()
    copy = ingest_raw(raw_message("plan 0", message_id="<plan0@store.test>"), source="api")
    assert not copy.created
    with connection.cursor() as cursor:
        assert _prepared_stores(cursor) == [(name, 0, 1)]


@pytest.mark.django_db(transaction=True)
def test_the_plan_kept_for_every_key_reads_the_dedupe_index_not_every_row():
    # A plan made without the key that read rows in id order, stopping at the first match, would
    # read a whole partition for a key stored nowhere: the look-up must use the dedupe index.
    ingest_raw(raw_message("index", message_id="<index@store.test>"), source="api")
    statements = ingest._statements(True)
    name = statements.prepare.split()[1]
    values = [ingest._default_values().get(f.attname) for f in statements.inserted]
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            placeholders = ", ".join(["%s"] * (len(values) + 1))
            cursor.execute(cursor.mogrify(f"EXPLAIN EXECUTE {name}({placeholders})",
                                          ["nowhere", *values]))  # fmt: skip
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("RESET plan_cache_mode")
    scans = [line for line in plan.splitlines() if " Scan " in line or "Scan on" in line]
    assert scans and all("dedupe_key" in line for line in scans if "inbox_message" in line), plan
    assert "pkey" not in plan, plan


@pytest.mark.django_db(transaction=True)
def test_the_store_sent_as_text_where_prepared_statements_are_turned_off(settings):
    settings.MAILSCORE_PREPARED_STORE = False
    connection.close()
    first = ingest_raw(raw_message("text", message_id="<text@store.test>"), source="api")
    copy = ingest_raw(raw_message("text", message_id="<text@store.test>"), source="api")
    assert first.created and not copy.created and copy.message.id == first.message.id
    with connection.cursor() as cursor:
        assert _prepared_stores(cursor) == []


@pytest.fixture
def text_mode_restored():
    yield
    ingest._store_as_text = False


@pytest.mark.django_db(transaction=True)
def test_a_prepared_store_gone_missing_is_stored_as_text_from_then_on(text_mode_restored, caplog):
    # What a pooler in transaction mode (or one that resets server connections) does to a
    # session's prepared statements, done here by hand: the store must not fail for it.
    first = ingest_raw(raw_message("before", message_id="<before@store.test>"), source="api")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    result = ingest_raw(raw_message("after", message_id="<after@store.test>"), source="api")
    assert first.created and result.created
    assert Message.objects.filter(message_id_header="<after@store.test>").count() == 1
    assert "MAILSCORE_PREPARED_STORE=off" in caplog.text
    # From then on the store goes as text: a new connection prepares nothing.
    connection.close()
    copy = ingest_raw(raw_message("after", message_id="<after@store.test>"), source="api")
    assert not copy.created and copy.message.id == result.message.id
    with connection.cursor() as cursor:
        assert _prepared_stores(cursor) == []


@pytest.mark.django_db(transaction=True)
def test_a_prepared_store_gone_missing_inside_a_transaction_fails_with_it(text_mode_restored):
    ingest_raw(raw_message("first", message_id="<first@store.test>"), source="api")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # The caller's transaction has ended with the error: nothing of it may be stored.
    with pytest.raises(DatabaseError), transaction.atomic():
        ingest_raw(raw_message("inside", message_id="<inside@store.test>"), source="api")
    assert not Message.objects.filter(message_id_header="<inside@store.test>").exists()
    assert not ingest._store_as_text
