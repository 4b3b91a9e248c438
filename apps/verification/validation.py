"""One address checked within a time budget for the API, its answer cached in Redis, and what the
budget did not allow finished by a background check that stores the final answer.

The answers are kept under their own prefix (mailscore:validate:) rather than in the engine's
address cache: they are the API's answer (checks, checked_at) with TTLs chosen for API clients
(MAILSCORE_VALIDATE_TTL_*), and a check still pending must be told apart from a final answer.
The engine's own caches (MX, catch-all, addresses) and its per-server limits stay underneath.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from apps.core import metrics
from apps.core.connections import redis_connection
from apps.verification.engine import Verifier
from apps.verification.engine.cache import NoCache
from apps.verification.engine.later import RETRY_LATER, retry_countdown
from apps.verification.engine.result import Reason, Verdict, VerificationResult, score_for
from apps.verification.engine.similarity import suggest_domain
from apps.verification.engine.syntax import SyntaxResult, check_syntax
from apps.verification.evidence import with_mail_evidence
from apps.verification.services import build_verifier, verifier_config
from apps.verification.signals import validation_deferred

KEY_PREFIX = "mailscore:validate:"
PENDING_PREFIX = KEY_PREFIX + "pending:"
# A pending marker outlives the background check it stands for by this much, so that a worker
# slow to pick the check up does not let a second one start; the check removes it when done.
PENDING_MARGIN_SECONDS = 60
TTL_SETTINGS = {
    Verdict.DELIVERABLE: "MAILSCORE_VALIDATE_TTL_DELIVERABLE",
    Verdict.UNDELIVERABLE: "MAILSCORE_VALIDATE_TTL_UNDELIVERABLE",
    Verdict.RISKY: "MAILSCORE_VALIDATE_TTL_RISKY",
    Verdict.UNKNOWN: "MAILSCORE_VALIDATE_TTL_UNKNOWN",
}
# DNS answers about the domain: these say it exists, whether or not it takes mail.
DOMAIN_EXISTS = {"ok", "null_mx", "no_mail_server"}
DOMAIN_CERTAIN = DOMAIN_EXISTS | {"no_such_domain"}


def cache_key_for(address: str) -> str | None:
    """The address's key: its normalised form, so that spellings of one address share an
    answer. None for an address that is not one (its check is cheap and needs no cache)."""
    syntax = _syntax(address)
    return syntax.normalized.lower() if syntax.valid else None


def _syntax(address: str) -> SyntaxResult:
    config = verifier_config()
    return check_syntax(
        address,
        allow_quoted_local=config.allow_quoted_local,
        allow_domain_literal=config.allow_domain_literal,
        allow_special_use_domains=config.allow_special_use_domains,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def checks_of(result: VerificationResult) -> dict[str, bool | None]:
    """What each step found: true, false, or None where the step did not run or could not tell."""
    syntax_valid = bool(result.syntax.get("valid"))
    mx_status = result.mx.get("status")
    smtp = result.smtp
    listed = syntax_valid or None  # list lookups need a domain, which a bad address lacks
    return {
        "syntax": syntax_valid,
        "dns": mx_status in DOMAIN_EXISTS if mx_status in DOMAIN_CERTAIN else None,
        "mx": mx_status == "ok" if mx_status in DOMAIN_CERTAIN else None,
        "smtp": smtp.is_deliverable if smtp.checked else None,
        "catch_all": smtp.is_catch_all if smtp.checked else None,
        "disposable": result.is_disposable if listed else None,
        "role": result.is_role if listed else None,
        "free": result.is_free if listed else None,
    }


def answer_of(result: VerificationResult) -> dict[str, Any]:
    """The API's answer for an engine result, without the fields that depend on the request."""
    return {
        "verdict": str(result.verdict),
        "reason": str(result.reason),
        "score": result.score,
        "checks": checks_of(result),
        "suggestion": result.suggestion,
        "evidence": [dict(item) for item in result.evidence],
        "checked_at": _now(),
    }


def cached_answer(key: str) -> dict[str, Any] | None:
    """A final answer, or the provisional one of a check still pending (with its retry_after
    counted down), or None."""
    client = redis_connection()
    final, pending = client.mget(KEY_PREFIX + key, PENDING_PREFIX + key)
    if final is not None:
        return {"evidence": [], **json.loads(final), "retry_after": None}
    if pending is not None:
        answer = {"evidence": [], **json.loads(pending)}
        due = answer.pop("due")
        return {**answer, "retry_after": max(1, math.ceil(due - time.time()))}
    return None


