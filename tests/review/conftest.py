"""Fixtures for the review screens: mail ingested for real, with the results the chain stores."""

from __future__ import annotations

import csv
import email
import itertools
import mailbox
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from django.utils import timezone

from apps.inbox.engine import parse_message
from apps.inbox.engine.stored import parsed_to_json
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageStatus
from apps.triage.engine.draft import no_reply_reason
from apps.triage.engine.taxonomy import NO_REPLY
from apps.verification.engine.result import VERDICT_OF, Reason, VerificationResult
from apps.verification.engine.trust import assess_sender
from tests.inbox.conftest import spam_corpus  # noqa: F401

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
LEVEL_SCORES = {"P0": 80, "P1": 55, "P2": 30, "P3": 10}
_numbers = itertools.count(1)


def raw_message(body: str = "Hello, could you help me with my order?", *, subject: str = "Hello",
                sender: str = "Alice Example <alice@customer.test>", age: timedelta | None = None,
                message_id: str | None = None, headers: str = "") -> bytes:  # fmt: skip
    """A plain message dated age ago (its received_at), with any extra header lines."""
    sent = timezone.now() - (age if age is not None else timedelta(hours=1))
    message_id = message_id or f"<review-{next(_numbers)}@customer.test>"
    return (
        f"From: {sender}\nTo: support@mailscore.test\nSubject: {subject}\n"
        f"Message-ID: {message_id}\nDate: {format_datetime(sent)}\n{headers}\n{body}\n"
    ).encode()


def demo_mail() -> dict[str, bytes]:
    """The bundled sample mailbox, by Message-ID."""
    box = mailbox.mbox(SAMPLES / "demo.mbox", create=False)
    try:
        return {m["Message-ID"]: m.as_bytes() for m in box}
    finally:
        box.close()


def demo_labels() -> dict[str, tuple[str, str]]:
    with open(SAMPLES / "demo_labels.csv", newline="", encoding="utf-8") as handle:
        return {
            row["message_id"]: (row["category"], row["priority"]) for row in csv.DictReader(handle)
        }


def deliverability(address: str, reason: Reason = Reason.OK) -> dict:
    return VerificationResult(address=address, verdict=VERDICT_OF[reason], reason=reason,
                              score=95 if reason is Reason.OK else 40).to_dict()  # fmt: skip


def store(raw: bytes, *, category: str = "support", confidence: float = 0.9,
          level: str = "P2", status: str = MessageStatus.TRIAGED, received_at: datetime | None = None,
          source: str = "api", source_detail: str = "", keep_parsed: bool = True,
          **fields) -> Message:  # fmt: skip
    """Ingest raw bytes for real, then store each step's result as the chain does: the parsed
    form, category, level with its reasons, summary, a draft where one is offered, the sender's
    trust report (from the real engine) and the reply address's verification."""
    message = ingest_raw(raw, source=source, source_detail=source_detail).message
    parsed = parse_message(raw)
    trust = assess_sender(email.message_from_bytes(raw))
    offers_draft = category not in NO_REPLY and no_reply_reason(parsed) is None
    alternatives = [{"label": category, "confidence": confidence},
                    {"label": "billing" if category != "billing" else "sales", "confidence": 0.07}]  # fmt: skip
    verification = deliverability(trust.reply_address) if trust.reply_address else None
    values = {
        "parsed": parsed_to_json(parsed) if keep_parsed else {},
        "status": status,
        "category": category,
        "category_confidence": confidence,
        "category_result": {
            "label": category,
            "confidence": confidence,
            "decided_by": "category_head",
            "alternatives": alternatives,
            "spam_probability": 0.01,
        },  # fmt: skip
        "priority": level,
        "priority_score": LEVEL_SCORES.get(level),
        "priority_result": {
            "score": LEVEL_SCORES.get(level),
            "level": level,
            "reasons": [f"category {category} (+{LEVEL_SCORES.get(level, 0)})"],
            "deadlines": [],
        }
        if level
        else None,  # fmt: skip
        "summary": parsed.new_text.strip().split("\n")[0][:200],
        "draft_reply": "Hello,\n\nThank you for writing; we are looking into it.\n\nThe Support Team"
        if offers_draft
        else "",
        "draft_result": {"text": "…", "source": "template", "origin": f"the {category} template"}
        if offers_draft
        else None,
        "sender_trust": trust.level,
        "sender_verdict": str(verification["verdict"]) if verification else "none",
        "sender_result": {"trust": trust.to_dict(), "deliverability": verification},
        "steps": {
            "classify": {
                "version": "category-head 3 / all-MiniLM-L6-v2",
                "duration_ms": 12.6,
                "attempt": 1,
                "error": None,
                "run": 1,
            },
            "prioritize": {
                "version": "rules 2",
                "duration_ms": 1.2,
                "attempt": 1,
                "error": None,
                "run": 1,
            },
            "verify_sender": {
                "version": "verifier 1",
                "duration_ms": 1830.0,
                "attempts": 2,
                "error": None,
                "run": 1,
            },
        },  # fmt: skip
        **fields,
    }
    if received_at is not None:
        values["received_at"] = received_at
    Message.objects.filter(id=message.id).update(**values)
    return Message.objects.get(id=message.id)


@pytest.fixture
def reviewer(django_user_model):
    return django_user_model.objects.create_superuser("ruth", "ruth@mailscore.test", "pw")


@pytest.fixture
def colleague(django_user_model):
    return django_user_model.objects.create_user("sam", "sam@mailscore.test", "pw", is_staff=True)


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client
