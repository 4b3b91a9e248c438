"""A reviewer's decisions on a message, from the admin or the API: applied to the message and
kept as feedback (who, when, what the model said, what the reviewer decided)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.inbox.ingest import rerun
from apps.inbox.models import PRIORITY_LEVELS, REVIEWABLE, Message, MessageStatus
from apps.review.models import Feedback, FeedbackSource, ReplyExample
from apps.triage.models import category_names
from apps.webhooks.signals import message_reviewed

# Feedback keeps the text it was about, for retraining, up to this many characters.
TEXT_LIMIT = 4000
UNCHANGED = object()


class ReviewError(ValueError):
    """A decision that cannot be applied; field names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class Decision:
    """What a reviewer decided. None (or UNCHANGED for the assignee) leaves a thing alone."""

    category: str | None = None
    priority: str | None = None
    draft: str | None = None
    approve_draft: bool = False
    confirm: bool = False
    done: bool = False
    assignee: object = UNCHANGED  # a user, None to unassign, or UNCHANGED


def accepted_categories() -> list[str]:
    return category_names()


def validate(decision: Decision) -> None:
    if decision.category is not None:
        names = accepted_categories()
        if decision.category not in names:
            raise ReviewError("category", f"Unknown category {decision.category!r}; accepted: "
                              f"{', '.join(names)}.")  # fmt: skip
    if decision.priority is not None and decision.priority not in PRIORITY_LEVELS:
        raise ReviewError("priority", f"Unknown priority {decision.priority!r}; accepted: "
                          f"{', '.join(PRIORITY_LEVELS)}.")  # fmt: skip
    if decision.approve_draft and decision.draft is not None and not decision.draft.strip():
        raise ReviewError("draft", "An approved draft cannot be empty.")


def training_text(message: Message) -> str:
    """What the category head reads of a message: its subject and what it adds."""
    parsed = message.parsed or {}
    body = parsed.get("new_text") or parsed.get("text") or ""
    return f"{message.subject}\n{body}"[:TEXT_LIMIT]


def describe(message: Message, decision: Decision, assignee_name: str | None) -> str:
    parts = []
    if decision.confirm:
        parts.append("confirmed")
    if decision.category is not None and decision.category != message.effective_category:
        parts.append(f"category {message.effective_category or '-'} -> {decision.category}")
    if decision.priority is not None and decision.priority != message.effective_priority:
        parts.append(f"priority {message.effective_priority or '-'} -> {decision.priority}")
    if decision.draft is not None and decision.draft != (
        message.reviewed_draft or message.draft_reply
    ):
        parts.append("draft edited")
    if decision.approve_draft:
        parts.append("draft approved")
    if assignee_name is not None:
        parts.append(f"assigned to {assignee_name}" if assignee_name else "unassigned")
    if decision.done:
        parts.append("marked done")
    return ", ".join(parts) or "no change"


def record_feedback(message_id: int, decision: Decision, *, user=None, api_key=None) -> Feedback:
    """Apply a decision to a message and keep it as feedback, in one transaction. Raises
    ReviewError for a decision that cannot be applied, Message.DoesNotExist for no message."""
    validate(decision)
    with transaction.atomic():
        message = Message.objects.select_for_update().defer("raw").get(pk=message_id)
        if message.status not in REVIEWABLE:
            raise ReviewError("status", f"Message {message.id} is {message.status}: only "
                              "triaged, needs-review and done messages can be reviewed.")  # fmt: skip
        assignee_name = None
        if decision.assignee is not UNCHANGED:
            assignee_name = decision.assignee.get_username() if decision.assignee else ""
        now = timezone.now()
        feedback = Feedback(
            message_id=message.id,
            message_id_header=message.message_id_header[:998],
            source=FeedbackSource.API if api_key is not None else FeedbackSource.ADMIN,
            user=user,
            api_key=api_key,
            action=describe(message, decision, assignee_name)[:200],
            model_category=message.category,
            model_confidence=message.category_confidence,
            model_priority=message.priority,
            model_draft=message.draft_reply,
            model_versions={
                name: (step or {}).get("version", "")
                for name, step in (message.steps or {}).items()
            },  # fmt: skip
            category=decision.category or "",
            priority=decision.priority or "",
            draft=decision.draft or "",
            draft_approved=decision.approve_draft,
            confirmed=decision.confirm,
            done=decision.done,
            assignee=decision.assignee if decision.assignee is not UNCHANGED else None,
            text=training_text(message),
        )
        feedback.save()
        fields = ["reviewed_at", "reviewed_by", "updated_at"]
        message.reviewed_at = now
        message.reviewed_by = user
        if decision.confirm:
            message.reviewed_category = message.reviewed_category or message.category
            message.reviewed_priority = message.reviewed_priority or message.priority
            fields += ["reviewed_category", "reviewed_priority"]
        if decision.category is not None:
            message.reviewed_category = decision.category
            fields.append("reviewed_category")
        if decision.priority is not None:
            message.reviewed_priority = decision.priority
            fields.append("reviewed_priority")
        if decision.draft is not None:
            message.reviewed_draft = decision.draft
            fields.append("reviewed_draft")
        if decision.approve_draft:
            message.draft_approved_at = now
            fields.append("draft_approved_at")
            ReplyExample.objects.create(
                category=message.effective_category,
                message_text=feedback.text,
                reply=message.reviewed_draft or message.draft_reply,
                message_id=message.id,
                feedback=feedback,
                created_by=user,
            )
        if decision.assignee is not UNCHANGED:
            message.assignee = decision.assignee
            fields.append("assignee")
        # A reviewed message no longer needs review; a done one leaves the queue.
        if decision.done:
            message.status = MessageStatus.DONE
        elif message.status == MessageStatus.NEEDS_REVIEW and (
            decision.confirm or decision.category is not None or decision.priority is not None
        ):
            message.status = MessageStatus.TRIAGED
        fields.append("status")
        message.save(update_fields=sorted(set(fields)))
        message_reviewed.send_robust(sender=Feedback, feedback=feedback, message=message)
    return feedback


def rerun_reviewed(message_ids: list[int], *, user=None) -> tuple[list[int], list[int]]:
    """Queue messages for a new run of the chain, and keep that as feedback too."""
    queued, busy = rerun(message_ids)
    Feedback.objects.bulk_create(
        Feedback(message_id=message_id, source=FeedbackSource.ADMIN, user=user,
                 action="re-run the chain")
        for message_id in queued
    )  # fmt: skip
    return queued, busy


def find_user(username: str):
    User = get_user_model()
    try:
        return User.objects.get(**{User.USERNAME_FIELD: username}, is_active=True)
    except User.DoesNotExist:
        raise ReviewError("assignee", f"No active user called {username!r}.") from None
