"""The IMAP folders beat polls. Messages are reviewed in the review app's admin."""

from __future__ import annotations

from django.contrib import admin

from apps.inbox.models import ImapMailbox


@admin.register(ImapMailbox)
class ImapMailboxAdmin(admin.ModelAdmin):
    list_display = ["name", "username", "host", "folder", "enabled", "last_uid", "last_polled_at",
                    "last_error"]  # fmt: skip
    readonly_fields = ["uid_validity", "last_uid", "last_polled_at", "last_error"]
