"""Result caches: per address, per domain MX and catch-all status, each with its own TTL."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import Any

import redis.asyncio
import redis.exceptions

logger = logging.getLogger(__name__)

# Keys per MGET, entries per pipelined write.
BATCH = 500


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
    is a miss, never a failed verification."""

    def __init__(self, client, prefix: str = "mailscore:verify:") -> None:
        self.client = client
        self.prefix = prefix

    async def get(self, key: str) -> Any | None:
        try:
            raw = await self.client.get(self.prefix + key)
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache read failed: %s", exc)
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl: int) -> None:
        try:
            await self.client.set(self.prefix + key, json.dumps(value), ex=max(1, int(ttl)))
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache write failed: %s", exc)

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """One MGET per BATCH keys: a bulk run's thousands of lookups in a few round trips."""
        found: list[Any | None] = []
        try:
            for start in range(0, len(keys), BATCH):
                chunk = [self.prefix + key for key in keys[start : start + BATCH]]
                found.extend(None if raw is None else json.loads(raw)
                             for raw in await self.client.mget(chunk))  # fmt: skip
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache read failed: %s", exc)
            return [None] * len(keys)
        return found

    async def set_many(self, entries: list[tuple[str, Any, int]]) -> None:
        """The entries through one pipeline (no transaction: each SET stands alone)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value, ttl in entries:
                    pipe.set(self.prefix + key, json.dumps(value), ex=max(1, int(ttl)))
                await pipe.execute()
        except redis.exceptions.RedisError as exc:
            logger.warning("verification cache write failed: %s", exc)


class NoCache:
    async def get(self, key: str) -> Any | None:
        return None

    async def set(self, key: str, value: Any, ttl: int) -> None:
        return None

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        return [None] * len(keys)

    async def set_many(self, entries: list[tuple[str, Any, int]]) -> None:
        return None
