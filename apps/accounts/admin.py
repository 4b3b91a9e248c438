"""API keys in the admin: add one with its scopes and expiry (its key is shown once, on the page
after saving), see which keys are active, expired or revoked, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from apps.accounts import authentication
from apps.accounts.models import ApiKey
from apps.accounts.scopes import (
    DEFAULT_SCOPES,
    EXPIRY_ACCEPTED,
    KeyPolicyError,
    Scope,
    describe_expiry,
    parse_expiry,
    parse_scopes,
)


class NewApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=list(DEFAULT_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. Give each integration only what it needs.",
    )
    expires = forms.CharField(
        required=False,
        label="Expires",
        help_text=f"Empty: never (until revoked). Otherwise {EXPIRY_ACCEPTED}; times are UTC.",
    )

    class Meta:
        model = ApiKey
        fields = ["name"]

    def clean_scopes(self) -> list[str]:
        try:
            return parse_scopes(self.cleaned_data["scopes"])
        except KeyPolicyError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_expires(self):
        try:
            return parse_expiry(self.cleaned_data["expires"])
        except KeyPolicyError as exc:
            raise forms.ValidationError(str(exc)) from exc


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now),
                                   revoked_at__isnull=True)  # fmt: skip
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "key_start", "status", "scope_list", "expiry", "created_at",
                    "last_used_at", "revoked_at"]  # fmt: skip
    list_filter = [KeyStatusFilter]
    search_fields = ["name", "key_start"]
    readonly_fields = ["name", "key_start", "status", "scope_list", "expiry", "created_at",
                       "last_used_at", "revoked_at"]  # fmt: skip
    exclude = ["key_hash"]
    actions = ["revoke"]
    issued_template = "admin/accounts/apikey/issued.html"

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        if obj.is_expired:
            # Stands out in the list: requests with it are refused, and its owner may not know.
            return format_html('<strong style="color: #ba2121">{}</strong>', "expired")
        return "active"

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes) or "none"

    @admin.display(description="expires", ordering="expires_at")
    def expiry(self, obj: ApiKey) -> str:
        expiry = describe_expiry(obj.expires_at)
        return f"{expiry} (expired)" if obj.is_expired else expiry

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = NewApiKeyForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "scopes", "expires"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_model(self, request, obj: ApiKey, form, change) -> None:
        if change:
            return super().save_model(request, obj, form, change)
        row, key = ApiKey.issue(obj.name, scopes=form.cleaned_data["scopes"],
                                expires_at=form.cleaned_data["expires"])  # fmt: skip
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
            "scopes": ", ".join(obj.scopes),
            "expires": describe_expiry(obj.expires_at),
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
            authentication.forget(digest)
        self.message_user(request, f"Revoked {count} keys. Requests with them are refused from "
                                   "now on, on every server.")  # fmt: skip
