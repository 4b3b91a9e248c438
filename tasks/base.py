"""One decorator for every task: its name, queue, retries, timing and logging."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import kombu.exceptions
from celery import Task, shared_task
from celery.exceptions import Retry

from apps.inbox.batch import TRANSIENT_ERRORS
from tasks.queues import TASK_QUEUES, CeleryQueue

logger = logging.getLogger("mailscore.tasks")

# The services around us failing: retried with backoff. The broker itself being away also
# counts (kombu's OperationalError), for tasks that send others.
RETRIED_ERRORS = (*TRANSIENT_ERRORS, kombu.exceptions.OperationalError)
# Errors that mean the broker or database is away rather than that the work is wrong. A chain
# step that gives up on one of these leaves its messages claimed; the sweep hands them on.
OUTAGE_ERRORS = RETRIED_ERRORS


class MailscoreTask(Task):
    """Logs each run's outcome and duration."""

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            result = super().__call__(*args, **kwargs)
        except Retry:
            logger.info("%s will be retried after %.0f ms", self.name,
                        (time.perf_counter() - started) * 1000)  # fmt: skip
            raise
        except Exception as exc:
            logger.warning("%s failed after %.0f ms: %s: %s", self.name,
                           (time.perf_counter() - started) * 1000, type(exc).__name__, exc)  # fmt: skip
            raise
        logger.info("%s done in %.0f ms", self.name, (time.perf_counter() - started) * 1000)
        return result


def mailscore_task(name: str, *, queue: CeleryQueue, base: type[Task] = MailscoreTask,
                   **options) -> Callable:  # fmt: skip
    """A task named mailscore.<name> on queue: late acks (a task whose worker dies is delivered
    again), retries with exponential backoff and jitter for faults of the services around us."""
    defaults = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "autoretry_for": RETRIED_ERRORS,
        "retry_backoff": 2,
        "retry_backoff_max": 60,
        "retry_jitter": True,
        "max_retries": 8,
    }
    TASK_QUEUES[f"mailscore.{name}"] = queue
    return shared_task(name=f"mailscore.{name}", base=base, **{**defaults, **options})
