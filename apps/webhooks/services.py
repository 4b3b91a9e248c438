"""Sending webhook deliveries: one attempt at a time, each recorded, with retries spaced out
(exponential backoff with jitter) for answers that may change, and the admin's actions."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.core import metrics
from apps.webhooks.events import announce, envelope
from apps.webhooks.models import PING, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from apps.webhooks.sending import SendError, post
from apps.webhooks.signing import new_secret, signature_header
from apps.webhooks.targets import TargetRefused, vet

logger = logging.getLogger(__name__)

# The waits before the second to the sixth attempt: 1 min, 5 min, 30 min, 2 h, 6 h; after the
# sixth, the delivery has failed. Each wait is stretched or shrunk by up to a fifth at random,
# so that endpoints that were down together are not all tried again at the same moment.
RETRY_DELAYS = (60, 300, 1800, 7200, 21600)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# A receiver asking for a longer wait (429 or 503 with Retry-After) gets it, up to this.
MAX_RETRY_AFTER = 21600
# While an attempt is made its delivery is not due; if its worker is lost, it is due again
# after this long (well past the attempt's own time limits).
ATTEMPT_LEASE = timedelta(minutes=2)
KEPT_ERROR_CHARS = 1000


class Outcome:
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    NOT_DUE = "not due"


def encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def encode_readable(payload: dict) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False)


def retry_delay(attempt: int, retry_after: str | None = None) -> float | None:
    """Seconds to wait after a failed attempt (1-based), or None when no attempt is left."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 (jitter, not a secret)
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, min(int(retry_after), MAX_RETRY_AFTER))
    return delay


