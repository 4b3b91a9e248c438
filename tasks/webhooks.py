"""Webhook deliveries on their own queue: each delivery is sent as soon as the transaction that
recorded it commits (apps/webhooks/signals.py deliveries_ready), and beat's retry sweep sends
those whose next attempt is due: retries, and any whose task the broker lost."""

from __future__ import annotations

import logging

import kombu.exceptions
import redis.exceptions
from django.dispatch import receiver

from apps.webhooks import services
from apps.webhooks.signals import deliveries_ready
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue

logger = logging.getLogger(__name__)

BROKER_ERRORS = (redis.exceptions.RedisError, kombu.exceptions.OperationalError)
# How often beat sends the deliveries that are due; the shortest retry wait is a minute.
RETRY_SWEEP_SECONDS = 30


@mailscore_task("webhooks.deliver", queue=CeleryQueue.WEBHOOKS, soft_time_limit=30,
                time_limit=45, max_retries=3)  # fmt: skip
def deliver_webhook(delivery_id: str) -> str:
    """One attempt at a delivery. Idempotent: a delivery that is not pending and due (sent,
    failed, waiting for its retry, or being tried by another worker) is left alone."""
    return services.deliver(delivery_id)


def queue_deliveries(delivery_ids: list[str]) -> int:
    """Queue an attempt for each delivery; those the broker does not take wait for the sweep."""
    queued = 0
    for delivery_id in delivery_ids:
        try:
            deliver_webhook.apply_async((delivery_id,), retry=False)
        except BROKER_ERRORS as exc:
            logger.warning("Broker unavailable: %d webhook deliveries wait for the retry sweep: %s",
                           len(delivery_ids) - queued, exc)  # fmt: skip
            break
        queued += 1
    return queued


@receiver(deliveries_ready, dispatch_uid="tasks-webhooks-deliveries-ready")
def _send_soon(sender, delivery_ids: list[str], **_) -> None:
    queue_deliveries(delivery_ids)


@mailscore_task("maintenance.webhook_retries", queue=CeleryQueue.MAINTENANCE)
def send_due_webhooks() -> int:
    """Queue the deliveries whose next attempt is due. Idempotent: a delivery queued twice is
    tried once (deliver_webhook leases it)."""
    return queue_deliveries(services.due_deliveries())