def store_answer(key: str, answer: dict[str, Any]) -> None:
    """Keep a final answer for its verdict's TTL (0: not kept), and end the pending check."""
    ttl = int(getattr(settings, TTL_SETTINGS[Verdict(answer["verdict"])]))
    client = redis_connection()
    pipe = client.pipeline()
    if ttl > 0:
        pipe.set(KEY_PREFIX + key, json.dumps(answer), ex=ttl)
    pipe.delete(PENDING_PREFIX + key)
    pipe.execute()


def mark_pending(key: str, answer: dict[str, Any], countdown: float) -> bool:
    """Record that a background check of the address will run after countdown seconds. False
    when one is already pending: that one will answer."""
    due = time.time() + countdown + settings.MAILSCORE_VALIDATE_BUDGET_SECONDS
    return bool(
        redis_connection().set(
            PENDING_PREFIX + key,
            json.dumps({**answer, "due": due}),
            nx=True,
            ex=_pending_seconds(countdown),
        )
    )


def forget_answers(keys: list[str]) -> None:
    """Drop the final answers kept for these addresses (new mail evidence about them): their
    next call checks again."""
    if keys:
        redis_connection().delete(*[KEY_PREFIX + key for key in keys])


def extend_pending(key: str, countdown: float) -> None:
    """The background check asks the server again after countdown: keep the marker that long."""
    redis_connection().expire(PENDING_PREFIX + key, _pending_seconds(countdown))


def clear_pending(key: str) -> None:
    redis_connection().delete(PENDING_PREFIX + key)


def _pending_seconds(countdown: float) -> int:
    address_budget = settings.MAILSCORE_VERIFICATION["address_budget"]
    return math.ceil(countdown + address_budget + PENDING_MARGIN_SECONDS)


async def _check(address: str) -> VerificationResult:
    # Built here: the verifier's Redis client belongs to this event loop.
    verifier = build_verifier()
    return await verifier.verify(address, smtp=True, greylist_wait=0)


def validate(address: str, budget: float) -> dict[str, Any]:
    """The answer for address within budget seconds, from the cache where it holds one. A check
    the budget cut short, or a server that greylisted it, is answered unknown with retry_after,
    and finished in the background (one background check per address at a time)."""
    key = cache_key_for(address)
    if key is not None:
        answer = cached_answer(key)
        if answer is not None:
            return {"email": address, **answer, "cached": True}
    try:
        result = asyncio.run(asyncio.wait_for(_check(address), budget))
    except TimeoutError:
        result = None
    if result is not None:
        # Mail evidence may decide what the server would not say (greylisted, blocked, ...).
        [result] = with_mail_evidence([result])
        metrics.record_verification(result, "validate")
    if result is not None and result.reason not in RETRY_LATER:
        answer = answer_of(result)
        if key is not None:
            store_answer(key, answer)
        return {"email": address, **answer, "retry_after": None, "cached": False}
    if result is None:
        # The provisional answer already uses the evidence; the background check still runs,
        # because a definitive answer from the mailbox's server would stand over it.
        [result] = with_mail_evidence([_timed_out_result(address)])
        metrics.record_verification(result, "validate")
        answer = answer_of(result)
        countdown = 0.0
    else:
        answer = answer_of(result)
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        countdown = retry_countdown(result.smtp.retry_after or 1.0, 0, limit)
    if key is not None and mark_pending(key, answer, countdown):
        validation_deferred.send(sender=validate, address=address, key=key, countdown=countdown)
    retry_after = max(1, math.ceil(countdown + budget))
    return {"email": address, **answer, "retry_after": retry_after, "cached": False}


def _timed_out_result(address: str) -> VerificationResult:
    """The result when the budget ran out: what needs no network (syntax, lists, a typo fix),
    with nothing claimed about DNS or the mailbox."""
    config = verifier_config()
    syntax = _syntax(address)
    lists = Verifier(config, cache=NoCache()).lists
    is_role, is_free = lists.is_role(syntax.local_part), lists.is_free(syntax.ascii_domain)
    suggested = suggest_domain(syntax.ascii_domain)
    return VerificationResult(
        address=address,
        verdict=Verdict.UNKNOWN,
        reason=Reason.TIMEOUT,
        score=score_for(Reason.TIMEOUT, is_free=is_free, is_role=is_role, catch_all=None),
        normalized=syntax.normalized,
        syntax={"valid": True},
        is_disposable=lists.is_disposable(syntax.ascii_domain),
        is_role=is_role,
        is_free=is_free,
        suggestion=f"{syntax.local_part}@{suggested}" if suggested else None,
    )
