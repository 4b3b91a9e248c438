"""API keys in the admin: add one (its key is shown once, on the page after saving), revoke."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from apps.accounts import authentication
from apps.accounts.models import ApiKey


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "key_start", "active", "created_at", "last_used_at", "revoked_at"]
    list_filter = [KeyStatusFilter]
    search_fields = ["name", "key_start"]
    readonly_fields = ["name", "key_start", "created_at", "last_used_at", "revoked_at"]
    exclude = ["key_hash"]
    actions = ["revoke"]
    issued_template = "admin/accounts/apikey/issued.html"

    @admin.display(description="active", boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def get_fields(self, request, obj=None):
        return ["name"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj: ApiKey, form, change) -> None:
        if change:
            return super().save_model(request, obj, form, change)
        row, key = ApiKey.issue(obj.name)
        # The admin goes on with obj (history, the next page): make it the row just issued.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(row, field.attname))
        obj._state.adding, obj._state.db = False, row._state.db
        # Only this request's page shows the key; it is stored nowhere, not even in a message.
        request._issued_api_key = key

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        key = getattr(request, "_issued_api_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"API key {obj.name!r} created",
            "api_key": obj,
            "key": key,
        }
        # Admin views are never cached (no-store), so the page with the key is not kept either.
        return TemplateResponse(request, self.issued_template, context)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset) -> None:
        revoking = list(queryset.filter(revoked_at__isnull=True).values_list("key_hash", flat=True))
        count = queryset.filter(key_hash__in=revoking).update(revoked_at=timezone.now())
        # This process stops accepting them now; other processes within their short cache.
        for digest in revoking:
            authentication._seen.pop(digest, None)
        self.message_user(request, f"Revoked {count} keys. Requests with them are refused from "
                                   f"now on (within {authentication.CACHE_SECONDS} s on every "
                                   "server).")  # fmt: skip
