"""The messages API: ingest, read triage results, re-run."""

from __future__ import annotations

import email.errors
import email.utils
import hashlib
import json
from email.message import EmailMessage

import django_filters
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.response import Response

from apps.inbox.engine import MessageTooLarge
from apps.inbox.ingest import ingest_raw, refused_at_ingest, rerun
from apps.inbox.models import Message, MessageSource

ACCEPTED = (
    "Send either a raw RFC 822 message with Content-Type: message/rfc822, or JSON: "
    '{"raw": "<the RFC 822 message>"} or {"from": ..., "to": ..., "subject": ..., "text": ...} '
    '(optional: "message_id", "date").'
)
JSON_FIELDS = {"from", "to", "subject", "text", "message_id", "date"}
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
                  "category", "category_confidence", "priority", "priority_score",
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
    detail = serializers.CharField()


class MessageFilter(django_filters.FilterSet):
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Message
        fields = ["status", "category", "priority", "source", "sender_verdict"]


class NewestFirst(CursorPagination):
    # A cursor, not page numbers: no COUNT(*) over every partition for each page.
    ordering = "-id"
    page_size = settings.MAILSCORE_API_PAGE_SIZE


class ApiError(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


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
        raise ApiError(400, f"Unknown fields {sorted(unknown)}. {ACCEPTED}")
    for name in ("from", "subject", "text"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            raise ApiError(400, f'"{name}" is required and must be a non-empty string. {ACCEPTED}')
    for name in ("message_id", "date"):
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise ApiError(400, f'"{name}" must be a string. {ACCEPTED}')
    to = fields.get("to") or []
    if not isinstance(to, str) and not (
        isinstance(to, list) and all(isinstance(a, str) for a in to)
    ):
        raise ApiError(400, f'"to" must be a string or a list of strings. {ACCEPTED}')
    message = EmailMessage()
    try:
        message["From"] = fields["from"]
        message["To"] = ", ".join(to) if isinstance(to, list) else to
        message["Subject"] = fields["subject"]
        message["Date"] = fields.get("date") or email.utils.formatdate(usegmt=True)
        message["Message-ID"] = fields.get("message_id") or stable_message_id(fields)
        message.set_content(fields["text"])
        return message.as_bytes()
    except (ValueError, TypeError, IndexError, email.errors.MessageError) as exc:
        # A header value with a line break, say: the fields do not make a message.
        raise ApiError(400, f"The fields do not make a valid message ({exc}). {ACCEPTED}") from exc


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
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"The body is not valid JSON ({exc}). {ACCEPTED}") from exc
        if not isinstance(payload, dict):
            raise ApiError(400, f"The JSON body must be an object. {ACCEPTED}")
        if "raw" in payload:
            if set(payload) - {"raw"} or not isinstance(payload["raw"], str):
                raise ApiError(400, f'"raw" must be a string and come alone. {ACCEPTED}')
            return _not_empty(payload["raw"].encode("utf-8", "surrogateescape"))
        return _compose(payload)
    raise ApiError(415, f"Content-Type {content_type or '(none)'} is not accepted. {ACCEPTED}")


def _not_empty(raw: bytes) -> bytes:
    # Nothing sent is a malformed request, not a message to keep a row for.
    if not raw.strip():
        raise ApiError(400, f"The message is empty. {ACCEPTED}")
    return raw


class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Message.objects.defer("raw")
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    pagination_class = NewestFirst
    parser_classes = [JSONParser, RawMessageParser]

    def get_serializer_class(self):
        return MessageSummarySerializer if self.action == "list" else MessageSerializer

    def _accepted(self, request, message, created: bool) -> dict:
        url = request.build_absolute_uri(f"{request.path.rstrip('/')}/{message.id}")
        return {"id": message.id, "url": url, "status": message.status, "created": created}

    @extend_schema(
        request={"message/rfc822": OpenApiTypes.BINARY, "application/json": OpenApiTypes.OBJECT},
        responses={
            202: AcceptedSerializer,
            200: OpenApiResponse(AcceptedSerializer, "Already stored: the first one is returned."),
            400: OpenApiResponse(
                description="Malformed request (empty body, invalid JSON, missing or unknown "
                "fields); nothing is stored."
            ),
            422: OpenApiResponse(
                RefusedSerializer,
                "Not an RFC 822 message: kept as a failed message with the reason in detail, "
                "never triaged.",
            ),
            413: OpenApiResponse(description="Larger than MAILSCORE_MAX_MESSAGE_BYTES."),
            415: OpenApiResponse(description="Neither message/rfc822 nor JSON."),
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
            return Response({"detail": str(exc)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        except ApiError as exc:
            return Response({"detail": exc.detail}, status=exc.status_code)
        body = self._accepted(request, result.message, result.created)
        if result.refused:
            # The same input again finds the same failed row, and is answered the same way.
            body["detail"] = f"{result.message.failure_reason} {ACCEPTED}"
            return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response(
            body, status=status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK
        )

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "Rerun", {"id": serializers.IntegerField(), "status": serializers.CharField()}
            ),  # fmt: skip
            409: OpenApiResponse(
                description="The chain is still working on the message, or it was refused at "
                "ingest (not mail), which a new run cannot change."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Run the chain again for a finished or failed message."""
        message = self.get_object()
        if refused_at_ingest(message):
            return Response(
                {"detail": f"Message {message.id} was refused at ingest ({message.failure_reason}) "
                 f"and cannot be re-run: send a corrected message instead. {ACCEPTED}"},
                status=status.HTTP_409_CONFLICT,
            )  # fmt: skip
        queued, _ = rerun([message.id])
        if not queued:
            return Response(
                {"detail": f"Message {message.id} is {message.status}; only triaged, needs_review "
                 "or failed messages can be re-run."},
                status=status.HTTP_409_CONFLICT,
            )  # fmt: skip
        return Response({"id": message.id, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
