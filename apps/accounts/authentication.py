"""API authentication: an X-API-Key header, or the session of a staff user signed in to the admin
(so that the docs page's "Try it out" works for someone signed in, without a key)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

import redis
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.models import ApiKey, hash_key
from apps.accounts.scopes import ALL_SCOPES, format_time
from apps.core.connections import redis_connection

logger = logging.getLogger(__name__)

HEADER = "X-API-Key"
# Keys recently seen valid are trusted for this long without a query, so that a burst of
# ingest requests costs no extra database round trip each. Expiry is checked on every request,
# cached or not, and a revocation (or any other change to a key) empties every process's cache
# at once: see REVOCATIONS_KEY.
CACHE_SECONDS = 30
# A counter in Redis, raised after every committed change to a key (revoke, edit, delete). Each
# request reads it (one GET, a fraction of a millisecond, against the database query
# the cache saves), and a cached key is trusted only while the counter is what it was when the
# key was cached, so a revoked key is refused by every web process from the very next request.
REVOCATIONS_KEY = "mailscore:api-keys:generation"
# last_used_at is written at most this often per key.
TOUCH_SECONDS = 60

# key hash -> (when it was cached, the revocation counter then, the client)
_seen: dict[str, tuple[float, bytes, ApiClient]] = {}


@dataclass(frozen=True)
class ApiClient:
    """The caller behind a key: what request.user is for API requests."""

    key_id: int
    name: str
    scopes: frozenset[str] = frozenset()
    expires_at: dt.datetime | None = None
    # The stored hash: a stable, secret-free name for the key (throttle counters use it).
    key_hash: str = ""
    is_authenticated: bool = True
    is_anonymous: bool = False
    # Set for a signed-in staff user (StaffSessionAuthentication), who holds every scope.
    user_id: int | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())


def _generation() -> bytes | None:
    """The revocation counter, or None when Redis cannot say (then nothing is trusted from the
    cache: a request costs a query rather than risking a revoked key)."""
    try:
        return redis_connection().get(REVOCATIONS_KEY) or b"0"
    except redis.RedisError:
        return None


def _raise_generation() -> None:
    try:
        redis_connection().incr(REVOCATIONS_KEY)
    except redis.RedisError:
        # Other processes then trust their cached keys for at most CACHE_SECONDS more.
        logger.exception("Could not tell the other web processes that an API key changed.")


def forget(key_hash: str) -> None:
    """Stop trusting a key, in this process and (once the change is committed) in every other
    one: call it after revoking or changing a key."""
    _seen.pop(key_hash, None)
    # After the commit: a process that read the key before then would cache it as still valid.
    transaction.on_commit(_raise_generation)


@receiver(post_save, sender=ApiKey, dispatch_uid="api-key-changed")
@receiver(post_delete, sender=ApiKey, dispatch_uid="api-key-deleted")
def _key_changed(sender, instance: ApiKey, **_) -> None:
    forget(instance.key_hash)


def _lookup(digest: str) -> ApiClient | None:
    now = time.monotonic()
    generation = _generation()
    cached = _seen.get(digest)
    if (
        cached
        and generation is not None
        and cached[1] == generation
        and now - cached[0] < CACHE_SECONDS
    ):
        return cached[2]
    key = ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    if key is None:
        _seen.pop(digest, None)
        return None
    client = ApiClient(key.id, key.name, frozenset(key.scopes), key.expires_at, key.key_hash)
    if client.is_expired():
        # Not cached: there is nothing to save on a key that is refused every time.
        _seen.pop(digest, None)
        return client
    if (
        key.last_used_at is None
        or (timezone.now() - key.last_used_at).total_seconds() > TOUCH_SECONDS
    ):
        ApiKey.objects.filter(id=key.id).update(last_used_at=timezone.now())
    if generation is not None:
        _seen[digest] = (now, generation, client)
    return client


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = request.headers.get(HEADER, "").strip()
        if not key:
            if _staff_user(request) is not None:
                return None  # StaffSessionAuthentication takes it
            raise AuthenticationFailed(
                f"Send an API key in the {HEADER} header; create one with "
                "`python manage.py create_api_key NAME`."
            )
        client = _lookup(hash_key(key))
        if client is None:
            raise AuthenticationFailed(f"The {HEADER} given is not a valid, unrevoked API key.")
        if client.is_expired():
            raise AuthenticationFailed(
                f"The API key {client.name!r} expired at {format_time(client.expires_at)}; "
                "ask for a new key (`python manage.py create_api_key NAME`)."
            )
        return client, client

    def authenticate_header(self, request) -> str:
        # A value here makes DRF answer 401 rather than 403.
        return HEADER


def _staff_user(request):
    """The active staff user signed in to the admin on this request's session, or None."""
    user = getattr(request._request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return user
    return None


class StaffSessionAuthentication(SessionAuthentication):
    """The admin's session, for staff users only, with Django's CSRF check on unsafe methods.
    request.user is an ApiClient holding every scope, counted by the throttles per user."""

    def authenticate(self, request):
        user = _staff_user(request)
        if user is None:
            return None
        self.enforce_csrf(request)
        client = ApiClient(0, f"{user.get_username()} (admin session)", frozenset(ALL_SCOPES),
                           key_hash=f"session-user-{user.pk}", user_id=user.pk)  # fmt: skip
        return client, None
