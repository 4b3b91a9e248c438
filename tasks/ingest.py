"""Mail fetched on a schedule: IMAP folders, polled by beat on the maintenance queue."""

from __future__ import annotations

from dataclasses import asdict

from apps.inbox.imap import poll_mailbox
from apps.inbox.models import ImapMailbox
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue


@mailscore_task("ingest.poll_imap", queue=CeleryQueue.MAINTENANCE)
def poll_imap() -> list[dict]:
    """Fetch what is new in every enabled folder. Idempotent: UID tracking and Message-ID
    deduplication mean a second poll stores nothing the first one stored."""
    ids = ImapMailbox.objects.filter(enabled=True).values_list("id", flat=True)
    return [asdict(poll_mailbox(mailbox_id)) for mailbox_id in ids]
