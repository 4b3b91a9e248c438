"""Ingest API under load: open-loop POSTs of real mail at a fixed rate on loopback.

Requests are sent on a schedule (not one after another), and each latency is counted from the
moment its request was due, so a slow server cannot hide its queueing. A share of the requests
re-send a message already sent: they must get 200 and the first message's id. Afterwards the
database must hold every accepted message exactly once. The pipeline workers are not running, so
the figure is the web tier's own.

    python benchmarks/ingest_load.py [--rate 300] [--seconds 20] [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import time

from system import System, corpus


async def load(url: str, key: str, raws: list[bytes], rate: float, duplicate_share: float):
    import aiohttp

    random.seed(7)
    plan = []  # (index into raws, is a re-send)
    sent = 0
    for _ in range(len(raws)):
        if sent and random.random() < duplicate_share:
            plan.append((random.randrange(sent), True))
        else:
            plan.append((sent, False))
            sent += 1
    latencies, statuses, first_ids, resend_ids = [], {}, {}, []
    headers = {"X-API-Key": key, "Content-Type": "message/rfc822"}
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter() + 0.5

        async def one(slot: int, index: int, resend: bool) -> None:
            due = start + slot / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            async with session.post(f"{url}/api/v1/messages", data=raws[index],
                                    headers=headers) as response:  # fmt: skip
                body = await response.json()
            latencies.append(time.perf_counter() - due)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if resend:
                resend_ids.append((index, body.get("id"), response.status))
            elif response.status == 202:
                first_ids[index] = body["id"]

        await asyncio.gather(*(one(slot, i, r) for slot, (i, r) in enumerate(plan)))
        elapsed = time.perf_counter() - start
    return latencies, statuses, first_ids, resend_ids, elapsed, sent


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of re-sends")
    options = parser.parse_args()

    system = System()
    try:
        system.start_web_only(options.workers)
        total = int(options.rate * options.seconds)
        raws = corpus(total)
        # A short warm-up so that every gunicorn worker has its connections open.
        asyncio.run(load(system.url, system.api_key, corpus(50), 50, 0.0))
        latencies, statuses, first_ids, resends, elapsed, unique = asyncio.run(
            load(system.url, system.api_key, raws, options.rate, options.duplicates)
        )
    finally:
        system.stop()

    from apps.inbox.models import Message

    stored = Message.objects.filter(message_id_header__startswith="<bench-").values_list(
        "message_id_header", flat=True)  # fmt: skip
    stored = [mid for mid in stored if mid.endswith("@mailscore.test>")]
    warmup = 50
    resend_ok = all(status == 200 and first_ids.get(i) == mid for i, mid, status in resends)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"requests: {len(latencies)} in {elapsed:.1f}s = {len(latencies) / elapsed:.0f} req/s "
          f"(target rate {options.rate:.0f}); gunicorn workers: {options.workers}")  # fmt: skip
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"latency ms: p50 {percentile(latencies, 0.50) * 1000:.1f}  "
          f"p95 {percentile(latencies, 0.95) * 1000:.1f}  "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f}  "
          f"max {max(latencies) * 1000:.1f}  mean {statistics.mean(latencies) * 1000:.1f}")  # fmt: skip
    print(f"exactly once: {unique} distinct messages sent, {statuses.get(202, 0)} accepted (202), "
          f"{len(stored) - warmup} rows stored, {len(set(stored)) - warmup} distinct; "
          f"{len(resends)} re-sends all answered 200 with the first id: {resend_ok}")  # fmt: skip


if __name__ == "__main__":
    main()
