"""What reviewers left behind, in the admin: the feedback record (read only), the replies they
approved (drafts for similar mail start from these), and the saved views of the queue."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from apps.review.models import Feedback, ReplyExample, SavedView


def message_link(message_id: int | None) -> str:
    if message_id is None:
        return "-"
    url = reverse("admin:inbox_message_change", args=[message_id])
    return format_html('<a href="{}">#{}</a>', url, message_id)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["created_at", "who", "message", "action", "model_said", "decided"]
    list_filter = ["source", "draft_approved", "confirmed", "model_category", "category"]
    search_fields = ["action", "message_id_header", "user__username", "api_key__name"]
    list_select_related = ["user", "api_key"]
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Feedback._meta.fields] + ["who", "message"]

    def has_add_permission(self, request) -> bool:
        return False  # feedback is what reviewers did; it is recorded, never typed in

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # retraining learns from this record

    @admin.display(description="who")
    def who(self, obj: Feedback) -> str:
        return obj.who

    @admin.display(description="message", ordering="message_id")
    def message(self, obj: Feedback) -> str:
        return message_link(obj.message_id)

    @admin.display(description="model said")
    def model_said(self, obj: Feedback) -> str:
        category = obj.model_category or "?"
        if obj.model_confidence is not None:
            category += f" ({obj.model_confidence:.2f})"
        return f"{category}, {obj.model_priority or '?'}"

    @admin.display(description="decided")
    def decided(self, obj: Feedback) -> str:
        parts = []
        if obj.category or obj.priority:
            parts.append(f"{obj.category or obj.model_category or '?'}, "
                         f"{obj.priority or obj.model_priority or '?'}")  # fmt: skip
        elif obj.confirmed:
            parts.append("confirmed")
        if obj.draft_approved:
            parts.append("draft approved")
        if obj.done:
            parts.append("done")
        return "; ".join(parts) or "-"


@admin.register(ReplyExample)
class ReplyExampleAdmin(admin.ModelAdmin):
    list_display = ["created_at", "category", "reply_excerpt", "message", "created_by"]
    list_filter = ["category"]
    search_fields = ["reply", "message_text"]
    list_select_related = ["created_by"]
    fields = ["category", "message", "message_text", "reply", "created_by", "created_at"]
    readonly_fields = ["category", "message", "message_text", "created_by", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False  # an example is a reply someone approved on a message

    @admin.display(description="reply")
    def reply_excerpt(self, obj: ReplyExample) -> str:
        return Truncator(obj.reply).chars(100)

    @admin.display(description="message", ordering="message_id")
    def message(self, obj: ReplyExample) -> str:
        return message_link(obj.message_id)


class SavedViewForm(forms.ModelForm):
    class Meta:
        model = SavedView
        fields = ["name", "query"]

    def clean_query(self) -> str:
        # A pasted address of the filtered queue, or "?...", names the same view.
        query = self.cleaned_data["query"].strip().split("?", 1)[-1].strip()
        if not query:
            raise ValidationError(
                "Give the queue's query string, e.g. priority__exact=P0&status=open: filter the "
                "queue, then copy what follows the ? in its address."
            )
        return query


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    form = SavedViewForm
    list_display = ["name", "open_view", "created_by", "created_at"]
    search_fields = ["name", "query"]
    list_select_related = ["created_by"]
    fields = ["name", "query", "created_by", "created_at"]
    readonly_fields = ["created_by", "created_at"]

    @admin.display(description="query")
    def open_view(self, obj: SavedView) -> str:
        url = f"{reverse('admin:inbox_message_changelist')}?{obj.query}"
        return format_html('<a href="{}">{}</a>', url, obj.query or "(the whole queue)")

    def save_model(self, request, obj: SavedView, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
