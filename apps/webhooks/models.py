"""Receivers of webhooks (endpoints) and each event's delivery to one of them, with every
attempt at it."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db import models

from apps.webhooks.signing import new_secret
from apps.webhooks.targets import TargetRefused, parse, vet


class WebhookEvent(models.TextChoices):
    MESSAGE_TRIAGED = "message.triaged", "message.triaged: the chain finished a message"
    MESSAGE_REVIEWED = "message.reviewed", "message.reviewed: a reviewer decided on a message"
    JOB_COMPLETED = "job.completed", "job.completed: a bulk verification job finished"


# Sent only by the admin's "send a test ping"; no endpoint subscribes to it.
PING = "ping"


def validate_webhook_url(url: str) -> None:
    try:
        vet(url)
    except TargetRefused as exc:
        raise ValidationError(str(exc), code="refused") from None


def validate_events(events) -> None:
    names = list(WebhookEvent.values)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValidationError(f"Give the events as a list of names; accepted: {', '.join(names)}.")
    unknown = sorted(set(events) - set(names))
    if unknown:
        raise ValidationError(f"Unknown events {', '.join(unknown)}; accepted: {', '.join(names)}.")


class WebhookEndpoint(models.Model):
    url = models.CharField(
        "URL", max_length=2000, validators=[validate_webhook_url],
        help_text="Where events are POSTed: http:// or https://, on a host that resolves only to "
        "public addresses (networks in MAILSCORE_WEBHOOK_ALLOWED_NETWORKS excepted).",
    )  # fmt: skip
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, validators=[validate_events],
                              help_text="The events sent to this endpoint.")  # fmt: skip
    secret = models.CharField(
        max_length=100, default=new_secret,
        help_text="Signs every delivery (X-Mailscore-Signature); give it to the receiver.",
    )  # fmt: skip
    active = models.BooleanField(default=True, help_text="Inactive endpoints get no new events.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.description or self.display_url

    @property
    def display_url(self) -> str:
        try:
            scheme, host, port, path = parse(self.url)
        except TargetRefused:
            return self.url[:200]
        return f"{scheme}://{host}:{port}{path}"[:200]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False,
                          help_text="Sent as X-Mailscore-Delivery; the same on every attempt.")  # fmt: skip
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")  # fmt: skip
    event = models.CharField(max_length=32)
    event_id = models.UUIDField(help_text="The event's id (the payload's id), the same for "
                                "every endpoint it is sent to.")  # fmt: skip
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING)  # fmt: skip
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When a pending delivery is tried next (while one is being tried: when it is "
        "taken back if its worker was lost).",
    )  # fmt: skip
    attempt_log = models.JSONField(
        default=list, blank=True, help_text="Every attempt, oldest first."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When it was delivered or failed for good.")  # fmt: skip

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint} ({self.status})"
