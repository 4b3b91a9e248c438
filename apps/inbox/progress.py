"""Follow ingested messages through the chain and print them as they finish (ingest --wait and
the run command share this)."""

from __future__ import annotations

import time
from collections.abc import Callable

from apps.inbox.models import Message, MessageStatus

FINISHED = (MessageStatus.TRIAGED, MessageStatus.NEEDS_REVIEW, MessageStatus.FAILED)
HEADER = (
    f"{'ID':>6}  {'STATUS':<12} {'CATEGORY':<13} {'CONF':>5} {'PRIORITY':<8} {'SENDER':<12} SUBJECT"
)


def row(message: Message) -> str:
    confidence = f"{message.category_confidence:.2f}" if message.category_confidence else ""
    subject = (message.subject or "(no subject)").replace("\n", " ")[:48]
    if message.status == MessageStatus.FAILED:
        subject = f"{subject}  [failed in {message.failed_step}: {message.failure_reason[:80]}]"
    return (f"{message.id:>6}  {message.status:<12} {message.category[:13]:<13} {confidence:>5} "
            f"{message.priority:<8} {message.sender_verdict[:12]:<12} {subject}")  # fmt: skip


def follow(
    message_ids: list[int],
    write: Callable[[str], None],
    *,
    timeout: float,
    interval: float = 0.5,
) -> dict[str, int]:
    """Print each message's row once it is finished; return the count per final status.
    Messages still unfinished at the timeout are counted under their current status."""
    pending = set(message_ids)
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    if pending:
        write(HEADER)
    while pending:
        done = Message.objects.filter(id__in=pending, status__in=FINISHED).order_by("id")
        for message in done.defer("raw"):
            write(row(message))
            counts[message.status] = counts.get(message.status, 0) + 1
            pending.discard(message.id)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(interval)
    for status in Message.objects.filter(id__in=pending).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts
