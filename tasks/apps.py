"""tasks/ as a Django app, so that every process that ingests mail (web, commands, workers)
connects the receiver that starts the chain."""

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.verification.engine.later import longest_countdown


def check_countdowns_within_visibility() -> None:
    """Redis delivers an unacknowledged task again after its visibility timeout: a greylisting
    retry waiting longer than that would run twice."""
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    longest = longest_countdown(settings.MAILSCORE_VERIFICATION["greylist_max_delay"])
    if longest >= visibility:
        raise ImproperlyConfigured(
            f"MAILSCORE_GREYLIST_MAX_DELAY with its jitter allows countdowns of {longest:.0f} s, "
            f"not below the broker's visibility timeout of {visibility} s; lower it."
        )


class TasksConfig(AppConfig):
    name = "tasks"
    label = "tasks"

    def ready(self) -> None:
        check_countdowns_within_visibility()
        from tasks import (
            dispatch,  # noqa: F401 - connects dispatch's receiver
            observability,  # noqa: F401 - stamps published tasks; metrics exporter, log context
            review,  # noqa: F401 - connects the retrain button's receiver
            verification,  # noqa: F401 - connects the validate receiver
            webhooks,  # noqa: F401 - connects the delivery receiver
        )
