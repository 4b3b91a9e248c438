"""Webhook events: their payloads, and a delivery row per subscribed endpoint, recorded in the
transaction of the work that caused the event and sent once it commits.

Emitting never fails and never holds up that work: the rows are written in a savepoint (one
query for the endpoints, one insert for the batch), and any error is logged and swallowed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from functools import partial

from django.conf import settings
from django.db import transaction
from django.dispatch import receiver
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.inbox.models import MessageStatus
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from apps.webhooks.signals import (
    deliveries_ready,
    job_finished,
    message_reviewed,
    message_triaged,
)

logger = logging.getLogger(__name__)

# The statuses the chain ends a message's run with, and so announces.
FINAL_STATUSES = (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW)


def envelope(event: str, data: dict) -> dict:
    return {"event": event, "id": str(uuid.uuid4()), "created_at": timezone.now().isoformat(),
            "data": data}  # fmt: skip


def message_url(message_id: int) -> str:
    """The message in the API: absolute under MAILSCORE_PUBLIC_URL where it is set."""
    try:
        path = reverse("message-detail", args=[message_id])
    except NoReverseMatch:
        path = f"/api/v1/messages/{message_id}"
    return settings.MAILSCORE_PUBLIC_URL.rstrip("/") + path


def announce(delivery_ids: list[str]) -> None:
    deliveries_ready.send_robust(sender=WebhookDelivery, delivery_ids=delivery_ids)


def emit_each(event: str, data_items: Iterable[dict]) -> list[str]:
    """One event per item of data, recorded for every active endpoint subscribed to it; the
    deliveries are sent once the caller's transaction commits. Returns their ids; never raises."""
    try:
        with transaction.atomic():
            endpoint_ids = list(
                WebhookEndpoint.objects.filter(active=True, events__contains=[event])
                .values_list("id", flat=True)
            )  # fmt: skip
            if not endpoint_ids:
                return []
            now = timezone.now()
            rows = []
            for data in data_items:
                payload = envelope(event, data)
                rows += [
                    WebhookDelivery(endpoint_id=endpoint_id, event=event, event_id=payload["id"],
                                    payload=payload, next_attempt_at=now)
                    for endpoint_id in endpoint_ids
                ]  # fmt: skip
            WebhookDelivery.objects.bulk_create(rows)
    except Exception:
        logger.exception("The %s webhook event could not be recorded; it is not sent", event)
        return []
    delivery_ids = [str(row.id) for row in rows]
    if delivery_ids:
        transaction.on_commit(partial(announce, delivery_ids))
    return delivery_ids


def emit(event: str, data: dict) -> list[str]:
    return emit_each(event, [data])


def message_triaged_data(message) -> dict:
    return {
        "message_id": message.id,
        "status": message.status,
        "category": message.category or None,
        "priority": message.priority or None,
        "sender_verdict": message.sender_verdict or None,
        "url": message_url(message.id),
    }


def message_reviewed_data(feedback, message) -> dict:
    return {
        "message_id": message.id,
        "feedback_id": feedback.id,
        "action": feedback.action,
        "status": message.status,
        "decided": {
            "category": feedback.category or None,
            "priority": feedback.priority or None,
            "draft_edited": bool(feedback.draft),
            "draft_approved": feedback.draft_approved,
            "confirmed": feedback.confirmed,
            "done": feedback.done,
            "assignee": feedback.assignee.get_username() if feedback.assignee else None,
        },
        "by": {
            "source": feedback.source,
            "user": feedback.user.get_username() if feedback.user else None,
            "api_key": feedback.api_key.name if feedback.api_key else None,
        },
        "reviewed_at": feedback.created_at.isoformat(),
        "url": message_url(message.id),
    }


def emit_job_completed(job_id: int | str, data: dict) -> list[str]:
    """job.completed for a finished bulk verification job: data (its status, counts, where to
    read its results) is sent with the job's id added."""
    return emit(WebhookEvent.JOB_COMPLETED, {"job_id": job_id, **data})


def job_url(job_id, suffix: str = "") -> str:
    """The job in the API: absolute under MAILSCORE_PUBLIC_URL where it is set."""
    try:
        path = reverse("job-detail", args=[job_id])
    except NoReverseMatch:
        path = f"/api/v1/jobs/{job_id}"
    return settings.MAILSCORE_PUBLIC_URL.rstrip("/") + path + suffix


@receiver(job_finished, dispatch_uid="webhooks-job-finished")
def _job_finished(sender, job, summary, **_) -> None:
    # Sent for completed, cancelled and failed jobs alike: a receiver waiting for a job learns
    # that it is over either way, and "status" says how.
    try:
        emit_job_completed(
            str(job.id),
            {**summary, "url": job_url(job.id), "results_url": job_url(job.id, "/results")},
        )
    except Exception:
        logger.exception("A job.completed webhook event could not be made")


@receiver(message_triaged, dispatch_uid="webhooks-message-triaged")
def _message_triaged(sender, messages, **_) -> None:
    try:
        finished = [message for message in messages if message.status in FINAL_STATUSES]
        if finished:
            emit_each(WebhookEvent.MESSAGE_TRIAGED, [message_triaged_data(m) for m in finished])
    except Exception:
        logger.exception("message.triaged webhook events could not be made")


@receiver(message_reviewed, dispatch_uid="webhooks-message-reviewed")
def _message_reviewed(sender, feedback, message, **_) -> None:
    try:
        emit(WebhookEvent.MESSAGE_REVIEWED, message_reviewed_data(feedback, message))
    except Exception:
        logger.exception("A message.reviewed webhook event could not be made")
