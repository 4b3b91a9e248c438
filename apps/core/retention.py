"""How long mail is kept: the admin's RetentionPolicy where there is one, else the setting.

Read on every ingest, so it is kept in the process for a few seconds; a change in the admin
reaches every process within that time, without a restart."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError

CACHE_SECONDS = 10.0
_cached: tuple[float, int] | None = None


def retention_days() -> int:
    global _cached
    now = time.monotonic()
    if _cached is not None and now - _cached[0] < CACHE_SECONDS:
        return _cached[1]
    from apps.core.models import RetentionPolicy

    try:
        days = RetentionPolicy.objects.filter(pk=1).values_list("days", flat=True).first()
    except DatabaseError:
        days = None  # the table may not exist yet (before migrate); the setting still holds
    days = days or settings.MAILSCORE_RETENTION_DAYS
    _cached = (now, days)
    return days


def forget() -> None:
    global _cached
    _cached = None


def delete_expired_rows(now: datetime, days: int | None = None) -> dict[str, int]:
    """Delete rows older than the retention period (days, else retention_days()) from ordinary
    tables that keep what was read from mail (verification_mail_evidence): whole partitions go
    by apply_retention, these row by row. A model takes part by naming its age field in
    retention_field; found through the app registry, because core imports no other app.
    Returns the rows deleted per table."""
    cutoff = now - timedelta(days=days or retention_days())
    deleted = {}
    for model in apps.get_models():
        age_field = getattr(model, "retention_field", None)
        if age_field:
            count, _ = model._default_manager.filter(**{f"{age_field}__lt": cutoff}).delete()
            deleted[model._meta.db_table] = count
    return deleted
