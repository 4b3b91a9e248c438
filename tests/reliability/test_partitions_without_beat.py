"""Beat stopped across two month ends: mail posted to the API keeps landing in its month's
partition and the verification table keeps taking rows, with no partition job run in between.

Real processes cannot move their clocks, so this runs in the test process against the test
database with the clock moved. tests/core/test_partitions.py covers the partition job itself
(across year ends, idempotent) and ingest_raw one month ahead; this covers the API path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.core.partitions import (
    add_months,
    ensure_partitions,
    month_start,
    partition_name,
    partitions,
)
from apps.verification.models import VerificationResult

pytestmark = [pytest.mark.reliability, pytest.mark.django_db]


def covering(table: str, moment: datetime) -> str | None:
    """The partition of table whose range holds moment."""
    found = [p.name for p in partitions(table) if p.lower <= moment < p.upper]
    return found[0] if found else None


def stored_in(message_pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM inbox_message WHERE id = %s",
                       [message_pk])  # fmt: skip
        return cursor.fetchone()[0]


def raw_message(tag: str, date: datetime | None) -> bytes:
    header = f"Date: {format_datetime(date)}\n" if date else ""
    return (f"From: Alice <alice@normal.test>\nTo: support@mailscore.test\nSubject: {tag}\n"
            f"Message-ID: <month-end-{tag}@mailscore.test>\n{header}\n"
            f"Order {tag}: where is it?\n").encode()  # fmt: skip


def test_beat_stopped_across_month_end():
    # Beat's last partition run happened now; then beat stops.
    now = datetime.now(UTC).replace(microsecond=0)
    ensure_partitions(now, months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
                      retention_days=settings.MAILSCORE_RETENTION_DAYS)  # fmt: skip
    _, key = ApiKey.issue("month-end")
    client = APIClient(HTTP_X_API_KEY=key)
    run = now.strftime("%Y%m%d%H%M%S")
    this_month = month_start(now)
    first_end, second_end = add_months(this_month, 1), add_months(this_month, 2)
    moments = [
        # (the clock, the message's Date, the month it belongs to)
        (first_end - timedelta(seconds=2), first_end - timedelta(seconds=2), this_month),
        (first_end + timedelta(minutes=1), first_end + timedelta(minutes=1), first_end),
        # Late mail: dated last month, arriving after the month's end.
        (first_end + timedelta(minutes=2), first_end - timedelta(hours=1), this_month),
        (second_end - timedelta(seconds=2), None, first_end),
        (second_end + timedelta(minutes=1), second_end + timedelta(minutes=1), second_end),
        (second_end + timedelta(minutes=2), None, second_end),
    ]
    for index, (clock, date, month) in enumerate(moments):
        with time_machine.travel(clock, tick=False):
            response = client.post("/api/v1/messages", raw_message(f"{run}-{index}", date),
                                   content_type="message/rfc822")  # fmt: skip
            assert response.status_code == 202, (clock, response.status_code, response.content)
            assert stored_in(response.json()["id"]) == partition_name("inbox_message", month)
            VerificationResult.objects.create(
                checked_at=clock, address="alice@normal.test", verdict="deliverable",
                reason="ok", result={}, duration_ms=1.0,
            )  # fmt: skip
            assert covering("verification_result", clock) == partition_name(
                "verification_result", month_start(clock)
            )
            if month_start(clock) == first_end:
                # One month end without beat: the next month's partitions are still there.
                for table in ("inbox_message", "verification_result"):
                    assert covering(table, second_end) == partition_name(table, second_end)
