"""Celery tasks: thin wrappers that call an app's engine and hand on. Listed in mailscore/celery.py."""
