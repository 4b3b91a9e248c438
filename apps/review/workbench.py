"""What the reviewer's screens show of a message: each step's stored result put in words, the
parsed message as text, and the queue's order."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, CharField, F, IntegerField, Max, Q, QuerySet, Value, When

from apps.inbox.engine import ParsedMessage, UnparseableMessage
from apps.inbox.ingest import parsed_of_stored
from apps.inbox.models import PRIORITY_LEVELS, Message, MessageStatus
from apps.triage.engine.draft import no_reply_reason
from apps.triage.engine.taxonomy import NO_REPLY
from apps.triage.models import CategoryConfig
from apps.verification.engine.trust import (
    SENDER_REVIEW,
    parse_authentication_results,
    review_reason,
)

# The pipeline's steps in the order the chain runs them.
STEP_ORDER = ("classify", "prioritize", "summarize", "draft_reply", "verify_sender")
STEP_NAMES = {
    "classify": "Category",
    "prioritize": "Priority",
    "summarize": "Summary",
    "draft_reply": "Draft reply",
    "verify_sender": "Sender verification",
}
TRUST_LABELS = {"trusted": "verified", "neutral": "unverified", "suspicious": "suspicious"}
TRUST_WORDS = {
    "trusted": "the receiving server authenticated the sender's domain",
    "neutral": "nothing proves or disproves who sent it",
    "suspicious": "there are signs that the sender is not who they claim to be",
}
VERDICT_WORDS = {
    "deliverable": "deliverable",
    "undeliverable": "undeliverable",
    "risky": "risky",
    "unknown": "could not be determined",
    "none": "not checked",
}
AUTH_METHODS = ("spf", "dkim", "dmarc")
# Headers a reviewer reads to judge a message, in the order shown.
SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Date", "Subject", "Message-ID", "List-Id",
                 "Auto-Submitted")  # fmt: skip


def effective_level_q(level: str) -> Q:
    """Messages whose level, the reviewer's where there is one, is level ("" for none)."""
    if not level:
        return Q(reviewed_priority="", priority="")
    return Q(reviewed_priority=level) | Q(reviewed_priority="", priority=level)


def effective_category_q(category: str) -> Q:
    if not category:
        return Q(reviewed_category="", category="")
    return Q(reviewed_category=category) | Q(reviewed_category="", category=category)


