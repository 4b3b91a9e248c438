"""The process's Redis client for our own keys (dispatch flag, stored encodings)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_connection() -> redis.Redis:
    # One client per process; its pool notices a fork and opens new connections in the child.
    # Timeouts, so that a Redis that stops answering is an error to handle, not a hung request.
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=30)
