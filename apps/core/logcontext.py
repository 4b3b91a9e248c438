"""What every log line says about the work in hand (the task, the messages), and keeping mail
out of the logs.

Celery's task signals (tasks/observability.py) set the context for the length of a task; a
logging filter on every handler copies it onto each record, so the JSON formatter writes
task_id and message_id on every line a pipeline task logs, from whatever logger. Loaded while
logging is configured, before the app registry is: no model imports here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from django.conf import settings

_task_id: ContextVar[str | None] = ContextVar("mailscore_task_id", default=None)
# One id, or a batch's ids.
_message_id: ContextVar[int | list[int] | None] = ContextVar("mailscore_message_id", default=None)


def bind(*, task_id: str | None = None, message_id: int | list[int] | None = None) -> list:
    """Set the context; returns the tokens that unbind() takes to restore the one before."""
    return [_task_id.set(task_id), _message_id.set(message_id)]


def unbind(tokens: list) -> None:
    for token in reversed(tokens):
        token.var.reset(token)


@contextlib.contextmanager
def bound(*, task_id: str | None = None, message_id: int | list[int] | None = None) -> Iterator:
    tokens = bind(task_id=task_id or _task_id.get(), message_id=message_id)
    try:
        yield
    finally:
        unbind(tokens)


class ContextFilter(logging.Filter):
    """Puts task_id and message_id (None outside a task) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            record.task_id = _task_id.get()
        if not hasattr(record, "message_id"):
            record.message_id = _message_id.get()
        return True


_HIDDEN = {"args", "kwargs", "return_value"}


class PrivacyFilter(logging.Filter):
    """Keeps what tasks were given and returned out of the logs unless DEBUG is on: Celery logs
    a task's arguments beside a failure and its return value on success, and those may hold
    addresses (a verification) or a message's content."""

    def filter(self, record: logging.LogRecord) -> bool:
        if settings.DEBUG:
            return True
        data = getattr(record, "data", None)
        if isinstance(data, dict) and _HIDDEN.intersection(data):
            record.data = {k: v for k, v in data.items() if k not in _HIDDEN}
        args = record.args
        if record.name == "celery.app.trace" and isinstance(args, dict) and "return_value" in args:
            record.args = {**args, "return_value": "(not logged)"}
        return True


def mask_address(address: str | None) -> str:
    """An address as logs may show it: its domain, and only the first letter of its local part
    ("a***@example.com"); whole where DEBUG is on."""
    if not address:
        return ""
    if settings.DEBUG:
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
