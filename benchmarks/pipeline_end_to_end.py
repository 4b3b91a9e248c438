"""End to end: real mail through API ingest, Redis, the worker pools and PostgreSQL to triaged,
next to `manage.py triage` (the same engines in one process) on the same messages, in one run.

The system is started as `make run` starts it (under supervisord: gunicorn, one worker per queue, beat,
Flower) on a fresh embedded PostgreSQL and Redis. The clock runs from the first POST until every
message is triaged (or failed). The in-process figure is the triage command itself, called with
its models already loaded, on the same messages written out as files.

    python benchmarks/pipeline_end_to_end.py [--messages 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from system import SAMPLES, System, corpus

from apps.inbox.engine.mailbox import iter_messages

FINISHED = ("triaged", "needs_review", "failed")


async def post_all(url: str, key: str, raws: list[bytes], concurrency: int) -> dict[int, int]:
    import aiohttp

    statuses: dict[int, int] = {}
    queue: asyncio.Queue = asyncio.Queue()
    for raw in raws:
        queue.put_nowait(raw)
    headers = {"X-API-Key": key, "Content-Type": "message/rfc822"}
    async with aiohttp.ClientSession() as session:

        async def sender() -> None:
            while not queue.empty():
                raw = queue.get_nowait()
                async with session.post(f"{url}/api/v1/messages", data=raw, headers=headers) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1

        await asyncio.gather(*(sender() for _ in range(concurrency)))
    return statuses


def wait_triaged(
    count: int, started: float, timeout: float, prefix: str = "<bench-"
) -> tuple[float, dict]:
    from django.db.models import Count

    from apps.inbox.models import Message

    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        rows = Message.objects.filter(message_id_header__startswith=prefix)
        counts = dict(rows.values_list("status").annotate(n=Count("id")))
        done = sum(counts.get(s, 0) for s in FINISHED)
        now = time.perf_counter()
        if done >= count or time.monotonic() > deadline:
            return now - started, counts
        if now - last_report > 10:
            print(f"  {now - started:5.0f}s: {counts}", flush=True)
            last_report = now
        time.sleep(1.0)


def in_process_rate(raws: list[bytes]) -> float:
    from django.core.management import call_command

    from apps.triage.services import get_triager

    get_triager()  # models loaded before the clock starts, as in a running process
    with tempfile.TemporaryDirectory() as folder:
        for index, raw in enumerate(raws):
            Path(folder, f"{index:05d}.eml").write_bytes(raw)
        started = time.perf_counter()
        call_command("triage", folder, "--json", stdout=io.StringIO(), stderr=io.StringIO())
        return len(raws) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent API clients")
    parser.add_argument("--timeout", type=float, default=1800.0)
    options = parser.parse_args()

    system = System()
    raws = corpus(options.messages)
    try:
        system.start()
        # A running system has its models loaded and its connections open: warm it up with the
        # sample mailbox before the clock starts.
        warm = [m.raw for m in iter_messages([SAMPLES]) if m.raw]
        asyncio.run(post_all(system.url, system.api_key, warm, 4))
        wait_triaged(len(warm), time.perf_counter(), 600, prefix="<")
        started = time.perf_counter()
        statuses = asyncio.run(post_all(system.url, system.api_key, raws, options.concurrency))
        posted = time.perf_counter() - started
        print(f"posted {len(raws)} in {posted:.1f}s ({len(raws) / posted:.0f}/s): {statuses}")
        elapsed, counts = wait_triaged(len(raws), started, options.timeout)
    finally:
        system.stop()

    from apps.inbox.models import Message

    bench = Message.objects.filter(message_id_header__startswith="<bench-").only("steps")
    steps = [m.steps for m in bench]
    batches = [s.get("classify", {}).get("batch", 0) for s in steps]
    pipeline_rate = len(raws) / elapsed
    # The same messages in one process, with the verification cache of its own (in memory).
    os.environ["MAILSCORE_VERIFY_CACHE"] = "memory"
    from django.conf import settings

    settings.MAILSCORE_VERIFICATION["cache"] = "memory"
    command_rate = in_process_rate(raws)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"final statuses: {counts}")
    print(f"classify batch size: median {sorted(batches)[len(batches) // 2]}, max {max(batches)}")
    for step in ("classify", "prioritize", "summarize", "draft_reply", "verify_sender"):
        durations = [s[step]["duration_ms"] for s in steps if step in s]
        print(f"  {step:<14} median {statistics.median(durations):7.2f} ms per message")
    print(f"end to end (API -> workers -> PostgreSQL): {len(raws)} in {elapsed:.1f}s = "
          f"{pipeline_rate:.1f} msg/s")  # fmt: skip
    print(f"in-process manage.py triage, same messages: {command_rate:.1f} msg/s")
    print(f"ratio end to end / in-process: {pipeline_rate / command_rate:.2f}")


if __name__ == "__main__":
    main()
