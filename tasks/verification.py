"""Address verification as a Celery task."""

from __future__ import annotations

import asyncio
import random

from celery import shared_task
from django.conf import settings

from apps.verification.engine import Reason
from apps.verification.services import build_verifier

RETRY_LATER = {Reason.GREYLISTED, Reason.RATE_LIMITED}


async def _verify(address: str, smtp: bool) -> dict:
    verifier = build_verifier()
    return (await verifier.verify(address, smtp=smtp)).to_dict()


@shared_task(
    name="mailscore.verification.verify_address",
    bind=True,
    max_retries=6,
    acks_late=True,
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
    retry_after = result["smtp"].get("retry_after")
    if (
        Reason(result["reason"]) in RETRY_LATER
        and retry_after
        and self.request.retries < self.max_retries
    ):
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        countdown = min(limit, retry_after * 2**self.request.retries)
        # Jitter keeps a batch of greylisted addresses from coming back all in the same second.
        raise self.retry(countdown=countdown * random.uniform(1.0, 1.2))
    return result
