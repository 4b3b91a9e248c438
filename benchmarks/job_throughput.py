"""Bulk verification jobs through the running system, next to the engine in-process, on one farm.

The farm of benchmarks/verify_throughput.py (200 domains, each MX on its own loopback address,
every SMTP reply delayed 50 ms, 10,000 addresses) answers both. In turn, for --runs:

  (a) the engine in-process, as verify_throughput.py runs it (its own functions): limits in
      memory, or in Redis with --redis-url ("system": the running system's Redis);
  (b) one bulk job through the running system: web, the verify worker and beat as the Procfile
      runs them (under `manage.py up`, on embedded PostgreSQL and Redis), the same addresses
      POSTed as one JSON job, GET polled until it is completed. Its rate is total / (finished_at
      - created_at) as the API reports them; the client's wall time from POST to completed is
      reported beside it.

The farm is reset before every run, and the system's verification cache (the verifier's keys and
the validate answers in Redis) is emptied before every job, so each job starts cold. The verify
and read throttles are off for the run. CPU seconds per process and Redis's command counts during
each run say where the time went; --shards (MAILSCORE_JOB_SHARDS) and --system-limits memory
(the system's cache and limits in each process, MAILSCORE_VERIFY_CACHE=memory) are for finding
what a part costs, not how to deploy.

    python benchmarks/job_throughput.py [--runs 3] [--redis-url URL|system] [--shards N]
        [--system-limits redis|memory] [--poll 0.5]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.verification.engine import VerifierConfig  # noqa: E402
from benchmarks.verify_throughput import FarmControl, farm_spec, run_mailscore  # noqa: E402

# The programs a bulk job needs, run as the project's Procfile runs them.
PROGRAMS = ("web", "verify", "beat")


def request(url: str, key: str, body: dict | None = None, timeout: float = 120.0):
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(call, timeout=timeout) as response:
        payload = response.read()
        if "text/csv" in response.headers.get("Content-Type", ""):
            return payload.decode()
        return json.loads(payload)


def procfile_for_jobs(directory: Path) -> Path:
    """The project's Procfile cut to the programs a job needs, each line as it is there."""
    kept = []
    for line in (ROOT / "Procfile").read_text().splitlines():
        name = line.partition(":")[0].strip()
        if line.strip() and not line.lstrip().startswith("#") and name in PROGRAMS:
            kept.append(line)
    path = directory / "Procfile.jobs"
    path.write_text("\n".join(kept) + "\n")
    return path


def cpu_seconds(processes: dict[str, list[psutil.Process]]) -> dict[str, dict[int, float]]:
    """CPU seconds so far, by role and pid."""
    used: dict[str, dict[int, float]] = {}
    for role, members in processes.items():
        for process in members:
            with suppress(psutil.Error):
                times = process.cpu_times()
                used.setdefault(role, {})[process.pid] = times.user + times.system
    return used


