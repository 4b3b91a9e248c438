"""The messages API: ingest, read triage results, re-run."""

from __future__ import annotations

import email.errors
import email.utils
import hashlib
import json
from datetime import UTC, timedelta
from email.message import EmailMessage

import django_filters
from django import forms
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from apps.accounts.scopes import Scope
from apps.core import metrics, request_body
from apps.core.api import (
    Conflict,
    ErrorDetailSerializer,
    ErrorSerializer,
    FieldError,
    PayloadTooLarge,
    Unprocessable,
    unstorable,
)
from apps.core.request_body import JSONParser
from apps.inbox.engine import MessageTooLarge
from apps.inbox.ingest import IngestResult, ingest_raw, refused_at_ingest, rerun
from apps.inbox.models import Message, MessageSource

ACCEPTED = (
    "Send either a raw RFC 822 message with Content-Type: message/rfc822, or JSON: "
    '{"raw": "<the RFC 822 message>"} or {"from": ..., "to": ..., "subject": ..., "text": ...} '
    '(optional: "message_id", "date").'
)
JSON_FIELDS = {"from", "to", "subject", "text", "message_id", "date"}
# The fields that become header lines: a line break in one would start another header.
HEADER_FIELDS = ("from", "to", "subject", "message_id", "date")
# What identifies a JSON message sent without "message_id": the same fields, the same message.
IDENTIFYING_FIELDS = ("from", "to", "subject", "text", "date")


class RawMessageParser(BaseParser):
    media_type = "message/rfc822"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read()


class MessageSummarySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="message-detail")

    class Meta:
        model = Message
        fields = ["id", "url", "status", "received_at", "source", "from_address", "subject",
                  "category", "category_confidence", "language", "priority", "priority_score",
                  "sender_verdict", "failed_step"]  # fmt: skip


class MessageSerializer(MessageSummarySerializer):
    class Meta(MessageSummarySerializer.Meta):
        fields = [*MessageSummarySerializer.Meta.fields, "ingested_at", "updated_at",
                  "message_id_header", "from_name", "sent_at", "size", "failure_reason", "runs",
                  "summary", "draft_reply", "sender_trust", "category_result", "priority_result",
                  "draft_result", "sender_result", "steps"]  # fmt: skip


class AcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    status = serializers.CharField()
    created = serializers.BooleanField()


class RefusedSerializer(AcceptedSerializer):
    error = ErrorDetailSerializer()


DATE_TIME_ACCEPTED = (
    "An ISO 8601 date and time is accepted, such as 2026-01-01T09:30:00Z or "
    "2026-01-01T09:30:00+02:00, with a UTC offset under 16 hours."
)


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    default_error_messages = {"invalid": DATE_TIME_ACCEPTED}

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        # PostgreSQL takes offsets up to 15:59; no time zone is near that.
        if abs(moment.utcoffset()) >= timedelta(hours=16):
            raise forms.ValidationError(DATE_TIME_ACCEPTED, code="invalid")
        try:
            return moment.astimezone(UTC)
        except OverflowError as exc:  # the first or last day of the calendar, moved past it
            raise forms.ValidationError(DATE_TIME_ACCEPTED, code="invalid") from exc


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class MessageFilter(django_filters.FilterSet):
    received_after = UtcDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = UtcDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status", "category", "language", "priority", "source", "sender_verdict"]


_HEADER_LINE = {"type": "string", "pattern": "^[^\\r\\n]*$"}
# The two JSON forms of a message, for the OpenAPI schema.
INGEST_JSON = {
    "oneOf": [
        {
            "title": "RawMessage",
            "type": "object",
            "properties": {"raw": {"type": "string", "description": "The RFC 822 message."}},
            "required": ["raw"],
            "additionalProperties": False,
        },
        {
            "title": "MessageFields",
            "type": "object",
            "properties": {
                "from": {**_HEADER_LINE, "example": "Dana <dana@example.com>"},
                "to": {
                    "oneOf": [_HEADER_LINE, {"type": "array", "items": _HEADER_LINE}],
                    "example": ["support@example.com"],
                },
                "subject": {**_HEADER_LINE, "example": "Login fails"},
                "text": {"type": "string", "example": "I cannot log in since Monday."},
                "message_id": _HEADER_LINE,
                "date": {**_HEADER_LINE, "description": "An RFC 5322 date; default: now."},
            },
            "required": ["from", "subject", "text"],
            "additionalProperties": False,
        },
    ]
}


