"""Per-mail-server politeness: a concurrency limit and a token-bucket rate limit.

In one process both live in memory. With several workers they live in Redis, so the limits hold
for the whole fleet rather than for each process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator

from apps.verification.engine.batching import CommandBatcher


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


# Slots are leases in a sorted set per host, scored by when they expire (milliseconds of Redis's
# clock, the one clock every worker shares). A lease not kept alive expires: a process that died
# frees its slots within lease_seconds.
#
# _ACQUIRE_SLOT: KEYS[1] the leases, KEYS[2] a marker that someone waits for this host. Returns 0
# when the slot is granted; else marks the host as waited for and returns the milliseconds until
# the first lease expires, the longest a waiter needs to wait if no release is heard.
_ACQUIRE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + lease_ms, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], lease_ms)
  return 0
end
redis.call('SET', KEYS[2], '1', 'PX', lease_ms)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
"""
# Gives a lease back and, when someone waits for this host, says so on the channel (ARGV[2]).
_RELEASE_SLOT = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 0
"""
# Extends a held lease. XX: a lease that expired and was taken away is not brought back, which
# could put the host over its limit.
_KEEP_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease_ms)
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


class _Releases:
    """Slots freed anywhere in the fleet, heard on one Redis channel.

    The subscription opens at the first wait, so a process whose servers are never contended
    holds none. Each release heard wakes one local waiter for that host, which asks again: one
    round trip per freed slot, not one per waiter and not one per poll."""

    def __init__(self, client, channel: str) -> None:
        self.client = client
        self.channel = channel
        self._waiters: dict[str, deque[asyncio.Future]] = defaultdict(deque)
        # Releases heard per host: a waiter whose ask crossed a release asks again at once.
        self._heard: dict[str, int] = defaultdict(int)
        self._reader: asyncio.Task | None = None
        self._subscribed: asyncio.Future | None = None

    def heard(self, host: str) -> int:
        return self._heard[host]

    @property
    def listening(self) -> bool:
        return (
            self._reader is not None
            and not self._reader.done()
            and self._reader.get_loop() is asyncio.get_running_loop()
            and self._subscribed.done()
            and not self._subscribed.cancelled()
            and self._subscribed.exception() is None
        )

    async def listen(self) -> None:
        """Subscribe, and return once Redis has confirmed it: releases from then on are heard."""
        loop = asyncio.get_running_loop()
        if self._reader is None or self._reader.done() or self._reader.get_loop() is not loop:
            self._subscribed = loop.create_future()
            self._reader = loop.create_task(self._read(self._subscribed))
        await asyncio.shield(self._subscribed)

    async def _read(self, subscribed: asyncio.Future) -> None:
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            async for message in pubsub.listen():
                if message["type"] == "subscribe":
                    # Subscribed, or subscribed again after a reconnection that may have missed
                    # releases: every waiter asks again.
                    if not subscribed.done():
                        subscribed.set_result(None)
                    self._wake_all()
                elif message["type"] == "message":
                    self._wake_one(message["data"].decode())
        except Exception as exc:
            if not subscribed.done():
                subscribed.set_exception(exc)
        finally:
            # Unheard from now on: the waiters ask again, and subscribe again if they must wait.
            self._wake_all()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _wake_one(self, host: str) -> None:
        self._heard[host] += 1
        waiters = self._waiters.get(host)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        for host, waiters in self._waiters.items():
            self._heard[host] += 1
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

    async def wait(self, host: str, heard: int, timeout: float) -> None:
        """Until a release for host is heard after `heard` (the count before the caller asked),
        or timeout seconds."""
        if self._heard[host] != heard:
            return
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters[host]
        waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._wake_one(host)  # woken, but will not ask: the release is the next one's
            raise
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)


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
        self._batch = CommandBatcher(client)
        self._acquire = self._batch.script(_ACQUIRE_SLOT)
        self._release = self._batch.script(_RELEASE_SLOT)
        self._extend = self._batch.script(_KEEP_SLOT)
        self._take = self._batch.script(_TAKE_TOKEN)
        self._channel = f"{prefix}slots-freed"
        self._releases = _Releases(client, self._channel)

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        keys = [f"{self.prefix}slots:{host}", f"{self.prefix}slots-wanted:{host}"]
        lease = uuid.uuid4().hex
        await self._wait_for_slot(host, keys, lease)
        keeper = asyncio.ensure_future(self._keep(keys[0], lease))
        try:
            yield
        finally:
            keeper.cancel()
            await self._release(keys, [lease, self._channel, host])

    async def _wait_for_slot(self, host: str, keys: list[str], lease: str) -> None:
        lease_ms = int(self.lease_seconds * 1000)
        while True:
            heard = self._releases.heard(host)
            asked = self._acquire(keys, [self.concurrency, lease, lease_ms])
            try:
                wait_ms = int(await asyncio.shield(asked))
            except asyncio.CancelledError:
                # The ask goes out all the same: a slot granted to a caller that left is given
                # back rather than held until its lease runs out.
                asked.add_done_callback(lambda done: self._give_back(done, keys, lease, host))
                raise
            if not wait_ms:
                return
            if not self._releases.listening:
                await self._releases.listen()
                continue  # a release before the subscription went unheard: ask again
            await self._releases.wait(host, heard, wait_ms / 1000)

    def _give_back(self, asked: asyncio.Future, keys: list[str], lease: str, host: str) -> None:
        if not asked.cancelled() and asked.exception() is None and int(asked.result()) == 0:
            self._release(keys, [lease, self._channel, host])

    async def _keep(self, key: str, lease: str) -> None:
        """Extend a held slot while its connection lives: the lease is short, so that the slots
        of a process that died free themselves within it."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._extend([key], [lease, int(self.lease_seconds * 1000)])
            except Exception:
                return

    async def take_token(self, host: str) -> None:
        if self.rate <= 0:
            return
        key = f"{self.prefix}bucket:{host}"
        max_debt = max(1.0, self.rate * MAX_RESERVED_SECONDS)
        while True:
            wait_ms = int(await self._take([key], [self.rate, self.burst, max_debt]))
            if wait_ms >= 0:
                # 0: taken now; more: reserved, due after that long.
                if wait_ms:
                    await asyncio.sleep(wait_ms / 1000)
                return
            await asyncio.sleep(-wait_ms / 1000)  # reserved as far ahead as allowed: ask again
