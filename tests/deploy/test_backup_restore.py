"""Backups for real: a populated database dumped as the chart's backup CronJob does (pg_dump -Fc)
and restored with pg_restore into a fresh PostgreSQL server gives back every message, result and
partition (docs/operations.md, "Restore from a backup")."""

from __future__ import annotations

import itertools
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import sql

from apps.core.partitions import ensure_partitions
from apps.core.retention import retention_days
from apps.inbox import claims
from apps.inbox.engine.mailbox import iter_messages
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageSource, MessageStatus
from apps.verification.models import VerificationResult
from tasks import pipeline
from tests.pipeline.conftest import empty_queues  # noqa: F401
from tests.reliability.system import SAMPLES, PostgresCluster, bundled
from tests.verification.conftest import farm, farm_settings  # noqa: F401

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queues", "farm_settings", "light_triage", "team_configuration"),
]

SAMPLE_COUNT = 40
# Half of the mail lands in an earlier month's partition: still inside the retention period.
EARLIER = timedelta(days=35)
RESTORED_DATABASE = "mailscore_restored"

TABLES = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""
PARTITIONS = """
    SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid)
    FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent
    JOIN pg_class child ON child.oid = i.inhrelid ORDER BY 1, 2
"""
INDEXES = """
    SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2
"""
SEQUENCES = """
    SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1
"""
MESSAGE_KEYS = """
    SELECT id, received_at, dedupe_key, status, failed_step, category, category_confidence,
           priority, summary, draft_reply, sender_verdict, sender_trust, tableoid::regclass::text,
           md5(raw), md5(steps::text), md5(category_result::text), md5(sender_result::text)
    FROM inbox_message ORDER BY id
"""
# Every row of a table, in an order that does not depend on how the rows are stored.
TABLE_CONTENTS = sql.SQL(
    "SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) "
    "FROM {} t"
)
VERIFICATION_KEYS = """
    SELECT id, checked_at, address, verdict, reason, message_id, md5(result::text),
           tableoid::regclass::text
    FROM verification_result ORDER BY id
"""


@pytest.fixture
def light_triage(settings, monkeypatch):
    """The chain on rules and the light model (MAILSCORE_TRIAGE_MODE=fallback, docs/triage.md):
    this test is about the database, and loading the encoder would take most of its minute. The
    process's own triager comes back afterwards."""
    from apps.triage import services

    settings.MAILSCORE_TRIAGE = {**settings.MAILSCORE_TRIAGE, "mode": "fallback"}
    monkeypatch.setattr(services, "_triager", None)
    monkeypatch.setattr(services, "_revision", None)


def populate() -> list[int]:
    """Real mail from the sample mailbox through ingest and the whole chain, half of it in an
    earlier month; one input that is not mail; one duplicate."""
    now = timezone.now()
    ensure_partitions(now, months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
                      retention_days=retention_days())  # fmt: skip
    samples = [item.raw for item in itertools.islice(iter_messages([str(SAMPLES)]), SAMPLE_COUNT)]
    ids = [
        ingest_raw(raw, source=MessageSource.FILE, source_detail=f"demo.mbox#{number}",
                   now=now - EARLIER if number % 2 else now).message.id
        for number, raw in enumerate(samples)
    ]  # fmt: skip
    assert not ingest_raw(samples[0], source=MessageSource.API).created
    refused = ingest_raw(b"\x00\x01 not mail at all", source=MessageSource.API)
    assert refused.refused
    claim = claims.claim_queued(len(ids), lease_seconds=300)
    batch = {"claim": claim.token, "ids": claim.message_ids}
    for step in (pipeline.classify, pipeline.prioritize, pipeline.summarize, pipeline.draft_reply,
                 pipeline.verify_sender):  # fmt: skip
        step(batch)
    return [*ids, refused.message.id]


def source_conninfo() -> str:
    """libpq's connection string for the test database, the one populate() filled."""
    database = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=database["HOST"] or None, port=str(database["PORT"] or "") or None,
        user=database["USER"] or None, password=database["PASSWORD"] or None,
        dbname=database["NAME"],
    )  # fmt: skip


def dump_source(path: Path) -> float:
    """A custom-format dump of the test database, with the backup CronJob's options
    (deploy/helm/mailscore/templates/backup.yaml); returns seconds."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(postgres_bin() / "pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
         f"--dbname={source_conninfo()}", f"--file={path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - started


def restore(cluster: PostgresCluster, path: Path) -> float:
    """pg_restore into an empty database of a fresh server; returns seconds."""
    cluster.execute(f"CREATE DATABASE {RESTORED_DATABASE}")
    started = time.perf_counter()
    result = subprocess.run(
        [str(postgres_bin() / "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
         "--dbname", cluster.url(RESTORED_DATABASE), str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - started


def postgres_bin() -> Path:
    return bundled("pgserver", "pginstall", "bin")


def snapshot(conn: psycopg.Connection) -> dict:
    """What a restore must give back: every table's row count and a checksum of all its rows
    (each partition on its own too), the partitions and their bounds, the indexes and unique
    constraints, where the id sequences stand, and the key columns of messages and results."""
    tables = [name for (name,) in conn.execute(TABLES)]
    return {
        "tables": {
            table: conn.execute(TABLE_CONTENTS.format(sql.Identifier(table))).fetchone()
            for table in tables
        },
        "partitions": conn.execute(PARTITIONS).fetchall(),
        "indexes": conn.execute(INDEXES).fetchall(),
        "sequences": conn.execute(SEQUENCES).fetchall(),
        "messages": conn.execute(MESSAGE_KEYS).fetchall(),
        "verifications": conn.execute(VERIFICATION_KEYS).fetchall(),
    }


def test_a_dump_restores_every_message_result_and_partition(tmp_path, record_property):
    ids = populate()
    finished = Message.objects.filter(
        id__in=ids, status__in=(MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW)
    )
    assert finished.count() == SAMPLE_COUNT, list(
        Message.objects.values_list("status", "failure_reason")
    )
    assert finished.exclude(category="").exclude(summary="").count() == SAMPLE_COUNT
    assert VerificationResult.objects.filter(message_id__in=ids).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT tableoid) FROM inbox_message")
        assert cursor.fetchone()[0] >= 2, "the mail should span more than one month's partition"

    dump = tmp_path / "mailscore.dump"
    dump_seconds = dump_source(dump)
    cluster = PostgresCluster(tmp_path / "restored-server")
    try:
        cluster.initialize()
        cluster.start()
        restore_seconds = restore(cluster, dump)
        with (
            psycopg.connect(source_conninfo()) as source,
            psycopg.connect(cluster.url(RESTORED_DATABASE)) as restored,
        ):
            expected, found = snapshot(source), snapshot(restored)
    finally:
        cluster.shutdown()

    assert expected["messages"] and expected["verifications"]
    assert len(expected["partitions"]) >= 4
    for part in ("tables", "partitions", "indexes", "sequences", "messages", "verifications"):
        assert found[part] == expected[part], f"the restored {part} differ"
    size_kib = dump.stat().st_size / 1024
    record_property("backup_dump_seconds", round(dump_seconds, 3))
    record_property("backup_restore_seconds", round(restore_seconds, 3))
    record_property("backup_dump_kib", round(size_kib))
    print(f"\nbackup: {len(ids)} messages, dump {size_kib:.0f} KiB; pg_dump -Fc {dump_seconds:.2f} s, "
          f"pg_restore {restore_seconds:.2f} s")  # fmt: skip
