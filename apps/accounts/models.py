"""API keys. Only a key's SHA-256 is stored; the key itself is shown once, when it is made.

Keys are 256 random bits, so a fast hash is enough: there is nothing to guess by brute force,
and every request can be checked with one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models

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

    class Meta:
        db_table = "accounts_apikey"
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_start}…)"

    @classmethod
    def issue(cls, name: str) -> tuple[ApiKey, str]:
        """Create a key called name; return it and the key itself, which is not kept."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        return cls.objects.create(name=name, key_hash=hash_key(key), key_start=key[:12]), key

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
