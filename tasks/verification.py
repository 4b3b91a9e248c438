"""Address verification as a Celery task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from django.conf import settings
from django.dispatch import receiver

from apps.core import logcontext, metrics
from apps.verification import jobs, validation
from apps.verification.engine.later import retry_countdown, wants_retry
from apps.verification.evidence import with_mail_evidence
from apps.verification.models import JobStatus
from apps.verification.services import build_verifier
from apps.verification.signals import job_shards_ready, validation_deferred
from tasks.base import RETRIED_ERRORS, mailscore_task
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
    Mail evidence applies as in the API's own answers, and may decide a greylisted address.
    """
    [result] = with_mail_evidence([asyncio.run(_verify(address, True))])
    if wants_retry(result) and self.request.retries < self.max_retries:
        if not result.cached:
            metrics.count_smtp_replies(result.smtp)
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        countdown = retry_countdown(result.smtp.retry_after, self.request.retries + 1, limit)
        validation.extend_pending(key, countdown)
        raise self.retry(countdown=countdown)
    metrics.record_verification(result, "validate")
    validation.store_answer(key, validation.answer_of(result))


@receiver(validation_deferred)
def _finish_validation_soon(*, address: str, key: str, countdown: float, **_) -> None:
    try:
        finish_validation.apply_async(args=[address, key], countdown=countdown, retry=False)
    except BROKER_ERRORS as exc:
        # Without the marker the next call for the address checks it again.
        logger.warning("Broker unavailable, %s is checked again on its next call: %s",
                       logcontext.mask_address(key), exc)  # fmt: skip
        with contextlib.suppress(BROKER_ERRORS):  # if not, the marker expires by itself
            validation.clear_pending(key)


@mailscore_task("verification.run_job_shard", queue=CeleryQueue.VERIFY, bind=True)
def run_job_shard(self, job_id: str, shard: int) -> dict | None:
    """Check what is left of one shard of a bulk job (apps/verification/jobs.py).

    Idempotent: a row's answer is stored only where it has none, and a second run of a shard
    finds its lease taken or nothing left. Rows held back for a greylisting server are checked
    by a run of this task queued with the server's countdown.
    """
    job = uuid.UUID(job_id)
    try:
        outcome = jobs.run_shard(job, shard)
    except RETRIED_ERRORS:
        raise
    except Exception as exc:
        logger.exception("Job %s shard %s failed", job_id, shard)
        with contextlib.suppress(jobs.JobError):
            jobs.end_job(job, JobStatus.FAILED, f"Checking the addresses failed: {exc}")
        return None
    if outcome is None:
        return None
    if outcome.later:
        jobs.mark_queued(job, shard, outcome.countdown + jobs.QUEUED_SECONDS)
        run_job_shard.apply_async(args=[job_id, shard], countdown=outcome.countdown)
    return {"checked": outcome.checked, "later": outcome.later, "countdown": outcome.countdown}


def _queue_shards(job_id, shards) -> None:
    for shard in shards:
        if jobs.mark_queued(job_id, shard):
            try:
                run_job_shard.apply_async(args=[str(job_id), shard], retry=False)
            except BROKER_ERRORS:
                jobs.forget_queued(job_id, shard)
                raise


@receiver(job_shards_ready)
def _run_job_shards(*, job_id, shards, **_) -> None:
    try:
        _queue_shards(job_id, shards)
    except BROKER_ERRORS as exc:
        # The job is stored; the sweep queues its shards when the broker is back.
        logger.warning("Job %s is stored; its shards are queued by the sweep: %s", job_id, exc)


@mailscore_task("verification.resume_jobs", queue=CeleryQueue.MAINTENANCE)
def resume_jobs() -> int:
    """Queue the shards of open jobs that no run holds: their worker died, or the broker was
    away when the job was made. Runs from beat with the sweep."""
    stalled = jobs.stalled_shards()
    for job_id, shard in stalled:
        _queue_shards(job_id, [shard])
    if stalled:
        logger.info("Queued %d stalled job shards again", len(stalled))
    return len(stalled)
