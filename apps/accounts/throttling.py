"""Per-key request limits: one rate per scope, counted in Redis so that every web process and
every server shares the count.

Each (key, scope) pair has one counter. Its window is fixed and opens at the first request
counted in it (INCRBY, and on a new counter PEXPIRE, in one Lua script: one round trip). A
fixed window costs one small integer per active key, whatever the rate, where a sliding log
would keep an entry per request (100,000 a minute for a busy ingest key). Windows
opening at each key's own first request, rather than on the clock's minute, spread the resets
over time instead of letting every client back in at once. The price is that a client may
send up to twice its rate across the end of one window and the start of the next, which a
limit meant to stop a runaway client can bear.

A limit of thousands a window is not worth a round trip per request: a process admits up to a
thousandth of such a limit on its own count before it reports them all in one (LOCAL_SHARE).
The web processes together may then admit their number of thousandths past the limit, and a
response's X-RateLimit-Remaining counts the other processes' requests as of the last report.
Limits under 1,000 a window (every default but ingest's) are counted request by request.

Redis away must not stop the API (ingest above all): the request goes through unthrottled,
the outage is logged once, and Redis is not asked again for a few seconds so that requests do
not each wait for a timeout.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from apps.accounts.authentication import ApiClient
from apps.accounts.permissions import scope_for
from apps.accounts.scopes import Scope

logger = logging.getLogger(__name__)

RATE_SETTINGS = {
    Scope.READ: "MAILSCORE_THROTTLE_READ",
    Scope.WRITE: "MAILSCORE_THROTTLE_WRITE",
    Scope.VERIFY: "MAILSCORE_THROTTLE_VERIFY",
    # Configuration calls, few and light: counted on their own, at the read rate.
    Scope.WEBHOOKS: "MAILSCORE_THROTTLE_READ",
}
RATE_ACCEPTED = (
    "N/PERIOD, where PERIOD is s, min, h or day, optionally with a count (600/min, 50/10s), "
    "or off for no limit"
)
_RATE = re.compile(r"^(\d+)\s*/\s*(\d*)\s*([a-z]+)$")
_PERIOD_SECONDS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_OFF = {"", "off", "none"}

KEY_PREFIX = "mailscore:throttle:"
# A limit is not worth holding a request for: Redis answers in well under a millisecond, and
# one that takes longer than this is treated as away.
REDIS_TIMEOUT_SECONDS = 0.25
# After a failure, requests go unthrottled this long before Redis is asked again.
REDIS_RETRY_SECONDS = 5.0

# The share of a limit that a process may admit before it reports to Redis (see above): one
# round trip per 100 requests for ingest's default of 100,000 a minute.
LOCAL_SHARE = 0.001

# KEYS[1]: the counter; ARGV[1]: the window in milliseconds; ARGV[2]: the requests to add.
# Returns the count including them and the milliseconds until the window closes. A counter found
# without an expiry (which the script itself never leaves) gets one, so that no count can
# outlive its window.
COUNT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.limit} per {self.seconds} s"


def parse_rate(text: str, setting: str = "rate") -> Rate | None:
    """A Rate from "600/min" or "50/10s"; None for off. A value that is neither raises
    ImproperlyConfigured naming the setting and what is accepted."""
    value = (text or "").strip().lower()
    if value in _OFF:
        return None
    match = _RATE.match(value)
    if not match or match.group(3) not in _PERIOD_SECONDS or match.group(2) == "0":
        raise ImproperlyConfigured(f"{setting}={text!r} is not a rate. Give {RATE_ACCEPTED}.")
    limit = int(match.group(1))
    seconds = int(match.group(2) or 1) * _PERIOD_SECONDS[match.group(3)]
    return Rate(limit, seconds)


def rate_for(scope: str) -> Rate | None:
    setting = RATE_SETTINGS[scope]
    return parse_rate(getattr(settings, setting), setting)


def throttle_redis_url() -> str:
    return settings.MAILSCORE_THROTTLE_REDIS_URL or settings.REDIS_URL


@lru_cache(maxsize=8)
def _counter(url: str):
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    return client.register_script(COUNT_SCRIPT)


# Per Redis URL: when it was found away, and until when it is not asked again.
_away_since: dict[str, float] = {}
_skip_until: dict[str, float] = {}


@dataclass
class _Tally:
    """What a process knows of one counter's window."""

    count: int  # the window's count when Redis last answered
    closes_at: float  # when the window closes, on this process's monotonic clock
    pending: int = 0  # admitted here since, not reported yet


