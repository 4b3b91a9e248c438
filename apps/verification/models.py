"""Stored verification results, partitioned by month on checked_at (apps/core/partitions.py).

As with inbox_message, Django knows a row by its id; the database's primary key is
(id, checked_at)."""

from __future__ import annotations

from django.db import models


class VerificationResult(models.Model):
    id = models.BigAutoField(primary_key=True)
    checked_at = models.DateTimeField()
    address = models.CharField(max_length=320)
    domain = models.CharField(max_length=255, blank=True)
    verdict = models.CharField(max_length=16)
    reason = models.CharField(max_length=48)
    # The message whose sender this was, when it came from the triage chain. No foreign key:
    # the two tables' partitions are dropped on their own schedules.
    message_id = models.BigIntegerField(null=True, blank=True)
    result = models.JSONField()
    duration_ms = models.FloatField()
    engine_version = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "verification_result"
        ordering = ["-checked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.address}: {self.verdict} ({self.reason})"