class NewestFirst(CursorPagination):
    # A cursor, not page numbers: no COUNT(*) over every partition for each page.
    ordering = "-id"
    page_size = settings.MAILSCORE_API_PAGE_SIZE


def stable_message_id(fields: dict) -> str:
    """A Message-ID derived from the JSON fields, so that the same fields sent again are the
    same message (the Date a message without one gets is the time of sending, which differs)."""
    canonical = json.dumps({name: fields.get(name) for name in IDENTIFYING_FIELDS},
                           sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # fmt: skip
    return f"<{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}@json.mailscore>"


def _compose(fields: dict) -> bytes:
    """An RFC 822 message from the JSON fields."""
    unknown = set(fields) - JSON_FIELDS
    if unknown:
        raise FieldError(sorted(unknown), f"Unknown fields {sorted(unknown)}. {ACCEPTED}",
                         code="unknown_field")  # fmt: skip
    for name in ("from", "subject", "text"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise FieldError(name, f'"{name}" is required and must be a non-empty string. '
                             f"{ACCEPTED}", code="required")  # fmt: skip
    for name in ("message_id", "date"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise FieldError(name, f'"{name}" must be a string. {ACCEPTED}')
    to = fields.get("to") or []
    if not isinstance(to, str) and not (
        isinstance(to, list) and all(isinstance(a, str) for a in to)
    ):
        raise FieldError("to", f'"to" must be a string or a list of strings. {ACCEPTED}')
    for name in HEADER_FIELDS:
        values = to if name == "to" and isinstance(to, list) else [fields.get(name) or ""]
        if any("\r" in value or "\n" in value for value in values):
            raise FieldError(name, f'"{name}" cannot contain a line break (CR or LF): it is one '
                             f"header line. {ACCEPTED}", code="line_break")  # fmt: skip
    for name in sorted(JSON_FIELDS):
        values = to if name == "to" and isinstance(to, list) else [fields.get(name) or ""]
        # A NUL in the text is dropped with the rest of what a body cannot show; in a header it
        # is the sender's mistake.
        checked = [value.replace("\x00", "") if name == "text" else value for value in values]
        problem = next(filter(None, map(unstorable, checked)), None)
        if problem:
            raise FieldError(name, f'"{name}" holds {problem}, which is not text. {ACCEPTED}',
                             code="invalid_character")  # fmt: skip
    message = EmailMessage()
    try:
        message["From"] = fields["from"]
        message["To"] = ", ".join(to) if isinstance(to, list) else to
        message["Subject"] = fields["subject"]
        message["Date"] = fields.get("date") or email.utils.formatdate(usegmt=True)
        message["Message-ID"] = fields.get("message_id") or stable_message_id(fields)
        message.set_content(fields["text"])
        return message.as_bytes()
    # AttributeError: the standard library's header parser fails so on some odd From values.
    except (ValueError, TypeError, IndexError, AttributeError, email.errors.MessageError) as exc:
        # A value the email package cannot make a header of: the fields make no message.
        raise ValidationError(f"The fields do not make a valid message ({exc}). {ACCEPTED}",
                              code="invalid_message") from exc  # fmt: skip


def _raw_from_request(request) -> bytes:
    limit = settings.MAILSCORE_MAX_MESSAGE_BYTES
    content_type = request.content_type.split(";")[0].strip().lower()
    declared = int(request.headers.get("Content-Length") or 0)
    if content_type == "message/rfc822":
        if declared > limit:
            raise MessageTooLarge(declared, limit)
        return _not_empty(request.body)
    if content_type == "application/json":
        if declared > 2 * limit:
            raise MessageTooLarge(declared, limit)
        try:
            payload = request_body.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON ({exc}). {ACCEPTED}",
                             code="invalid_json") from exc  # fmt: skip
        if not isinstance(payload, dict):
            raise ParseError(f"The JSON body must be an object. {ACCEPTED}", code="not_an_object")
        if "raw" in payload:
            if set(payload) - {"raw"} or not isinstance(payload["raw"], str):
                raise FieldError("raw", f'"raw" must be a string and come alone. {ACCEPTED}')
            try:
                # surrogateescape: bytes that are not UTF-8, as Python spells them in text.
                raw = payload["raw"].encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:
                raise FieldError("raw", f'"raw" holds an unpaired surrogate, which is not text. '
                                 f"{ACCEPTED}", code="invalid_character") from exc  # fmt: skip
            return _not_empty(raw)
        return _compose(payload)
    raise UnsupportedMediaType(
        content_type, f"Content-Type {content_type or '(none)'} is not accepted. {ACCEPTED}"
    )


def accepted_body(request, result: IngestResult) -> dict:
    """What an ingest answers about its message (the stored one, for a copy)."""
    message = result.message
    url = request.build_absolute_uri(f"{request.path.rstrip('/')}/{message.id}")
    return {"id": message.id, "url": url, "status": message.status, "created": result.created}


def accepted_status(result: IngestResult) -> int:
    return status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK


def not_mail(result: IngestResult, body: dict) -> Unprocessable:
    """The 422 for input refused at ingest. The same input again finds the same failed row, and
    is answered the same way."""
    return Unprocessable(f"{result.message.failure_reason} {ACCEPTED}", code="not_rfc822",
                         resource=body)  # fmt: skip


def _not_empty(raw: bytes) -> bytes:
    # Nothing sent is a malformed request, not a message to keep a row for.
    if not raw.strip():
        raise ValidationError(f"The message is empty. {ACCEPTED}", code="empty")
    return raw


class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Message.objects.defer("raw")
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    pagination_class = NewestFirst
    parser_classes = [JSONParser, RawMessageParser]
    # What an API key needs for each action (apps/accounts/permissions.py); rates per scope.
    required_scopes = {"list": Scope.READ, "retrieve": Scope.READ,
                       "create": Scope.WRITE, "rerun": Scope.WRITE}  # fmt: skip

    def get_serializer_class(self):
        return MessageSummarySerializer if self.action == "list" else MessageSerializer

    @extend_schema(
        request={"message/rfc822": OpenApiTypes.BINARY, "application/json": INGEST_JSON},
        responses={
            202: AcceptedSerializer,
            200: OpenApiResponse(AcceptedSerializer, "Already stored: the first one is returned."),
            400: OpenApiResponse(
                ErrorSerializer,
                "Malformed request (empty body, invalid JSON, missing, unknown or mistyped fields, "
                "a line break in a header field); nothing is stored.",
            ),
            422: OpenApiResponse(
                RefusedSerializer,
                "Not an RFC 822 message: kept as a failed message with the reason in "
                "error.message, never triaged.",
            ),
            413: OpenApiResponse(ErrorSerializer, "Larger than MAILSCORE_MAX_MESSAGE_BYTES."),
            415: OpenApiResponse(ErrorSerializer, "Neither message/rfc822 nor JSON."),
        },
    )
    def create(self, request):
        """Ingest one message. The same Message-ID again returns the stored message (200); input
        that is not a message is kept as a failed message and answered 422."""
        try:
            raw = _raw_from_request(request)
            result = ingest_raw(raw, source=MessageSource.API,
                                source_detail=f"key {request.user.name}")  # fmt: skip
        except MessageTooLarge as exc:
            metrics.count_ingested(MessageSource.API, "refused")  # answered 413, no row kept
            raise PayloadTooLarge(str(exc)) from exc
        body = accepted_body(request, result)
        if result.refused:
            raise not_mail(result, body)
        return Response(body, status=accepted_status(result))

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "Rerun", {"id": serializers.IntegerField(), "status": serializers.CharField()}
            ),  # fmt: skip
            409: OpenApiResponse(
                ErrorSerializer,
                "The chain is still working on the message, or it was refused at ingest (not "
                "mail), which a new run cannot change.",
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Run the chain again for a finished or failed message."""
        message = self.get_object()
        if refused_at_ingest(message):
            raise Conflict(
                f"Message {message.id} was refused at ingest ({message.failure_reason}) and "
                f"cannot be re-run: send a corrected message instead. {ACCEPTED}",
                code="refused_at_ingest",
            )
        queued, _ = rerun([message.id])
        if not queued:
            raise Conflict(
                f"Message {message.id} is {message.status}; only triaged, needs_review or failed "
                "messages can be re-run.",
                code="not_finished",
            )
        return Response({"id": message.id, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
