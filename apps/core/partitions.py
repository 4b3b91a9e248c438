"""Monthly partitions of the message and verification tables: create ahead, archive, drop.

Both jobs are idempotent and take the current time as an argument, so that beat, migrate and the
tests (with a moved clock) run the same code. Partition bounds are read from PostgreSQL's catalog,
not from partition names, so a partition made by hand is handled like ours.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.db import connection, transaction

logger = logging.getLogger(__name__)

# Each partitioned table and the column it is partitioned on.
PARTITIONED_TABLES = {
    "inbox_message": "received_at",
    "verification_result": "checked_at",
}

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    lower: datetime
    upper: datetime


@dataclass(frozen=True)
class ArchivedPartition:
    table: str
    name: str
    rows: int
    path: Path


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + month.month - 1 + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month:%Y%m}"


def _table_exists(cursor, table: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
    return bool(cursor.fetchone()[0])


def partitions(table: str) -> list[Partition]:
    """The table's range partitions, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT child.relname, pg_get_expr(child.relpartbound, child.oid)
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            JOIN pg_namespace ns ON ns.oid = parent.relnamespace
            WHERE parent.relname = %s AND ns.nspname = current_schema()
            """,
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:  # a DEFAULT partition has no bounds and is never dropped
            lower, upper = (datetime.fromisoformat(value) for value in match.groups())
            found.append(Partition(table, name, lower.astimezone(UTC), upper.astimezone(UTC)))
    return sorted(found, key=lambda p: p.lower)


def ensure_partitions(now: datetime, *, months_ahead: int, retention_days: int) -> list[str]:
    """Create every monthly partition from the one holding now - retention_days up to
    months_ahead months after now's. Returns the names of the partitions created."""
    first = month_start(now - timedelta(days=retention_days))
    last = add_months(month_start(now), months_ahead)
    created = []
    with connection.cursor() as cursor:
        for table in PARTITIONED_TABLES:
            if not _table_exists(cursor, table):
                continue
            existing = [(p.lower, p.upper) for p in partitions(table)]
            month = first
            while month <= last:
                following = add_months(month, 1)
                overlaps = any(lo < following and month < hi for lo, hi in existing)
                if not overlaps:
                    name = partition_name(table, month)
                    cursor.execute(
                        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                        "FOR VALUES FROM (%s) TO (%s)",
                        [month.isoformat(), following.isoformat()],
                    )
                    created.append(name)
                month = following
    if created:
        logger.info("Created partitions: %s", ", ".join(created))
    return created


def expired_partitions(now: datetime, retention_days: int) -> list[Partition]:
    """Partitions whose every row is older than the retention period."""
    cutoff = now - timedelta(days=retention_days)
    with connection.cursor() as cursor:
        tables = [t for t in PARTITIONED_TABLES if _table_exists(cursor, t)]
    return [p for table in tables for p in partitions(table) if p.upper <= cutoff]


def _archive_rows(partition: Partition, destination: Path) -> int:
    """Write the partition's rows as gzip-compressed JSON lines; return how many were written.

    The file appears under its final name only once it is complete and on disk."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    rows = 0
    with connection.chunked_cursor() as cursor:
        cursor.execute(f'SELECT row_to_json(t)::text FROM "{partition.name}" t ORDER BY t.id')
        with open(partial, "wb") as raw_file:
            with gzip.GzipFile(fileobj=raw_file, mode="wb") as archive:
                while batch := cursor.fetchmany(1000):
                    for (line,) in batch:
                        archive.write(line.encode("utf-8") + b"\n")
                        rows += 1
            raw_file.flush()
            os.fsync(raw_file.fileno())
    os.replace(partial, destination)
    return rows


def archive_and_drop(partition: Partition, archive_dir: Path) -> ArchivedPartition:
    """Archive one partition, then drop it, in one transaction.

    The partition is locked against writes while it is archived, so the archive holds every row
    that is dropped. Run again after a crash, it writes the same archive again and drops."""
    destination = archive_dir / partition.table / f"{partition.name}.jsonl.gz"
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'LOCK TABLE "{partition.name}" IN SHARE MODE')
        rows = _archive_rows(partition, destination)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE "{partition.name}"')
    logger.info("Archived %d rows of %s to %s and dropped it", rows, partition.name, destination)
    return ArchivedPartition(partition.table, partition.name, rows, destination)


def apply_retention(now: datetime, *, retention_days: int, archive_dir: Path) -> list:
    return [archive_and_drop(p, archive_dir) for p in expired_partitions(now, retention_days)]


def read_archive(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        return [json.loads(line) for line in archive]
