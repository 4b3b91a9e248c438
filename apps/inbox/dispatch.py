"""Hand queued messages to the triage chain in batches.

Ingest only marks a message queued and asks for a dispatch. The dispatch task (on the triage
queue) claims up to a batch of queued messages and starts one chain for them, so inference runs
on a batch whatever way the mail came in: while the triage pool is busy, messages gather and the
next dispatch takes them together; when it is idle, a message starts at once.

At most one dispatch waits in the queue at a time (a flag in Redis with a short expiry); the
database, not Redis, says what is queued, so a lost flag or task costs a delay, never a message.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from apps.core.connections import redis_connection
from apps.core.queues import CeleryQueue
from apps.inbox.models import MessageStatus

DISPATCH_TASK = "mailscore.pipeline.dispatch"
PENDING_FLAG = "mailscore:dispatch:pending"
# Long enough to cover a dispatch waiting behind a batch on the triage queue; after it, another
# dispatch may be queued, which costs nothing if the first one has already claimed the work.
PENDING_FLAG_SECONDS = 30


def request_dispatch() -> None:
    """Make sure a dispatch task is on its way."""
    if redis_connection().set(PENDING_FLAG, "1", nx=True, ex=PENDING_FLAG_SECONDS):
        from mailscore.celery import app

        app.send_task(DISPATCH_TASK, queue=str(CeleryQueue.TRIAGE))


def clear_dispatch_request() -> None:
    """Called by the dispatch task before it claims, so that a message committed after this
    point asks for a dispatch of its own."""
    redis_connection().delete(PENDING_FLAG)


def claim_queued(limit: int) -> list[int]:
    """Mark up to limit queued messages processing, oldest first; return their ids.

    SKIP LOCKED lets two dispatchers run at once without claiming the same message."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE inbox_message SET status = %s, updated_at = %s
            WHERE id IN (
                SELECT id FROM inbox_message WHERE status = %s
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING id
            """,
            [MessageStatus.PROCESSING, timezone.now(), MessageStatus.QUEUED, limit],
        )
        return sorted(row[0] for row in cursor.fetchall())
