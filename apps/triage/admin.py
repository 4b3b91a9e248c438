"""What a team configures for triage: categories, reply templates, sender rules, and the model
versions retraining made. Every save bumps the configuration's revision (apps.py), so running
workers pick a change up at their next batch, without a restart."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import ValidationError
from django.core.validators import DomainNameValidator, validate_email
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from kombu.exceptions import OperationalError as BrokerUnavailable

from apps.triage.engine.priority import level_for
from apps.triage.models import CategoryConfig, ModelVersion, ReplyTemplate, SenderRule
from apps.triage.signals import retrain_requested

# The engine routes the spam head's verdict to "spam" and falls back to "other"; a taxonomy
# without either is refused (engine/taxonomy.py), so neither may be renamed or deleted.
REQUIRED_CATEGORIES = ("spam", "other")


def _required_message(name: str, doing: str) -> str:
    return (
        f"The {name!r} category cannot be {doing}: the triage engine needs it "
        f"(every taxonomy must have {' and '.join(repr(n) for n in REQUIRED_CATEGORIES)}). "
        "Its description, examples and settings can still be edited."
    )


class CategoryConfigForm(forms.ModelForm):
    class Meta:
        model = CategoryConfig
        fields = ["name", "description", "examples", "expects_reply", "priority_base",
                  "reply_template", "position"]  # fmt: skip
        widgets = {
            "description": forms.Textarea(attrs={"rows": 4, "cols": 100}),
            "examples": forms.Textarea(attrs={"rows": 20, "cols": 100}),
        }
        error_messages = {
            "name": {
                "invalid": "Use a short slug for the name: lower-case letters, digits, hyphens "
                "and underscores, e.g. 'billing' or 'partner_requests'."
            }
        }
        help_texts = {
            "examples": "Example messages, one per line: what mail of this kind says. The "
            "classifier learns the category from its description and these lines; blank lines "
            "are ignored."
        }

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        original = self.instance.name if self.instance.pk else None
        if original in REQUIRED_CATEGORIES and name != original:
            raise ValidationError(_required_message(original, "renamed"))
        return name

    def clean_examples(self) -> str:
        lines = [line.strip() for line in self.cleaned_data["examples"].splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise ValidationError(
                "Give at least one example message, one per line: the classifier learns the "
                "category from its description and these examples."
            )
        return "\n".join(lines)


@admin.register(CategoryConfig)
class CategoryConfigAdmin(admin.ModelAdmin):
    form = CategoryConfigForm
    list_display = ["name", "description_excerpt", "example_count", "expects_reply",
                    "default_priority", "reply_template", "position"]  # fmt: skip
    list_filter = ["expects_reply"]
    search_fields = ["name", "description", "examples"]
    list_select_related = ["reply_template"]
    actions = ["delete_selected"]

    @admin.display(description="description")
    def description_excerpt(self, obj: CategoryConfig) -> str:
        return Truncator(obj.description).chars(80)

    @admin.display(description="examples")
    def example_count(self, obj: CategoryConfig) -> int:
        return len(obj.example_list)

    @admin.display(description="default priority", ordering="priority_base")
    def default_priority(self, obj: CategoryConfig) -> str:
        return f"{obj.priority_base} ({level_for(obj.priority_base)})"

    def has_delete_permission(self, request, obj: CategoryConfig | None = None) -> bool:
        if obj is not None and obj.name in REQUIRED_CATEGORIES:
            return False  # hides the delete button; delete_view explains why
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None and obj.name in REQUIRED_CATEGORIES:
            self.message_user(request, _required_message(obj.name, "deleted"), messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:triage_categoryconfig_change", args=[obj.pk])
            )
        return super().delete_view(request, object_id, extra_context)

    @admin.action(description="Delete selected categories", permissions=["delete"])
    def delete_selected(self, request, queryset):
        required = queryset.filter(name__in=REQUIRED_CATEGORIES).order_by("name")
        required = list(required.values_list("name", flat=True))
        if required:
            for name in required:
                self.message_user(request, _required_message(name, "deleted"), messages.ERROR)
            return None
        return django_delete_selected(self, request, queryset)


class ReplyTemplateForm(forms.ModelForm):
    class Meta:
        model = ReplyTemplate
        fields = ["name", "opening", "body", "closing", "signature"]
        widgets = {
            "opening": forms.Textarea(attrs={"rows": 3, "cols": 100}),
            "body": forms.Textarea(attrs={"rows": 6, "cols": 100}),
        }


@admin.register(ReplyTemplate)
class ReplyTemplateAdmin(admin.ModelAdmin):
    form = ReplyTemplateForm
    list_display = ["name", "opening_excerpt", "used_by", "updated_at"]
    search_fields = ["name", "opening", "body"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("categoryconfig_set")

    @admin.display(description="opening")
    def opening_excerpt(self, obj: ReplyTemplate) -> str:
        return Truncator(obj.opening).chars(80)

    @admin.display(description="used by categories")
    def used_by(self, obj: ReplyTemplate) -> str:
        names = sorted(c.name for c in obj.categoryconfig_set.all())
        return ", ".join(names) or "(none: no draft uses it)"


_domain_validator = DomainNameValidator()


def _passes(validator, value: str) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


class SenderRuleForm(forms.ModelForm):
    class Meta:
        model = SenderRule
        fields = ["kind", "value", "note"]

    def clean_value(self) -> str:
        value = self.cleaned_data["value"].strip().lower()
        if "@" in value:
            valid = _passes(validate_email, value)
        else:
            # A single label ("localhost") is nobody's mail domain.
            valid = "." in value and _passes(_domain_validator, value)
        if not valid:
            raise ValidationError(
                f"{value!r} is neither an address (jane@example.com) nor a domain (example.com)."
            )
        return value

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        opposite = {SenderRule.Kind.ALLOW: SenderRule.Kind.DENY,
                    SenderRule.Kind.DENY: SenderRule.Kind.ALLOW}.get(kind)  # fmt: skip
        if opposite and value:
            clash = SenderRule.objects.filter(kind=opposite, value=value).exclude(
                pk=self.instance.pk
            )
            if clash.exists():
                raise ValidationError(
                    f"{value} already has a {opposite.value!r} rule; a sender cannot be both "
                    "allowed and denied, so remove that rule first."
                )
        return cleaned


@admin.register(SenderRule)
class SenderRuleAdmin(admin.ModelAdmin):
    form = SenderRuleForm
    list_display = ["value", "kind", "note", "created_at"]
    list_filter = ["kind"]
    search_fields = ["value", "note"]


def _figure(evaluation: dict, side: str, key: str) -> float | None:
    """One number from an evaluation, which may be missing, partial or of an older shape."""
    part = evaluation.get(side) if isinstance(evaluation, dict) else None
    value = part.get(key) if isinstance(part, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _before_after(evaluation: dict, key: str) -> str:
    before, after = _figure(evaluation, "before", key), _figure(evaluation, "after", key)
    if before is None and after is None:
        return "-"
    shown = ["?" if v is None else f"{v:.2f}" for v in (before, after)]
    return f"{shown[0]} → {shown[1]}"


def _refused(evaluation) -> bool:
    return isinstance(evaluation, dict) and evaluation.get("refused") is True


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    change_list_template = "admin/triage/modelversion/change_list.html"
    list_display = ["name", "active", "created_at", "created_by", "feedback_count",
                    "category_accuracy", "priority_agreement", "refused"]  # fmt: skip
    list_filter = ["active"]
    search_fields = ["name", "created_by", "note"]
    actions = ["activate_version", "use_no_model"]
    fields = [
        "name", "active", "activated_at", "created_at", "created_by", "encoder_version",
        "feedback_count", "correction_count", "reply_count", "evaluation_table", "note",
    ]  # fmt: skip
    readonly_fields = fields

    def get_urls(self):
        from django.urls import path

        return [
            path("retrain/", self.admin_site.admin_view(self.retrain_view),
                 name="triage_modelversion_retrain"),
            *super().get_urls(),
        ]  # fmt: skip

    def retrain_view(self, request):
        """Queue a retraining on the triage workers, where the models are loaded."""
        changelist = reverse("admin:triage_modelversion_changelist")
        if request.method != "POST" or not self.has_view_permission(request):
            return HttpResponseRedirect(changelist)
        try:
            retrain_requested.send(sender=ModelVersion, requested_by=request.user.get_username())
        except (BrokerUnavailable, OSError) as exc:  # say so rather than fail the page
            self.message_user(request, f"Retraining could not be queued: {exc}", messages.ERROR)
            return HttpResponseRedirect(changelist)
        self.message_user(
            request,
            "Retraining queued on the triage workers. The new version appears here when it is "
            "done (about a minute), active if it is no worse than the current one.",
        )
        return HttpResponseRedirect(changelist)

    def get_queryset(self, request):
        # The embeddings can be megabytes per version; no page here shows them.
        return super().get_queryset(request).defer("vectors")

    def has_add_permission(self, request) -> bool:
        return False  # versions are made by retraining, never typed in

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what a version learned is a record; activation is an action

    @admin.display(description="category accuracy")
    def category_accuracy(self, obj: ModelVersion) -> str:
        return _before_after(obj.evaluation, "category_accuracy")

    @admin.display(description="priority agreement")
    def priority_agreement(self, obj: ModelVersion) -> str:
        return _before_after(obj.evaluation, "priority_exact")

    @admin.display(description="refused", boolean=True)
    def refused(self, obj: ModelVersion) -> bool:
        return _refused(obj.evaluation)

    @admin.display(description="corrections")
    def correction_count(self, obj: ModelVersion) -> int:
        return len(obj.corrections or [])

    @admin.display(description="approved replies")
    def reply_count(self, obj: ModelVersion) -> int:
        return len(obj.replies or [])

    @admin.display(description="evaluation")
    def evaluation_table(self, obj: ModelVersion) -> str:
        evaluation = obj.evaluation if isinstance(obj.evaluation, dict) else {}
        rows = [
            (label, _before_after(evaluation, key))
            for label, key in (("Category accuracy", "category_accuracy"),
                               ("Priority agreement", "priority_exact"))
        ]  # fmt: skip
        if _refused(evaluation):
            rows.append(("Refused", "yes: it scored worse than the model before it"))
        table = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        return format_html(
            "<table>{}</table><details><summary>All figures</summary><pre>{}</pre></details>",
            table,
            json.dumps(obj.evaluation, indent=2, sort_keys=True, default=str),
        )

    @admin.action(description="Activate this version")
    def activate_version(self, request, queryset) -> None:
        selected = list(queryset.defer("vectors")[:2])
        if len(selected) != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = selected[0]
        version.activate()
        self.message_user(
            request,
            f"{version.name} is now the active model; workers use it from their next batch.",
        )
        if _refused(version.evaluation):
            self.message_user(
                request,
                f"Retraining refused {version.name}: on the evaluation it scored worse than the "
                "model before it.",
                messages.WARNING,
            )

    @admin.action(description="Use no learned model")
    def use_no_model(self, request, queryset) -> None:
        ModelVersion.deactivate_all()
        self.message_user(
            request,
            "No learned model is active: triage uses the configured categories and rules alone, "
            "from the workers' next batch.",
        )
