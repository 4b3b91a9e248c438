"""When to ask a greylisting or rate-limiting mail server again, from a task of its own."""

from __future__ import annotations

import random

from apps.verification.engine.result import Reason, VerificationResult

# A greylisted or rate-limited answer is not a verdict: ask again later.
RETRY_LATER = frozenset({Reason.GREYLISTED, Reason.RATE_LIMITED})
# Countdowns are spread by up to this factor so that addresses greylisted together do not all
# come back in the same second.
JITTER = 1.2


def wants_retry(result: VerificationResult | None) -> bool:
    return bool(result and result.reason in RETRY_LATER and result.smtp.retry_after)


def retry_countdown(retry_after: float, attempt: int, max_delay: float) -> float:
    """The server's own hint, doubled for each attempt already made, at most max_delay, with
    jitter. Never more than longest_countdown(max_delay)."""
    return min(max_delay, retry_after * 2**attempt) * random.uniform(1.0, JITTER)  # noqa: S311 (retry jitter, not a secret)


def longest_countdown(max_delay: float) -> float:
    """The longest countdown retry_countdown gives: a broker that redelivers unacknowledged
    tasks after a visibility timeout must wait longer than this."""
    return max_delay * JITTER