_tallies: dict[str, _Tally] = {}
_tallies_lock = threading.Lock()


def count_request(counter_key: str, window_seconds: int, batch: int = 1) -> tuple[int, int] | None:
    """Count one request on counter_key: (count so far in the window, milliseconds until the
    window closes), or None when Redis cannot be asked. With batch over 1, up to batch - 1
    requests are counted here before the next one reports them all to Redis."""
    now = time.monotonic()
    with _tallies_lock:
        tally = _tallies.get(counter_key)
        if tally is not None and now >= tally.closes_at:
            # The window has closed: its count, and the requests admitted in it and not yet
            # reported, say nothing of the next one, which this request opens in Redis.
            del _tallies[counter_key]
            tally = None
        if tally is not None and tally.pending + 1 < batch:
            tally.pending += 1
            return tally.count + tally.pending, max(1, int((tally.closes_at - now) * 1000))
        adding = 1 + (tally.pending if tally is not None else 0)
        if tally is not None:
            tally.pending = 0
    counted = _report(counter_key, window_seconds, adding)
    if counted is None:
        return None
    count, left_ms = counted
    with _tallies_lock:
        tally = _tallies.setdefault(counter_key, _Tally(count, 0.0))
        # Requests admitted here while Redis was asked stay pending.
        tally.count, tally.closes_at = count, now + left_ms / 1000
        return count + tally.pending, left_ms


def _report(counter_key: str, window_seconds: int, adding: int) -> tuple[int, int] | None:
    url = throttle_redis_url()
    if not url or time.monotonic() < _skip_until.get(url, 0.0):
        return None
    try:
        count, left_ms = _counter(url)(keys=[counter_key], args=[window_seconds * 1000, adding])
    except (redis.RedisError, OSError) as exc:
        _skip_until[url] = time.monotonic() + REDIS_RETRY_SECONDS
        if url not in _away_since:
            _away_since[url] = time.monotonic()
            logger.warning(
                "API rate limits are not enforced: Redis does not answer (%s: %s). Requests go "
                "through unthrottled until it does.", type(exc).__name__, exc,
            )  # fmt: skip
        return None
    if url in _away_since:
        away = time.monotonic() - _away_since.pop(url)
        logger.warning("API rate limits are enforced again: Redis answers (away %.0f s).", away)
    return int(count), int(left_ms)


def count_against_limit(client: ApiClient, scope: str) -> tuple[dict[str, str], Throttled | None]:
    """Count one request of the client's under the scope's rate: the X-RateLimit headers for its
    answer, and the Throttled to answer with when the window is used up (None while it is not,
    and when no limit is set or Redis cannot count)."""
    rate = rate_for(scope)
    if rate is None:
        return {}, None
    batch = max(1, int(rate.limit * LOCAL_SHARE))
    counted = count_request(f"{KEY_PREFIX}{scope}:{client.key_hash}", rate.seconds, batch)
    if counted is None:
        return {}, None
    count, left_ms = counted
    reset = max(1, math.ceil(left_ms / 1000))
    headers = {
        "X-RateLimit-Limit": str(rate.limit),
        "X-RateLimit-Remaining": str(max(0, rate.limit - count)),
        "X-RateLimit-Reset": str(reset),
    }
    if count <= rate.limit:
        return headers, None
    return headers, Throttled(
        wait=reset,
        detail=(
            f"The API key {client.name!r} may make {rate.limit} {scope} requests per "
            f"{_describe_window(rate.seconds)}; this window is used up."
        ),
    )


class KeyRateThrottle(BaseThrottle):
    """Limits each API key, per scope, to the rate set for that scope (MAILSCORE_THROTTLE_*).

    Every throttled response carries X-RateLimit-Limit, X-RateLimit-Remaining and
    X-RateLimit-Reset (seconds until the window closes); over the limit the answer is 429 with
    Retry-After."""

    def allow_request(self, request, view) -> bool:
        client = request.user
        scope = scope_for(view, client)
        if scope is None or not isinstance(client, ApiClient):
            return True
        headers, refusal = count_against_limit(client, scope)
        # The view adds these to whatever response it sends, a 429 included.
        view.headers.update(headers)
        if refusal is not None:
            raise refusal
        return True

    def wait(self) -> float | None:
        # allow_request raises Throttled with its own wait; DRF never gets here for this class.
        return None


def _describe_window(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return "second" if seconds == 1 else f"{seconds} seconds"
