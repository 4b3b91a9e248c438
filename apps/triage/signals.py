"""Signals the triage app sends for the task layer to act on."""

from django.dispatch import Signal

# Someone asked for a retraining now (the admin's button); tasks/review.py queues it.
retrain_requested = Signal()
