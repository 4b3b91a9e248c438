"""The Celery queues, named once: task routing, worker pools and the Helm values use these."""

from enum import StrEnum


class CeleryQueue(StrEnum):
    TRIAGE = "triage"  # classify, prioritize
    GENERATE = "generate"  # summarize, draft_reply
    VERIFY = "verify"  # network-bound sender and address verification
    MAINTENANCE = "maintenance"  # beat jobs: partitions, retention
    WEBHOOKS = "webhooks"  # webhook deliveries: network-bound, to receivers outside


# Each task's queue, as its decorator (tasks/base.py) declares it.
TASK_QUEUES: dict[str, CeleryQueue] = {}


def route_to_declared_queue(name: str, args, kwargs, options, task=None, **_) -> dict | None:
    """Celery's task_routes: a task goes to the queue its decorator names."""
    queue = TASK_QUEUES.get(name)
    return {"queue": str(queue)} if queue else None
