"""mailscore: self-hosted email triage and sender verification."""

from mailscore.celery import app as celery_app

__all__ = ["celery_app"]
