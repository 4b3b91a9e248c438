"""Store incoming mail exactly once and hand it to the triage chain.

Every way in (API, files, IMAP) ends here. A message is identified by its Message-ID (or, without
one, by its bytes); the same message ingested twice gives back the first row. The chain is asked
for only after the row is committed, so a worker never looks for a message it cannot see.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.inbox.engine import Envelope, MessageTooLarge, parse_envelope
from apps.inbox.engine.mailbox import iter_messages, looks_like_message
from apps.inbox.models import RERUNNABLE, Message, MessageSource, MessageStatus
from apps.inbox.signals import messages_queued

logger = logging.getLogger(__name__)

# A Date this far ahead of our clock is the sender's clock, not when the message arrived.
FUTURE_TOLERANCE = timedelta(hours=1)


class InvalidMessage(ValueError):
    """Input that is not an RFC 822 message."""


@dataclass(frozen=True)
class IngestResult:
    message: Message
    created: bool


def dedupe_key(parsed: Envelope, raw: bytes) -> str:
    message_id = (parsed.message_id or "").strip().strip("<>").strip()
    if message_id:
        return hashlib.sha256(b"mid:" + message_id.encode("utf-8", "replace")).hexdigest()
    return hashlib.sha256(b"raw:" + raw).hexdigest()


def received_at_for(parsed: Envelope, now: datetime) -> datetime:
    """The message's own Date where it is plausible, so that the same message ingested again
    maps to the same partition and idempotency key; otherwise the time of ingest.

    Plausible means inside the retention period and not ahead of our clock: older mail would
    land in a partition that retention has dropped or is about to."""
    date = parsed.date.astimezone(UTC) if parsed.date else None
    oldest = now - timedelta(days=settings.MAILSCORE_RETENTION_DAYS)
    if date is not None and oldest <= date <= now + FUTURE_TOLERANCE:
        return date.replace(microsecond=0)
    return now


def parse_incoming(raw: bytes) -> Envelope:
    limit = settings.MAILSCORE_MAX_MESSAGE_BYTES
    if len(raw) > limit:
        raise MessageTooLarge(len(raw), limit)
    if not raw.strip():
        raise InvalidMessage("The message is empty; send an RFC 822 message (headers, a blank "
                             "line, then the body).")  # fmt: skip
    if not looks_like_message(raw[:4096]):
        raise InvalidMessage(
            "This is not an RFC 822 message: it must start with header lines such as "
            "'From: a@example.com' and 'Subject: ...', then a blank line and the body."
        )
    # Only the envelope: the body is decoded by the chain's first step, off the request path.
    return parse_envelope(raw, max_bytes=limit)


def ingest_raw(
    raw: bytes, *, source: str, source_detail: str = "", now: datetime | None = None
) -> IngestResult:
    """Store one message (or find it already stored) and queue it for the chain.

    Raises MessageTooLarge or InvalidMessage, whose text says what is accepted."""
    parsed = parse_incoming(raw)
    now = now or timezone.now()
    key = dedupe_key(parsed, raw)
    with transaction.atomic():
        # Serialises concurrent ingests of the same message, whatever received_at each derives:
        # the unique (dedupe_key, received_at) constraint alone cannot see across partitions.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
        existing = Message.objects.defer("raw").filter(dedupe_key=key).order_by("id").first()
        if existing is not None:
            return IngestResult(existing, created=False)
        message = Message.objects.create(
            received_at=received_at_for(parsed, now),
            source=source,
            source_detail=source_detail[:500],
            dedupe_key=key,
            message_id_header=(parsed.message_id or "")[:998],
            from_address=(parsed.from_address or "")[:320],
            from_name=parsed.from_name[:500],
            subject=parsed.subject,
            # In UTC: senders write offsets PostgreSQL refuses (beyond ±15:59).
            sent_at=parsed.date.astimezone(UTC) if parsed.date else None,
            size=len(raw),
            raw=raw,
            parsed={},
            status=MessageStatus.QUEUED,
        )
        transaction.on_commit(announce_queued)
    return IngestResult(message, created=True)


@dataclass
class BatchReport:
    message_ids: list[int] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    errors: int = 0


def ingest_paths(paths: list, *, on_error: Callable[[str], None]) -> BatchReport:
    """Ingest every message in .eml files, mbox files, maildirs and folders. An input that cannot
    be read or is not mail is reported through on_error, and the rest go on."""
    report = BatchReport()
    for item in iter_messages(paths):
        if item.error:
            report.errors += 1
            on_error(item.error)
            continue
        try:
            result = ingest_raw(item.raw, source=MessageSource.FILE, source_detail=item.source)
        except (MessageTooLarge, InvalidMessage) as exc:
            report.errors += 1
            on_error(f"{item.source}: {exc}")
            continue
        report.message_ids.append(result.message.id)
        report.stored += result.created
        report.duplicates += not result.created
    return report


def announce_queued() -> None:
    """Tell the chain there is work. The committed row is what counts: a receiver that fails
    (the broker is down) is logged, and the sweep hands the message to the chain later."""
    for receiver, outcome in messages_queued.send_robust(sender=Message):
        if isinstance(outcome, Exception):
            logger.warning("Queued messages wait for the sweep: %s failed: %s",
                           getattr(receiver, "__name__", receiver), outcome)  # fmt: skip


def rerun(message_ids: list[int]) -> tuple[list[int], list[int]]:
    """Queue finished or failed messages for a fresh run of the chain. Returns the ids queued
    and the ids left alone because the chain is still working on them."""
    with transaction.atomic():
        ready = list(
            Message.objects.select_for_update()
            .filter(id__in=message_ids, status__in=RERUNNABLE)
            .values_list("id", flat=True)
        )
        Message.objects.filter(id__in=ready).update(
            status=MessageStatus.QUEUED,
            runs=F("runs") + 1,
            claims=0,
            failed_step="",
            failure_reason="",
            steps={},
            updated_at=timezone.now(),
        )
        if ready:
            transaction.on_commit(announce_queued)
    busy = sorted(set(message_ids) - set(ready))
    return sorted(ready), busy
