"""Beat's jobs, on the maintenance queue. Each is idempotent: running it twice does no more than
running it once. The sweep that takes back lost claims is in tasks/dispatch.py."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from apps.core import metrics, partitions, retention
from apps.core.connections import redis_connection
from apps.core.retention import retention_days
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue


@mailscore_task("maintenance.create_partitions", queue=CeleryQueue.MAINTENANCE)
def create_partitions() -> list[str]:
    """Create the monthly partitions that do not exist yet, months ahead of need."""
    return partitions.ensure_partitions(
        timezone.now(),
        months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
        retention_days=retention_days(),
    )


@mailscore_task("maintenance.apply_retention", queue=CeleryQueue.MAINTENANCE)
def apply_retention() -> list[dict]:
    """Archive, then drop, every partition older than the retention period; delete the rows of
    ordinary tables older than it (mail evidence, bulk jobs)."""
    retention.delete_expired_rows(timezone.now(), retention_days())
    done = partitions.apply_retention(
        timezone.now(),
        retention_days=retention_days(),
        archive_dir=settings.MAILSCORE_ARCHIVE_DIR,
    )
    metrics.mark_retention_run(redis_connection())
    return [{"partition": a.name, "rows": a.rows, "archive": str(a.path)} for a in done]
