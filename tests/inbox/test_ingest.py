"""Ingest: exactly once per message, partitions by the message's own date, files by the batch."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from apps.inbox.engine import parse_message
from apps.inbox.ingest import InvalidMessage, ingest_raw, received_at_for
from apps.inbox.models import Message, MessageStatus
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db


def test_same_message_id_is_stored_once_even_at_another_time():
    raw = raw_message("hello", message_id="<twice@normal.test>")
    first = ingest_raw(raw, source="api")
    later = ingest_raw(raw, source="file", now=datetime.now(UTC) + timedelta(days=40))
    assert first.created and not later.created and later.message.id == first.message.id


def test_messages_without_message_id_are_identified_by_their_bytes():
    raw = b"From: a@example.com\nSubject: no id\n\nbody\n"
    assert ingest_raw(raw, source="api").created
    assert not ingest_raw(raw, source="api").created
    assert ingest_raw(raw + b"more\n", source="api").created


def test_received_at_is_the_date_when_plausible():
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    recent = parse_message(b"From: a@b.com\nDate: Fri, 20 Nov 2026 08:00:00 +0000\n\nx")
    assert received_at_for(recent, now) == datetime(2026, 11, 20, 8, tzinfo=UTC)
    ancient = parse_message(b"From: a@b.com\nDate: Fri, 20 Nov 1998 08:00:00 +0000\n\nx")
    future = parse_message(b"From: a@b.com\nDate: Fri, 20 Nov 2099 08:00:00 +0000\n\nx")
    assert received_at_for(ancient, now) == now and received_at_for(future, now) == now


def test_dates_with_offsets_postgresql_refuses_are_stored_in_utc():
    raw = b"From: a@example.com\nSubject: x\nDate: Fri, 13 Sep 2002 18:34:51 -1600\n\nbody\n"
    message = ingest_raw(raw, source="api").message
    message.refresh_from_db()
    assert message.sent_at == datetime(2002, 9, 14, 10, 34, 51, tzinfo=UTC)


def test_non_messages_are_refused():
    with pytest.raises(InvalidMessage, match="RFC 822"):
        ingest_raw(b"hello there", source="api")


def test_ingest_command_reads_everything_and_reports_bad_files(tmp_path, capsys):
    (tmp_path / "one.eml").write_bytes(raw_message("one", message_id="<cmd-1@normal.test>"))
    box = mailbox.mbox(str(tmp_path / "box.mbox"))
    for i in (2, 3):
        box.add(raw_message(f"number {i}", message_id=f"<cmd-{i}@normal.test>"))
    box.flush()
    maildir = mailbox.Maildir(str(tmp_path / "maildir"))
    maildir.add(raw_message("four", message_id="<cmd-4@normal.test>"))
    (tmp_path / "notes.txt").write_text("not mail")
    with pytest.raises(CommandError, match="1 inputs could not be ingested"):
        call_command("ingest", str(tmp_path / "one.eml"), str(tmp_path / "box.mbox"),
                     str(tmp_path / "maildir"), str(tmp_path / "notes.txt"))  # fmt: skip
    out, err = capsys.readouterr()
    assert "Stored 4 new messages, 0 already stored, 1 not ingested." in out
    assert "notes.txt is not an email message" in err
    assert Message.objects.filter(source="file").count() == 4

    call_command("ingest", str(tmp_path / "one.eml"))
    assert "0 new messages, 1 already stored" in capsys.readouterr().out


def test_rerun_command(capsys):
    done = ingest_raw(raw_message("a"), source="api").message
    busy = ingest_raw(raw_message("b"), source="api").message
    Message.objects.filter(id=done.id).update(status=MessageStatus.FAILED)
    call_command("rerun", "--failed")
    assert "Queued 1 messages" in capsys.readouterr().out
    assert Message.objects.get(id=done.id).status == MessageStatus.QUEUED
    with pytest.raises(CommandError, match="No such messages: 999999999"):
        call_command("rerun", str(busy.id), "999999999")
    assert str(busy.id) in capsys.readouterr().err
