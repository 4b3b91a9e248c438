"""The Celery app and beat's schedule. Task modules live in tasks/ and are listed here."""

import os

from celery import Celery

# Production, as for the web entry points: a worker started without the variable must never run
# with the local settings (DEBUG, the public development key). Production settings refuse to
# load without their secrets, so a forgotten variable stops the worker rather than weakening it.
# manage.py and `make run` name the local settings themselves.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.production")

app = Celery("mailscore")
app.config_from_object("django.conf:settings", namespace="CELERY")
# https://docs.celeryq.dev/en/stable/userguide/routing.html#routers
# Each task's queue is named on its decorator (tasks/base.py).
app.conf.task_routes = ("tasks.queues.route_to_declared_queue",)
app.conf.imports = (
    "tasks.dispatch",
    "tasks.pipeline",
    "tasks.verification",
    "tasks.maintenance",
    "tasks.ingest",
    "tasks.review",
    "tasks.webhooks",
)


@app.on_after_finalize.connect
def schedule_periodic_tasks(sender: Celery, **_) -> None:
    # https://docs.celeryq.dev/en/stable/userguide/periodic-tasks.html#entries
    from celery.schedules import crontab
    from django.conf import settings

    from tasks.dispatch import sweep
    from tasks.ingest import poll_imap
    from tasks.maintenance import apply_retention, create_partitions
    from tasks.verification import resume_jobs
    from tasks.webhooks import RETRY_SWEEP_SECONDS, send_due_webhooks

    # At fixed times of day rather than every N hours from beat's start: beat restarted more
    # often than the interval (a deploy a day) would otherwise postpone them for ever.
    sender.add_periodic_task(crontab(minute=5), create_partitions.s(), name="create-partitions")
    sender.add_periodic_task(crontab(hour=3, minute=30), apply_retention.s(),
                             name="apply-retention")  # fmt: skip
    sender.add_periodic_task(settings.MAILSCORE_SWEEP_SECONDS, sweep.s(), name="sweep")
    sender.add_periodic_task(settings.MAILSCORE_SWEEP_SECONDS, resume_jobs.s(), name="resume-jobs")
    sender.add_periodic_task(settings.MAILSCORE_IMAP_POLL_SECONDS, poll_imap.s(), name="poll-imap")
    sender.add_periodic_task(RETRY_SWEEP_SECONDS, send_due_webhooks.s(), name="webhook-retries")
    if settings.MAILSCORE_RETRAIN_NIGHTLY:
        from tasks.review import retrain_from_feedback

        sender.add_periodic_task(
            crontab(hour=settings.MAILSCORE_RETRAIN_HOUR, minute=0),
            retrain_from_feedback.s(),
            name="retrain-nightly",
        )