def claim(delivery_id: str) -> WebhookDelivery | None:
    """The delivery if it is pending and due, now leased to this attempt; else None."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        delivery.next_attempt_at = now + ATTEMPT_LEASE
        delivery.save(update_fields=["next_attempt_at"])
    return delivery


def _answer_text(answer) -> str:
    text = answer.body.decode("utf-8", "replace").strip()
    return f": {text[:300]}" if text else ""


@dataclass(frozen=True)
class Attempted:
    outcome: str
    status_code: int | None = None
    error: str = ""
    address: str = ""  # the address connected to
    retry_after: str | None = None  # the receiver's Retry-After


def attempt(delivery: WebhookDelivery) -> Attempted:
    """POST the delivery once and judge the answer."""
    endpoint = delivery.endpoint
    if not endpoint.active and delivery.event != PING:
        return Attempted(Outcome.FAILED, error="The endpoint was made inactive: it gets no "
                         "deliveries.")  # fmt: skip
    body = encode(delivery.payload)
    try:
        target = vet(endpoint.url)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mailscore-webhooks/1",
            "X-Mailscore-Event": delivery.event,
            "X-Mailscore-Delivery": str(delivery.id),
            "X-Mailscore-Signature": signature_header(endpoint.secret, int(time.time()), body),
        }
        answer = post(target, body, headers)
    except TargetRefused as exc:
        return Attempted(Outcome.FAILED, error=f"Not sent: {exc}")
    except SendError as exc:
        return Attempted(Outcome.RETRY, error=f"No answer: {exc}")
    except Exception as exc:  # counted as an attempt, so that a fault cannot loop forever
        logger.exception("Webhook delivery %s could not be attempted", delivery.id)
        return Attempted(Outcome.RETRY, error=f"Not sent: {type(exc).__name__}: {exc}")
    code, address = answer.status, answer.address
    said = f"The receiver answered {code} {answer.reason}".rstrip()
    if 200 <= code < 300:
        return Attempted(Outcome.DELIVERED, code, address=address)
    if 300 <= code < 400:
        location = answer.headers.get("location", "(no Location)")
        return Attempted(Outcome.FAILED, code, address=address, error=(
            f"{said} to {location}: redirects are not followed. Give the endpoint the URL that "
            "answers with a 2xx."
        ))  # fmt: skip
    if code == 429 or code >= 500:
        return Attempted(Outcome.RETRY, code, said + _answer_text(answer), address,
                         answer.headers.get("retry-after"))  # fmt: skip
    return Attempted(Outcome.FAILED, code, address=address, error=(
        f"{said}{_answer_text(answer)}. Only 429 and 5xx answers are tried again; a receiver "
        "accepts a delivery with any 2xx."
    ))  # fmt: skip


def deliver(delivery_id: str) -> str:
    """One attempt at a delivery if it is due, recorded on it: delivered on a 2xx; tried again
    later after a network error, a 429 or a 5xx while attempts are left; failed otherwise.
    A test ping is tried once."""
    delivery = claim(delivery_id)
    if delivery is None:
        return Outcome.NOT_DUE
    started, started_at = time.perf_counter(), timezone.now()
    result = attempt(delivery)
    outcome, error = result.outcome, result.error
    number = delivery.attempts + 1
    now = timezone.now()
    delay = retry_delay(number, result.retry_after) if delivery.event != PING else None
    if outcome == Outcome.RETRY and delay is None:
        outcome = Outcome.FAILED
        error = f"{error} (no more attempts after {number})"
    next_attempt_at = now + timedelta(seconds=delay) if outcome == Outcome.RETRY else None
    delivery.attempts = number
    delivery.last_status_code = result.status_code
    delivery.last_error = error[:KEPT_ERROR_CHARS]
    delivery.next_attempt_at = next_attempt_at
    delivery.attempt_log = [*delivery.attempt_log, {
        "attempt": number,
        "at": started_at.isoformat(),
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        "address": result.address,
        "status_code": result.status_code,
        "outcome": outcome,
        "error": error[:KEPT_ERROR_CHARS],
        "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
    }]  # fmt: skip
    if outcome == Outcome.DELIVERED:
        delivery.status, delivery.delivered_at, delivery.finished_at = (
            DeliveryStatus.DELIVERED, now, now)  # fmt: skip
    elif outcome == Outcome.FAILED:
        delivery.status, delivery.finished_at = DeliveryStatus.FAILED, now
    delivery.save(update_fields=["status", "attempts", "last_status_code", "last_error",
                                 "next_attempt_at", "attempt_log", "delivered_at", "finished_at"])  # fmt: skip
    metrics.count_webhook_delivery(
        delivery.event, "retrying" if outcome == Outcome.RETRY else outcome
    )
    if outcome != Outcome.DELIVERED:
        logger.info("Webhook delivery %s (%s) attempt %d: %s. %s", delivery.id, delivery.event,
                    number, outcome, error)  # fmt: skip
    return outcome


def due_deliveries(limit: int = 500) -> list[str]:
    """Pending deliveries whose next attempt is due: retries, and any whose first attempt was
    lost with the broker or a worker."""
    return [
        str(pk)
        for pk in WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        ).order_by("next_attempt_at").values_list("id", flat=True)[:limit]
    ]  # fmt: skip


def retry_now(delivery_ids: list[str]) -> int:
    """Try failed or waiting deliveries again at once; a failed one gets one more attempt (and
    its retries, if it fails with a 429, 5xx or network error and attempts are left)."""
    with transaction.atomic():
        ids = [str(pk) for pk in WebhookDelivery.objects.filter(
            pk__in=delivery_ids, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED]
        ).values_list("id", flat=True)]  # fmt: skip
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING, next_attempt_at=timezone.now(), finished_at=None
        )
        if ids:
            transaction.on_commit(lambda: announce(ids))
    return len(ids)


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new secret for the endpoint; every attempt from now on, retries included, is signed
    with it."""
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret"])
    return endpoint.secret


def send_ping(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A test event sent to the endpoint at once, tried once, whatever it subscribes to."""
    payload = envelope(PING, {"endpoint_id": endpoint.id,
                              "message": "A test event from mailscore: this endpoint works."})  # fmt: skip
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=PING, event_id=payload["id"], payload=payload,
        next_attempt_at=timezone.now(),
    )  # fmt: skip
    deliver(str(delivery.id))
    delivery.refresh_from_db()
    return delivery
