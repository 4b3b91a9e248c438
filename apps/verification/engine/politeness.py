"""Per-mail-server politeness: a concurrency limit and a token-bucket rate limit.

In one process both live in memory. With several workers they live in Redis, so the limits hold
for the whole fleet rather than for each process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def wait_time(self) -> float:
        """Take a token and return 0, or return how long until one is available."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class LocalLimiter:
    """Limits for one process."""

    def __init__(self, concurrency: int, rate: float, burst: int) -> None:
        self.concurrency = max(1, concurrency)
        self.rate, self.burst = rate, burst
        self._slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.concurrency)
        )
        self._buckets: dict[str, TokenBucket] = {}

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with self._slots[host]:
            yield

    async def take_token(self, host: str) -> None:
        if self.rate <= 0:
            return
        bucket = self._buckets.get(host)
        if bucket is None:
            bucket = self._buckets[host] = TokenBucket(self.rate, self.burst)
        while (wait := bucket.wait_time()) > 0:
            await asyncio.sleep(wait)


# KEYS[1] holds the leases of one host as a sorted set scored by expiry time.
_ACQUIRE_SLOT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
  return 1
end
return 0
"""

# KEYS[1] is a hash {tokens, updated}. Every call takes a token, going into debt when there is
# none: it returns 0 when the token was there, else the milliseconds until the token it reserved
# is due. One round trip per token, however busy the server: callers wait out their reservation
# instead of asking again. The debt is bounded (ARGV[3] tokens), so callers that were cancelled
# while waiting cannot hold the server back for long.
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local max_debt = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or capacity
local updated = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - updated) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
elseif tokens > -max_debt then
  tokens = tokens - 1
  wait = math.ceil((-tokens) / rate * 1000)
else
  return -math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return wait
"""  # noqa: S105 (a Lua script that takes a rate-limit token, no secret)
# How many tokens ahead one server's callers may reserve: at 5 a second, 30 seconds' worth.
MAX_RESERVED_SECONDS = 30.0


class RedisLimiter:
    """Limits shared by every process that uses the same Redis and prefix."""

    def __init__(
        self,
        client,
        *,
        concurrency: int,
        rate: float,
        burst: int,
        prefix: str = "mailscore:verify:",
        lease_seconds: float = 30.0,
    ) -> None:
        self.client = client
        self.concurrency = max(1, concurrency)
        self.rate, self.burst = rate, burst
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self._acquire = client.register_script(_ACQUIRE_SLOT)
        self._take = client.register_script(_TAKE_TOKEN)

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        key = f"{self.prefix}slots:{host}"
        lease = uuid.uuid4().hex
        delay = 0.01
        while not await self._acquire(
            keys=[key], args=[time.time(), self.concurrency, self.lease_seconds, lease]
        ):
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter, not a secret)
            delay = min(delay * 2, 0.25)
        keeper = asyncio.ensure_future(self._keep(key, lease))
        try:
            yield
        finally:
            keeper.cancel()
            await self.client.zrem(key, lease)

    async def _keep(self, key: str, lease: str) -> None:
        """Extend a held slot while its connection lives: the lease is short, so that the slots
        of a process that died free themselves within it."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.client.zadd(key, {lease: time.time() + self.lease_seconds}, xx=True)
                await self.client.pexpire(key, int(self.lease_seconds * 1000))
            except Exception:
                return

    async def take_token(self, host: str) -> None:
        if self.rate <= 0:
            return
        key = f"{self.prefix}bucket:{host}"
        max_debt = max(1.0, self.rate * MAX_RESERVED_SECONDS)
        while True:
            wait_ms = int(await self._take(keys=[key], args=[self.rate, self.burst, max_debt]))
            if wait_ms >= 0:
                # 0: taken now; more: reserved, due after that long.
                if wait_ms:
                    await asyncio.sleep(wait_ms / 1000)
                return
            await asyncio.sleep(-wait_ms / 1000)  # reserved as far ahead as allowed: ask again
