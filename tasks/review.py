"""Retraining from reviewers' feedback on the triage pool, where the models are loaded: when the
admin asks for it, and nightly where MAILSCORE_RETRAIN_NIGHTLY is on."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from apps.triage.signals import retrain_requested
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue

logger = logging.getLogger(__name__)


@mailscore_task("review.retrain", queue=CeleryQueue.TRIAGE, time_limit=3600,
                soft_time_limit=3300, max_retries=2)  # fmt: skip
def retrain_from_feedback(*, requested_by: str = "nightly", only_if_new: bool = True) -> dict:
    """Learn from the feedback so far; the new version is activated only if it is no worse."""
    # Here, not at the top: the web imports this module for queue_retrain, and retraining
    # brings scikit-learn and the models' code, which a web worker would load for nothing.
    from apps.review.retraining import RetrainError, retrain

    try:
        result = retrain(created_by=requested_by, progress=logger.info, only_if_new=only_if_new)
    except RetrainError as exc:
        logger.warning("Retraining did not run: %s", exc)
        return {"ran": False, "reason": str(exc)}
    if result is None:
        return {"ran": False, "reason": "nothing new to learn from"}
    return {
        "ran": True,
        "version": result.version.name,
        "activated": result.activated,
        "before": {k: result.before[k] for k in ("category_accuracy", "priority_exact")},
        "after": {k: result.after[k] for k in ("category_accuracy", "priority_exact")},
    }


@receiver(retrain_requested, dispatch_uid="tasks-review-retrain-requested")
def queue_retrain(sender, requested_by: str = "admin", **kwargs) -> None:
    retrain_from_feedback.delay(requested_by=requested_by, only_if_new=False)
