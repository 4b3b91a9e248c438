"""What a team configures for triage (categories, reply templates, sender rules) and the model
versions that retraining makes.

Running workers compare one number per batch, ConfigRevision.revision, which every change here
bumps; when it moved they rebuild their triage configuration from these tables (services.py).
"""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone


class ReplyTemplate(models.Model):
    """The voice of a draft reply: the opening and closing paragraphs a draft is built around.
    What a draft commits to comes from here, never from a model."""

    name = models.CharField(max_length=64, unique=True)
    opening = models.TextField(help_text="First paragraph, after the greeting.")
    body = models.TextField(help_text="What the team does next; the only promises a draft makes.")
    closing = models.CharField(max_length=200, default="Best regards,")
    signature = models.CharField(max_length=200, default="The Support Team")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "triage_replytemplate"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CategoryConfig(models.Model):
    """One category of the taxonomy. Its description and examples teach the classifier."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField()
    examples = models.TextField(
        blank=True, help_text="Example messages, one per line: what mail of this kind says."
    )
    expects_reply = models.BooleanField(default=True)
    priority_base = models.PositiveSmallIntegerField(
        "default priority score",
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="Where prioritizing starts for this category (0-100): P0 from 70, P1 from 45, "
        "P2 from 20, P3 below.",
    )
    reply_template = models.ForeignKey(
        ReplyTemplate, null=True, blank=True, on_delete=models.SET_NULL,
        help_text="The voice of this category's drafts; none means no draft is offered.",
    )  # fmt: skip
    position = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "triage_category"
        ordering = ["position", "name"]
        verbose_name = "category"
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    @property
    def example_list(self) -> list[str]:
        return [line.strip() for line in self.examples.splitlines() if line.strip()]


class SenderRule(models.Model):
    class Kind(models.TextChoices):
        VIP = "vip", "Important (raises priority)"
        ALLOW = "allow", "Allow (never spam)"
        DENY = "deny", "Deny (always spam)"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(
        max_length=320, help_text="An address (jane@example.com) or a whole domain (example.com)."
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "triage_senderrule"
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="triage_senderrule_unique")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"

    def save(self, *args, **kwargs) -> None:
        self.value = self.value.strip().lower()
        super().save(*args, **kwargs)


class ModelVersion(models.Model):
    """What retraining learned from reviewers' feedback: corrected examples for the heads and
    approved replies for retrieval, with their embeddings, and how it scored."""

    name = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    encoder_version = models.CharField(max_length=200, blank=True)
    corrections = models.JSONField(
        default=list, help_text="Corrected examples: text, category and/or priority, weight."
    )
    replies = models.JSONField(default=list, help_text="Approved replies: category, text.")
    vectors = models.BinaryField(
        blank=True, help_text="float32 embeddings: the corrections', then the replies' messages."
    )
    feedback_count = models.PositiveIntegerField(default=0)
    evaluation = models.JSONField(default=dict, help_text="Before and after, on a labelled set.")
    note = models.TextField(blank=True)

    class Meta:
        db_table = "triage_modelversion"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="triage_one_active_model"
            )
        ]

    def __str__(self) -> str:
        return self.name + (" (active)" if self.active else "")

    @classmethod
    def deactivate_all(cls) -> None:
        """Triage with no learned model from the workers' next batch."""
        with transaction.atomic():
            # One save each, not update(): the save signal is what moves the revision.
            for version in cls.objects.filter(active=True).defer("vectors"):
                version.active = False
                version.save(update_fields=["active"])

    def activate(self) -> None:
        with transaction.atomic():
            ModelVersion.objects.filter(active=True).exclude(pk=self.pk).update(active=False)
            self.active = True
            self.activated_at = timezone.now()
            self.save(update_fields=["active", "activated_at"])


class ConfigRevision(models.Model):
    """One row that changes whenever triage configuration or the active model changes. Workers
    compare its token, a fresh random value each time: a change rolled back restores the old
    token, which a process that saw the change does not hold."""

    revision = models.BigIntegerField(default=0)
    token = models.UUIDField(default=uuid.uuid4)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "triage_configrevision"

    @classmethod
    def bump(cls) -> None:
        updated = cls.objects.filter(pk=1).update(
            revision=F("revision") + 1, token=uuid.uuid4(), changed_at=timezone.now()
        )
        if not updated:
            cls.objects.get_or_create(pk=1, defaults={"revision": 1})

    @classmethod
    def current(cls) -> str:
        token = cls.objects.filter(pk=1).values_list("token", flat=True).first()
        return str(token) if token else ""


def category_names() -> list[str]:
    """The categories a reviewer or an integration may choose from: the admin's, or the
    taxonomy file's before any were saved there."""
    from django.conf import settings

    from apps.triage.engine.taxonomy import Taxonomy

    names = list(CategoryConfig.objects.values_list("name", flat=True))
    return names or Taxonomy.load(settings.MAILSCORE_TRIAGE.get("taxonomy_path") or None).names