def spent(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds used between two readings, by role; a process started between them (a
    PostgreSQL backend for a new connection) counts from its start."""
    return {
        role: round(sum(cpu - before.get(role, {}).get(pid, 0.0) for pid, cpu in pids.items()), 1)
        for role, pids in after.items()
    }


def system_processes(system, farm: psutil.Process) -> dict[str, list[psutil.Process]]:
    found = {role: [process] for role, process in system.processes().items()}
    found.update(system.service_processes())
    found["farm"] = [farm]
    return found


def cold_cache(redis_url: str) -> int:
    """Delete the verifier's cache and limits and the validate answers: the next job starts cold."""
    import redis
    from django.conf import settings

    from apps.verification.validation import KEY_PREFIX

    client = redis.Redis.from_url(redis_url)
    deleted = 0
    for prefix in (settings.MAILSCORE_VERIFICATION["cache_prefix"], KEY_PREFIX):
        keys = list(client.scan_iter(f"{prefix}*", count=5000))
        for start in range(0, len(keys), 5000):
            deleted += client.delete(*keys[start : start + 5000])
    return deleted


def redis_calls(redis_url: str | None, reset: bool = False) -> dict[str, int]:
    """Commands Redis has run since its counters were last reset, by command."""
    if not redis_url:
        return {}
    import redis

    client = redis.Redis.from_url(redis_url)
    if reset:
        client.config_resetstat()
        return {}
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def stamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_job(system, addresses: list[str], timeout: float, poll: float) -> dict:
    """POST the job and poll it until it is over; its figures, and its results_url."""
    started = time.perf_counter()
    created = request(f"{system.url}/api/v1/jobs", system.api_key, {"emails": addresses})
    posted = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    while True:
        body = request(created["url"], system.api_key)
        if body["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(poll)
    wall = time.perf_counter() - started
    if body["status"] != "completed":
        raise RuntimeError(f"job {created['id']} ended {body['status']}: {body}")
    api_seconds = stamp(body["finished_at"]) - stamp(body["created_at"])
    return {
        "id": created["id"],
        "results_url": created["results_url"],
        "post_s": posted,
        "api_s": api_seconds,
        "queued_s": stamp(body["started_at"]) - stamp(body["created_at"]),
        "per_second": body["total"] / api_seconds,
        "wall_s": wall,
        "wall_per_second": body["total"] / wall,
        "verdicts": {verdict: n for verdict, n in body["counts"].items() if n},
    }


def csv_verdicts(system, results_url: str) -> tuple[int, dict[str, int]]:
    """The job's rows as CSV: how many, and how many of each verdict."""
    text = request(f"{results_url}?format=csv", system.api_key)
    by_verdict: dict[str, int] = {}
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        by_verdict[row["verdict"]] = by_verdict.get(row["verdict"], 0) + 1
    return len(rows), by_verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=10_000)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="delay before every reply")
    parser.add_argument("--concurrency", type=int, default=2, help="per-MX connection limit")
    parser.add_argument("--rate", type=float, default=5.0, help="per-MX RCPT probes per second")
    parser.add_argument("--burst", type=int, default=10, help="per-MX token bucket size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", type=int, help="MAILSCORE_JOB_SHARDS for the system")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one job may take")
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between two GETs of the job"
    )
    parser.add_argument(
        "--system-limits", choices=("redis", "memory"), default="redis",
        help="where the system keeps its verification cache and politeness limits "
             "(MAILSCORE_VERIFY_CACHE): redis as deployed; memory only to find what Redis costs",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--redis-url",
        help="in-process limits shared through this Redis; 'system': the running system's",
    )
    args = parser.parse_args()
    if args.domains > 240:
        parser.error("--domains: at most 240 (one loopback address each in 127.0.1.10-249)")
    if args.shards is not None and args.shards < 1:
        parser.error("--shards: at least 1")

    per_domain = max(1, args.addresses // args.domains)
    addresses = [
        f"user{i}@d{d}.bench.test" for i in range(per_domain) for d in range(args.domains)
    ][: args.addresses]
    # The farm is forked before Django starts the embedded servers.
    farm = FarmControl(farm_spec(args.domains, per_domain, args.delay_ms / 1000))
    os.environ.update({
        "MAILSCORE_SMTP_PORT": str(farm.port),
        "MAILSCORE_DNS_NAMESERVERS": f"127.0.0.1:{farm.dns_port}",
        "MAILSCORE_HELO_HOSTNAME": "verifier.mailscore.test",
        "MAILSCORE_MAIL_FROM": "bounces@mailscore.test",
        "MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS": "true",
        "MAILSCORE_SMTP_ALLOWED_NETWORKS": "127.0.0.0/8",  # the farm is on loopback
        "MAILSCORE_SMTP_PER_HOST_CONCURRENCY": str(args.concurrency),
        "MAILSCORE_SMTP_PER_HOST_RATE": str(args.rate),
        "MAILSCORE_SMTP_PER_HOST_BURST": str(args.burst),
        "MAILSCORE_THROTTLE_VERIFY": "off",
        "MAILSCORE_THROTTLE_READ": "off",
    })  # fmt: skip
    if args.shards is not None:
        os.environ["MAILSCORE_JOB_SHARDS"] = str(args.shards)
    os.environ["MAILSCORE_VERIFY_CACHE"] = args.system_limits
    config = VerifierConfig(
        helo_hostname="verifier.mailscore.test",
        mail_from="bounces@mailscore.test",
        smtp_port=farm.port,
        dns_nameservers=(f"127.0.0.1:{farm.dns_port}",),
        per_host_concurrency=args.concurrency,
        per_host_rate=args.rate,
        per_host_burst=args.burst,
        allow_special_use_domains=True,
        smtp_allowed_networks=("127.0.0.0/8",),  # the farm is on loopback
    )
    from benchmarks.system import System

    system = System()
    redis_url = os.environ["REDIS_URL"] if args.redis_url == "system" else args.redis_url
    ours, jobs = [], []
    try:
        system.start("--procfile", str(procfile_for_jobs(system.data_dir)))
        from django.conf import settings

        shards = max(1, min(settings.MAILSCORE_JOB_SHARDS, args.domains))
        me = psutil.Process()
        farm_process = psutil.Process(farm.process.pid)
        for run in range(args.runs):
            farm.ask("reset")
            before = cpu_seconds({"benchmark": [me], "farm": [farm_process]})
            redis_calls(redis_url, reset=True)
            figures = run_mailscore(addresses, config, redis_url)
            figures["redis_calls"] = redis_calls(redis_url)
            figures["cpu_s"] = spent(
                before, cpu_seconds({"benchmark": [me], "farm": [farm_process]})
            )
            figures["farm"] = farm.ask("stats")
            ours.append(figures)
            print(f"run {run + 1} in-process: {json.dumps(figures)}", file=sys.stderr)

            farm.ask("reset")
            cleared = cold_cache(os.environ["REDIS_URL"])
            before = cpu_seconds(system_processes(system, farm_process))
            redis_calls(os.environ["REDIS_URL"], reset=True)
            figures = run_job(system, addresses, args.timeout, args.poll)
            figures["cpu_s"] = spent(before, cpu_seconds(system_processes(system, farm_process)))
            figures["redis_calls"] = redis_calls(os.environ["REDIS_URL"])
            # Read after the clock and the CPU readings: the export is not part of the job.
            figures["csv_rows"], figures["csv_verdicts"] = csv_verdicts(
                system, figures["results_url"]
            )
            figures["cache_keys_cleared"] = cleared
            figures["farm"] = farm.ask("stats")
            jobs.append(figures)
            print(f"run {run + 1} job: {json.dumps(figures)}", file=sys.stderr)
    finally:
        system.stop()
        farm.stop()

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ratios = [j["per_second"] / o["per_second"] for o, j in zip(ours, jobs, strict=True)]
    wall_ratios = [j["wall_per_second"] / o["per_second"] for o, j in zip(ours, jobs, strict=True)]
    same = all(
        o["verdicts"] == j["verdicts"] == j["csv_verdicts"] for o, j in zip(ours, jobs, strict=True)
    )
    limits = "limits in Redis" if redis_url else "limits in memory"
    system_limits = "Redis" if args.system_limits == "redis" else "memory"
    print(f"## Bulk jobs through the running system ({time.strftime('%Y-%m-%d')})\n")
    print(f"{len(addresses):,} addresses over {args.domains} domains, {args.delay_ms:.0f} ms before "
          f"every SMTP reply, per-MX concurrency {args.concurrency}, per-MX rate {args.rate:g}/s "
          f"(burst {args.burst}); job in {shards} shards on the verify pool; {args.runs} runs, "
          f"medians; {os.cpu_count()} cores, Python {platform.python_version()}.\n")  # fmt: skip
    print("| | addresses/s | seconds | client wall time, POST to completed | verdicts (last run) |")
    print("|---|---|---|---|---|")
    print(f"| (a) engine in-process, {limits} | {median(ours, 'per_second'):.0f} | "
          f"{median(ours, 'elapsed_s'):.1f} | - | {ours[-1]['verdicts']} |")  # fmt: skip
    print(f"| (b) bulk job through the system, limits in {system_limits} "
          f"(API created_at → finished_at) | "
          f"{median(jobs, 'per_second'):.0f} | {median(jobs, 'api_s'):.1f} | "
          f"{median(jobs, 'wall_s'):.1f} s ({median(jobs, 'wall_per_second'):.0f}/s) | "
          f"{jobs[-1]['verdicts']} |")  # fmt: skip
    print(f"\nRatio (b)/(a) per run: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"**median {statistics.median(ratios):.2f}** (target ≥ 0.80). By the client's wall "
          f"time: median {statistics.median(wall_ratios):.2f}.")  # fmt: skip
    print(f"Job verdict counts equal the in-process counts (and the CSV's) in every run: "
          f"{'yes' if same else 'NO'}. POST took {median(jobs, 'post_s'):.2f} s; "
          f"created to started {median(jobs, 'queued_s'):.2f} s (medians).")  # fmt: skip
    print(f"\nCPU seconds during the last run: (a) {ours[-1]['cpu_s']}; (b) {jobs[-1]['cpu_s']}.")
    for label, figures in (("(a)", ours[-1]), ("(b)", jobs[-1])):
        if calls := figures["redis_calls"]:
            busiest = sorted(calls.items(), key=lambda pair: -pair[1])[:10]
            print(f"Redis commands during the last run's {label}: {sum(calls.values()):,} "
                  f"({sum(calls.values()) / len(addresses):.1f} per address): "
                  f"{', '.join(f'{name} {n:,}' for name, n in busiest)}.")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"in_process": ours, "jobs": jobs}, indent=2))


if __name__ == "__main__":
    main()
