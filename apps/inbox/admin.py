"""The review screens: messages by priority, failures with their reason, IMAP folders."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.inbox.ingest import rerun
from apps.inbox.models import ImapMailbox, Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "received_at", "status", "category", "confidence", "priority",
                    "from_address", "subject", "sender_verdict", "failed_step"]  # fmt: skip
    list_filter = ["status", "category", "priority", "source", "sender_verdict"]
    search_fields = ["subject", "from_address", "message_id_header"]
    date_hierarchy = "received_at"
    actions = ["rerun_selected"]
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over every partition per page
    exclude = ["raw"]
    readonly_fields = [f.name for f in Message._meta.fields if f.name != "raw"] + ["steps_table"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("raw")

    def has_add_permission(self, request) -> bool:
        return False  # mail arrives through ingest, never typed in

    @admin.display(description="conf.", ordering="category_confidence")
    def confidence(self, obj: Message) -> str:
        return f"{obj.category_confidence:.2f}" if obj.category_confidence is not None else ""

    @admin.display(description="steps")
    def steps_table(self, obj: Message) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.steps, indent=2))

    @admin.action(description="Re-run the triage chain")
    def rerun_selected(self, request, queryset) -> None:
        queued, busy = rerun(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"Queued {len(queued)} messages for a new run.")
        if busy:
            self.message_user(request, f"{len(busy)} were left alone: still being processed, or "
                              "refused at ingest as not mail.", level=messages.WARNING)  # fmt: skip


@admin.register(ImapMailbox)
class ImapMailboxAdmin(admin.ModelAdmin):
    list_display = ["name", "username", "host", "folder", "enabled", "last_uid", "last_polled_at",
                    "last_error"]  # fmt: skip
    readonly_fields = ["uid_validity", "last_uid", "last_polled_at", "last_error"]
