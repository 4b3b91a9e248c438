"""Address verification throughput on a local farm, next to a Python peer from PyPI.

The farm runs in a process of its own: 200 domains, each with its own MX server on a loopback
address, every SMTP reply delayed by 50 ms. 10,000 addresses (50 per domain, half of them real
mailboxes) go through mailscore's verifier with a per-server concurrency limit of 2, then through
py3-validate-email on a thread pool. Both runs alternate and repeat; medians are reported.

    python benchmarks/verify_throughput.py [--addresses 10000] [--domains 200] [--runs 3]
    python benchmarks/verify_throughput.py --no-peer --redis-url URL --alternate-in-process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apps.verification.engine import Verifier, VerifierConfig  # noqa: E402
from apps.verification.engine.cache import MemoryCache, redis_client  # noqa: E402
from tests.farm import Farm, FarmSpec, ServerSpec  # noqa: E402


def mx_ip(index: int) -> str:
    # MX host names are dotted quads that resolve without DNS, so the peer (which resolves MX
    # names through the operating system) reaches the same servers as our engine.
    return f"127.0.1.{10 + index}"


def farm_spec(domains: int, per_domain: int, delay: float) -> FarmSpec:
    known = tuple(f"user{i}" for i in range(0, per_domain, 2))
    servers, records = [], {}
    for d in range(domains):
        ip = mx_ip(d)
        servers.append(ServerSpec(ip, ip, "normal", reply_delay=delay, known=known))
        records[f"d{d}.bench.test"] = {"MX": [f"10 {ip}."]}
    return FarmSpec(servers=servers, records=records)


def farm_process(spec: FarmSpec, conn) -> None:
    async def main() -> None:
        farm = Farm(spec)
        await farm.start()
        conn.send((farm.port, farm.dns_port))
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stats":
                conn.send(
                    {
                        "max_concurrency": max(s.max_concurrency for s in farm.stats.values()),
                        "rcpts": sum(s.rcpts for s in farm.stats.values()),
                        "connections": sum(s.connections for s in farm.stats.values()),
                        "data_commands": sum(s.data_commands for s in farm.stats.values()),
                    }
                )
            elif command == "reset":
                farm.reset()
                conn.send("ok")
            else:
                await farm.stop()
                conn.send("stopped")
                return

    asyncio.run(main())


class FarmControl:
    def __init__(self, spec: FarmSpec) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=farm_process, args=(spec, child), daemon=True)
        self.process.start()
        self.port, self.dns_port = self.conn.recv()

    def ask(self, command: str):
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self.process.join(10)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def _verify_all(addresses: list[str], config: VerifierConfig, redis_url: str | None):
    """The results and the seconds verify_many took (not counting the clean-up of the run's keys
    in Redis afterwards, which is no part of verifying)."""
    if not redis_url:
        started = time.perf_counter()
        results = await Verifier(config, cache=MemoryCache()).verify_many(addresses)
        return results, time.perf_counter() - started
    # The multi-worker setup: cache and politeness limits shared through Redis.
    client = redis_client(redis_url)
    prefix = f"mailscore-bench:{time.time_ns()}:"
    try:
        started = time.perf_counter()
        verifier = Verifier.shared_through_redis(config, client, prefix=prefix)
        results = await verifier.verify_many(addresses)
        return results, time.perf_counter() - started
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def run_mailscore(addresses: list[str], config: VerifierConfig, redis_url: str | None) -> dict:
    cpu = time.process_time()
    results, elapsed = asyncio.run(_verify_all(addresses, config, redis_url))
    verdicts: dict[str, int] = {}
    for result in results:
        verdicts[str(result.verdict)] = verdicts.get(str(result.verdict), 0) + 1
    probe_ms = [r.timings.get("smtp_ms", 0.0) for r in results]
    return {
        "elapsed_s": elapsed,
        "cpu_s": time.process_time() - cpu,
        "per_second": len(addresses) / elapsed,
        "probe_p50_ms": percentile(probe_ms, 0.50),
        "probe_p95_ms": percentile(probe_ms, 0.95),
        "verdict_p50_ms": percentile([r.timings["total_ms"] for r in results], 0.50),
        "verdict_p95_ms": percentile([r.timings["total_ms"] for r in results], 0.95),
        "verdicts": verdicts,
    }


def politeness_ceiling(addresses: int, domains: int, rate: float, burst: int) -> float | None:
    """Addresses per second that the token bucket alone allows: every domain's probes (one per
    address and one catch-all probe) start with a burst, then come at the rate."""
    probes = -(-addresses // domains) + 1
    if rate <= 0 or probes <= burst:
        return None
    return addresses / ((probes - burst) / rate)


def run_peer(addresses: list[str], farm: FarmControl, threads: int) -> dict:
    import dns.resolver
    from validate_email import validate_email
    from validate_email.smtp_check import _SMTPChecker

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = farm.dns_port
    dns.resolver.default_resolver = resolver
    _SMTPChecker.default_port = farm.port  # the peer has no port option; the farm is not on 25

    durations: list[float] = []

    def check(address: str):
        started = time.perf_counter()
        verdict = validate_email(
            address,
            check_blacklist=False,
            smtp_helo_host="verifier.mailscore.test",
            smtp_from_address="bounces@mailscore.test",
            smtp_skip_tls=True,
            dns_timeout=10,
            smtp_timeout=10,
        )
        durations.append((time.perf_counter() - started) * 1000)
        return verdict

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        verdicts = list(pool.map(check, addresses))
    elapsed = time.perf_counter() - started
    return {
        "elapsed_s": elapsed,
        "per_second": len(addresses) / elapsed,
        "probe_p50_ms": percentile(durations, 0.50),
        "probe_p95_ms": percentile(durations, 0.95),
        "verdicts": {
            "deliverable": verdicts.count(True),
            "undeliverable": verdicts.count(False),
            "unknown": verdicts.count(None),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=10_000)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="delay before every reply")
    parser.add_argument("--concurrency", type=int, default=2, help="per-MX connection limit")
    parser.add_argument("--rate", type=float, default=5.0, help="per-MX RCPT probes per second")
    parser.add_argument("--burst", type=int, default=10, help="per-MX token bucket size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peer-threads", type=int, default=64)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--redis-url", help="share cache and limits through this Redis, as several workers do"
    )
    parser.add_argument(
        "--alternate-in-process",
        action="store_true",
        help="with --redis-url: before each run in Redis, one with limits and cache in memory",
    )
    args = parser.parse_args()
    if args.domains > 240:
        parser.error("--domains: at most 240 (one loopback address each in 127.0.1.10-249)")

    per_domain = max(1, args.addresses // args.domains)
    addresses = [
        f"user{i}@d{d}.bench.test" for i in range(per_domain) for d in range(args.domains)
    ][: args.addresses]
    farm = FarmControl(farm_spec(args.domains, per_domain, args.delay_ms / 1000))
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
    if args.alternate_in_process and not args.redis_url:
        parser.error("--alternate-in-process compares against --redis-url; give both")
    ours, peers, in_memory = [], [], []
    try:
        for run in range(args.runs):
            if args.alternate_in_process:
                farm.ask("reset")
                figures = run_mailscore(addresses, config, None)
                figures["farm"] = farm.ask("stats")
                in_memory.append(figures)
                print(f"run {run + 1} mailscore in memory: {json.dumps(figures)}", file=sys.stderr)
            farm.ask("reset")
            figures = run_mailscore(addresses, config, args.redis_url)
            figures["farm"] = farm.ask("stats")
            ours.append(figures)
            print(f"run {run + 1} mailscore: {json.dumps(figures)}", file=sys.stderr)
            if not args.no_peer:
                farm.ask("reset")
                figures = run_peer(addresses, farm, args.peer_threads)
                figures["farm"] = farm.ask("stats")
                peers.append(figures)
                print(f"run {run + 1} peer: {json.dumps(figures)}", file=sys.stderr)
    finally:
        farm.stop()

    def median(runs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ratios = [o["per_second"] / p["per_second"] for o, p in zip(ours, peers, strict=False)]
    print(f"## Address verification throughput ({time.strftime('%Y-%m-%d')})\n")
    print(f"{len(addresses):,} addresses over {args.domains} domains, {args.delay_ms:.0f} ms before "
          f"every SMTP reply, per-MX concurrency {args.concurrency}, per-MX rate {args.rate:g}/s "
          f"(burst {args.burst}); {args.runs} runs, medians; {os.cpu_count()} cores, "
          f"Python {platform.python_version()}.\n")  # fmt: skip
    print(
        "| verifier | addresses/s | probe p50 | probe p95 | time to verdict p50 | p95 | max concurrency at any MX | verdicts (last run) |"
    )
    print("|---|---|---|---|---|---|---|---|")

    def row(label: str, runs: list[dict]) -> None:
        print(
            f"| {label} | {median(runs, 'per_second'):.0f} | {median(runs, 'probe_p50_ms'):.0f} ms | "
            f"{median(runs, 'probe_p95_ms'):.0f} ms | {median(runs, 'verdict_p50_ms') / 1000:.1f} s | "
            f"{median(runs, 'verdict_p95_ms') / 1000:.1f} s | "
            f"{max(r['farm']['max_concurrency'] for r in runs)} (limit {args.concurrency}) | "
            f"{runs[-1]['verdicts']} |"
        )

    if in_memory:
        row("mailscore, limits in memory", in_memory)
    row("mailscore, limits in Redis" if args.redis_url else "mailscore", ours)
    if peers:
        print(
            f"| py3-validate-email, {args.peer_threads} threads | {median(peers, 'per_second'):.0f} | "
            f"{median(peers, 'probe_p50_ms'):.0f} ms | {median(peers, 'probe_p95_ms'):.0f} ms | - | - | "
            f"{max(r['farm']['max_concurrency'] for r in peers)} (no limit) | {peers[-1]['verdicts']} |"
        )
        print(f"\nThroughput ratio, mailscore / peer, per run: "
              f"{', '.join(f'{r:.1f}x' for r in ratios)}; median {statistics.median(ratios):.1f}x.")  # fmt: skip
    ceiling = politeness_ceiling(len(addresses), args.domains, args.rate, args.burst)
    if ceiling:
        shares = ", ".join(
            f"{label} {median(runs, 'per_second') / ceiling:.0%}"
            for label, runs in (("in memory", in_memory), ("mailscore", ours))
            if runs
        )
        print(f"\nPoliteness ceiling: {ceiling:,.0f} addresses/s; medians reach {shares} of it.")
    cpu = ", ".join(
        f"{label} {median(runs, 'cpu_s'):.1f} s"
        for label, runs in (("in memory", in_memory), ("mailscore", ours))
        if runs
    )
    print(f"CPU of the verifier's process per run, medians: {cpu}.")
    if in_memory:
        shared = [r["per_second"] / m["per_second"] for r, m in zip(ours, in_memory, strict=True)]
        print(f"Redis / in memory, per run: {', '.join(f'{r:.2f}' for r in shared)}; "
              f"median {statistics.median(shared):.2f}.")  # fmt: skip
    print(
        f"\nDATA commands the farm received: {sum(r['farm']['data_commands'] for r in ours + peers + in_memory)}."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"mailscore": ours, "peer": peers, "in_memory": in_memory}, indent=2)
        )


if __name__ == "__main__":
    main()
