"""Address verification as a Celery task."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.conf import settings
from django.dispatch import receiver

from apps.verification import validation
from apps.verification.engine.later import retry_countdown, wants_retry
from apps.verification.services import build_verifier
from apps.verification.signals import validation_deferred
from tasks.base import mailscore_task
from tasks.dispatch import BROKER_ERRORS
from tasks.queues import CeleryQueue

logger = logging.getLogger(__name__)


async def _verify(address: str, smtp: bool):
    verifier = build_verifier()
    return await verifier.verify(address, smtp=smtp)


@mailscore_task(
    "verification.verify_address",
    queue=CeleryQueue.VERIFY,
    bind=True,
    max_retries=6,
    # Callers read the verdict back through the result backend.
    ignore_result=False,
)
def verify_address(self, address: str, smtp: bool = True) -> dict:
    """Verify one address and return its result.

    Idempotent: verification only reads DNS and talks SMTP up to RCPT, never DATA. A greylisted
    or rate-limited answer is not a verdict: the task is rescheduled with a countdown rather than
    holding a worker, and only when its retries are spent does it return unknown/greylisted.
    """
    result = asyncio.run(_verify(address, smtp))
    if wants_retry(result) and self.request.retries < self.max_retries:
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        raise self.retry(
            countdown=retry_countdown(result.smtp.retry_after, self.request.retries, limit)
        )
    return result.to_dict()


@mailscore_task(
    "verification.finish_validation", queue=CeleryQueue.VERIFY, bind=True, max_retries=6
)
def finish_validation(self, address: str, key: str) -> None:
    """Finish a check the API's time budget left undecided, and store its answer where the API
    reads it (apps/verification/validation.py).

    Idempotent: verification only reads DNS and talks SMTP up to RCPT, and storing an answer
    replaces the one before. A greylisted or rate-limited answer is rescheduled with a countdown,
    the address's pending marker kept as long; when the retries are spent, unknown is stored.
    """
    result = asyncio.run(_verify(address, True))
    if wants_retry(result) and self.request.retries < self.max_retries:
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        countdown = retry_countdown(result.smtp.retry_after, self.request.retries + 1, limit)
        validation.extend_pending(key, countdown)
        raise self.retry(countdown=countdown)
    validation.store_answer(key, validation.answer_of(result))


@receiver(validation_deferred)
def _finish_validation_soon(*, address: str, key: str, countdown: float, **_) -> None:
    try:
        finish_validation.apply_async(args=[address, key], countdown=countdown, retry=False)
    except BROKER_ERRORS as exc:
        # Without the marker the next call for the address checks it again.
        logger.warning("Broker unavailable, %s is checked again on its next call: %s", key, exc)
        with contextlib.suppress(BROKER_ERRORS):  # if not, the marker expires by itself
            validation.clear_pending(key)
