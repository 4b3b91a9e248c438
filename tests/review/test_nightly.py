"""The nightly retraining is beat's only when a setting turns it on."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.schedules import crontab

from mailscore.celery import schedule_periodic_tasks


def beat_schedule() -> dict:
    probe = Celery("schedule-probe", set_as_current=False)
    probe.conf.beat_schedule = {}  # configures the app: periodic tasks are added at once
    schedule_periodic_tasks(probe)
    return probe.conf.beat_schedule


def test_off_by_default():
    schedule = beat_schedule()
    assert "sweep" in schedule and "retrain-nightly" not in schedule


@pytest.mark.parametrize("hour", [3, 22])
def test_on_at_the_hour_the_settings_give(settings, hour):
    settings.MAILSCORE_RETRAIN_NIGHTLY = True
    settings.MAILSCORE_RETRAIN_HOUR = hour
    entry = beat_schedule()["retrain-nightly"]
    assert entry["task"] == "mailscore.review.retrain"
    assert entry["schedule"] == crontab(hour=hour, minute=0)
