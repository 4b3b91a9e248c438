"""POST /api/v1/validate latency through the web process, uncached and cached, next to the
engine's own time for the same addresses in-process.

A local farm (domains with their own MX on loopback, every SMTP reply delayed) answers DNS and
SMTP; gunicorn serves the API as the Procfile starts it, on embedded PostgreSQL and Redis. Each
address is asked once (the engine runs: DNS, SMTP up to RCPT), then again (the answer comes
from Redis). Requests go one at a time, so the figures are latencies, not throughput. The
verify scope's rate limit is turned off for the run: 120 a minute by default would stop it.

    python benchmarks/validate_latency.py [--addresses 100] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.verify_throughput import farm_spec  # noqa: E402
from tests.farm import Farm  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def post(url: str, key: str, address: str) -> tuple[float, dict]:
    request = urllib.request.Request(
        f"{url}/api/v1/validate", data=json.dumps({"email": address}).encode(), method="POST",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )  # fmt: skip
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=100)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.05, help="SMTP reply delay, seconds")
    arguments = parser.parse_args()

    per_domain = max(1, arguments.addresses // arguments.domains)
    farm = Farm(farm_spec(arguments.domains, per_domain * 2, arguments.delay)).start_in_thread()
    os.environ.update({
        "MAILSCORE_SMTP_PORT": str(farm.port),
        "MAILSCORE_DNS_NAMESERVERS": farm.nameserver,
        "MAILSCORE_HELO_HOSTNAME": "bench.mailscore.test",
        "MAILSCORE_MAIL_FROM": "bounces@mailscore.test",
        "MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS": "true",
        "MAILSCORE_SMTP_ALLOWED_NETWORKS": "127.0.0.0/8",  # the farm is on loopback
        "MAILSCORE_SMTP_PER_HOST_RATE": "0",
        "MAILSCORE_THROTTLE_VERIFY": "off",
    })  # fmt: skip
    from benchmarks.system import System

    system = System()
    addresses = [f"user{i}@d{d}.bench.test" for d in range(arguments.domains)
                 for i in range(per_domain)][: arguments.addresses]  # fmt: skip
    try:
        system.start_web_only(workers=2)
        uncached, cached, verdicts = [], [], {}
        for address in addresses:
            elapsed, body = post(system.url, system.api_key, address)
            assert not body["cached"], body
            uncached.append(elapsed)
            verdicts[body["verdict"]] = verdicts.get(body["verdict"], 0) + 1
        for address in addresses:
            elapsed, body = post(system.url, system.api_key, address)
            assert body["cached"], body
            cached.append(elapsed)

        from apps.verification.services import build_verifier

        async def engine_times() -> list[float]:
            verifier = build_verifier(use_cache=False)
            times = []
            for address in addresses:
                started = time.perf_counter()
                await verifier.verify(address, smtp=True, greylist_wait=0)
                times.append((time.perf_counter() - started) * 1000)
            return times

        engine = asyncio.run(engine_times())
    finally:
        system.stop()
        farm.stop_thread()

    print(f"{len(addresses)} addresses on {arguments.domains} farm domains, SMTP replies delayed "
          f"{arguments.delay * 1000:.0f} ms; verdicts {verdicts}\n")  # fmt: skip
    print(f"{'':34}{'median ms':>10}{'p95 ms':>10}")
    for label, values in (("validate, not cached (HTTP)", uncached),
                          ("validate, cached (HTTP)", cached),
                          ("engine alone, no engine cache", engine)):  # fmt: skip
        print(f"{label:34}{statistics.median(values):>10.1f}{percentile(values, 0.95):>10.1f}")
    print(
        f"\nnot cached / engine alone: {statistics.median(uncached) / statistics.median(engine):.2f}x"
    )


if __name__ == "__main__":
    main()
