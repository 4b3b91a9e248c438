"""Stored messages and the IMAP mailboxes they are fetched from.

inbox_message is partitioned by month on received_at (see apps/core/partitions.py). Django knows
it by its id alone, which one sequence keeps unique across partitions; in the database the
primary key is (id, received_at), because PostgreSQL requires the partition key in it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.inbox.imap_access import MailboxRefused, password_env_error, vet_host


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROCESSING = "processing", "Processing"
    TRIAGED = "triaged", "Triaged"
    NEEDS_REVIEW = "needs_review", "Needs review"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


# A message may be re-run once nothing is working on it.
RERUNNABLE = (
    MessageStatus.TRIAGED,
    MessageStatus.NEEDS_REVIEW,
    MessageStatus.DONE,
    MessageStatus.FAILED,
)
# What a reviewer can act on: the chain has finished with it.
REVIEWABLE = (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW, MessageStatus.DONE)
# The work still to do, in the reviewers' queue.
OPEN = (MessageStatus.NEEDS_REVIEW, MessageStatus.TRIAGED)
PRIORITY_LEVELS = ("P0", "P1", "P2", "P3")


class MessageSource(models.TextChoices):
    API = "api", "API"
    FILE = "file", "File"
    IMAP = "imap", "IMAP"


class Message(models.Model):
    id = models.BigAutoField(primary_key=True)
    received_at = models.DateTimeField(
        help_text="The message's Date where it is plausible, otherwise when it was ingested; "
        "the month partition it lives in."
    )
    ingested_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    source = models.CharField(max_length=8, choices=MessageSource.choices)
    source_detail = models.CharField(max_length=500, blank=True)
    dedupe_key = models.CharField(
        max_length=64, help_text="SHA-256 of the Message-ID, or of the raw bytes without one."
    )
    message_id_header = models.CharField(max_length=998, blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    from_name = models.CharField(max_length=500, blank=True)
    subject = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    size = models.PositiveIntegerField()
    raw = models.BinaryField()
    parsed = models.JSONField(default=dict, help_text="Parsed header fields and the new text.")

    status = models.CharField(
        max_length=16, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    failed_step = models.CharField(max_length=32, blank=True)
    failure_reason = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=1, help_text="How many times the chain started.")
    claim = models.UUIDField(
        null=True,
        blank=True,
        help_text="The chain that holds the message while it is processing; a chain whose claim "
        "was taken back writes nothing more.",
    )
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a processing message not heard from goes back to the queue.",
    )
    claims = models.PositiveIntegerField(
        default=0,
        help_text="How many times a chain claimed the message in this run; past "
        "MAILSCORE_MAX_CLAIMS it fails instead of going back to the queue.",
    )

    category = models.CharField(max_length=64, blank=True)
    language = models.CharField(
        max_length=16, blank=True, help_text="The body's language (ISO 639-1), found when parsed."
    )
    category_confidence = models.FloatField(null=True, blank=True)
    category_result = models.JSONField(null=True, blank=True)
    priority = models.CharField(max_length=16, blank=True)
    priority_score = models.IntegerField(null=True, blank=True)
    priority_result = models.JSONField(null=True, blank=True)
    summary = models.TextField(blank=True)
    draft_reply = models.TextField(blank=True)
    draft_result = models.JSONField(null=True, blank=True)
    sender_trust = models.CharField(max_length=16, blank=True)
    sender_verdict = models.CharField(max_length=16, blank=True)
    sender_result = models.JSONField(null=True, blank=True)
    steps = models.JSONField(
        default=dict,
        help_text="Per step: the model or engine version, duration in ms, attempts, error.",
    )

    thread_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="Shared by the messages of one conversation (References, In-Reply-To, else "
        "the subject and correspondent).",
    )
    # A reviewer's decisions; the model's own stay in the fields above.
    reviewed_category = models.CharField(max_length=64, blank=True)
    reviewed_priority = models.CharField(max_length=16, blank=True)
    reviewed_draft = models.TextField(blank=True)
    draft_approved_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # No constraint in the database: a foreign key's trigger would run on every ingest, and its
    # deferred checks would keep retention from dropping a partition in the same transaction.
    # Django still sets these to NULL when a user is deleted.
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", db_constraint=False, db_index=False,
    )  # fmt: skip
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="assigned_messages", db_constraint=False, db_index=False,
    )  # fmt: skip

    class Meta:
        db_table = "inbox_message"
        ordering = ["-received_at", "-id"]
        # Every ingest writes each index, so each is only what its readers need: equality on the
        # thread (no LIKE index beside it), and the users' columns only where a user is set,
        # which is all that "assigned to", "reviewed by" and a user's deletion look up.
        indexes = [
            models.Index(fields=["thread_key"], name="inbox_message_thread_idx"),
            models.Index(
                fields=["assignee"],
                name="inbox_message_assignee_idx",
                condition=models.Q(assignee__isnull=False),
            ),
            models.Index(
                fields=["reviewed_by"],
                name="inbox_message_reviewer_idx",
                condition=models.Q(reviewed_by__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} <{self.from_address}>"

    @property
    def effective_category(self) -> str:
        """The reviewer's category where there is one, else the model's."""
        return self.reviewed_category or self.category

    @property
    def effective_priority(self) -> str:
        return self.reviewed_priority or self.priority


def validate_password_env(name: str) -> None:
    error = password_env_error(name)
    if error:
        raise ValidationError(error, code="password_env")


class ImapMailbox(models.Model):
    """An IMAP folder polled by beat. The password is never stored: password_env names the
    environment variable that holds it in the worker's environment, one named
    MAILSCORE_IMAP_PASSWORD_<something> (apps/inbox/imap_access.py)."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=993)
    security = models.CharField(
        max_length=8,
        choices=[("ssl", "TLS (IMAPS)"), ("starttls", "STARTTLS"), ("none", "None (loopback)")],
        default="ssl",
    )
    username = models.CharField(max_length=255)
    password_env = models.CharField(
        max_length=100,
        validators=[validate_password_env],
        help_text="Name of the environment variable holding the password in the workers' "
        "environment: MAILSCORE_IMAP_PASSWORD_ followed by capital letters, digits or "
        "underscores, e.g. MAILSCORE_IMAP_PASSWORD_SUPPORT.",
    )
    folder = models.CharField(max_length=255, default="INBOX")
    enabled = models.BooleanField(default=True)
    uid_validity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "inbox_imapmailbox"
        verbose_name = "IMAP mailbox"

    def __str__(self) -> str:
        return f"{self.name} ({self.username}@{self.host}/{self.folder})"

    def clean(self) -> None:
        super().clean()
        if self.host and self.port:
            try:
                vet_host(self.host, self.port, self.security)
            except MailboxRefused as exc:
                raise ValidationError({exc.field: str(exc)}) from None
