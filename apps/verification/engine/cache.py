"""Result caches: per address, per domain MX and catch-all status, each with its own TTL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import Any

import redis.asyncio
import redis.exceptions

from apps.verification.engine.batching import CommandBatcher

logger = logging.getLogger(__name__)

# Keys per MGET, entries per write.
BATCH = 500
# Sets KEYS[i] to ARGV[2i - 1] for ARGV[2i] seconds.
_SET_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
end
return #KEYS
"""


def redis_client(url: str, max_connections: int = 64) -> redis.asyncio.Redis:
    """An asyncio Redis client whose pool makes callers wait for a free connection rather than
    fail: a bulk run asks for thousands of cache entries and politeness tokens at once."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=None
    )
    return redis.asyncio.Redis(connection_pool=pool)


class MemoryCache:
    """A bounded in-process cache, for a single process without Redis."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < time.monotonic():
            del self._entries[key]
            return None
        return value

    async def set(self, key: str, value: Any, ttl: int) -> None:
        self._entries[key] = (time.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        return [await self.get(key) for key in keys]

    async def set_many(self, entries: list[tuple[str, Any, int]]) -> None:
        for key, value, ttl in entries:
            await self.set(key, value, ttl)


class RedisCache:
    """Values as JSON under a key prefix, shared by every worker. A cache that cannot be reached
    is a miss, never a failed verification. Single reads and writes that callers make at the same
    moment (a run's domains asking for their MX) go to Redis together."""

    def __init__(self, client, prefix: str = "mailscore:verify:") -> None:
        self.client = client
        self.prefix = prefix
        self._batch = CommandBatcher(client)
        self._set_many = self._batch.script(_SET_MANY)

    async def get(self, key: str) -> Any | None:
        try:
            raw = await self._batch.call("GET", self.prefix + key)
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache read failed: %s", exc)
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl: int) -> None:
        try:
            await self._batch.call(
                "SET", self.prefix + key, json.dumps(value), "EX", max(1, int(ttl))
            )
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache write failed: %s", exc)

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """One MGET per BATCH keys, all in one round trip: a bulk run's thousands of lookups."""
        chunks = [[self.prefix + key for key in keys[start : start + BATCH]]
                  for start in range(0, len(keys), BATCH)]  # fmt: skip
        replies = await asyncio.gather(
            *(self._batch.call("MGET", *chunk) for chunk in chunks), return_exceptions=True
        )
        found: list[Any | None] = []
        for reply in replies:
            if isinstance(reply, redis.exceptions.RedisError):
                logger.warning("verification cache read failed: %s", reply)
                return [None] * len(keys)
            if isinstance(reply, BaseException):
                raise reply
            found.extend(None if raw is None else json.loads(raw) for raw in reply)
        return found

    async def set_many(self, entries: list[tuple[str, Any, int]]) -> None:
        """BATCH entries per command (a script that sets each with its own TTL), all in one
        round trip: a pipeline of single SETs costs the client several times the CPU."""
        calls = []
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            values: list[Any] = []
            for _, value, ttl in chunk:
                values += (json.dumps(value), max(1, int(ttl)))
            calls.append(self._set_many([self.prefix + key for key, _, _ in chunk], values))
        for reply in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(reply, redis.exceptions.RedisError):
                logger.warning("verification cache write failed: %s", reply)
                return
            if isinstance(reply, BaseException):
                raise reply


class NoCache:
    async def get(self, key: str) -> Any | None:
        return None

    async def set(self, key: str, value: Any, ttl: int) -> None:
        return None

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        return [None] * len(keys)

    async def set_many(self, entries: list[tuple[str, Any, int]]) -> None:
        return None