def with_queue_order(queryset: QuerySet) -> QuerySet:
    """Annotates what the queue sorts by: needs-review first, then the effective level (P0
    first, none last), then age."""
    effective_level = Case(
        When(~Q(reviewed_priority=""), then=F("reviewed_priority")),
        default=F("priority"),
        output_field=CharField(),
    )
    level_rank = Case(
        *[When(effective_level_q(level), then=Value(rank))
          for rank, level in enumerate(PRIORITY_LEVELS)],
        default=Value(len(PRIORITY_LEVELS)),
        output_field=IntegerField(),
    )  # fmt: skip
    review_rank = Case(
        When(status=MessageStatus.NEEDS_REVIEW, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return queryset.annotate(
        effective_level=effective_level, level_rank=level_rank, review_rank=review_rank
    )


QUEUE_ORDERING = ("review_rank", "level_rank", "received_at", "id")


def latest_of_each_thread(queryset: QuerySet) -> QuerySet:
    """One row per conversation: the newest message of each thread among those selected; a
    message without a thread key is a thread of its own."""
    latest = (
        queryset.exclude(thread_key="")
        .order_by()
        .values("thread_key")
        .annotate(latest=Max("id"))
        .values("latest")
    )
    return queryset.filter(Q(thread_key="") | Q(id__in=latest))


def age_in_words(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0, (now - moment).total_seconds())
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    if seconds < 86400 * 60:
        return f"{int(seconds // 86400)} d"
    return f"{int(seconds // (86400 * 30))} mo"


def duration_words(milliseconds: float | None) -> str:
    if milliseconds is None:
        return ""
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    return f"{milliseconds / 1000:.1f} s"


def size_words(size: int | None) -> str:
    if size is None:
        return "size unknown (too large to decode)"
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def truncate(text: str, length: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


@dataclass
class Badge:
    label: str
    level: str
    reason: str


def trust_badge(message: Message) -> Badge | None:
    """The sender's trust in one word, with why: the trust report's warnings, else the reply
    address's verification verdict."""
    level = message.sender_trust
    if not level:
        return None
    result = message.sender_result or {}
    trust = result.get("trust") or {}
    signals = trust.get("signals", [])
    reasons = []
    # The worst news first: warnings where there are any, else what vouched for the sender.
    for severities in (("danger", "warning"), ("good",), ("info",)):
        reasons = [s.get("detail", "") for s in signals if s.get("severity") in severities]
        if reasons:
            break
    deliverability = result.get("deliverability")
    if deliverability:
        reasons.append(verification_words(deliverability))
    elif message.sender_verdict:
        reasons.append(f"Reply address {VERDICT_WORDS.get(message.sender_verdict, message.sender_verdict)}.")  # fmt: skip
    return Badge(TRUST_LABELS.get(level, level), level, " ".join(r for r in reasons if r))


def reason_words(reason: str) -> str:
    return (reason or "").replace("_", " ")


def verification_words(deliverability: dict) -> str:
    verdict = deliverability.get("verdict", "")
    words = f"Reply address {deliverability.get('address', '')} is " \
            f"{VERDICT_WORDS.get(verdict, verdict)}"  # fmt: skip
    reason = deliverability.get("reason", "")
    if reason and reason != "ok":
        words += f" ({reason_words(reason)})"
    return words + "."


def top_reason(message: Message) -> str:
    reasons = (message.priority_result or {}).get("reasons") or []
    return reasons[0] if reasons else ""


# Why the classifier asked for a person, in a reviewer's words.
REVIEW_REASONS = {
    "language": "written in a language the model does not know well, and it is not sure",
    "uncertain spam": "it looks like spam, but not clearly enough to file it there unseen",
    SENDER_REVIEW: "the sender's identity failed its checks (see the sender), and it was not "
    "filed as spam",
}


def category_words(message: Message) -> dict:
    result = message.category_result or {}
    reason = result.get("review")
    if not reason and message.status == MessageStatus.NEEDS_REVIEW:
        reason = review_reason(message.category, None, message.sender_trust)
    alternatives = [
        f"{a.get('label')} ({percent(a.get('confidence'))})"
        for a in result.get("alternatives", [])
        if a.get("label") != message.category
    ]
    return {
        "model": message.category,
        "confidence": percent(message.category_confidence),
        "decided_by": result.get("decided_by", ""),
        "runner_up": alternatives[0] if alternatives else "",
        "others": alternatives[1:4],
        "spam_probability": percent(result.get("spam_probability")),
        "review": REVIEW_REASONS.get(reason or "", reason or ""),
        "language": message.language,
        "reviewed": message.reviewed_category,
    }


def priority_words(message: Message) -> dict:
    result = message.priority_result or {}
    deadlines = []
    for deadline in result.get("deadlines", []):
        due = deadline.get("due", "")
        with contextlib.suppress(TypeError, ValueError):
            due = datetime.fromisoformat(due).strftime("%a %d %b %Y %H:%M")
        deadlines.append(f"“{deadline.get('text', '')}”, due {due}")
    return {
        "model": message.priority,
        "score": message.priority_score,
        "reasons": result.get("reasons", []),
        "deadlines": deadlines,
        "reviewed": message.reviewed_priority,
    }


def sender_words(message: Message, parsed: ParsedMessage | None) -> dict:
    """Trust level, the reply address's verification, SPF/DKIM/DMARC and the warnings."""
    result = message.sender_result or {}
    trust = result.get("trust") or {}
    deliverability = result.get("deliverability")
    authentication = trust.get("authentication")
    authserv_id = trust.get("authserv_id")
    if authentication is None and parsed is not None:
        header = parsed.header("Authentication-Results")
        if header:
            authserv_id, found = parse_authentication_results(header)
            authentication = [{"method": a.method, "result": a.result} for a in found]
    results = {a.get("method"): a.get("result") for a in authentication or []}
    checks = [(method.upper(), results.get(method, "not reported")) for method in AUTH_METHODS]
    signals = trust.get("signals", [])
    return {
        "level": message.sender_trust,
        "label": TRUST_LABELS.get(message.sender_trust, ""),
        "level_words": TRUST_WORDS.get(message.sender_trust, "not assessed yet"),
        "score": trust.get("score"),
        "reply_address": trust.get("reply_address") or "",
        "verdict": VERDICT_WORDS.get(message.sender_verdict, message.sender_verdict),
        "verification": verification_words(deliverability) if deliverability else "",
        "checks": checks,
        "authserv_id": authserv_id or "",
        "warnings": [s for s in signals if s.get("severity") in ("warning", "danger")],
        "notes": [s for s in signals if s.get("severity") not in ("warning", "danger")],
    }


def step_words(steps: dict) -> list[dict]:
    names = [n for n in STEP_ORDER if n in steps] + sorted(set(steps) - set(STEP_ORDER))
    rows = []
    for name in names:
        record = steps.get(name) or {}
        rows.append({
            "name": STEP_NAMES.get(name, name),
            "version": record.get("version", ""),
            "duration": duration_words(record.get("duration_ms")),
            "attempts": record.get("attempts") or record.get("attempt") or "",
            "error": record.get("error") or "",
        })  # fmt: skip
    return rows


def load_parsed(message: Message) -> tuple[ParsedMessage | None, str]:
    """The parsed message (ingest.parsed_of_stored); with a note if it cannot be had."""
    try:
        return parsed_of_stored(message), ""
    except UnparseableMessage as exc:
        return None, f"The stored message cannot be parsed: {exc}"


def shown_headers(parsed: ParsedMessage, sender: dict) -> list[tuple[str, str]]:
    rows = []
    for name in SHOWN_HEADERS:
        values = parsed.get_all(name) or []
        if values:
            rows.append((name, ", ".join(" ".join(v.split()) for v in values)))
    checks = [f"{method.lower()}={result}" for method, result in sender["checks"]
              if result != "not reported"]  # fmt: skip
    if checks:
        by = f" (by {sender['authserv_id']})" if sender["authserv_id"] else ""
        rows.append(("Authentication-Results", " ".join(checks) + by))
    return rows


def attachment_rows(parsed: ParsedMessage) -> list[dict]:
    return [
        {
            "name": a.filename or "(unnamed)",
            "content_type": a.content_type,
            "size": size_words(a.size),
        }
        for a in parsed.attachments
    ]


def expects_reply(category: str) -> bool:
    """Whether mail of this category is answered: the team's category settings where it has
    them, else the built-in taxonomy."""
    if category == "spam":
        return False
    configured = (
        CategoryConfig.objects.filter(name=category).values_list("expects_reply", flat=True).first()
    )
    if configured is not None:
        return configured
    return category not in NO_REPLY


def no_draft_reason(message: Message, parsed: ParsedMessage | None) -> str:
    """Why no reply is offered for this message, or "" when one is."""
    if parsed is not None:
        reason = no_reply_reason(parsed)
        if reason:
            return f"No reply is offered: {reason}."
    category = message.effective_category
    if category == "spam":
        return "No reply is offered: the message is spam."
    if category and not expects_reply(category):
        return f"No reply is offered: {category} mail expects no reply."
    return ""
