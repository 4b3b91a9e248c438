"""Which chain holds which messages: claims with leases, taken back when not renewed.

The database, not the broker, says what is to be done. Dispatch claims queued messages for one
chain with a token and a lease; every step renews the lease while it works and when it hands on.
A chain that is lost (its worker killed, its next task dropped in a broker outage) stops renewing,
and the sweep puts its messages back in the queue once the lease has expired. The token fences
the lost chain: if it ever comes back, its steps find the messages no longer theirs and write
nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core import metrics
from apps.inbox.models import Message, MessageStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    token: str
    message_ids: list[int]


def claim_queued(limit: int, lease_seconds: float) -> Claim:
    """Mark up to limit queued messages processing under a new claim, oldest first.

    SKIP LOCKED lets two dispatchers run at once without claiming the same message."""
    token = str(uuid.uuid4())
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE inbox_message
            SET status = %s, claim = %s, lease_expires_at = %s, claims = claims + 1,
                updated_at = %s
            WHERE id IN (
                SELECT id FROM inbox_message WHERE status = %s
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
            )
            RETURNING id
            """,
            [MessageStatus.PROCESSING, token, now + timedelta(seconds=lease_seconds), now,
             MessageStatus.QUEUED, limit],
        )  # fmt: skip
        return Claim(token, sorted(row[0] for row in cursor.fetchall()))


def release(token: str) -> int:
    """Give a claim's messages back to the queue (the chain could not be started)."""
    return Message.objects.filter(claim=token, status=MessageStatus.PROCESSING).update(
        status=MessageStatus.QUEUED,
        claim=None,
        lease_expires_at=None,
        claims=F("claims") - 1,
        updated_at=timezone.now(),
    )


def renew(token: str, message_ids: list[int], lease_seconds: float) -> int:
    return Message.objects.filter(
        id__in=message_ids, claim=token, status=MessageStatus.PROCESSING
    ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds))


@contextmanager
def leased(token: str, message_ids: list[int], lease_seconds: float) -> Iterator[None]:
    """Keep renewing the claim's lease while the body runs, from a thread of its own, so that a
    long step keeps its messages and a killed one loses them a lease later."""
    stop = threading.Event()

    def keep_renewing() -> None:
        try:
            while not stop.wait(lease_seconds / 3):
                try:
                    renew(token, message_ids, lease_seconds)
                except DatabaseError as exc:  # the database is away; the next beat may reach it
                    logger.warning("Could not renew the lease of claim %s: %s", token, exc)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    renew(token, message_ids, lease_seconds)
    keeper = threading.Thread(target=keep_renewing, name=f"lease-{token[:8]}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


@dataclass(frozen=True)
class Swept:
    requeued: int
    failed: int


def requeue_expired(max_claims: int) -> Swept:
    """Put messages whose lease has expired back in the queue, or fail them with the reason once
    chains have been lost max_claims times on them (a message that kills its worker, or a step
    that always runs past its time limit, must not go round for ever)."""
    now = timezone.now()
    expired = Message.objects.filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True),
        status=MessageStatus.PROCESSING,
    )
    with transaction.atomic():
        lost = expired.filter(claims__gte=max_claims)
        failing = list(lost.select_for_update().values_list("category", "priority"))
        failed = lost.update(
            status=MessageStatus.FAILED,
            failed_step="chain",
            failure_reason=(
                f"The chain working on this message was lost {max_claims} times (a worker "
                "process killed or out of memory, or a step past its time limit); re-run it to "
                "try again."
            ),
            claim=None,
            lease_expires_at=None,
            updated_at=now,
        )
        requeued = expired.update(
            status=MessageStatus.QUEUED, claim=None, lease_expires_at=None, updated_at=now
        )
    if requeued or failed:
        logger.warning("Swept expired claims: %d messages back in the queue, %d failed",
                       requeued, failed)  # fmt: skip
    metrics.count_step_failures("chain", len(failing))
    for category, priority in failing:
        metrics.count_finished(category, priority, MessageStatus.FAILED)
    return Swept(requeued, failed)


def any_queued() -> bool:
    return Message.objects.filter(status=MessageStatus.QUEUED).exists()
