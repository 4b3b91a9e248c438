"""The Celery queues, named once: task routing, worker pools and the Helm values use these."""

from enum import StrEnum


class CeleryQueue(StrEnum):
    TRIAGE = "triage"  # classify, prioritize
    GENERATE = "generate"  # summarize, draft_reply
    VERIFY = "verify"  # network-bound sender and address verification
    MAINTENANCE = "maintenance"  # beat jobs: partitions, retention
