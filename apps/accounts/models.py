"""API keys. Only a key's SHA-256 is stored; the key itself is shown once, when it is made.

Keys are 256 random bits, so a fast hash is enough: there is nothing to guess by brute force,
and every request can be checked with one indexed lookup. A key holds scopes (what it may do,
apps/accounts/scopes.py) and may expire."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.scopes import ALL_SCOPES, DEFAULT_SCOPES, Scope, all_scopes, parse_scopes

KEY_PREFIX = "msk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    name = models.CharField(max_length=100, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters, so that an operator can tell which key a client holds.
    key_start = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = ArrayField(models.CharField(max_length=16, choices=Scope.choices), default=all_scopes)
    # Empty: the key works until it is revoked.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "accounts_apikey"
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(scopes__contained_by=list(ALL_SCOPES)), name="apikey_known_scopes"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_start}…)"

    @classmethod
    def issue(
        cls,
        name: str,
        scopes: Iterable[str] | str = DEFAULT_SCOPES,
        expires_at: dt.datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key called name that may do scopes (DEFAULT_SCOPES by default) until
        expires_at (never by default); return it and the key itself, which is not kept. Unknown or
        no scopes raise KeyPolicyError."""
        chosen = parse_scopes(scopes if isinstance(scopes, str) else list(scopes))
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(name=name, key_hash=hash_key(key), key_start=key[:12],
                                 scopes=chosen, expires_at=expires_at)  # fmt: skip
        return row, key

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
