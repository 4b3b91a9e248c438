"""prioritize: a score from 0 to 100, a level from P0 (act now) to P3 (no action needed), and the
reasons that produced it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apps.inbox.engine import ParsedMessage
from apps.triage.engine.deadlines import find_deadlines
from apps.triage.engine.taxonomy import NO_REPLY

CATEGORY_BASE = {
    "incident": 55, "security": 55, "legal": 35, "account": 35, "billing": 30,
    "support": 30, "sales": 25, "feedback": 10, "other": 10,
}  # fmt: skip
LEVELS = ((70, "P0"), (45, "P1"), (20, "P2"), (0, "P3"))

_URGENCY = re.compile(
    r"\b(urgent(ly)?|asap|as soon as possible|immediately|right away|emergency|critical|"
    r"blocker|blocking|time[- ]sensitive|top priority|high priority|escalat\w*|now)\b",
    re.I,
)
_IMPACT = re.compile(
    r"\b(outage|down|production|prod|all (our )?(users|customers)|every (user|customer)|"
    r"revenue|data loss|losing (money|data|orders|customers)|cannot (log ?in|work|access)|"
    r"breach|compromised|leak(ed)?|not working|stopped working|broken)\b",
    re.I,
)


@dataclass
class PriorityPolicy:
    vip_addresses: frozenset[str] = frozenset()
    vip_domains: frozenset[str] = frozenset()
    # Where each category starts; CATEGORY_BASE for categories not named here.
    category_base: dict[str, int] = field(default_factory=dict)


@dataclass
class PriorityDecision:
    score: int
    level: str
    reasons: list[str] = field(default_factory=list)
    deadlines: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"score": self.score, "level": self.level, "reasons": self.reasons,
                "deadlines": self.deadlines}  # fmt: skip


def level_for(score: int) -> str:
    return next(level for floor, level in LEVELS if score >= floor)


def prioritize(
    message: ParsedMessage,
    category: str,
    policy: PriorityPolicy | None = None,
    *,
    thread_started: datetime | None = None,
) -> PriorityDecision:
    policy = policy or PriorityPolicy()
    if category in NO_REPLY:
        return PriorityDecision(0, "P3", [f"category {category}: no action needed"])
    reasons: list[str] = []
    score = policy.category_base.get(category, CATEGORY_BASE.get(category, 10))
    reasons.append(f"category {category} (+{score})")
    text = f"{message.subject}\n{message.new_text or message.text}"

    urgent = sorted({m.group(0).lower() for m in _URGENCY.finditer(text)})
    if urgent:
        points = min(20, 10 * len(urgent))
        score += points
        reasons.append(f"urgency language: {', '.join(urgent[:3])} (+{points})")
    impact = sorted({m.group(0).lower() for m in _IMPACT.finditer(text)})
    if impact:
        points = min(20, 10 * len(impact))
        score += points
        reasons.append(f"business impact: {', '.join(impact[:3])} (+{points})")

    sent = message.date or datetime.now(UTC)
    deadlines = find_deadlines(text, sent)
    if deadlines:
        hours = deadlines[0].hours_after(sent)
        points = 20 if hours <= 24 else 12 if hours <= 72 else 5
        score += points
        reasons.append(f"deadline {deadlines[0].text!r} ({deadlines[0].due:%Y-%m-%d %H:%M}, "
                       f"{hours:.0f} h after sending) (+{points})")  # fmt: skip

    sender = (message.from_address or "").lower()
    domain = sender.rsplit("@", 1)[-1] if "@" in sender else ""
    if sender in policy.vip_addresses or domain in policy.vip_domains:
        score += 20
        reasons.append(f"important sender {sender} (+20)")

    x_priority = (message.header("X-Priority") or "").strip()[:1]
    importance = (message.header("Importance") or message.header("Priority") or "").strip().lower()
    if x_priority in ("1", "2") or importance in ("high", "urgent"):
        score += 10
        reasons.append("marked high priority by the sender (+10)")
    elif x_priority in ("4", "5") or importance in ("low", "non-urgent"):
        score -= 10
        reasons.append("marked low priority by the sender (-10)")

    if thread_started is not None and message.date is not None:
        days = (message.date - thread_started).total_seconds() / 86400
        if days >= 3:
            score += 10
            reasons.append(f"thread open for {days:.0f} days (+10)")
    elif len(message.references) >= 3:
        score += 5
        reasons.append(f"long thread ({len(message.references)} earlier messages) (+5)")

    score = max(0, min(100, score))
    return PriorityDecision(score, level_for(score), reasons, [d.to_dict() for d in deadlines])
