"""Retention forgets for real: mail dated in an old month, its verification results, mail
evidence, validate answers, verifier cache entries and encoder vectors, then the retention job at
a moved clock. Afterwards no table, no archive file and no Redis entry holds anything of it;
with archiving on, the archives are private to the service's user and go after their own
retention period."""

from __future__ import annotations

import asyncio
import os
import stat
from datetime import UTC, datetime

import numpy as np
import pytest
import redis
import time_machine
from django.conf import settings
from django.db import connection

from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message
from apps.triage import encodings
from apps.triage.engine.encoder import Encoded
from apps.verification import validation
from apps.verification.engine.cache import RedisCache, redis_client
from apps.verification.models import MailEvidence, VerificationResult
from tasks import maintenance

pytestmark = pytest.mark.django_db

GONE = "gone-sender@old-mail.example"
KEPT = "kept-sender@recent-mail.example"
# Partitions for 2035 are made by the job itself; the clock is moved, the real dates untouched.
MARCH = datetime(2035, 3, 15, 12, 0, tzinfo=UTC)
JANUARY = datetime(2035, 1, 10, 9, 0, tzinfo=UTC)
RECENT = datetime(2035, 3, 14, 9, 0, tzinfo=UTC)
# January 2035 ended 89 days and 24 h before this: past the 90 days' retention by a second.
JANUARY_EXPIRED = datetime(2035, 5, 2, 0, 0, 1, tzinfo=UTC)
ENCODER = "retention-test-encoder"
DIMENSION = 4


def raw_message(sender: str, tag: str, at: datetime) -> bytes:
    return (
        f"From: Someone <{sender}>\nTo: support@example.com\nSubject: order {tag}\n"
        f"Message-ID: <{tag}@example.com>\nDate: {at:%a, %d %b %Y %H:%M:%S +0000}\n\n"
        f"Hello, my order {tag} has not arrived.\n"
    ).encode()


def store_everything_about(message: Message, address: str, at: datetime) -> None:
    """What the chain and the API keep about a message and its sender, through their own code."""
    VerificationResult.objects.create(
        checked_at=at, address=address, domain=address.split("@")[1], verdict="deliverable",
        reason="ok", message_id=message.id, result={"address": address}, duration_ms=1.0,
    )  # fmt: skip
    MailEvidence.objects.create(
        address=address, kind="sent_aligned", seen_at=at, message_id=message.id, detail=address
    )
    answer = {"verdict": "deliverable", "reason": "ok", "score": 1.0, "checks": {},
              "suggestion": None, "evidence": [{"detail": address}], "checked_at": "x"}  # fmt: skip
    validation.store_answer(address, answer)
    validation.mark_pending(address, answer, countdown=30)

    async def engine_cache_entry():
        client = redis_client(settings.REDIS_URL)
        cache = RedisCache(client, settings.MAILSCORE_VERIFICATION["cache_prefix"])
        await cache.set(f"addr:{address}", {"address": address, "verdict": "deliverable"}, 3600)
        await client.aclose()

    asyncio.run(engine_cache_entry())
    vectors = np.ones((1, DIMENSION), dtype=np.float32)
    encodings.store([(message.id, 1)], Encoded(vectors, [vectors.copy()]), ENCODER)


