"""The Redis-backed cache and politeness limits, on a real Redis, shared by several workers."""

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio
from django.conf import settings

from apps.verification.engine.cache import RedisCache
from apps.verification.engine.cache import redis_client as engine_redis_client
from apps.verification.engine.politeness import RedisLimiter
from apps.verification.engine.verifier import Verifier

PREFIX = "mailscore-test:verify:"
ROOT = Path(__file__).resolve().parents[2]


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


def _start_workers(*argvs: list[str]) -> list[subprocess.Popen]:
    """Worker processes of tests/verification/shared_limits_worker.py, started together: each is
    told to go once every one of them has imported and reached Redis."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.verification.shared_limits_worker", *argv],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for worker in workers:
        assert worker.stdout.readline().strip() == "ready"
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return workers


def test_worker_processes_sharing_redis_never_exceed_the_limit_at_a_server(
    farm, farm_config, redis_client
):
    """Four processes, each wanting two sessions at the same slow server, hold two between them:
    the others wait for a release, hear it and take the freed slot."""
    config = farm_config(per_host_concurrency=2, address_budget=120.0)
    settings_json = json.dumps(dataclasses.asdict(config))
    batches = [[f"{name}@slow.test" for name in ("alice", "bob", f"nobody{n}")] for n in range(4)]
    farm.reset_stats()
    workers = _start_workers(
        *(["verify", settings.REDIS_URL, PREFIX, settings_json, *batch] for batch in batches)
    )
    answers = {}
    for worker in workers:
        out, _ = worker.communicate(timeout=180)
        assert worker.returncode == 0
        answers.update(json.loads(out.strip().splitlines()[-1]))
    stats = farm.stats["127.0.0.18"]
    assert stats.max_concurrency == 2  # reached, never passed
    assert stats.connections >= len(workers)  # every process had its turn
    assert answers == {
        address: "mailbox_not_found" if address.startswith("nobody") else "ok"
        for batch in batches
        for address in batch
    }
    assert not redis_client.zcard(PREFIX + "slots:127.0.0.18")  # every slot given back


def test_a_killed_holder_frees_its_slot_within_the_lease(redis_client):
    host, lease = "192.0.2.7", 2.0
    (holder,) = _start_workers(["hold", settings.REDIS_URL, PREFIX, host, "1", str(lease)])
    try:
        assert holder.stdout.readline().strip() == "held"

        async def run():
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
            limiter = RedisLimiter(
                client, concurrency=1, rate=0, burst=1, prefix=PREFIX, lease_seconds=lease
            )
            slot = limiter.slot(host)
            waiting = asyncio.ensure_future(slot.__aenter__())
            # Longer than the lease: the holder keeps its slot alive while it lives.
            await asyncio.sleep(2 * lease)
            held_while_alive = not waiting.done()
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            async with asyncio.timeout(60):  # a guard against a hang, not a measure
                await waiting
            await slot.__aexit__(None, None, None)
            await client.aclose()
            return held_while_alive

        assert asyncio.run(run())
    finally:
        holder.kill()
        holder.wait()


def test_a_caller_that_stops_waiting_keeps_no_slot(redis_client):
    async def run():
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        limiter = RedisLimiter(
            client, concurrency=1, rate=0, burst=1, prefix=PREFIX, lease_seconds=600
        )
        # Cancelled while its ask is on the way: the slot Redis grants it is given back.
        asking = asyncio.ensure_future(limiter.slot("192.0.2.8").__aenter__())
        await asyncio.sleep(0)
        asking.cancel()
        # Cancelled while waiting behind a holder: the release goes to the next one.
        async with limiter.slot("192.0.2.8"):
            waiting = asyncio.ensure_future(limiter.slot("192.0.2.8").__aenter__())
            await asyncio.sleep(0.2)
            waiting.cancel()
        # Either slot kept would hold this one back for the 600 s lease.
        async with asyncio.timeout(60), limiter.slot("192.0.2.8"):
            held = await client.zcard(PREFIX + "slots:192.0.2.8")
        await client.aclose()
        return asking.cancelled(), waiting.cancelled(), held

    assert asyncio.run(run()) == (True, True, 1)


def test_limits_and_cache_survive_redis_forgetting_their_scripts(redis_client):
    """After a restart or SCRIPT FLUSH, Redis answers NOSCRIPT; the scripts are loaded again."""

    async def run():
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
        # Refilled so slowly that the four tokens taken below are what the bucket shows.
        limiter = RedisLimiter(client, concurrency=1, rate=0.01, burst=5, prefix=PREFIX)
        cache = RedisCache(client, PREFIX)
        await limiter.take_token("192.0.2.9")
        await client.script_flush()
        await asyncio.gather(*(limiter.take_token("192.0.2.9") for _ in range(3)))
        async with limiter.slot("192.0.2.9"):
            held = await client.zcard(PREFIX + "slots:192.0.2.9")
        await client.script_flush()
        await cache.set_many([("addr:x@b.test", {"n": 1}, 60)])
        value = await cache.get("addr:x@b.test")
        tokens = float(await client.hget(PREFIX + "bucket:192.0.2.9", "tokens"))
        await client.aclose()
        return held, value, tokens

    held, value, tokens = asyncio.run(run())
    assert held == 1 and value == {"n": 1}
    assert round(tokens) == 1  # four of five taken: none lost, none taken twice
