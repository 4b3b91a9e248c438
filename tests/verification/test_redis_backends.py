"""The Redis-backed cache and politeness limits, on a real Redis, shared by several workers."""

import asyncio
import time

import redis.asyncio
from django.conf import settings

from apps.verification.engine.cache import RedisCache
from apps.verification.engine.cache import redis_client as engine_redis_client
from apps.verification.engine.politeness import RedisLimiter
from apps.verification.engine.verifier import Verifier

PREFIX = "mailscore-test:verify:"


def redis_client_for_test(url: str | None = None, max_connections: int = 64):
    return engine_redis_client(url or settings.REDIS_URL, max_connections=max_connections)


def test_redis_cache_round_trip_and_expiry(redis_client):
    async def run():
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        cache = RedisCache(client, PREFIX)
        await cache.set("addr:a@b.test", {"verdict": "ok"}, ttl=60)
        value = await cache.get("addr:a@b.test")
        ttl = await client.ttl(PREFIX + "addr:a@b.test")
        await client.aclose()
        return value, ttl

    value, ttl = asyncio.run(run())
    assert value == {"verdict": "ok"}
    assert 0 < ttl <= 60


def test_redis_cache_reads_and_writes_in_batches(redis_client):
    async def run():
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        cache = RedisCache(client, PREFIX)
        entries = [(f"addr:u{i}@b.test", {"n": i}, 60 + i % 2) for i in range(1200)]
        await cache.set_many(entries)
        keys = [key for key, _, _ in entries]
        found = await cache.get_many([*keys, "addr:missing@b.test"])
        ttl = await client.ttl(PREFIX + "addr:u1@b.test")
        await client.aclose()
        return found, ttl

    found, ttl = asyncio.run(run())
    # More than one MGET's worth (BATCH), in order, a miss as None, each with its own TTL.
    assert found == [{"n": i} for i in range(1200)] + [None]
    assert 0 < ttl <= 61


def test_concurrency_limit_holds_across_limiters(redis_client):
    """Two limiters stand for two worker processes sharing one Redis."""

    async def run():
        clients = [redis.asyncio.Redis.from_url(settings.REDIS_URL) for _ in range(2)]
        limiters = [RedisLimiter(c, concurrency=2, rate=0, burst=1, prefix=PREFIX) for c in clients]
        active = peak = 0

        async def hold(limiter):
            nonlocal active, peak
            async with limiter.slot("192.0.2.1"):
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.05)
                active -= 1

        await asyncio.gather(*(hold(limiters[i % 2]) for i in range(10)))
        for client in clients:
            await client.aclose()
        return peak

    assert asyncio.run(run()) == 2


def test_token_bucket_is_shared(redis_client):
    async def run():
        clients = [redis.asyncio.Redis.from_url(settings.REDIS_URL) for _ in range(2)]
        limiters = [
            RedisLimiter(c, concurrency=1, rate=20, burst=2, prefix=PREFIX) for c in clients
        ]
        started = time.monotonic()
        await asyncio.gather(*(limiters[i % 2].take_token("192.0.2.1") for i in range(8)))
        elapsed = time.monotonic() - started
        for client in clients:
            await client.aclose()
        return elapsed

    # 8 tokens with a burst of 2 at 20/s: the last six wait for refills, together or apart.
    assert asyncio.run(run()) >= 6 / 20 - 0.05


def test_verifier_with_redis_cache_and_limits(farm, farm_config, redis_client):
    async def run():
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        config = farm_config()
        limiter = RedisLimiter(client, concurrency=2, rate=0, burst=1, prefix=PREFIX)
        verifier = Verifier(config, cache=RedisCache(client, PREFIX), limiter=limiter)
        first = await verifier.verify_many(
            [f"user{i}@normal.test" for i in range(10)] + ["alice@normal.test"]
        )
        again = await Verifier(config, cache=RedisCache(client, PREFIX), limiter=limiter).verify(
            "alice@normal.test"
        )
        await client.aclose()
        return first, again

    farm.reset_stats()
    first, again = asyncio.run(run())
    assert str(first[-1].reason) == "ok" and again.cached
    assert farm.stats["127.0.0.10"].max_concurrency <= 2
    assert redis_client.get(PREFIX + "catchall:normal.test") == b"false"


def test_thousands_of_concurrent_cache_writes_wait_for_connections(redis_client):
    async def run():
        client = redis_client_for_test(max_connections=4)
        cache = RedisCache(client, PREFIX)
        await asyncio.gather(*(cache.set(f"k{i}", {"i": i}, 60) for i in range(2000)))
        value = await cache.get("k1999")
        await client.aclose()
        return value

    assert asyncio.run(run()) == {"i": 1999}


def test_unreachable_cache_is_a_miss_not_a_failure(farm, farm_config):
    async def run():
        client = redis_client_for_test(url="redis://127.0.0.1:1/0")
        verifier = Verifier(farm_config(), cache=RedisCache(client, PREFIX))
        result = await verifier.verify("alice@normal.test")
        await client.aclose()
        return result

    result = asyncio.run(run())
    assert str(result.reason) == "ok" and not result.cached
