"""What reviewers decide: feedback on each message, replies they approved, views they share.

Feedback refers to a message by id only: messages live in monthly partitions that retention
drops, and the feedback (with the text it was about) outlives them to keep teaching the model.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class FeedbackSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    API = "api", "API"


class Feedback(models.Model):
    message_id = models.BigIntegerField(db_index=True)
    message_id_header = models.CharField(max_length=998, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=8, choices=FeedbackSource.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(
        max_length=200, help_text="What the reviewer did, in words: 'category sales -> support'."
    )
    # What the model said when the reviewer acted.
    model_category = models.CharField(max_length=64, blank=True)
    model_confidence = models.FloatField(null=True, blank=True)
    model_priority = models.CharField(max_length=16, blank=True)
    model_draft = models.TextField(blank=True)
    model_versions = models.JSONField(default=dict, blank=True)
    # What the reviewer decided; blank where they left it alone.
    category = models.CharField(max_length=64, blank=True)
    priority = models.CharField(max_length=16, blank=True)
    draft = models.TextField(blank=True)
    draft_approved = models.BooleanField(default=False)
    confirmed = models.BooleanField(default=False)
    done = models.BooleanField(default=False)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    # The text the decision was about (subject and new text), kept for retraining.
    text = models.TextField(blank=True)

    class Meta:
        db_table = "review_feedback"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "feedback"

    def __str__(self) -> str:
        return f"#{self.message_id}: {self.action}"

    @property
    def who(self) -> str:
        if self.user_id:
            return self.user.get_username()
        if self.api_key_id:
            return f"API key {self.api_key.name}"
        return "(deleted)"


class ReplyExample(models.Model):
    """A reply a reviewer approved, with what it answered: drafts for similar mail start here."""

    category = models.CharField(max_length=64)
    message_text = models.TextField()
    reply = models.TextField()
    message_id = models.BigIntegerField(null=True, blank=True)
    feedback = models.ForeignKey(Feedback, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip

    class Meta:
        db_table = "review_replyexample"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.category}: {self.reply[:60]}"


class SavedView(models.Model):
    """A filtered queue with a name, shown as a link above the queue."""

    name = models.CharField(max_length=100, unique=True)
    query = models.CharField(
        max_length=2000, help_text="The queue's query string, e.g. priority__exact=P0&status=open"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "review_savedview"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
