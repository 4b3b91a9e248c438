"""API authentication: an X-API-Key header, or the session of a staff user signed in to the admin
(so that the docs page's "Try it out" works for someone signed in, without a key)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import partial

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed

from apps.accounts.models import ApiKey, hash_key
from apps.accounts.scopes import ALL_SCOPES, format_time
from apps.core.connections import redis_connection

logger = logging.getLogger(__name__)

HEADER = "X-API-Key"
# Keys recently seen valid are trusted for this long without a query, so that a burst of
# ingest requests costs no extra database round trip each. Expiry is checked on every request,
# cached or not, and a revocation (or any other change to a key) takes the key out of every
# process's cache at once: see CHANGES_CHANNEL.
CACHE_SECONDS = 30
# Each committed change to a key (revoke, edit, delete) is published here, and every web
# process listens. A request first takes in what has arrived, which costs no round trip (the
# messages are already in the socket), and the changed keys leave the cache: a revoked key is
# refused by every web process from its next request. A process that cannot listen (Redis away,
# the subscription lost) trusts no cached key and asks the database until it listens again,
# having emptied its cache, as changes may have been missed meanwhile.
CHANGES_CHANNEL = "mailscore:api-keys:changed"
# After Redis failed to take the subscription, requests ask the database this long before it
# is tried again, so that an outage does not cost each request a connection attempt.
RESUBSCRIBE_SECONDS = 1.0
# A connection can go silent without a reset (a Redis pod that moved, a route dropped): a
# subscription that has heard nothing for this long sends a PING, and one that has not had the
# answer within as long again is taken for lost.
LIVENESS_SECONDS = 5.0
# last_used_at is written at most this often per key.
TOUCH_SECONDS = 60

# key hash -> (when it was cached, the client)
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


class _KeyChanges:
    """This process's subscription to CHANGES_CHANNEL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pubsub: redis.client.PubSub | None = None
        self._url = ""
        self._retry_at = 0.0
        # Raised by every change taken in (and every lost subscription): a look-up that saw it
        # move does not cache what it read, which may predate the change.
        self.heard = 0
        self._last_heard = 0.0  # when the subscription last received anything
        self._pinged_at = 0.0  # when it asked Redis for a PING not answered yet

    def reset(self) -> None:
        # In a forked child: the parent's connection is not this process's to read.
        self.__init__()

    def cache_trusted(self) -> bool:
        """Take in the changes announced since the last look (their keys leave the cache), and
        say whether the keys left in the cache may be trusted. While another request of this
        process is (re)subscribing, the answer is no rather than a wait."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            return self._take_in()
        finally:
            self._lock.release()

    def _take_in(self) -> bool:
        if self._url != settings.REDIS_URL:
            self._close()
            self._url, self._retry_at = settings.REDIS_URL, 0.0
        if self._pubsub is None and time.monotonic() < self._retry_at:
            return False
        try:
            if self._pubsub is None:
                self._subscribe()
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                self._take(message)
            self._check_alive()
        except (redis.RedisError, OSError) as exc:
            if not self._retry_at:
                logger.warning("API keys are looked up in the database on every request "
                               "until Redis answers (%s: %s).", type(exc).__name__, exc)  # fmt: skip
            self._close()
            self._retry_at = time.monotonic() + RESUBSCRIBE_SECONDS
            return False
        if self._retry_at:
            logger.warning("API keys are cached again: Redis answers.")
            self._retry_at = 0.0
        return True

    def _subscribe(self) -> None:
        client = redis.Redis.from_url(self._url, socket_connect_timeout=1, socket_timeout=1,
                                      retry=Retry(NoBackoff(), 0))  # fmt: skip
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(CHANGES_CHANNEL)
        # Only once Redis confirms is nothing missed; until then, changes were not heard.
        while (message := self._pubsub.get_message(timeout=1)) is not None:
            self._take(message)
            if message["type"] == "subscribe":
                return
        raise redis.TimeoutError("no confirmation of the subscription")

    def _check_alive(self) -> None:
        now = time.monotonic()
        if now - self._last_heard < LIVENESS_SECONDS:
            return
        if not self._pinged_at:
            self._pubsub.ping()
            self._pinged_at = now
        elif now - self._pinged_at > LIVENESS_SECONDS:
            raise redis.TimeoutError(f"no answer to a PING in {LIVENESS_SECONDS:g} s")

    def _take(self, message: dict) -> None:
        self._last_heard, self._pinged_at = time.monotonic(), 0.0
        if message["type"] == "pong":
            return
        self.heard += 1
        if message["type"] == "message":
            _seen.pop(message["data"].decode(), None)
        else:
            # A (re)subscription: whatever was announced before it went unheard.
            _seen.clear()

    def _close(self) -> None:
        if self._pubsub is not None:
            with suppress(redis.RedisError, OSError):
                self._pubsub.close()
        self._pubsub = None
        self.heard += 1
        _seen.clear()


_key_changes = _KeyChanges()
os.register_at_fork(after_in_child=_key_changes.reset)


def _announce_change(key_hash: str) -> None:
    try:
        redis_connection().publish(CHANGES_CHANNEL, key_hash)
    except redis.RedisError:
        # Other processes then trust their cached copy of the key for at most CACHE_SECONDS more.
        logger.exception("Could not tell the other web processes that an API key changed.")


def forget(key_hash: str) -> None:
    """Stop trusting a key, in this process and (once the change is committed) in every other
    one: call it after revoking or changing a key."""
    _seen.pop(key_hash, None)
    # After the commit: a process that read the key before then would cache it as still valid.
    transaction.on_commit(partial(_announce_change, key_hash))


@receiver(post_save, sender=ApiKey, dispatch_uid="api-key-changed")
@receiver(post_delete, sender=ApiKey, dispatch_uid="api-key-deleted")
def _key_changed(sender, instance: ApiKey, **_) -> None:
    forget(instance.key_hash)


def _lookup(digest: str) -> ApiClient | None:
    now = time.monotonic()
    trusted = _key_changes.cache_trusted()
    heard = _key_changes.heard
    cached = _seen.get(digest)
    if cached and trusted and now - cached[0] < CACHE_SECONDS:
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
    # Not when a change was taken in meanwhile (by another request of this process, while this
    # one waited for the database): it may be this key's, made after the row was read.
    if trusted and _key_changes.heard == heard:
        _seen[digest] = (now, client)
    return client


def client_for_key(key: str) -> ApiClient:
    """The caller behind an API key as sent; AuthenticationFailed, saying why, for a key that is
    unknown, revoked or expired."""
    client = _lookup(hash_key(key))
    if client is None:
        raise AuthenticationFailed(f"The {HEADER} given is not a valid, unrevoked API key.")
    if client.is_expired():
        raise AuthenticationFailed(
            f"The API key {client.name!r} expired at {format_time(client.expires_at)}; "
            "ask for a new key (`python manage.py create_api_key NAME`)."
        )
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
        client = client_for_key(key)
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
