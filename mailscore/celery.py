"""The Celery app. Task modules live in tasks/ (not a Django app), so they are listed here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.local")

app = Celery("mailscore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = (
    "tasks.pipeline",
    "tasks.verification",
    "tasks.maintenance",
    "tasks.ingest",
)
