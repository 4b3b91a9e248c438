"""Retention in the admin: one row, and what is in effect, whether from here or the setting."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction

from apps.core import retention
from apps.core.models import RetentionPolicy


def effective_retention() -> str:
    days = retention.retention_days()
    if RetentionPolicy.objects.filter(pk=1).exists():
        return f"{days} days (set here)"
    return f"{days} days (MAILSCORE_RETENTION_DAYS; nothing is set here)"


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "days", "updated_at"]
    fields = ["days", "in_effect"]
    readonly_fields = ["in_effect"]

    def has_add_permission(self, request) -> bool:
        return not RetentionPolicy.objects.exists()  # a single row

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # change the days instead; the row is the whole policy

    @admin.display(description="in effect")
    def in_effect(self, obj: RetentionPolicy | None) -> str:
        return effective_retention()

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET":
            hint = "" if RetentionPolicy.objects.exists() else " Add a retention here to change it."
            self.message_user(request, f"Mail is kept for {effective_retention()}.{hint}",
                              messages.INFO)  # fmt: skip
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        # This process sees the new value at once; the others within retention.CACHE_SECONDS.
        # Once more after commit, in case a read in between cached the old row.
        retention.forget()
        transaction.on_commit(retention.forget)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, f"Mail is now kept for {effective_retention()}.")
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        self.message_user(request, f"Mail is now kept for {effective_retention()}.")
        return super().response_change(request, obj)
