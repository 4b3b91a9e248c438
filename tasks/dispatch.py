"""Hand queued messages to the triage chain in batches, and take back what a lost chain held.

Ingest only stores a message as queued and announces it (apps/inbox/signals.py); the receiver
here asks for a dispatch. The dispatch task claims up to a batch of queued messages and starts
one chain for them, so inference runs on a batch whatever way the mail came in. At most one
dispatch waits in the queue at a time (a flag in Redis with a short expiry).

The database is the queue: a dispatch request lost with the broker costs a delay, never a
message. Beat's sweep, every MAILSCORE_SWEEP_SECONDS, puts messages whose claim's lease expired
back in the queue and asks for a dispatch whenever anything is queued.
"""

from __future__ import annotations

import contextlib
import logging

import kombu.exceptions
import redis.exceptions
from django.conf import settings
from django.dispatch import receiver

from apps.core.connections import redis_connection
from apps.inbox import claims
from apps.inbox.signals import messages_queued
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue

logger = logging.getLogger(__name__)

PENDING_FLAG = "mailscore:dispatch:pending"
# Long enough to cover a dispatch waiting behind a batch on the triage queue; after it, another
# dispatch may be queued, which costs nothing if the first one has already claimed the work.
PENDING_FLAG_SECONDS = 30
BROKER_ERRORS = (redis.exceptions.RedisError, kombu.exceptions.OperationalError)


def request_dispatch() -> bool:
    """Make sure a dispatch task is on its way. False (and a log line) when the broker cannot be
    reached: the messages stay queued in the database for the sweep."""
    try:
        if redis_connection().set(PENDING_FLAG, "1", nx=True, ex=PENDING_FLAG_SECONDS):
            dispatch.apply_async(retry=False)
        return True
    except BROKER_ERRORS as exc:
        logger.warning("Broker unavailable, queued mail waits for the sweep: %s", exc)
        with contextlib.suppress(BROKER_ERRORS):  # if not, it expires by itself
            redis_connection().delete(PENDING_FLAG)
        return False


@receiver(messages_queued)
def _dispatch_soon(**_) -> None:
    request_dispatch()


def batches_waiting() -> int:
    """Chain steps waiting in the model pools' queues. Dispatch claims no more while enough
    are waiting, so that a claimed batch starts within its lease."""
    client = redis_connection()
    return client.llen(str(CeleryQueue.TRIAGE)) + client.llen(str(CeleryQueue.GENERATE))


@mailscore_task("pipeline.dispatch", queue=CeleryQueue.TRIAGE)
def dispatch() -> list[int]:
    """Claim a batch of queued messages and start a chain for it. Idempotent: claiming is one
    atomic UPDATE, so a dispatch that finds nothing queued does nothing."""
    # Imported here: tasks.pipeline imports this module, and the web process, which only asks
    # for dispatches, need not load the models' code.
    from tasks.pipeline import start_chain

    redis_connection().delete(PENDING_FLAG)
    if batches_waiting() >= settings.MAILSCORE_MAX_WAITING_BATCHES:
        return []  # the end of a running chain asks again
    claim = claims.claim_queued(
        settings.MAILSCORE_PIPELINE_BATCH, settings.MAILSCORE_CLAIM_LEASE_SECONDS
    )
    if not claim.message_ids:
        return []
    try:
        start_chain(claim)
    except BROKER_ERRORS:
        claims.release(claim.token)
        raise
    if len(claim.message_ids) == settings.MAILSCORE_PIPELINE_BATCH:
        request_dispatch()  # there may be more waiting
    return claim.message_ids


@mailscore_task("maintenance.sweep", queue=CeleryQueue.MAINTENANCE)
def sweep() -> dict:
    """Hand the chain what it lost sight of: messages whose claim's lease expired (their chain
    was lost to a killed worker or a broker outage) go back to the queue, and a dispatch is
    asked for whenever anything is queued. A message resumes at the first step not recorded
    for its run."""
    swept = claims.requeue_expired(settings.MAILSCORE_MAX_CLAIMS)
    queued = claims.any_queued()
    if queued:
        request_dispatch()
    return {"requeued": swept.requeued, "failed": swept.failed, "queued": queued}
