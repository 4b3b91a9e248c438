"""Stored verification results, and bulk verification jobs.

Results are partitioned by month on checked_at (apps/core/partitions.py): as with inbox_message,
Django knows a row by its id; the database's primary key is (id, checked_at). Jobs and their rows
are ordinary tables."""

from __future__ import annotations

import uuid

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


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these is over: nothing more is checked for it.
FINISHED_JOB_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class VerificationJob(models.Model):
    """A bulk verification: its input addresses are VerificationJobItem rows, checked in shards
    (addresses grouped by domain, so one domain's politeness limits are kept by one run) on the
    verify pool. Each item's answer is stored as it comes, so a restarted worker carries on
    where the last one stopped (apps/verification/jobs.py)."""

    # Not a counter: a job's URL should not tell how many others there are.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    source = models.CharField(max_length=8)  # json or csv
    # Who asked. No foreign key to the key itself: a revoked and deleted key leaves its jobs.
    created_by = models.CharField(max_length=100, blank=True)
    total = models.PositiveIntegerField()  # input rows
    unique = models.PositiveIntegerField()  # distinct addresses among them
    shards = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    # Deleted with its rows once older than the retention period (apps/core/retention.py).
    retention_field = "created_at"

    class Meta:
        db_table = "verification_job"
        ordering = ["-created_at"]
        verbose_name = "verification job"

    def __str__(self) -> str:
        return f"job {self.id} ({self.status}, {self.total} addresses)"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class VerificationJobItem(models.Model):
    """One input row of a job, in input order, with its answer once it is checked."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(VerificationJob, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    email = models.TextField()
    shard = models.PositiveSmallIntegerField()
    # Empty until checked; then the API's answer (apps/verification/validation.py answer_of).
    verdict = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=48, blank=True)
    answer = models.JSONField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Times a greylisting server has been asked (apps/verification/jobs.py MAX_ATTEMPTS).
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        db_table = "verification_job_item"
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="job_item_position"),
        ]
        indexes = [
            # A shard's run reads what is left to check.
            models.Index(
                fields=["job", "shard"],
                condition=models.Q(checked_at__isnull=True),
                name="job_item_pending",
            ),
        ]


class MailEvidence(models.Model):
    """Mail that says an address's mailbox exists (it sent us DMARC-aligned mail) or does not (a
    hard bounce): what address verification falls back on where the SMTP dialogue cannot tell
    (apps/verification/engine/evidence.py)."""

    id = models.BigAutoField(primary_key=True)
    # Lower-cased and normalised as apps/verification/validation.py cache_key_for gives it.
    address = models.CharField(max_length=320)
    kind = models.CharField(max_length=16)  # engine.evidence.EvidenceKind
    seen_at = models.DateTimeField()
    # The message it was read from. No foreign key: messages live in partitions dropped on their
    # own schedule, and the evidence is kept (and expired) on its own.
    message_id = models.BigIntegerField()
    detail = models.CharField(max_length=500, blank=True)

    # Deleted once older than the retention period (apps/core/retention.py delete_expired_rows).
    retention_field = "seen_at"

    class Meta:
        db_table = "verification_mail_evidence"
        verbose_name_plural = "mail evidence"
        ordering = ["-seen_at", "-id"]
        constraints = [
            # Recording a message's evidence again (a step run twice) adds nothing.
            models.UniqueConstraint(
                fields=["message_id", "address", "kind"], name="mail_evidence_once"
            ),
        ]
        indexes = [
            models.Index(fields=["address", "seen_at"], name="mail_evidence_address"),
            # Retention deletes by age.
            models.Index(fields=["seen_at"], name="mail_evidence_seen_at"),
        ]

    def __str__(self) -> str:
        return f"{self.address}: {self.kind} at {self.seen_at:%Y-%m-%d}"
