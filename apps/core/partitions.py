"""Monthly partitions of the message and verification tables: create ahead, archive, drop.

Archives hold other people's mail, so they are written only when asked for (archive_dir given),
readable by the service's user alone (files 0600 in 0700 directories, whatever the umask), and
deleted in their turn once older than their own retention period.

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
class DroppedPartition:
    """A dropped partition: its row count, its archive (None when archiving is off), and the
    normalisable addresses it held, so that caches keyed by them can be forgotten too."""

    table: str
    name: str
    rows: int
    path: Path | None
    addresses: frozenset[str] = frozenset()


# The column of each partitioned table that holds an address, for the caches keyed by address.
ADDRESS_COLUMNS = {
    "inbox_message": "from_address",
    "verification_result": "address",
}
ARCHIVE_FILE_MODE = 0o600
ARCHIVE_DIR_MODE = 0o700
_ARCHIVE_NAME = re.compile(r"_p(\d{4})(\d{2})\.jsonl\.gz(\.partial)?$")


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
    _private_directory(destination.parent.parent)
    _private_directory(destination.parent)
    partial = destination.with_name(destination.name + ".partial")
    rows = 0
    with connection.chunked_cursor() as cursor:
        cursor.execute(f'SELECT row_to_json(t)::text FROM "{partition.name}" t ORDER BY t.id')  # noqa: S608 (a partition's name from the catalog, quoted; never input)
        # Created with its mode rather than chmod-ed after: no moment when others could open it.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ARCHIVE_FILE_MODE)
        os.fchmod(descriptor, ARCHIVE_FILE_MODE)  # a partial file left by a crash keeps its mode
        with os.fdopen(descriptor, "wb") as raw_file:
            with gzip.GzipFile(fileobj=raw_file, mode="wb") as archive:
                while batch := cursor.fetchmany(1000):
                    for (line,) in batch:
                        archive.write(line.encode("utf-8") + b"\n")
                        rows += 1
            raw_file.flush()
            os.fsync(raw_file.fileno())
    os.replace(partial, destination)
    return rows


def _private_directory(path: Path) -> None:
    """Create path readable by its owner alone; tighten it if it exists (mkdir's mode is
    narrowed by the umask, and an existing directory keeps whatever mode it had)."""
    path.mkdir(mode=ARCHIVE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, ARCHIVE_DIR_MODE)


def _addresses(partition: Partition) -> frozenset[str]:
    column = ADDRESS_COLUMNS.get(partition.table)
    if column is None:
        return frozenset()
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT DISTINCT lower("{column}") FROM "{partition.name}" WHERE "{column}" <> %s',  # noqa: S608 (our column and partition names, quoted; values are parameters)
            [""],
        )
        return frozenset(address for (address,) in cursor.fetchall())


def drop_expired(partition: Partition, archive_dir: Path | None) -> DroppedPartition:
    """Drop one partition, archiving it first when archive_dir is given, in one transaction.

    The partition is locked against writes meanwhile, so the archive holds every row that is
    dropped. Run again after a crash, it writes the same archive again and drops."""
    destination = None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f'LOCK TABLE "{partition.name}" IN SHARE MODE')
            cursor.execute(f'SELECT count(*) FROM "{partition.name}"')  # noqa: S608 (a partition's name from the catalog, quoted)
            rows = cursor.fetchone()[0]
        addresses = _addresses(partition)
        if archive_dir is not None:
            destination = archive_dir / partition.table / f"{partition.name}.jsonl.gz"
            rows = _archive_rows(partition, destination)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE "{partition.name}"')
    if destination is None:
        logger.info("Dropped %s (%d rows, not archived)", partition.name, rows)
    else:
        logger.info(
            "Archived %d rows of %s to %s and dropped it", rows, partition.name, destination
        )
    return DroppedPartition(partition.table, partition.name, rows, destination, addresses)


def expired_archives(now: datetime, archive_dir: Path, archive_retention_days: int) -> list[Path]:
    """Archive files (and partial files a crash left) whose month ended more than
    archive_retention_days ago. The month is read from the file's name, not its mtime, which
    a copy or a restore changes."""
    cutoff = now - timedelta(days=archive_retention_days)
    found = []
    for table in PARTITIONED_TABLES:
        directory = archive_dir / table
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            match = _ARCHIVE_NAME.search(path.name)
            if match is None or not path.is_file():
                continue
            month = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
            if add_months(month, 1) <= cutoff:
                found.append(path)
    return sorted(found)


def delete_expired_archives(
    now: datetime, archive_dir: Path, archive_retention_days: int
) -> list[Path]:
    deleted = expired_archives(now, archive_dir, archive_retention_days)
    for path in deleted:
        path.unlink(missing_ok=True)
    if deleted:
        logger.info("Deleted %d archives past their retention period", len(deleted))
    return deleted


def apply_retention(
    now: datetime,
    *,
    retention_days: int,
    archive_dir: Path | None,
    archive_retention_days: int | None = None,
    archives: Path | None = None,
) -> list[DroppedPartition]:
    """Drop (and, when archive_dir is given, first archive) every expired partition; then delete
    the archives under archives (archive_dir where not given) past archive_retention_days.
    Old archives are deleted even with archiving off, so that turning it off keeps nothing."""
    dropped = [drop_expired(p, archive_dir) for p in expired_partitions(now, retention_days)]
    archives = archives or archive_dir
    if archives is not None and archive_retention_days is not None:
        delete_expired_archives(now, archives, archive_retention_days)
    return dropped


def read_archive(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as archive:
        return [json.loads(line) for line in archive]
