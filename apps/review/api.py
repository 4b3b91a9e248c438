"""The messages API with reviewers' decisions: the message's detail shows them, and integrations
send theirs with POST /api/v1/messages/{id}/feedback."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.response import Response

from apps.accounts.models import ApiKey
from apps.accounts.scopes import Scope
from apps.core import request_body
from apps.core.api import Conflict, ErrorSerializer, FieldError, unstorable
from apps.inbox.api import MessageSerializer, MessageViewSet
from apps.inbox.models import PRIORITY_LEVELS, Message
from apps.review.models import Feedback
from apps.review.services import Decision, ReviewError, accepted_categories, record_feedback

FEEDBACK_FIELDS = {
    "category": "one of the configured categories",
    "priority": f"one of {', '.join(PRIORITY_LEVELS)}",
    "draft": "the reply as it should be sent (kept as an approved reply example)",
    "confirm": "true to confirm the model's category and priority",
    "done": "true to mark the message handled",
}
FEEDBACK_ACCEPTED = (
    'Send a JSON object with "category" and/or "priority", optionally "draft" (a string), '
    '"confirm" or "done" (booleans); for example {"category": "billing", "priority": "P2"}.'
)


class FeedbackSerializer(serializers.ModelSerializer):
    who = serializers.CharField(read_only=True)
    model = serializers.SerializerMethodField()
    decided = serializers.SerializerMethodField()

    class Meta:
        model = Feedback
        fields = ["id", "created_at", "source", "who", "action", "model", "decided"]

    def get_model(self, feedback: Feedback) -> dict:
        return {"category": feedback.model_category, "confidence": feedback.model_confidence,
                "priority": feedback.model_priority, "versions": feedback.model_versions}  # fmt: skip

    def get_decided(self, feedback: Feedback) -> dict:
        return {
            "category": feedback.category or None,
            "priority": feedback.priority or None,
            "draft": feedback.draft or None,
            "draft_approved": feedback.draft_approved,
            "confirmed": feedback.confirmed,
            "done": feedback.done,
            "assignee": feedback.assignee.get_username() if feedback.assignee_id else None,
        }


class ReviewedMessageSerializer(MessageSerializer):
    review = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [*MessageSerializer.Meta.fields, "thread_key", "review", "feedback"]

    def get_review(self, message: Message) -> dict:
        return {
            "category": message.reviewed_category or None,
            "priority": message.reviewed_priority or None,
            "draft": message.reviewed_draft or None,
            "draft_approved_at": message.draft_approved_at,
            "reviewed_at": message.reviewed_at,
            "reviewed_by": message.reviewed_by.get_username() if message.reviewed_by_id else None,
            "assignee": message.assignee.get_username() if message.assignee_id else None,
        }

    def get_feedback(self, message: Message) -> list[dict]:
        rows = Feedback.objects.filter(message_id=message.id).select_related(
            "user", "api_key", "assignee"
        )
        return FeedbackSerializer(rows, many=True).data


def decision_from_body(body) -> Decision:
    """The decision in a feedback request, or a ReviewError naming the field that is wrong and
    what is accepted."""
    if not isinstance(body, dict):
        raise ReviewError("body", f"The body must be a JSON object. {FEEDBACK_ACCEPTED}")
    unknown = sorted(set(body) - set(FEEDBACK_FIELDS))
    if unknown:
        accepted = "; ".join(f"{name}: {what}" for name, what in FEEDBACK_FIELDS.items())
        raise ReviewError(unknown[0], f"Unknown field {unknown[0]!r}. Accepted fields: {accepted}.")
    for name in ("category", "priority", "draft"):
        if name in body and not isinstance(body[name], str):
            raise ReviewError(name, f'"{name}" must be a string: {FEEDBACK_FIELDS[name]}.')
        problem = unstorable(body[name]) if name in body else None
        if problem:
            raise ReviewError(name, f'"{name}" holds {problem}, which is not text.')
    for name in ("confirm", "done"):
        if name in body and not isinstance(body[name], bool):
            raise ReviewError(name, f'"{name}" must be true or false.')
    if not any(body.get(name) not in (None, False) for name in FEEDBACK_FIELDS):
        raise ReviewError("body", f"Nothing to record. {FEEDBACK_ACCEPTED}")
    draft = body.get("draft")
    if draft is not None and not draft.strip():
        raise ReviewError("draft", '"draft" cannot be empty: leave it out instead.')
    return Decision(
        category=body.get("category"),
        priority=body.get("priority"),
        draft=draft,
        approve_draft=draft is not None,
        confirm=body.get("confirm", False),
        done=body.get("done", False),
    )


class ReviewedMessageViewSet(MessageViewSet):
    required_scopes = {**MessageViewSet.required_scopes, "feedback": Scope.WRITE}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "retrieve":
            queryset = queryset.select_related("reviewed_by", "assignee")
        return queryset

    def get_serializer_class(self):
        if self.action == "retrieve":
            return ReviewedMessageSerializer
        return super().get_serializer_class()

    @extend_schema(
        # JSON only: the ingest's raw-message parser does not apply here.
        request={
            "application/json": inline_serializer(
                "FeedbackRequest",
                {
                    "category": serializers.CharField(required=False),
                    "priority": serializers.ChoiceField(PRIORITY_LEVELS, required=False),
                    "draft": serializers.CharField(required=False),
                    "confirm": serializers.BooleanField(required=False),
                    "done": serializers.BooleanField(required=False),
                },
            )
        },
        responses={
            201: FeedbackSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                "Invalid JSON, or a field that is unknown or has a value that is not accepted: "
                "error.fields names it, and error.accepted lists the accepted categories or "
                "priorities.",
            ),
            404: OpenApiResponse(ErrorSerializer, "No such message."),
            409: OpenApiResponse(ErrorSerializer, "The chain has not finished with the message."),
        },
    )
    @action(detail=True, methods=["post"])
    def feedback(self, request, pk=None):
        """A reviewer's decision on a message, from an integration: kept as feedback, applied to
        the message, and learned from at the next retraining."""
        try:
            body = request_body.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON ({exc}). {FEEDBACK_ACCEPTED}",
                             code="invalid_json") from exc  # fmt: skip
        message = self.get_object()
        try:
            decision = decision_from_body(body)
            api_key = ApiKey.objects.filter(pk=request.user.key_id).first()
            reviewer = get_user_model().objects.filter(pk=request.user.user_id).first()
            feedback = record_feedback(message.id, decision, user=reviewer, api_key=api_key)
        except ReviewError as exc:
            if exc.field == "status":
                raise Conflict(exc.message, code="not_finished") from exc
            if exc.field == "body":  # the body as a whole, not one of its fields
                raise ValidationError(exc.message) from exc
            accepted = None
            if exc.field == "category":
                accepted = accepted_categories()
            elif exc.field == "priority":
                accepted = list(PRIORITY_LEVELS)
            raise FieldError(exc.field, exc.message, accepted=accepted) from exc
        return Response(FeedbackSerializer(feedback).data, status=status.HTTP_201_CREATED)
