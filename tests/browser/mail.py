"""Mail for the workbench's tests: real RFC 822 messages, ingested and triaged in this process by
the same steps the workers run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime

from django.utils import timezone

from apps.inbox import claims
from apps.inbox.batch import ClaimedBatch
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageStatus
from apps.triage.steps import TRIAGE_STEPS
from apps.verification.steps import final_status


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str
    sender: str
    minutes_ago: int = 5
    # An HTML part: beside the text body, or the only part where body is empty.
    html: str | None = None

    @property
    def message_id(self) -> str:
        slug = "".join(c if c.isalnum() else "-" for c in self.subject.lower())
        return f"<{slug}@workbench.test>"

    def raw(self) -> bytes:
        # Recent mail: older than the retention period would not be kept.
        date = format_datetime(timezone.now() - timedelta(minutes=self.minutes_ago))
        headers = (
            f"From: {self.sender}\nTo: support@mailscore.test\nSubject: {self.subject}\n"
            f"Message-ID: {self.message_id}\nDate: {date}\nMIME-Version: 1.0\n"
        )
        if self.html is None:
            return f"{headers}Content-Type: text/plain; charset=utf-8\n\n{self.body}\n".encode()
        if not self.body:
            return f"{headers}Content-Type: text/html; charset=utf-8\n\n{self.html}\n".encode()
        return (
            f"{headers}Content-Type: multipart/alternative; boundary=part\n\n"
            f"--part\nContent-Type: text/plain; charset=utf-8\n\n{self.body}\n"
            f"--part\nContent-Type: text/html; charset=utf-8\n\n{self.html}\n"
            f"--part--\n"
        ).encode()


OUTAGE = Mail(
    subject="URGENT: production outage, checkout is down",
    body=(
        "Our production site has been down since 08:40 and every checkout fails with a 502 "
        "error. All customers are affected and we are losing orders right now. This is a "
        "critical outage, please escalate immediately and call me back within the hour."
    ),
    sender="Dana Ops <dana@bigcustomer.test>",
)
DOUBLE_CHARGE = Mail(
    subject="Charged twice for my subscription",
    body=(
        "I was charged twice for my subscription this month. Please refund the duplicate "
        "charge of $49 on invoice 20231."
    ),
    sender="Sam Buyer <sam@normal.test>",
)
PRICING = Mail(
    subject="Question about enterprise pricing",
    body=(
        "Hi, could you tell me whether your enterprise plan includes single sign-on and what "
        "the price per seat is for 200 users?"
    ),
    sender="Lee Prospect <lee@prospect.test>",
)


def triage(mails: list[Mail]) -> list[Message]:
    """Ingest the mails and run the chain's triage steps on them, as a worker would. The last
    step, the sender check, talks to mail servers: here the messages get their final status
    without it, by the same rule it applies."""
    ids = [ingest_raw(mail.raw(), source="api").message.id for mail in mails]
    claim = claims.claim_queued(len(ids), lease_seconds=600)
    assert sorted(claim.message_ids) == sorted(ids), "other queued mail in the test database"
    for step in TRIAGE_STEPS:
        step(ClaimedBatch(claim.token, claim.message_ids))
    messages = list(Message.objects.filter(id__in=ids).order_by("id"))
    for message in messages:
        assert message.status == MessageStatus.PROCESSING, message.failure_reason
        message.status = final_status(message)
        message.sender_verdict = "none"
        message.claim, message.lease_expires_at = None, None
        message.updated_at = timezone.now()
    Message.objects.bulk_update(
        messages, ["status", "sender_verdict", "claim", "lease_expires_at", "updated_at"]
    )
    return messages
