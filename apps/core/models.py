"""Settings a team changes in the admin while the system runs."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


class RetentionPolicy(models.Model):
    """One row: how long mail is kept. Without it, MAILSCORE_RETENTION_DAYS applies."""

    days = models.PositiveIntegerField(
        validators=[MinValueValidator(31)],
        help_text="Messages older than this are archived, then dropped, a month at a time. At "
        "least 31 days: a month's partition is dropped whole.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "core_retentionpolicy"
        verbose_name = "retention"
        verbose_name_plural = "retention"

    def __str__(self) -> str:
        return f"Keep mail for {self.days} days"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1  # a single row
        super().save(*args, **kwargs)
