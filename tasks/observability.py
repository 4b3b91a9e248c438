"""Celery's side of metrics and logs: the time each task is published, a worker's metrics
exporter, and the task and messages every log line of a task names.

Connected from tasks/apps.py, so that every process that publishes tasks (web, beat, workers)
stamps them.
"""

from __future__ import annotations

import logging
import os
import time

from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)
from django.conf import settings

from apps.core import logcontext, metrics

logger = logging.getLogger(__name__)


@before_task_publish.connect(dispatch_uid="mailscore-published-at")
def _stamp_published_at(headers: dict | None = None, **_) -> None:
    # Celery's message says nothing of when it was sent; /metrics reads this header from the
    # oldest task of each queue for mailscore_queue_oldest_age_seconds.
    if headers is not None:
        headers.setdefault(metrics.PUBLISHED_AT_HEADER, time.time())


@worker_init.connect(dispatch_uid="mailscore-metrics-exporter")
def _start_exporter(sender=None, **_) -> None:
    """In the worker's main process, before its pool starts: empty the multiprocess directory
    (what an earlier run of this worker left would be summed with this one), then serve the
    pool's metrics on MAILSCORE_METRICS_PORT."""
    metrics.clear_multiprocess_dir()
    metrics.start_series()
    port = settings.MAILSCORE_METRICS_PORT
    if not port:
        return
    address = settings.MAILSCORE_METRICS_ADDRESS
    try:
        bound = metrics.start_exporter(port, address)
    except OSError as exc:
        # The worker still works; its metrics are missing, which the worker-down alert shows.
        logger.error("Metrics exporter could not listen on %s:%s: %s", address, port, exc)
        return
    logger.info("Metrics exporter listening on %s:%s", address, bound)


@worker_process_shutdown.connect(dispatch_uid="mailscore-metrics-process-dead")
def _process_ended(**_) -> None:
    metrics.mark_process_dead(os.getpid())


def _message_ids(args, kwargs) -> int | list[int] | None:
    """The messages a task works on: a chain step's batch ids."""
    batch = args[0] if args else kwargs.get("batch")
    if isinstance(batch, dict) and isinstance(batch.get("ids"), list):
        return batch["ids"]
    return None


_bound_tokens: dict[str, list] = {}


@task_prerun.connect(dispatch_uid="mailscore-log-context")
def _bind_log_context(task_id=None, task=None, args=(), kwargs=None, **_) -> None:
    _bound_tokens[task_id] = logcontext.bind(
        task_id=task_id, message_id=_message_ids(args or (), kwargs or {})
    )


@task_postrun.connect(dispatch_uid="mailscore-log-context-end")
def _unbind_log_context(task_id=None, **_) -> None:
    tokens = _bound_tokens.pop(task_id, None)
    if tokens is not None:
        logcontext.unbind(tokens)
