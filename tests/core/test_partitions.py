"""Monthly partitions on real PostgreSQL, with the clock moved across month and year ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from apps.core import partitions
from apps.core.partitions import add_months, ensure_partitions, month_start
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message
from apps.verification.models import VerificationResult
from tasks import maintenance

pytestmark = pytest.mark.django_db

RAW = b"From: a@example.com\nSubject: s\nMessage-ID: <%s@example.com>\nDate: %s\n\nbody\n"


def names(table: str) -> list[str]:
    return [p.name for p in partitions.partitions(table)]


def test_month_arithmetic_crosses_year_ends():
    assert add_months(datetime(2026, 11, 1, tzinfo=UTC), 2) == datetime(2027, 1, 1, tzinfo=UTC)
    assert add_months(datetime(2026, 1, 1, tzinfo=UTC), -1) == datetime(2025, 12, 1, tzinfo=UTC)
    late = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert month_start(late) == datetime(2026, 12, 1, tzinfo=UTC)


def test_migrate_created_partitions_two_months_ahead():
    current = month_start(datetime.now(UTC))
    for table in partitions.PARTITIONED_TABLES:
        uppers = [p.upper for p in partitions.partitions(table)]
        assert max(uppers) >= add_months(current, 3), table


def test_partitions_are_created_ahead_across_a_year_end_and_idempotently():
    # 30 December 2030: the job must reach into February 2031.
    with time_machine.travel(datetime(2030, 12, 30, 23, 0, tzinfo=UTC), tick=False):
        created = maintenance.create_partitions()
        assert "inbox_message_p203101" in created and "inbox_message_p203102" in created
        assert "verification_result_p203102" in created
        assert maintenance.create_partitions() == []  # a second run changes nothing
    # A message received on New Year's Eve night lands in January's partition.
    at = datetime(2031, 1, 1, 0, 30, tzinfo=UTC)
    result = ingest_raw(RAW % (b"nye", b"Wed, 01 Jan 2031 00:30:00 +0000"), source="api",
                        now=at)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM inbox_message WHERE id = %s",
                       [result.message.id])  # fmt: skip
        assert cursor.fetchone()[0] == "inbox_message_p203101"


def test_a_dead_beat_at_months_end_does_not_stop_ingest():
    # The partitions exist two months ahead, so a month's end passes without the job running.
    now = datetime.now(UTC)
    ensure_partitions(now, months_ahead=2, retention_days=90)
    next_month = add_months(month_start(now), 1) + timedelta(hours=1)
    ingest_raw(RAW % (b"nextmonth", b"x"), source="api", now=next_month)
    assert (
        Message.objects.get(message_id_header="<nextmonth@example.com>").received_at == next_month
    )


def test_retention_archives_then_drops_whole_expired_months(tmp_path, settings):
    settings.MAILSCORE_RETENTION_DAYS = 90
    settings.MAILSCORE_ARCHIVE = True
    settings.MAILSCORE_ARCHIVE_DIR = tmp_path
    start = datetime(2032, 3, 15, 12, 0, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        maintenance.create_partitions()
        for day, tag in ((datetime(2032, 1, 10, tzinfo=UTC), b"jan"),
                         (datetime(2032, 2, 27, tzinfo=UTC), b"feb"),
                         (datetime(2032, 3, 14, tzinfo=UTC), b"mar")):  # fmt: skip
            ingest_raw(RAW % (tag, b"x"), source="api", now=day)
        VerificationResult.objects.create(
            checked_at=datetime(2032, 1, 31, 23, 59, tzinfo=UTC), address="a@example.com",
            verdict="deliverable", reason="ok", result={}, duration_ms=1.0,
        )  # fmt: skip
        # Today's real partitions lie in this moved clock's past and go; none of 2032 does.
        assert not [d for d in maintenance.apply_retention() if "2032" in d["partition"]]

    # 1 May 2032, a second past midnight: January ended 90 days and a second ago (2032 is a
    # leap year); February ended 61 days ago.
    with time_machine.travel(datetime(2032, 5, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        done = maintenance.apply_retention()
        assert {d["partition"] for d in done if "2032" in d["partition"]} == {
            "inbox_message_p203201", "verification_result_p203201"}  # fmt: skip
        assert "inbox_message_p203201" not in names("inbox_message")
        assert "inbox_message_p203202" in names("inbox_message")
        assert maintenance.apply_retention() == []  # idempotent
    assert list(Message.objects.filter(received_at__year=2032).values_list(
        "message_id_header", flat=True).order_by("received_at")) == [
        "<feb@example.com>", "<mar@example.com>"]  # fmt: skip

    archived = partitions.read_archive(
        tmp_path / "inbox_message" / "inbox_message_p203201.jsonl.gz"
    )
    assert [row["message_id_header"] for row in archived] == ["<jan@example.com>"]
    assert bytes.fromhex(archived[0]["raw"][2:]).startswith(b"From: a@example.com")
    results = partitions.read_archive(
        tmp_path / "verification_result" / "verification_result_p203201.jsonl.gz")  # fmt: skip
    assert results[0]["address"] == "a@example.com"

    # 1 June: February ended 92 days ago and goes; March ended 61 days ago and stays.
    with time_machine.travel(datetime(2032, 6, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        done = maintenance.apply_retention()
        assert [d["partition"] for d in done if d["partition"].startswith("inbox_message_p2032")] == [
            "inbox_message_p203202"]  # fmt: skip
        assert "inbox_message_p203203" in names("inbox_message")


def test_an_unwritable_archive_directory_drops_nothing(tmp_path, settings):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings.MAILSCORE_ARCHIVE = True
    settings.MAILSCORE_ARCHIVE_DIR = blocker
    with time_machine.travel(datetime(2033, 3, 15, tzinfo=UTC), tick=False):
        maintenance.create_partitions()
        ingest_raw(RAW % (b"kept", b"x"), source="api", now=datetime(2033, 1, 5, tzinfo=UTC))
    moved = time_machine.travel(datetime(2033, 5, 1, 0, 0, 1, tzinfo=UTC), tick=False)
    with moved, pytest.raises(OSError):
        maintenance.apply_retention()
    assert "inbox_message_p203301" in names("inbox_message")
    assert Message.objects.filter(message_id_header="<kept@example.com>").exists()
