"""Ingest API under load: open-loop POSTs of real mail at a fixed rate on loopback.

Requests are sent on a schedule (not one after another), and each latency is counted from the
moment its request was due, so a slow server cannot hide its queueing. A share of the requests
re-send a message already sent: they must get 200 and the first message's id. A re-send is sent
at its own time or as soon as its original has been answered, whichever is later (sent before,
it could overtake the original over another connection and be a first copy itself); its
latency counts from then. Afterwards the database must hold every accepted message exactly
once, each one queued for triage. The pipeline workers are not running, so the figure is the
web tier's own; the CPU each process took per request is read from /proc.

    python benchmarks/ingest_load.py [--rate 300] [--seconds 20] [--workers N]

gunicorn runs with mailscore/gunicorn.conf.py, as the Procfile starts it; --workers overrides
the number of worker processes (default: the configuration's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import runpy
import time
import uuid
from contextlib import suppress

import psutil
from system import ROOT, System, corpus

# A request not answered in this long counts as not answered at all.
CLIENT_TIMEOUT_SECONDS = 30.0
WARMUP = 50


def plan_requests(count: int, duplicate_share: float) -> tuple[list[tuple[int, bool]], int]:
    """(index into the corpus, is a re-send) for each slot of the schedule, and the number of
    distinct messages among them."""
    random.seed(7)
    plan, sent = [], 0
    for _ in range(count):
        if sent and random.random() < duplicate_share:
            plan.append((random.randrange(sent), True))
        else:
            plan.append((sent, False))
            sent += 1
    return plan, sent


async def load(url: str, key: str, raws: list[bytes], rate: float, duplicate_share: float):
    import aiohttp

    plan, distinct = plan_requests(len(raws), duplicate_share)
    answered = {index: asyncio.Event() for index, resend in plan if not resend}
    latencies, statuses, first_ids, resends = [], {}, {}, []
    headers = {"X-API-Key": key, "Content-Type": "message/rfc822"}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter() + 0.5

        async def one(slot: int, index: int, resend: bool) -> None:
            due = start + slot / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if resend:
                await answered[index].wait()
                due = max(due, time.perf_counter())
            status, body = 0, {}  # 0: no answer (refused connection, timeout)
            try:
                async with session.post(f"{url}/api/v1/messages", data=raws[index],
                                        headers=headers) as response:  # fmt: skip
                    status = response.status
                    with suppress(ValueError):
                        body = json.loads(await response.read())
            except (TimeoutError, aiohttp.ClientError):
                pass
            finally:
                if not resend:
                    answered[index].set()
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
            if resend:
                resends.append((index, body.get("id"), status))
            elif status == 202:
                first_ids[index] = body["id"]

        await asyncio.gather(*(one(slot, i, r) for slot, (i, r) in enumerate(plan)))
        elapsed = time.perf_counter() - start
    return latencies, statuses, first_ids, resends, elapsed, distinct


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU time of processes and their children, the ones already gone included (a parent is
    credited with a child's time when it reaps it)."""
    seen, total = set(), 0.0
    for parent in processes:
        with suppress(psutil.Error):
            for process in [parent, *parent.children(recursive=True)]:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                with suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user
                    total += times.children_system
    return total


def configured_workers() -> int:
    return runpy.run_path(str(ROOT / "mailscore" / "gunicorn.conf.py"))["workers"]


def committed_transactions() -> int:
    """Transactions PostgreSQL has committed in this database (its own statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn worker processes (default: gunicorn.conf.py's)")  # fmt: skip
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of re-sends")
    options = parser.parse_args()
    workers = options.workers or configured_workers()

    system = System()
    try:
        system.start_web_only(workers)
        total = int(options.rate * options.seconds)
        run = uuid.uuid4().hex[:8]
        raws = corpus(total, run)
        # A short warm-up so that every gunicorn worker has its connections open.
        asyncio.run(load(system.url, system.api_key, corpus(WARMUP), 50, 0.0))
        roles = {"web": [psutil.Process(system.process.pid)], **system.service_processes(),
                 "generator": [psutil.Process()]}  # fmt: skip
        # The generator's own process is the services' parent: count only its own time.
        generator = psutil.Process().cpu_times
        before = {role: cpu_seconds(found) for role, found in roles.items() if role != "generator"}
        generator_before = sum(generator()[:2])
        transactions_before = committed_transactions()
        latencies, statuses, first_ids, resends, elapsed, distinct = asyncio.run(
            load(system.url, system.api_key, raws, options.rate, options.duplicates)
        )
        cpu = {role: cpu_seconds(roles[role]) - spent for role, spent in before.items()}
        cpu["generator"] = sum(generator()[:2]) - generator_before
    finally:
        system.stop()
    # Read once the web has stopped: its backends have written out their statistics.
    transactions = committed_transactions() - transactions_before

    from apps.inbox.models import Message, MessageStatus
    from tasks.queues import CeleryQueue

    rows = list(Message.objects.filter(message_id_header__startswith=f"<bench-{run}-")
                .values_list("message_id_header", "status"))  # fmt: skip
    queued = sum(state == MessageStatus.QUEUED for _, state in rows)
    import redis

    triage_waiting = redis.Redis.from_url(os.environ["REDIS_URL"]).llen(str(CeleryQueue.TRIAGE))
    sent = len(latencies)
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    errors = sum(count for status, count in statuses.items() if status >= 500)
    resend_ok = sum(status == 200 and first_ids.get(i) == mid for i, mid, status in resends)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"requests: {sent} in {elapsed:.1f}s = {sent / elapsed:.0f} req/s achieved "
          f"(target rate {options.rate:.0f}); gunicorn workers: {workers}")  # fmt: skip
    print(f"answered 2xx: {ok} of {sent} ({100 * ok / sent:.2f}%); 5xx: {errors}; "
          f"statuses: {dict(sorted(statuses.items()))} (0: no answer)")  # fmt: skip
    print(f"latency ms: p50 {percentile(latencies, 0.50) * 1000:.1f}  "
          f"p95 {percentile(latencies, 0.95) * 1000:.1f}  "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f}  "
          f"max {max(latencies) * 1000:.1f}")  # fmt: skip
    print("CPU ms per request: " + "  ".join(
        f"{role} {seconds * 1000 / sent:.2f}" for role, seconds in cpu.items()))  # fmt: skip
    print(f"PostgreSQL transactions per request: {transactions / sent:.2f} (the group commit "
          f"stores the messages that arrive together in one)")  # fmt: skip
    distinct_rows = len({mid for mid, _ in rows})
    print(f"exactly once: {distinct} distinct messages sent, {statuses.get(202, 0)} accepted "
          f"(202), {len(rows)} rows stored, {distinct_rows} distinct: "
          f"{len(rows) == distinct_rows == distinct}")  # fmt: skip
    print(f"re-sends: {len(resends)}, answered 200 with the first id: {resend_ok} "
          f"({resend_ok == len(resends)})")  # fmt: skip
    print(
        f"queued for triage: {queued} of {len(rows)} rows queued, a dispatch waiting on the "
        f"triage queue: {triage_waiting > 0} ({queued == len(rows) and triage_waiting > 0})"
    )


if __name__ == "__main__":
    main()
