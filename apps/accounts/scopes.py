"""What an API key may do (its scopes), and when it stops working (its expiry)."""

from __future__ import annotations

import datetime as dt
import re

from django.db import models
from django.utils import timezone


class Scope(models.TextChoices):
    READ = "read", "read: messages and jobs"
    WRITE = "write", "write: ingest, feedback, re-run"
    VERIFY = "verify", "verify: address validation and jobs"
    WEBHOOKS = "webhooks", "webhooks: configure webhook endpoints"


# Every scope a key may hold.
ALL_SCOPES: tuple[str, ...] = tuple(Scope.values)
ACCEPTED_SCOPES = ", ".join(ALL_SCOPES)
# What a key gets when none are named (and what keys made before there were scopes hold).
# Scopes added later are given only to keys that ask for them.
DEFAULT_SCOPES: tuple[str, ...] = (Scope.READ, Scope.WRITE, Scope.VERIFY)

EXPIRY_ACCEPTED = (
    "a duration such as 12h, 90d or 8w (hours, days, weeks from now), or a date or time such as "
    "2027-06-30 or 2027-06-30T12:00:00Z"
)
_DURATION = re.compile(r"^(\d+)\s*([hdw])$", re.IGNORECASE)
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


class KeyPolicyError(ValueError):
    """Scopes or an expiry that cannot be given to a key; the message says what is accepted."""


def all_scopes() -> list[str]:
    """The scopes of a key made without naming any (and of keys made before there were scopes)."""
    return list(DEFAULT_SCOPES)


def parse_scopes(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Scopes from "read,verify" or a list: known, at least one, in canonical order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen = {name.strip().lower() for name in names if name.strip()}
    unknown = sorted(chosen - set(ALL_SCOPES))
    if unknown:
        raise KeyPolicyError(
            f"Unknown scope {', '.join(map(repr, unknown))}. Scopes are {ACCEPTED_SCOPES}."
        )
    if not chosen:
        raise KeyPolicyError(f"Give a key at least one scope: {ACCEPTED_SCOPES}.")
    return [scope for scope in ALL_SCOPES if scope in chosen]


def parse_expiry(value: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When a key given value stops working: None for an empty value (never)."""
    text = value.strip()
    if not text:
        return None
    now = now or timezone.now()
    duration = _DURATION.match(text)
    if duration:
        count, unit = int(duration.group(1)), duration.group(2).lower()
        if count == 0:
            raise KeyPolicyError(f"An expiry of {text!r} is already over. Give {EXPIRY_ACCEPTED}.")
        try:
            return now + dt.timedelta(hours=count * _UNIT_HOURS[unit])
        except OverflowError as exc:
            raise KeyPolicyError(f"{text!r} is too far ahead. Give {EXPIRY_ACCEPTED}.") from exc
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise KeyPolicyError(f"Cannot read {text!r} as an expiry. Give {EXPIRY_ACCEPTED}.") from exc
    if timezone.is_naive(moment):
        # A bare date means the start of that day, in UTC like every time mailscore shows.
        moment = moment.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise KeyPolicyError(
            f"{text!r} is in the past; a key must expire later than now. Give {EXPIRY_ACCEPTED}."
        )
    return moment


def describe_expiry(expires_at: dt.datetime | None) -> str:
    return "never" if expires_at is None else format_time(expires_at)


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
