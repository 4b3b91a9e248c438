"""The webhooks API: /api/v1/webhooks configures endpoints as the admin does (the same
validators: http(s) URLs on public addresses, known events), and /api/v1/webhooks/{id}/deliveries
lists an endpoint's recent deliveries. An endpoint's secret is answered once, when it is made."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.scopes import Scope
from apps.core.api import ErrorSerializer, FieldError, unstorable
from apps.webhooks.models import (
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    validate_events,
    validate_webhook_url,
)
from apps.webhooks.targets import ACCEPTED as URL_ACCEPTED

EVENTS = list(WebhookEvent.values)
EVENTS_ACCEPTED = f"Give a list of one or more events; accepted: {', '.join(EVENTS)}."
WRITABLE_FIELDS = {
    "url": "the URL events are POSTed to",
    "description": "a note of up to 200 characters",
    "events": f"a list of one or more of {', '.join(EVENTS)}",
    "active": "true or false (inactive endpoints get no new events)",
}
FIELDS_ACCEPTED = "Accepted fields: " + "; ".join(
    f"{name}: {what}" for name, what in WRITABLE_FIELDS.items()
)
SECRET_HINT_CHARS = 4


@extend_schema_field({"type": "array", "items": {"type": "string", "enum": EVENTS}, "minItems": 1})
class EventsField(serializers.Field):
    """A list of event names, checked by the model's validate_events; stored once each, in the
    order WebhookEvent lists them."""

    default_error_messages = {"required": EVENTS_ACCEPTED, "null": EVENTS_ACCEPTED}

    def __init__(self, **kwargs) -> None:
        super().__init__(validators=[validate_events], **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list):
            if not data:
                raise serializers.ValidationError(f"No events given. {EVENTS_ACCEPTED}")
            if any(isinstance(name, str) and unstorable(name) for name in data):
                raise serializers.ValidationError(f"An event name is not text. {EVENTS_ACCEPTED}")
        return data

    def run_validation(self, data=serializers.empty):
        value = super().run_validation(data)
        return value if value is serializers.empty else [e for e in EVENTS if e in value]

    def to_representation(self, value):
        return list(value)


@extend_schema_field({"type": "string", "enum": list(DeliveryStatus.values)})
class DeliveryStatusField(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "enum": [*EVENTS, "ping"]})
class DeliveryEventField(serializers.CharField):
    pass


def _text_messages(what: str, accepted: str) -> dict[str, str]:
    return {
        "required": f"{what} is required. {accepted}",
        "null": f"{what} cannot be null. {accepted}",
        "blank": f"{what} cannot be empty. {accepted}",
        "invalid": f"{what} must be a string. {accepted}",
        "max_length": f"{what} is longer than {{max_length}} characters. {accepted}",
        "null_characters_not_allowed": f"{what} cannot contain a NUL character.",
        "surrogate_characters_not_allowed": f"{what} holds an unpaired surrogate, which is not "
        "text.",
    }


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as it is read back: without its secret, which only its last characters hint
    at."""

    url = serializers.CharField(
        max_length=2000, validators=[validate_webhook_url],
        error_messages=_text_messages('"url"', URL_ACCEPTED),
        help_text="Where events are POSTed: http:// or https://, on a host that resolves only to "
        "public addresses (networks in MAILSCORE_WEBHOOK_ALLOWED_NETWORKS excepted).",
    )  # fmt: skip
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True,
        error_messages=_text_messages('"description"', "Give at most 200 characters."),
    )  # fmt: skip
    events = EventsField(help_text="The events sent to this endpoint.")
    active = serializers.BooleanField(
        required=False, help_text="Inactive endpoints get no new events (default: true).",
        error_messages={"invalid": '"active" must be true or false.',
                        "null": '"active" must be true or false.'},
    )  # fmt: skip
    secret_hint = serializers.SerializerMethodField(
        help_text=f"The secret's last {SECRET_HINT_CHARS} characters, to tell which one a "
        "receiver holds; the secret itself is answered only when the endpoint is made."
    )
    deliveries_url = serializers.SerializerMethodField(help_text="Its recent deliveries.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "active", "secret_hint", "deliveries_url",
                  "created_at"]  # fmt: skip
        read_only_fields = ["id", "created_at"]

    def get_secret_hint(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.secret[-SECRET_HINT_CHARS:]

    def get_deliveries_url(self, endpoint: WebhookEndpoint) -> str:
        path = reverse("webhook-deliveries", args=[endpoint.id])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise FieldError("body", f"The body must be a JSON object. {FIELDS_ACCEPTED}.")
        unknown = sorted(set(data) - set(WRITABLE_FIELDS))
        if unknown:
            raise FieldError(unknown, f"Unknown field {unknown[0]!r}. {FIELDS_ACCEPTED}.",
                             code="unknown_field")  # fmt: skip
        return super().to_internal_value(data)


class CreatedWebhookEndpointSerializer(WebhookEndpointSerializer):
    """An endpoint just made: the one answer that carries its secret."""

    secret = serializers.CharField(
        read_only=True,
        help_text="Signs every delivery (X-Mailscore-Signature). Shown only now: keep it for the "
        "receiver.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class DeliveryAttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(help_text="1 for the first attempt.")
    at = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    address = serializers.CharField(help_text="The address connected to; empty if none was.")
    status_code = serializers.IntegerField(allow_null=True, help_text="The receiver's answer.")
    outcome = serializers.CharField(help_text="delivered, retry or failed.")
    error = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    event = DeliveryEventField()
    status = DeliveryStatusField(help_text="pending: waiting for an attempt or a retry.")
    payload = serializers.JSONField(help_text="The body POSTed (see the events' payloads).")
    attempt_log = DeliveryAttemptSerializer(many=True, help_text="Every attempt, oldest first.")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "event_id", "status", "attempts", "last_status_code",
                  "last_error", "next_attempt_at", "created_at", "delivered_at", "finished_at",
                  "payload", "attempt_log"]  # fmt: skip
        read_only_fields = fields


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Webhook endpoints: the URLs events are POSTed to, and what is sent to each."""

    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    lookup_value_regex = "[0-9]+"
    required_scope = Scope.WEBHOOKS

    @extend_schema(operation_id="webhooks_list", summary="List webhook endpoints",
                   description="Oldest first. Secrets are not shown, only their last characters.")  # fmt: skip
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Add a webhook endpoint",
        description=(
            "The URL is checked as in the admin: http:// or https://, and its host must resolve "
            "only to public addresses (loopback, private, link-local and metadata addresses are "
            "refused unless MAILSCORE_WEBHOOK_ALLOWED_NETWORKS lists them). The answer carries "
            "the endpoint's `secret`, which signs every delivery: it is shown only here."
        ),
        request=WebhookEndpointSerializer,
        responses={
            201: OpenApiResponse(CreatedWebhookEndpointSerializer, "Made; keep the secret."),
            400: OpenApiResponse(
                ErrorSerializer,
                "A URL that is refused, an unknown event, an unknown field: `error.message` says "
                "why and what is accepted.",
            ),
        },
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = serializer.save()
        body = CreatedWebhookEndpointSerializer(endpoint, context=self.get_serializer_context())
        location = request.build_absolute_uri(reverse("webhook-detail", args=[endpoint.id]))
        return Response(body.data, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(operation_id="webhooks_retrieve", summary="A webhook endpoint")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_partial_update",
        summary="Change a webhook endpoint",
        description=(
            "Any of url, description, events and active; the others stay. A new URL is checked "
            "as when the endpoint is made. Deliveries already recorded go to the URL of the "
            "moment of each attempt."
        ),
        request=WebhookEndpointSerializer(partial=True),
        responses={200: WebhookEndpointSerializer},
    )
    def partial_update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(
        operation_id="webhooks_destroy",
        summary="Delete a webhook endpoint",
        description="With its deliveries; pending ones are not sent.",
        responses={204: OpenApiResponse(description="Deleted.")},
    )
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    @extend_schema(
        operation_id="webhooks_deliveries",
        summary="A webhook endpoint's recent deliveries",
        description="Newest first, each with every attempt at it.",
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        endpoint = self.get_object()
        page = self.paginate_queryset(
            WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "id")
        )
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
