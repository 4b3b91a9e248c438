"""The triage chain as Celery tasks: classify -> prioritize -> summarize -> draft_reply ->
verify_sender.

One chain carries one claimed batch ({"claim": token, "ids": [...]}), claimed by dispatch
(tasks/dispatch.py). Each task runs an app's step on the messages its claim still holds
(apps/triage/steps.py, apps/verification/steps.py), keeps the claim's lease alive while it
works, and hands the ids it finished on to the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task, chain
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import heartbeat_sent, worker_init, worker_process_init
from django.conf import settings
from django.db import transaction

from apps.core import health, metrics
from apps.inbox import claims
from apps.inbox.batch import ClaimedBatch
from apps.inbox.models import Message, MessageStatus
from apps.triage import steps as triage_steps
from apps.triage.services import after_fork, get_triager, load_before_fork
from apps.verification import steps as verification_steps
from tasks.base import OUTAGE_ERRORS, MailscoreTask, mailscore_task
from tasks.dispatch import request_dispatch
from tasks.queues import CeleryQueue

logger = logging.getLogger(__name__)


class ChainStep(MailscoreTask):
    """A step that gives up marks the messages its claim still holds failed, with the reason;
    unless the broker or database is away, when they stay claimed and the sweep hands them on
    once the lease expires."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        batch = args[0] if args else kwargs.get("batch", {})
        if isinstance(exc, OUTAGE_ERRORS):
            logger.error("Step %s gave up on claim %s during an outage (%s); the sweep will hand "
                         "its messages on", self.name, batch.get("claim"), exc)  # fmt: skip
            return
        if isinstance(exc, SoftTimeLimitExceeded):
            reason = f"time limit of {self.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT}s exceeded"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        logger.error("Step %s failed for claim %s: %s", self.name, batch.get("claim"), reason)
        step = self.name.rpartition(".")[2]
        held = Message.objects.filter(
            id__in=batch.get("ids", []), claim=batch.get("claim"), status=MessageStatus.PROCESSING
        )
        with transaction.atomic():
            failing = list(held.select_for_update().values_list("category", "priority"))
            held.update(status=MessageStatus.FAILED, failed_step=step, failure_reason=reason[:2000],
                        claim=None, lease_expires_at=None)  # fmt: skip
        metrics.count_step_failures(step, len(failing))
        for category, priority in failing:
            metrics.count_finished(category, priority, MessageStatus.FAILED)
        request_dispatch()


def chain_step(name: str, queue: CeleryQueue, **options) -> Callable:
    return mailscore_task(f"pipeline.{name}", queue=queue, base=ChainStep, bind=True, **options)


def run_step(task: Task, step: Callable, batch: dict, **options):
    """step() on the batch's messages that the claim still holds, renewing its lease while it
    runs."""
    claimed = ClaimedBatch(batch["claim"], batch["ids"], attempt=task.request.retries + 1,
                           reraise=(SoftTimeLimitExceeded,))  # fmt: skip
    with claims.leased(batch["claim"], batch["ids"], settings.MAILSCORE_CLAIM_LEASE_SECONDS):
        return step(claimed, **options)


def handing_on(batch: dict, message_ids: list[int]) -> dict:
    return {"claim": batch["claim"], "ids": message_ids}


@chain_step("classify", CeleryQueue.TRIAGE)
def classify(self, batch: dict) -> dict:
    """Category and spam decision. A finished step is a no-op for a message."""
    return handing_on(batch, run_step(self, triage_steps.classify, batch))


@chain_step("prioritize", CeleryQueue.TRIAGE)
def prioritize(self, batch: dict) -> dict:
    """Priority. A finished step is a no-op for a message."""
    return handing_on(batch, run_step(self, triage_steps.prioritize, batch))


# A local generator may take a second or more per message, so the generate pool's steps get
# limits sized for a whole batch.
GENERATE_LIMITS = {
    "soft_time_limit": settings.MAILSCORE_GENERATE_SOFT_TIME_LIMIT,
    "time_limit": settings.MAILSCORE_GENERATE_SOFT_TIME_LIMIT + 60,
}


@chain_step("summarize", CeleryQueue.GENERATE, **GENERATE_LIMITS)
def summarize(self, batch: dict) -> dict:
    """Summary. A finished step is a no-op for a message."""
    return handing_on(batch, run_step(self, triage_steps.summarize, batch))


@chain_step("draft_reply", CeleryQueue.GENERATE, **GENERATE_LIMITS)
def draft_reply(self, batch: dict) -> dict:
    """Reply draft and sender trust. A finished step is a no-op for a message."""
    return handing_on(batch, run_step(self, triage_steps.draft_reply, batch))


@chain_step("verify_sender", CeleryQueue.VERIFY)
def verify_sender(self, batch: dict, attempt: int = 0) -> dict:
    """Sender verification and the final status. A greylisted sender is asked again after a
    countdown, in a task of its own, instead of holding a worker while it waits; its messages
    keep their claim until then. A finished step is a no-op for a message."""
    outcome = run_step(self, verification_steps.verify_sender, batch, attempt=attempt,
                       smtp=settings.MAILSCORE_PIPELINE_SMTP, ask_again_later=True)  # fmt: skip
    if outcome.later:
        verify_sender.apply_async((handing_on(batch, outcome.later),), {"attempt": attempt + 1},
                                  countdown=outcome.countdown)  # fmt: skip
    request_dispatch()  # a batch is done: room for the next one
    return handing_on(batch, outcome.handed_on)


def start_chain(claim: claims.Claim):
    batch = {"claim": claim.token, "ids": claim.message_ids}
    return chain(
        classify.s(batch), prioritize.s(), summarize.s(), draft_reply.s(), verify_sender.s()
    ).apply_async()


_worker_name = ""


@worker_init.connect
def _load_models(sender, **_) -> None:
    """The model pools load their models in the worker's parent process, before the pool forks,
    so that every child shares them and a replacement child is up at once. The Procfile sets
    MAILSCORE_PRELOAD_MODELS for the triage and generate pools."""
    global _worker_name
    if settings.MAILSCORE_PRELOAD_MODELS:
        _worker_name = sender.hostname
        triager = load_before_fork()
        health.report_models(_worker_name, degraded=triager.degraded, versions=triager.versions)


@worker_process_init.connect
def _pool_process_started(**_) -> None:
    if settings.MAILSCORE_PRELOAD_MODELS:
        after_fork()


@heartbeat_sent.connect
def _models_still_loaded(**_) -> None:
    # The report expires unless renewed, so /health forgets a pool that is gone.
    if _worker_name:
        triager = get_triager()
        health.report_models(_worker_name, degraded=triager.degraded, versions=triager.versions)
