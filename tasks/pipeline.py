"""The triage chain: classify -> prioritize -> summarize -> draft_reply -> verify_sender.

Every task takes a list of message ids and returns the ids it hands on. One chain carries one
batch, claimed by dispatch (apps/inbox/dispatch.py), so that inference runs on many messages at
once. Each step loads its messages, calls the engine, stores its result with the version, duration
and attempt behind it, and hands on; a message that fails is marked failed with the step and the
reason, and the rest of its batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions
from celery import Task, chain, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.inbox.dispatch import claim_queued, clear_dispatch_request, request_dispatch
from apps.inbox.engine import ParsedMessage, parse_message
from apps.inbox.models import Message, MessageStatus
from apps.triage import encodings
from apps.triage.engine.encoder import Encoded
from apps.triage.services import get_triager
from apps.verification.engine import Reason
from apps.verification.engine.sender import verify_senders
from apps.verification.models import VerificationResult
from apps.verification.services import build_verifier

logger = logging.getLogger(__name__)

# Faults of the services around us, worth retrying; anything else is the message's own problem.
TRANSIENT_ERRORS = (
    db.OperationalError,
    db.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
# A greylisted or rate-limited answer is not a verdict: ask again later.
RETRY_LATER = {Reason.GREYLISTED, Reason.RATE_LIMITED}
MAX_VERIFY_ATTEMPTS = 6
VERIFIER_VERSION = "verifier-1"


def mark_failed(message_ids: list[int], step: str, reason: str) -> None:
    if message_ids:
        Message.objects.filter(id__in=message_ids).exclude(status=MessageStatus.FAILED).update(
            status=MessageStatus.FAILED,
            failed_step=step,
            failure_reason=reason[:2000],
            updated_at=timezone.now(),
        )


class PipelineStep(Task):
    """Base of the chain's tasks: a step that gives up marks its whole batch failed."""

    step = ""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        message_ids = args[0] if args else kwargs.get("message_ids", [])
        if isinstance(exc, SoftTimeLimitExceeded):
            reason = f"time limit of {self.soft_time_limit or settings.CELERY_TASK_SOFT_TIME_LIMIT}s exceeded"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        logger.error("Step %s failed for messages %s: %s", self.step, message_ids, reason)
        mark_failed(message_ids, self.step, reason)


def pipeline_step(step: str, **options) -> Callable:
    """Declare a chain step: explicit name, late acks, retries with backoff and jitter for
    transient faults. The queue comes from CELERY_TASK_ROUTES."""
    return shared_task(
        name=f"mailscore.pipeline.{step}",
        base=PipelineStep,
        bind=True,
        step=step,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=TRANSIENT_ERRORS,
        retry_backoff=2,
        retry_backoff_max=120,
        retry_jitter=True,
        max_retries=5,
        **options,
    )


class Batch:
    """The messages of a batch that a step still has to do. A message whose step is recorded
    for its current run is passed on untouched, which is what makes every step idempotent."""

    def __init__(self, task: Task, message_ids: list[int]) -> None:
        self.task = task
        self.step = task.step
        self.handed_on: list[int] = []
        self.todo: list[Message] = []
        self.parsed: list[ParsedMessage] = []
        rows = Message.objects.filter(id__in=message_ids, status=MessageStatus.PROCESSING)
        for message in rows.order_by("id"):
            if message.steps.get(self.step, {}).get("run") == message.runs:
                self.handed_on.append(message.id)
                continue
            try:
                self.parsed.append(parse_message(bytes(message.raw), max_bytes=len(message.raw)))
            except Exception as exc:  # the stored bytes no longer parse: this message only
                mark_failed([message.id], self.step, f"cannot parse the stored message: {exc}")
                continue
            self.todo.append(message)
        self.position = {message.id: i for i, message in enumerate(self.todo)}
        self.started = time.perf_counter()

    def rows(self, messages: list[Message]) -> list[int]:
        """Where messages (all of the batch, or one when retried alone) stand in it."""
        return [self.position[m.id] for m in messages]

    def encodings_of(self, encoded: Encoded | None, messages: list[Message]) -> Encoded | None:
        if encoded is None:
            return None
        rows = self.rows(messages)
        return Encoded(encoded.vectors[rows], [encoded.sentence_vectors[i] for i in rows])

    def compute(self, work: Callable[[list[Message], list[ParsedMessage]], list]) -> list:
        """work() over the whole batch; if it fails on something other than a transient fault,
        once per message, so that one bad message fails alone. Failures come back as exceptions."""
        if not self.todo:
            return []
        try:
            return list(work(self.todo, self.parsed))
        except (*TRANSIENT_ERRORS, SoftTimeLimitExceeded):
            raise
        except Exception:
            logger.warning("Step %s failed on a batch; retrying its messages one by one",
                           self.step, exc_info=True)  # fmt: skip
        results: list[Any] = []
        for message, parsed in zip(self.todo, self.parsed, strict=True):
            try:
                results.extend(work([message], [parsed]))
            except (*TRANSIENT_ERRORS, SoftTimeLimitExceeded):
                raise
            except Exception as exc:
                results.append(exc)
        return results

    def save(self, results: list, apply: Callable[[Message, Any], None], version: str,
             fields: list[str], **details) -> list[int]:  # fmt: skip
        """Store each message's result (apply sets its fields) with the step's record; a message
        whose result is an exception is marked failed with it. Returns the ids to hand on."""
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        now = timezone.now()
        record = {
            "version": version,
            "duration_ms": round(elapsed_ms / max(1, len(self.todo)), 2),
            "batch": len(self.todo),
            "attempt": self.task.request.retries + 1,
            "finished_at": now.isoformat(),
            **details,
        }
        passed = []
        for message, result in zip(self.todo, results, strict=True):
            if isinstance(result, Exception):
                reason = f"{type(result).__name__}: {result}"
                message.status = MessageStatus.FAILED
                message.failed_step, message.failure_reason = self.step, reason[:2000]
                message.steps[self.step] = {**record, "run": None, "error": reason}
            else:
                apply(message, result)
                message.steps[self.step] = {**record, "run": message.runs, "error": None}
                passed.append(message.id)
            message.updated_at = now
        if self.todo:
            Message.objects.bulk_update(
                self.todo,
                sorted({*fields, "status", "failed_step", "failure_reason", "steps", "updated_at"}),
            )
        return sorted(self.handed_on + passed)


