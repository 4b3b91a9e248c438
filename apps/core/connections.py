"""The process's Redis client for our own keys (dispatch flag, stored encodings), and the look at
an idle database connection that the web's connection hand-over and group commit make."""

from __future__ import annotations

import select
from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def redis_connection() -> redis.Redis:
    # One client per process; its pool notices a fork and opens new connections in the child.
    # Timeouts, so that a Redis that stops answering is an error to handle, not a hung request.
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=30)


def close_if_server_left(wrapper) -> bool:
    """Close a Django connection whose idle socket holds the server's goodbye (a restart, a
    shutdown, a terminated backend) or has ended; True if it was closed. An idle connection has
    nothing to read, so looking costs no round trip, where CONN_HEALTH_CHECKS sends a query."""
    link = wrapper.connection
    if link is not None and (link.closed or select.select([link.fileno()], [], [], 0)[0]):
        wrapper.close()
        return True
    return False
