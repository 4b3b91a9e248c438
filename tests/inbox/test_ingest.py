"""Ingest: exactly once per message, partitions by the message's own date, files by the batch."""

from __future__ import annotations

import mailbox
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from apps.inbox.engine import parse_message
from apps.inbox.ingest import ingest_paths, ingest_raw, received_at_for
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


def test_non_messages_get_a_failed_row_that_is_never_queued(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as announced:
        result = ingest_raw(b"hello there", source="api", source_detail="key tests")
    assert result.created and result.refused and not announced
    row = Message.objects.get(id=result.message.id)
    assert row.status == MessageStatus.FAILED and row.failed_step == "ingest"
    assert "not an RFC 822 message" in row.failure_reason and "From:" in row.failure_reason
    assert bytes(row.raw) == b"hello there" and row.size == 11 and row.source == "api"

    with django_capture_on_commit_callbacks(execute=False) as announced:
        again = ingest_raw(b"hello there", source="file", now=datetime.now(UTC) + timedelta(days=3))
    assert not again.created and again.refused and again.message.id == row.id and not announced
    with django_capture_on_commit_callbacks(execute=False) as announced:
        assert ingest_raw(raw_message("real mail"), source="api").created
    assert len(announced) == 1


def test_ingest_command_reads_everything_and_reports_bad_files(tmp_path, capsys):
    (tmp_path / "one.eml").write_bytes(raw_message("one", message_id="<cmd-1@normal.test>"))
    box = mailbox.mbox(str(tmp_path / "box.mbox"))
    for i in (2, 3):
        box.add(raw_message(f"number {i}", message_id=f"<cmd-{i}@normal.test>"))
    box.flush()
    maildir = mailbox.Maildir(str(tmp_path / "maildir"))
    maildir.add(raw_message("four", message_id="<cmd-4@normal.test>"))
    (tmp_path / "notes.txt").write_text("not mail")
    (tmp_path / "gone.eml").symlink_to(tmp_path / "nowhere.eml")
    with pytest.raises(CommandError, match="2 inputs could not be ingested"):
        call_command("ingest", str(tmp_path / "one.eml"), str(tmp_path / "box.mbox"),
                     str(tmp_path / "maildir"), str(tmp_path / "notes.txt"),
                     str(tmp_path / "gone.eml"))  # fmt: skip
    out, err = capsys.readouterr()
    assert "Stored 4 new messages, 0 already stored, 2 not ingested (1 of them kept as " in out
    refused = Message.objects.get(source_detail=str(tmp_path / "notes.txt"))
    assert refused.status == MessageStatus.FAILED and refused.failed_step == "ingest"
    assert bytes(refused.raw) == b"not mail" and "not an RFC 822 message" in refused.failure_reason
    assert f"notes.txt: {refused.failure_reason} (kept as failed message {refused.id})" in err
    assert "gone.eml does not exist" in err  # no bytes, so no row: only the error line
    assert Message.objects.filter(source="file").count() == 5
    assert Message.objects.filter(source="file", status=MessageStatus.QUEUED).count() == 4

    call_command("ingest", str(tmp_path / "one.eml"))
    assert "0 new messages, 1 already stored" in capsys.readouterr().out
    with pytest.raises(CommandError, match="1 inputs could not be ingested"):
        call_command("ingest", str(tmp_path / "notes.txt"))
    assert f"kept as failed message {refused.id}" in capsys.readouterr().err
    assert Message.objects.filter(source="file").count() == 5


def test_files_over_the_size_limit_get_a_failed_row_without_their_bytes(tmp_path, settings):
    settings.MAILSCORE_MAX_MESSAGE_BYTES = 1000
    big = tmp_path / "big.eml"
    big.write_bytes(raw_message("x" * 3000, message_id="<big@normal.test>"))
    errors: list[str] = []
    report = ingest_paths([big], on_error=errors.append)
    assert (report.stored, report.refused, report.errors) == (0, 1, 1)
    row = Message.objects.get(id=report.message_ids[0])
    assert row.status == MessageStatus.FAILED and row.failed_step == "ingest"
    assert bytes(row.raw) == b"" and row.size == big.stat().st_size
    assert "up to 1,000 bytes are accepted (MAILSCORE_MAX_MESSAGE_BYTES)" in row.failure_reason
    assert errors == [f"{big}: {row.failure_reason} (kept as failed message {row.id})"]
    again = ingest_paths([big], on_error=errors.append)
    assert again.message_ids == [row.id] and Message.objects.count() == 1


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


def test_rerun_failed_with_nothing_failed_says_so_and_succeeds(capsys):
    ingest_raw(raw_message("fine"), source="api")
    call_command("rerun", "--failed")
    assert capsys.readouterr().out.strip() == (
        "Nothing to re-run: no message has failed in the chain."
    )
    refused = ingest_raw(b"\x00\x01 not mail", source="api").message
    call_command("rerun", "--failed")
    out = capsys.readouterr().out
    assert "Nothing to re-run" in out and "1 inputs refused at ingest" in out
    assert Message.objects.get(id=refused.id).status == MessageStatus.FAILED


def test_rerun_of_input_refused_at_ingest_is_refused_with_the_reason(capsys):
    refused = ingest_raw(b"\x00\x01 not mail", source="api").message
    with pytest.raises(CommandError, match=f"Refused at ingest .*: {refused.id}"):
        call_command("rerun", str(refused.id))
    assert "Queued 0 messages" in capsys.readouterr().out
    row = Message.objects.get(id=refused.id)
    assert (row.status, row.failed_step, row.runs) == (MessageStatus.FAILED, "ingest", 1)
