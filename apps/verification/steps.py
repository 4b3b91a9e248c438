"""The chain's last step over a batch: verify each sender and set the message's final status."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core import metrics
from apps.inbox.batch import Batch, Deferred
from apps.inbox.models import Message, MessageStatus
from apps.verification import validation
from apps.verification.engine.later import retry_countdown, wants_retry
from apps.verification.engine.sender import verify_senders
from apps.verification.engine.trust import TrustReport, review_reason
from apps.verification.evidence import record_for
from apps.verification.models import VerificationResult
from apps.verification.services import build_verifier
from apps.webhooks.signals import message_triaged

# Fixed label: the verifier's behaviour is versioned by hand.
VERIFIER_VERSION = "verifier-1"
# How many times a greylisted sender is asked in all before its answer is taken as it is.
MAX_VERIFY_ATTEMPTS = 6


@dataclass
class VerifyOutcome:
    handed_on: list[int]
    # Senders to ask again after countdown seconds (a greylisting server), still claimed.
    later: list[int] = field(default_factory=list)
    countdown: float = 0.0


def final_status(message: Message) -> str:
    confidence = message.category_confidence
    review = (message.category_result or {}).get("review")
    if review_reason(message.category, review, message.sender_trust):
        # The classifier asked for a person, or the sender is not who it claims to be.
        return MessageStatus.NEEDS_REVIEW
    if confidence is None or confidence < settings.MAILSCORE_REVIEW_CONFIDENCE:
        return MessageStatus.NEEDS_REVIEW
    return MessageStatus.TRIAGED


def _stored_trusts(messages: list[Message]) -> list[TrustReport] | None:
    """The trust reports draft_reply stored, or None if any is missing (then they are made
    again from the headers)."""
    stored = [(m.sender_result or {}).get("trust") for m in messages]
    if any(trust is None for trust in stored):
        return None
    return [TrustReport.from_dict(trust) for trust in stored]


def verify_sender(batch: Batch, *, attempt: int = 0, smtp: bool = True,
                  ask_again_later: bool = False) -> VerifyOutcome:  # fmt: skip
    """Sender trust and the reply address's deliverability; the last step, so it also sets the
    final status. With ask_again_later, a greylisted address is deferred (its message keeps its
    claim for the countdown) instead of taken as it is; the caller asks again after it."""
    batch.begin("verify_sender")
    max_delay = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]

    def work(messages, parsed):
        # The exact bytes: mail without trusted Authentication-Results gets our own DKIM, SPF
        # and DMARC check, and DKIM signatures cover the bytes, not the parsed form.
        raws = [bytes(m.raw) if m.raw else None for m in messages]

        async def check():
            return await verify_senders(parsed, build_verifier(), raws=raws,
                                        trusts=_stored_trusts(messages), smtp=smtp)  # fmt: skip

        return asyncio.run(check())

    results = computed = batch.compute(work)
    outcome = VerifyOutcome(handed_on=[])
    if ask_again_later and attempt + 1 < MAX_VERIFY_ATTEMPTS:
        delays = {}
        for message, result in zip(batch.todo, results, strict=True):
            found = None if isinstance(result, Exception) else result.deliverability
            if wants_retry(found):
                delays[message.id] = retry_countdown(found.smtp.retry_after, attempt, max_delay)
        if delays:
            outcome.later, outcome.countdown = sorted(delays), max(delays.values())
            lease = outcome.countdown + settings.MAILSCORE_CLAIM_LEASE_SECONDS
            results = [
                Deferred(lease) if message.id in delays else result
                for message, result in zip(batch.todo, results, strict=True)
            ]

    checked_at = timezone.now()
    delivery_reports = {
        message.id
        for message, parsed in zip(batch.todo, batch.parsed, strict=True)
        if parsed.is_delivery_report
    }

    def apply(message, result):
        deliverability = result.deliverability
        message.sender_trust = result.trust.level
        message.sender_verdict = str(deliverability.verdict) if deliverability else "none"
        message.sender_result = result.to_dict()
        message.status = final_status(message)

    def store_verifications(messages: list[Message]) -> None:
        rows = []
        for message in messages:
            found = (message.sender_result or {}).get("deliverability")
            if found is None:
                continue
            rows.append(VerificationResult(
                checked_at=checked_at, address=found["address"],
                domain=found["address"].rpartition("@")[2].lower(), verdict=found["verdict"],
                reason=found["reason"], message_id=message.id, result=found,
                duration_ms=sum(found.get("timings", {}).values()),
                engine_version=VERIFIER_VERSION,
            ))  # fmt: skip
        VerificationResult.objects.bulk_create(rows)
        # What the mail itself says of mailboxes, for later verifications (not this one's); the
        # validate API's kept answers for those addresses give way to it once it is committed.
        recorded = record_for(messages, delivery_reports)
        if recorded:
            forget = partial(validation.forget_answers, sorted(recorded))
            transaction.on_commit(forget, robust=True)
        message_triaged.send_robust(sender=Message, messages=messages)  # webhooks, same transaction

    outcome.handed_on = batch.save(results, apply, VERIFIER_VERSION,
                                   ["sender_trust", "sender_verdict", "sender_result"],
                                   also=store_verifications, attempts=attempt + 1, smtp=smtp)  # fmt: skip
    _count(batch.todo, computed, set(outcome.later))
    return outcome


def _count(messages: list[Message], computed: list, later: set[int]) -> None:
    """Metrics: each sender's verification (a deferred one counts when it is asked again), and
    the SMTP replies of every probe made."""
    for message, result in zip(messages, computed, strict=True):
        found = None if isinstance(result, Exception) else result.deliverability
        if found is None:
            continue
        if message.id in later:
            if not found.cached:
                metrics.count_smtp_replies(found.smtp)
        else:
            metrics.record_verification(found, "chain")
