"""API authentication: an X-API-Key header, or the session of a staff user signed in to the admin
(so that the docs page's "Try it out" works for someone signed in, without a key)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.models import ApiKey, hash_key
from apps.accounts.scopes import ALL_SCOPES, format_time

HEADER = "X-API-Key"
# Keys recently seen valid are trusted for this long without a query, so that a burst of
# ingest requests costs no extra database round trip each; revoking takes effect within it.
# Expiry is checked on every request, cached or not.
CACHE_SECONDS = 30
# last_used_at is written at most this often per key.
TOUCH_SECONDS = 60

_seen: dict[str, tuple[float, ApiClient]] = {}


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


def forget(key_hash: str) -> None:
    """Stop trusting a key from this process's cache at once (after revoking it, say); other
    processes stop within CACHE_SECONDS."""
    _seen.pop(key_hash, None)


def _lookup(digest: str) -> ApiClient | None:
    now = time.monotonic()
    cached = _seen.get(digest)
    if cached and now - cached[0] < CACHE_SECONDS:
        return cached[1]
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
    _seen[digest] = (now, client)
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
