"""A worker process for the tests of limits shared through Redis: it verifies addresses at the farm
as one of several workers, or holds slots at a server until it is killed.

    python -m tests.verification.shared_limits_worker verify REDIS_URL PREFIX CONFIG_JSON ADDRESS...
    python -m tests.verification.shared_limits_worker hold REDIS_URL PREFIX HOST SLOTS LEASE

It says "ready" once imported and connected, and starts when it reads a line on stdin, so that
the test can start every worker at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from apps.verification.engine import Verifier, VerifierConfig
from apps.verification.engine.cache import redis_client
from apps.verification.engine.politeness import RedisLimiter


async def ready(client) -> None:
    await client.ping()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def verify(url: str, prefix: str, config_json: str, addresses: list[str]) -> None:
    client = redis_client(url)
    config = VerifierConfig.from_mapping(json.loads(config_json))
    verifier = Verifier.shared_through_redis(config, client, prefix=prefix, use_cache=False)
    await ready(client)
    results = await verifier.verify_many(addresses)
    print(json.dumps({r.address: str(r.reason) for r in results}), flush=True)
    await client.aclose()


async def hold(url: str, prefix: str, host: str, slots: int, lease: float) -> None:
    client = redis_client(url)
    limiter = RedisLimiter(
        client, concurrency=slots, rate=0, burst=1, prefix=prefix, lease_seconds=lease
    )
    await ready(client)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(slots):
            await held.enter_async_context(limiter.slot(host))
        print("held", flush=True)
        await asyncio.sleep(3600)  # until killed


if __name__ == "__main__":
    command, url, prefix, *rest = sys.argv[1:]
    if command == "verify":
        asyncio.run(verify(url, prefix, rest[0], rest[1:]))
    else:
        asyncio.run(hold(url, prefix, rest[0], int(rest[1]), float(rest[2])))