def _encodings(batch: Batch, triager, *, required: bool):
    """The batch's encoder output: from Redis where classify left it, else encoded again
    (only if required)."""
    if triager.encoder is None:
        return None, False
    keys = [(m.id, m.runs) for m in batch.todo]
    found = encodings.load(keys, triager.versions["encoder"], triager.encoder.dimension)
    if found is not None or not required:
        return found, False
    return triager.encode(batch.parsed), True


@pipeline_step("classify")
def classify(self, message_ids: list[int]) -> list[int]:
    """Category and spam decision. Runs the encoder and leaves its output for later steps."""
    batch = Batch(self, message_ids)
    triager = get_triager()

    def work(messages, parsed):
        encoded = triager.encode(parsed)
        decisions = triager.classify(parsed, encoded.vectors if encoded else None)
        if encoded is not None:
            encodings.store(
                [(m.id, m.runs) for m in messages], encoded, triager.versions["encoder"]
            )
        return decisions

    def apply(message, decision):
        # The parsed fields are stored here, not at ingest, to keep the request path light.
        message.parsed = batch.parsed[batch.position[message.id]].to_dict()
        message.category = decision.label
        message.category_confidence = decision.confidence
        message.category_result = decision.to_dict()

    version = f"{triager.versions['classifier']} / {triager.versions['encoder']}"
    return batch.save(batch.compute(work), apply, version,
                      ["parsed", "category", "category_confidence", "category_result"])  # fmt: skip


@pipeline_step("prioritize")
def prioritize(self, message_ids: list[int]) -> list[int]:
    """Priority from the category, deadlines, sender and wording."""
    batch = Batch(self, message_ids)
    triager = get_triager()

    def work(messages, parsed):
        return triager.prioritize(parsed, [m.category for m in messages])

    def apply(message, decision):
        message.priority = decision.level
        message.priority_score = decision.score
        message.priority_result = decision.to_dict()

    return batch.save(batch.compute(work), apply, "priority-rules-1",
                      ["priority", "priority_score", "priority_result"])  # fmt: skip


# A local generator may take a second or more per message, so the generate pool's steps get
# limits sized for a whole batch.
GENERATE_LIMITS = {
    "soft_time_limit": settings.MAILSCORE_GENERATE_SOFT_TIME_LIMIT,
    "time_limit": settings.MAILSCORE_GENERATE_SOFT_TIME_LIMIT + 60,
}


@pipeline_step("summarize", **GENERATE_LIMITS)
def summarize(self, message_ids: list[int]) -> list[int]:
    """Extractive summary from the sentence vectors classify left (or a local generator's)."""
    batch = Batch(self, message_ids)
    triager = get_triager()
    encoded, reencoded = _encodings(batch, triager, required=True) if batch.todo else (None, False)

    def work(messages, parsed):
        return triager.summarize(parsed, batch.encodings_of(encoded, messages))

    def apply(message, summary):
        message.summary = summary

    version = f"{triager.versions['encoder']} / generator {triager.versions['generator']}"
    return batch.save(batch.compute(work), apply, version, ["summary"], reencoded=reencoded)