def rows_mentioning(text: str) -> dict[str, int]:
    """Every table (partitions included) with a row whose text contains text."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', [f"%{text}%"])
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


def redis_entries_mentioning(client: redis.Redis, text: str, message_id: int) -> list[bytes]:
    """Every Redis key whose name or string value holds text, or that is keyed by message_id."""
    needle = text.encode()
    found = []
    for key in client.scan_iter(count=1000):
        keyed_by_message = key.endswith(f":{message_id}:1".encode())
        holds_text = client.type(key) == b"string" and needle in (client.get(key) or b"")
        if needle in key or keyed_by_message or holds_text:
            found.append(key)
    return found


@pytest.fixture
def mail(settings):
    """An expired and a recent message with everything kept about each; Redis cleaned after."""
    settings.MAILSCORE_RETENTION_DAYS = 90
    settings.MAILSCORE_VALIDATE_TTL_DELIVERABLE = 3600
    client = redis.Redis.from_url(settings.REDIS_URL)
    with time_machine.travel(MARCH, tick=False):
        maintenance.create_partitions()
        gone = ingest_raw(raw_message(GONE, "gone", JANUARY), source="api", now=JANUARY).message
        kept = ingest_raw(raw_message(KEPT, "kept", RECENT), source="api", now=RECENT).message
        store_everything_about(gone, GONE, JANUARY)
        store_everything_about(kept, KEPT, RECENT)
    assert rows_mentioning(GONE) and redis_entries_mentioning(client, GONE, gone.id)
    yield gone, kept, client
    for address, message in ((GONE, gone), (KEPT, kept)):
        for key in redis_entries_mentioning(client, address, message.id):
            client.delete(key)
    client.close()


def test_with_archiving_off_nothing_of_an_expired_message_remains(mail, settings, tmp_path):
    gone, kept, client = mail
    assert settings.MAILSCORE_ARCHIVE is False  # the default
    settings.MAILSCORE_ARCHIVE_DIR = tmp_path / "archive"
    with time_machine.travel(JANUARY_EXPIRED, tick=False):
        done = maintenance.apply_retention()
    assert {"partition": "inbox_message_p203501", "rows": 1, "archive": None} in done

    assert rows_mentioning(GONE) == {}
    assert not Message.objects.filter(id=gone.id).exists()
    assert redis_entries_mentioning(client, GONE, gone.id) == []
    assert not (tmp_path / "archive").exists()
    # The recent message and what is kept about its sender stay.
    assert Message.objects.filter(id=kept.id).exists()
    assert set(rows_mentioning(KEPT)) >= {"inbox_message_p203503", "verification_mail_evidence"}
    assert len(redis_entries_mentioning(client, KEPT, kept.id)) == 4


def test_with_archiving_on_archives_are_private_and_expire(mail, settings, tmp_path):
    gone, _, client = mail
    archive = tmp_path / "archive"
    settings.MAILSCORE_ARCHIVE = True
    settings.MAILSCORE_ARCHIVE_DIR = archive
    settings.MAILSCORE_ARCHIVE_RETENTION_DAYS = 120
    previous = os.umask(0)  # the widest umask: the modes must come from the code alone
    try:
        with time_machine.travel(JANUARY_EXPIRED, tick=False):
            maintenance.apply_retention()
    finally:
        os.umask(previous)

    january = archive / "inbox_message" / "inbox_message_p203501.jsonl.gz"
    results = archive / "verification_result" / "verification_result_p203501.jsonl.gz"
    assert january.exists() and results.exists()
    for path in (january, results):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (archive, january.parent, results.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert rows_mentioning(GONE) == {}
    assert redis_entries_mentioning(client, GONE, gone.id) == []

    # January ended on 1 February; 120 days later (1 June) its archives go too, by the same job.
    with time_machine.travel(datetime(2035, 5, 31, 23, 0, tzinfo=UTC), tick=False):
        maintenance.apply_retention()
    assert january.exists()
    with time_machine.travel(datetime(2035, 6, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        maintenance.apply_retention()
    assert not january.exists() and not results.exists()
    leftovers = [p for p in archive.rglob("*") if p.is_file() and "203501" in p.name]
    assert leftovers == []


def test_turning_archiving_off_still_deletes_old_archives(settings, tmp_path):
    archive = tmp_path / "archive"
    old = archive / "inbox_message" / "inbox_message_p203501.jsonl.gz"
    crashed = archive / "verification_result" / "verification_result_p203501.jsonl.gz.partial"
    newer = archive / "inbox_message" / "inbox_message_p203505.jsonl.gz"
    for path in (old, crashed, newer):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"mail")
    settings.MAILSCORE_ARCHIVE = False
    settings.MAILSCORE_ARCHIVE_DIR = archive
    settings.MAILSCORE_ARCHIVE_RETENTION_DAYS = 120
    with time_machine.travel(datetime(2035, 6, 1, 0, 0, 1, tzinfo=UTC), tick=False):
        maintenance.apply_retention()
    assert not old.exists() and not crashed.exists()
    assert newer.exists()
