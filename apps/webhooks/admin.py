"""Webhook endpoints (with their secret, a test ping and secret rotation) and their deliveries,
each with every attempt, and a retry."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from apps.webhooks import services
from apps.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event to send to this endpoint."},
        help_text="job.completed is sent when bulk verification jobs finish.",
    )  # fmt: skip

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "active"]
        widgets = {"url": forms.URLInput(attrs={"size": 100})}


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["__str__", "url_excerpt", "event_list", "active", "delivery_links",
                    "created_at"]  # fmt: skip
    list_filter = ["active"]
    search_fields = ["url", "description"]
    readonly_fields = ["secret_shown", "created_at"]
    actions = ["send_test_ping", "rotate_secret"]

    def get_fields(self, request, obj=None):
        fields = ["url", "description", "events", "active"]
        return [*fields, "secret_shown", "created_at"] if obj else fields

    @admin.display(description="URL")
    def url_excerpt(self, obj: WebhookEndpoint) -> str:
        return Truncator(obj.url).chars(80)

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events) or "(none)"

    @admin.display(description="deliveries")
    def delivery_links(self, obj: WebhookEndpoint) -> str:
        listing = reverse("admin:webhooks_webhookdelivery_changelist")
        return format_html(
            '<a href="{}?endpoint__id__exact={}">all</a> · '
            '<a href="{}?endpoint__id__exact={}&status__exact=failed">failed</a>',
            listing, obj.id, listing, obj.id,
        )  # fmt: skip

    @admin.display(description="secret")
    def secret_shown(self, obj: WebhookEndpoint) -> str:
        return format_html(
            "<code>{}</code><br>Give it to the receiver: every delivery's X-Mailscore-Signature "
            "is an HMAC-SHA256 made with it (docs/api.md, Webhooks). The action “Rotate the "
            "secret” on the list replaces it.",
            obj.secret,
        )

    @admin.action(description="Send a test ping (sent now, tried once)")
    def send_test_ping(self, request, queryset):
        for endpoint in queryset:
            delivery = services.send_ping(endpoint)
            page = reverse("admin:webhooks_webhookdelivery_change", args=[delivery.id])
            if delivery.status == DeliveryStatus.DELIVERED:
                self.message_user(request, format_html(
                    "{}: the test ping was delivered ({}). <a href='{}'>The delivery</a>.",
                    endpoint, delivery.last_status_code, page), messages.SUCCESS)  # fmt: skip
            else:
                self.message_user(request, format_html(
                    "{}: the test ping was not delivered: {} <a href='{}'>The delivery</a>.",
                    endpoint, delivery.last_error, page), messages.ERROR)  # fmt: skip

    @admin.action(description="Rotate the secret (the receiver needs the new one)")
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            services.rotate_secret(endpoint)
            self.message_user(request, format_html(
                "{}: new secret <code>{}</code>. Every delivery from now on, retries included, is "
                "signed with it.", endpoint, endpoint.secret), messages.WARNING)  # fmt: skip


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "last_status_code",
                    "next_attempt_at", "error_excerpt"]  # fmt: skip
    list_filter = ["status", "event", "endpoint"]
    list_select_related = ["endpoint"]
    search_fields = ["last_error", "endpoint__url", "endpoint__description"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]
    fields = ["id", "endpoint", "event", "event_id", "status", "attempts", "last_status_code",
              "last_error", "next_attempt_at", "created_at", "delivered_at", "finished_at",
              "attempts_table", "payload_shown"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # deliveries are made by events and test pings

    def get_search_results(self, request, queryset, search_term):
        """Also finds a delivery by its id (a receiver's X-Mailscore-Delivery) or its event's."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            wanted = uuid.UUID(search_term.strip())
        except ValueError:
            return found, may_have_duplicates
        return found | queryset.filter(Q(id=wanted) | Q(event_id=wanted)), may_have_duplicates

    @admin.display(description="last error")
    def error_excerpt(self, obj: WebhookDelivery) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="attempts, oldest first")
    def attempts_table(self, obj: WebhookDelivery) -> str:
        if not obj.attempt_log:
            return "(not tried yet)"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
                                "<td>{}</td><td>{}</td></tr>", (
            (a.get("attempt"), a.get("at"), a.get("address") or "-", a.get("status_code") or "-",
             a.get("outcome"), a.get("duration_ms"), a.get("error") or "")
            for a in obj.attempt_log
        ))  # fmt: skip
        return format_html(
            "<table><thead><tr><th>#</th><th>at</th><th>address</th><th>answer</th>"
            "<th>outcome</th><th>ms</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="payload")
    def payload_shown(self, obj: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", services.encode_readable(obj.payload))

    @admin.action(description="Retry now (failed and waiting deliveries)")
    def retry_now(self, request, queryset):
        count = services.retry_now([str(pk) for pk in queryset.values_list("id", flat=True)])
        skipped = queryset.count() - count
        text = f"{count} {'delivery' if count == 1 else 'deliveries'} will be tried again now."
        if skipped:
            text += f" {skipped} already delivered left alone."
        self.message_user(request, text, messages.SUCCESS if count else messages.WARNING)