@pipeline_step("draft_reply", **GENERATE_LIMITS)
def draft_reply(self, message_ids: list[int]) -> list[int]:
    """A reply draft for categories that expect one, and the sender's trust, which decides
    whether the message's own words may appear in it."""
    batch = Batch(self, message_ids)
    triager = get_triager()
    encoded, _ = _encodings(batch, triager, required=False) if batch.todo else (None, False)

    def work(messages, parsed):
        found = batch.encodings_of(encoded, messages)
        return triager.draft(
            parsed,
            [m.category for m in messages],
            [(m.priority_result or {}).get("deadlines", []) for m in messages],
            [m.summary for m in messages],
            found.vectors if found is not None else None,
        )

    def apply(message, result):
        draft, trust = result
        message.draft_reply = draft.text if draft else ""
        message.draft_result = draft.to_dict() if draft else None
        message.sender_trust = trust.level

    version = (
        f"templates {triager.versions['templates']} / generator {triager.versions['generator']}"
    )
    return batch.save(batch.compute(work), apply, version,
                      ["draft_reply", "draft_result", "sender_trust"])  # fmt: skip


def _final_status(message: Message) -> str:
    confidence = message.category_confidence
    if confidence is None or confidence < settings.MAILSCORE_REVIEW_CONFIDENCE:
        return MessageStatus.NEEDS_REVIEW
    return MessageStatus.TRIAGED


@pipeline_step("verify_sender")
def verify_sender(self, message_ids: list[int], attempt: int = 0) -> list[int]:
    """Sender trust and the reply address's deliverability; the last step, so it also sets the
    final status. A greylisted address is asked again after a countdown, in a task of its own,
    instead of holding a worker while it waits."""
    batch = Batch(self, message_ids)
    smtp = settings.MAILSCORE_PIPELINE_SMTP

    async def check(parsed):
        return await verify_senders(parsed, build_verifier(), smtp=smtp)

    def work(messages, parsed):
        return asyncio.run(check(parsed))

    results = batch.compute(work)
    later, later_delay = [], 0.0
    if attempt + 1 < MAX_VERIFY_ATTEMPTS:
        for message, result in zip(batch.todo, results, strict=True):
            found = None if isinstance(result, Exception) else result.deliverability
            if found and found.reason in RETRY_LATER and found.smtp.retry_after:
                later.append(message.id)
                later_delay = max(later_delay, found.smtp.retry_after)
    if later:
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        countdown = min(limit, later_delay * 2**attempt) * random.uniform(1.0, 1.2)
        Message.objects.filter(id__in=later).update(updated_at=timezone.now())
        verify_sender.apply_async((later,), {"attempt": attempt + 1}, countdown=countdown)
        keep = [i for i, m in enumerate(batch.todo) if m.id not in later]
        batch.todo = [batch.todo[i] for i in keep]
        batch.parsed = [batch.parsed[i] for i in keep]
        results = [results[i] for i in keep]

    checked_at = timezone.now()
    rows = []

    def apply(message, result):
        deliverability = result.deliverability
        message.sender_trust = result.trust.level
        message.sender_verdict = str(deliverability.verdict) if deliverability else "none"
        message.sender_result = result.to_dict()
        message.status = _final_status(message)
        if deliverability is not None:
            rows.append(VerificationResult(
                checked_at=checked_at, address=deliverability.address,
                domain=deliverability.address.rpartition("@")[2].lower(),
                verdict=str(deliverability.verdict), reason=str(deliverability.reason),
                message_id=message.id, result=deliverability.to_dict(),
                duration_ms=sum(deliverability.timings.values()), engine_version=VERIFIER_VERSION,
            ))  # fmt: skip

    # One transaction: a retry after a fault must not find the step recorded and its
    # verification rows missing.
    with transaction.atomic():
        handed_on = batch.save(results, apply, VERIFIER_VERSION,
                               ["sender_trust", "sender_verdict", "sender_result"],
                               attempts=attempt + 1, smtp=smtp)  # fmt: skip
        VerificationResult.objects.bulk_create(rows)
    return [i for i in handed_on if i not in later]


@worker_process_init.connect
def _load_models(**_) -> None:
    # The model pools load their models when a worker process starts, not on its first batch,
    # so that no message waits for them. The Procfile sets this for the triage and generate pools.
    if settings.MAILSCORE_PRELOAD_MODELS:
        get_triager()


def start_chain(message_ids: list[int]):
    return chain(
        classify.s(message_ids),
        prioritize.s(),
        summarize.s(),
        draft_reply.s(),
        verify_sender.s(),
    ).apply_async()


@shared_task(name="mailscore.pipeline.dispatch", acks_late=True)
def dispatch() -> list[int]:
    """Claim a batch of queued messages and start a chain for it. Idempotent: claiming is one
    atomic UPDATE, so a dispatch that finds nothing queued does nothing."""
    clear_dispatch_request()
    message_ids = claim_queued(settings.MAILSCORE_PIPELINE_BATCH)
    if message_ids:
        start_chain(message_ids)
        if len(message_ids) == settings.MAILSCORE_PIPELINE_BATCH:
            request_dispatch()  # there may be more waiting
    return message_ids
