"""Address verification as a Celery task."""

from __future__ import annotations

import asyncio

from django.conf import settings

from apps.verification.engine.later import retry_countdown, wants_retry
from apps.verification.services import build_verifier
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue


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
