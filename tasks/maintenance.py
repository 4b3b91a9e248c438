"""Beat's jobs, on the maintenance queue. Each is idempotent: running it twice does no more than
running it once."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.core import partitions
from apps.inbox.dispatch import request_dispatch
from apps.inbox.models import Message, MessageStatus


@shared_task(name="mailscore.maintenance.create_partitions", acks_late=True)
def create_partitions() -> list[str]:
    """Create the monthly partitions that do not exist yet, months ahead of need."""
    return partitions.ensure_partitions(
        timezone.now(),
        months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
        retention_days=settings.MAILSCORE_RETENTION_DAYS,
    )


@shared_task(name="mailscore.maintenance.apply_retention", acks_late=True)
def apply_retention() -> list[dict]:
    """Archive, then drop, every partition older than the retention period."""
    done = partitions.apply_retention(
        timezone.now(),
        retention_days=settings.MAILSCORE_RETENTION_DAYS,
        archive_dir=settings.MAILSCORE_ARCHIVE_DIR,
    )
    return [{"partition": a.name, "rows": a.rows, "archive": str(a.path)} for a in done]


@shared_task(name="mailscore.maintenance.requeue_stalled", acks_late=True)
def requeue_stalled() -> dict:
    """Hand the chain what it has lost sight of: messages queued without a dispatch on its way
    (a lost Redis flag or task), and messages processing far longer than any step may take (their
    chain was lost with a broker's data). A stalled message resumes where it stopped: the steps it
    finished are recorded for its run and are not done again."""
    now = timezone.now()
    stalled = Message.objects.filter(
        status=MessageStatus.PROCESSING,
        updated_at__lt=now - timedelta(seconds=settings.MAILSCORE_STALLED_AFTER_SECONDS),
    ).update(status=MessageStatus.QUEUED, updated_at=now)
    waiting = Message.objects.filter(
        status=MessageStatus.QUEUED, updated_at__lt=now - timedelta(seconds=60)
    ).exists()
    if stalled or waiting:
        request_dispatch()
    return {"requeued": stalled, "queued_waiting": waiting}
