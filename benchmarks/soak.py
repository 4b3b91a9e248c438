"""Soak: a steady stream of real mail through the whole system, watched over time and plotted.

Queue depth, ingest-to-final latency and every process's memory are sampled throughout. The
system is started as `make run` starts it (manage.py up) on a fresh embedded PostgreSQL and Redis
and warmed up with the sample mailbox. Its end-to-end capacity is measured with a burst unless
--rate or --capacity is given. Mail is then posted open-loop at --fraction of it for --minutes;
--kill-worker-at SIGKILLs a triage pool child part-way. The run ends once every accepted message
is final (or --drain-timeout passes). The figure and its data go to docs/.

    python benchmarks/soak.py [--minutes 10] [--fraction 0.7] [--kill-worker-at 0.5]
    python benchmarks/soak.py --plot-only docs/soak-series.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import psutil
from pipeline_end_to_end import post_all, wait_triaged
from system import ROOT, SAMPLES, System, corpus, queue_depths

from apps.inbox.engine.mailbox import iter_messages
from tasks.queues import CeleryQueue

FINAL = ("triaged", "needs_review", "failed")
QUEUES = (str(CeleryQueue.TRIAGE), str(CeleryQueue.GENERATE), str(CeleryQueue.VERIFY))
MIB = 1024 * 1024
# Lines of the processes' log worth counting after a kill: Celery's master reports each pool
# child that died of a signal, and each replacement that did not come up in time.
LOG_SIGNS = {
    "pool children killed by a signal": "exited with 'signal",
    "replacements that did not start in time": "Timed out waiting for UP message",
}
# The kill is meant to land mid-batch: past its moment, it waits this long for a busy child.
KILL_WAIT_FOR_BUSY_S = 15.0


class Sampler(threading.Thread):
    """Every interval: messages queued and processing, the Celery queues' Redis lists and each
    process's RSS. Kills a triage pool child at kill_at seconds, if asked. Stops once the
    stream has ended and nothing is waiting, or drain_timeout seconds after the stream."""

    def __init__(
        self,
        system: System,
        clock_zero: float,
        interval: float,
        kill_at: float | None,
        drain_timeout: float,
    ) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.system = system
        self.clock_zero = clock_zero
        self.interval = interval
        self.kill_at = kill_at
        self.drain_timeout = drain_timeout
        self.series: dict[str, list] = {"t": [], "queued": [], "processing": []}
        self.series.update({queue: [] for queue in QUEUES})
        self.rss_mib: dict[str, list[float | None]] = {}
        self.pids: dict[str, list[list]] = {}  # role -> [[seconds, pid], ...] at each change
        self.roles: dict[str, psutil.Process] = {}
        self.cpu_seen: dict[int, tuple[float, float]] = {}  # pid -> (CPU seconds then, now)
        self.kill: dict | None = None
        self.stream_ended_at: float | None = None
        self.drained_at: float | None = None
        self.error: BaseException | None = None
        self.halt = threading.Event()  # the run is being abandoned

    def now(self) -> float:
        return time.perf_counter() - self.clock_zero

    def run(self) -> None:
        from django.db import connection

        try:
            services = self.system.service_processes()
            tick = time.perf_counter()
            while True:
                elapsed = self.now()
                waiting = self.sample(elapsed, services)
                if self.kill_at is not None and self.kill is None and elapsed >= self.kill_at:
                    self.kill_triage_child(elapsed)
                ended = self.stream_ended_at
                if self.halt.is_set():
                    return
                if ended is not None and waiting == 0:
                    self.drained_at = elapsed
                    return
                if ended is not None and elapsed > ended + self.drain_timeout:
                    return
                tick += self.interval
                time.sleep(max(0.0, tick - time.perf_counter()))
        except BaseException as exc:  # reported by the main thread after the stream
            self.error = exc
        finally:
            connection.close()

    def sample(self, elapsed: float, services: dict[str, list[psutil.Process]]) -> int:
        depths = queue_depths(QUEUES)
        self.series["t"].append(round(elapsed, 2))
        for name, value in depths.items():
            self.series[name].append(value)
        roles = self.roles = self.system.processes()
        memory: dict[str, float] = {}
        for role, process in roles.items():
            try:
                memory[role] = process.memory_info().rss / MIB
                if role.startswith("triage child"):
                    used = sum(process.cpu_times()[:2])
                    self.cpu_seen[process.pid] = (
                        self.cpu_seen.get(process.pid, (0, used))[1],
                        used,
                    )
            except psutil.Error:
                continue
            changes = self.pids.setdefault(role, [])
            if not changes or changes[-1][1] != process.pid:
                changes.append([round(elapsed, 2), process.pid])
        if "redis" in services:
            with suppress(psutil.Error):
                memory["redis"] = services["redis"][0].memory_info().rss / MIB
        if "postgres" in services:
            postmaster = services["postgres"][0]
            try:
                postgres = [postmaster, *postmaster.children()]
            except psutil.Error:
                postgres = []
            private = 0
            for process in postgres:
                try:
                    info = process.memory_info()
                except psutil.Error:
                    continue
                private += info.rss - info.shared
            if postgres:
                memory["postgres (private, all backends)"] = private / MIB
        count = len(self.series["t"])
        for role in memory:
            self.rss_mib.setdefault(role, [None] * (count - 1))
        for role, values in self.rss_mib.items():
            value = memory.get(role)
            values.append(round(value, 1) if value is not None else None)
        if self.kill and self.kill.get("pid"):
            self.note_replacement(roles, elapsed)
        return depths["queued"] + depths["processing"]

    def kill_triage_child(self, elapsed: float) -> None:
        """SIGKILL the triage pool child, as the OOM killer would: at kill_at if it is busy,
        else at its first busy sample up to KILL_WAIT_FOR_BUSY_S later, else regardless."""
        children = sorted(
            (role, process)
            for role, process in self.roles.items()
            if role.startswith("triage child")
        )
        waited_enough = elapsed >= self.kill_at + KILL_WAIT_FOR_BUSY_S
        if not children:
            if waited_enough:
                self.kill = {"at_s": round(elapsed, 2), "pid": None,
                             "error": "no triage pool child was running"}  # fmt: skip
            return
        role, victim = children[0]
        before, now = self.cpu_seen.get(victim.pid, (0.0, 0.0))
        busy = now - before >= 0.1 * self.interval
        if not busy and not waited_enough:
            return
        os.kill(victim.pid, signal.SIGKILL)
        master = self.roles.get("triage worker")
        self.kill = {
            "at_s": round(elapsed, 2),
            "pid": victim.pid,
            "role": role,
            "busy": busy,
            "master_pid": master.pid if master else None,
        }
        print(f"  {elapsed:5.0f}s: SIGKILL sent to the triage pool child, pid {victim.pid} "
              f"({'busy' if busy else 'idle'})", flush=True)  # fmt: skip

    def note_replacement(self, roles: dict[str, psutil.Process], elapsed: float) -> None:
        """Every triage pool child first seen after the kill: one if the pool replaced the
        child once, more if it keeps starting children that do not last."""
        seen = self.kill.setdefault("children_started", [])
        known = {pid for _, pid in seen} | {self.kill["pid"]}
        for role, process in roles.items():
            if role.startswith("triage child") and process.pid not in known:
                seen.append([round(elapsed, 2), process.pid])


async def stream(
    url: str, key: str, raws: list[bytes], rate: float, clock_zero: float
) -> tuple[dict[int, float], Counter, float]:
    """Post raws open-loop, one every 1/rate seconds from clock_zero, whatever the answers.
    Returns the accepted messages' ids (with when each was due), the count per outcome, and
    when the last answer came."""
    import aiohttp

    accepted: dict[int, float] = {}
    outcomes: Counter = Counter()
    headers = {"X-API-Key": key, "Content-Type": "message/rfc822"}
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(slot: int, raw: bytes) -> None:
            due = slot / rate
            await asyncio.sleep(max(0.0, clock_zero + due - time.perf_counter()))
            try:
                async with session.post(
                    f"{url}/api/v1/messages", data=raw, headers=headers
                ) as response:
                    body = await response.json(content_type=None)
                    outcomes[str(response.status)] += 1
                    if response.status == 202:
                        accepted[body["id"]] = due
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(one(slot, raw) for slot, raw in enumerate(raws)))
    return accepted, outcomes, time.perf_counter() - clock_zero


def warm_up(system: System) -> None:
    """A running system has its models loaded and connections open: the samples go through
    first."""
    warm = [m.raw for m in iter_messages([SAMPLES]) if m.raw]
    asyncio.run(post_all(system.url, system.api_key, warm, 4))
    _, counts = wait_triaged(len(warm), time.perf_counter(), 600, prefix="<")
    if sum(counts.get(status, 0) for status in FINAL) < len(warm):
        raise SystemExit(f"The warm-up with the sample mailbox did not finish: {counts}")


def measure_capacity(system: System, count: int, timeout: float) -> tuple[float, str]:
    """Messages per second from the first POST of a burst of count messages until every one
    is final."""
    run = uuid.uuid4().hex[:8]
    raws = corpus(count, run)
    started = time.perf_counter()
    asyncio.run(post_all(system.url, system.api_key, raws, 16))
    elapsed, counts = wait_triaged(count, started, timeout, prefix=f"<bench-{run}-")
    if sum(counts.get(status, 0) for status in FINAL) < count:
        raise SystemExit(f"The capacity burst did not drain in {timeout:.0f}s: {counts}")
    return count / elapsed, f"measured: {count} messages in {elapsed:.1f}s"


def outcomes_of(message_ids: list[int], wall_zero: float) -> list[list]:
    """Per accepted message: [id, ingested, final, status, classify finished], in seconds from
    the start of the stream (final and classify None where not reached). A finished message
    became final when its verify_sender step finished; a failed one at its last update."""
    from apps.inbox.models import Message

    found = []
    for start in range(0, len(message_ids), 2000):
        rows = Message.objects.filter(id__in=message_ids[start : start + 2000]).values_list(
            "id", "ingested_at", "status", "updated_at", "steps"
        )
        for message_id, ingested_at, status, updated_at, steps in rows:
            final_at = None
            if status in FINAL:
                finished = (steps.get("verify_sender") or {}).get("finished_at")
                if status == "failed" or not finished:
                    final_at = updated_at.timestamp()
                else:
                    final_at = datetime.fromisoformat(finished).timestamp()
            classified = (steps.get("classify") or {}).get("finished_at")
            classified_at = datetime.fromisoformat(classified).timestamp() if classified else None
            found.append(
                [
                    message_id,
                    round(ingested_at.timestamp() - wall_zero, 2),
                    round(final_at - wall_zero, 2) if final_at else None,
                    status,
                    round(classified_at - wall_zero, 2) if classified_at else None,
                ]
            )
    return sorted(found)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def latency_windows(messages: list[list], stream_s: float, window: float) -> dict[str, list]:
    """p50 and p95 ingest-to-final latency of the messages ingested in each window (count: how
    many of them became final)."""
    windows: dict[str, list] = {
        "start_s": [],
        "ingested": [],
        "count": [],
        "p50_s": [],
        "p95_s": [],
    }
    for index in range(math.ceil(stream_s / window)):
        low, high = index * window, (index + 1) * window
        windows["ingested"].append(sum(1 for row in messages if low <= row[1] < high))
        spans = [
            final - ingested
            for _, ingested, final, _, _ in messages
            if low <= ingested < high and final is not None
        ]
        windows["start_s"].append(low)
        windows["count"].append(len(spans))
        windows["p50_s"].append(round(percentile(spans, 0.50), 3) if spans else None)
        windows["p95_s"].append(round(percentile(spans, 0.95), 3) if spans else None)
    return windows


def log_signs(log: Path, since: float) -> dict[str, int]:
    """How many lines of the processes' log after byte offset since show each of LOG_SIGNS."""
    if not log.exists():
        return {}
    with log.open("rb") as handle:
        handle.seek(int(since))
        text = handle.read().decode("utf-8", "replace")
    lines = text.splitlines()
    return {label: sum(sign in line for line in lines) for label, sign in LOG_SIGNS.items()}


def run(options: argparse.Namespace) -> dict:
    system = System()
    sampler = None
    try:
        print(f"data directory: {system.data_dir}", flush=True)
        system.start()
        warm_up(system)
        if options.rate:
            capacity, source, rate = None, "--rate", options.rate
        else:
            if options.capacity:
                capacity, source = options.capacity, "--capacity"
            else:
                print(f"measuring capacity with {options.burst} messages ...", flush=True)
                capacity, source = measure_capacity(system, options.burst, options.drain_timeout)
            rate = options.fraction * capacity
            print(
                f"capacity {capacity:.1f} msg/s ({source}); offering {rate:.1f} msg/s", flush=True
            )
        stream_s = options.minutes * 60
        raws = corpus(math.ceil(rate * stream_s))
        log = system.data_dir / "processes.log"
        log_offset = log.stat().st_size if log.exists() else 0
        clock_zero = time.perf_counter() + 1.0
        wall_zero = time.time() + 1.0
        kill_at = options.kill_worker_at * stream_s if options.kill_worker_at else None
        sampler = Sampler(system, clock_zero, options.interval, kill_at, options.drain_timeout)
        own_cpu = -sum(os.times()[:2])
        sampler.start()
        print(f"streaming {len(raws)} messages over {stream_s:.0f}s ...", flush=True)
        accepted, outcomes, stream_end = asyncio.run(
            stream(system.url, system.api_key, raws, rate, clock_zero)
        )
        sampler.stream_ended_at = stream_end
        print(f"  {stream_end:5.0f}s: stream ended {dict(outcomes)}; draining ...", flush=True)
        sampler.join()
        own_cpu += sum(os.times()[:2])
        if sampler.error is not None:
            raise sampler.error
        signs = log_signs(log, log_offset)
    finally:
        if sampler is not None:
            sampler.halt.set()
        system.stop()
    messages = outcomes_of(sorted(accepted), wall_zero)
    kill = sampler.kill
    if kill is not None:
        kill["log"] = signs
        after = [c for _, _, _, _, c in messages if c is not None and c > kill["at_s"]]
        kill["first_classify_after_s"] = round(min(after), 2) if after else None
    statuses = Counter(status for _, _, _, status, _ in messages)
    return {
        "run": {
            "date": datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}",
            "minutes": options.minutes,
            "stream_s": round(stream_end, 2),
            "rate_offered": round(rate, 2),
            "capacity": round(capacity, 2) if capacity else None,
            "capacity_source": source,
            "fraction": options.fraction if capacity else None,
            "interval_s": options.interval,
            "window_s": options.window,
            "drained_at_s": None if sampler.drained_at is None else round(sampler.drained_at, 2),
            "drain_timeout_s": options.drain_timeout,
            # The load generator and the sampler share the machine with the system under test.
            "benchmark_cpu_s": round(own_cpu, 1),
        },
        "requests": {"sent": len(raws), "outcomes": dict(outcomes), "accepted": len(accepted)},
        "final": {
            "statuses": dict(statuses),
            "failed": statuses.get("failed", 0),
            "lost": len(accepted) - sum(statuses.get(status, 0) for status in FINAL),
        },
        "kill": kill,
        "samples": {**sampler.series, "rss_mib": sampler.rss_mib, "pids": sampler.pids},
        "latency": latency_windows(messages, options.minutes * 60, options.window),
        "messages": {
            "columns": ["id", "ingested_s", "final_s", "status", "classified_s"],
            "rows": messages,
        },
    }


def edges(data: dict) -> tuple[float, float]:
    """The first and last stretch of the stream compared in the summary: a minute each, or
    each half of a stream shorter than two minutes."""
    stream_s = data["run"]["minutes"] * 60
    span = min(60.0, stream_s / 2)
    return span, stream_s - span


def memory_changes(data: dict) -> dict[str, tuple[float, float]]:
    """Each process's mean RSS (MiB) over the first and over the last stretch of the stream."""
    first_end, last_start = edges(data)
    stream_s = data["run"]["minutes"] * 60
    times = data["samples"]["t"]
    changes = {}
    for role, values in data["samples"]["rss_mib"].items():
        pairs = [(t, v) for t, v in zip(times, values, strict=True) if v is not None]
        first = [v for t, v in pairs if t < first_end]
        last = [v for t, v in pairs if last_start <= t <= stream_s]
        if first and last:
            changes[role] = (statistics.mean(first), statistics.mean(last))
    return changes


def summary(data: dict) -> str:
    run, requests, final = data["run"], data["requests"], data["final"]
    samples = data["samples"]
    stream_s = run["minutes"] * 60
    first_end, last_start = edges(data)
    span = first_end
    lines = [f"machine: {run['machine']}"]
    if "benchmark_cpu_s" in run:
        lines[0] += (
            f"; the benchmark's own process (load, sampling) used "
            f"{run['benchmark_cpu_s']:.0f} CPU seconds from the stream's start on"
        )
    if run["capacity"]:
        lines.append(
            f"capacity: {run['capacity']:.1f} msg/s ({run['capacity_source']}); "
            f"offered {run['fraction']:.0%} of it"
        )
    lines.append(
        f"rate: offered {run['rate_offered']:.2f} msg/s, accepted "
        f"{requests['accepted'] / run['stream_s']:.2f} msg/s over {run['stream_s']:.0f}s"
    )
    lines.append(
        f"messages: {requests['sent']} sent, {requests['accepted']} accepted; answers "
        f"{requests['outcomes']}"
    )
    drained = run["drained_at_s"]
    lines.append(
        f"final: {final['statuses']}; failed {final['failed']}, lost (accepted, never final) "
        f"{final['lost']}; "
        + (
            f"all final {drained - run['stream_s']:.0f}s after the stream ended"
            if drained is not None
            else f"NOT drained {run['drain_timeout_s']:.0f}s after the stream ended"
        )
    )
    rows = data["messages"]["rows"]

    def latency(low: float, high: float) -> str:
        spans = [f - i for _, i, f, _, _ in rows if low <= i < high and f is not None]
        if not spans:
            return "none final"
        return (f"p50 {percentile(spans, 0.50):.1f}s, p95 {percentile(spans, 0.95):.1f}s "
                f"(n={len(spans)})")  # fmt: skip

    lines.append(f"ingest to final, first {span:.0f}s of the stream: {latency(0, first_end)}")
    lines.append(f"ingest to final, last {span:.0f}s of the stream: "
                 f"{latency(last_start, stream_s)}")  # fmt: skip
    times = samples["t"]
    waiting = [q + p for q, p in zip(samples["queued"], samples["processing"], strict=True)]
    during = [w for t, w in zip(times, waiting, strict=True) if t <= run["stream_s"]]
    lines.append(
        f"queue depth (queued + processing): max {max(during, default=0)} during the "
        f"stream; Redis lists max " + ", ".join(f"{q} {max(samples[q], default=0)}" for q in QUEUES)
    )
    lines.append(f"memory (RSS MiB), mean over the first {span:.0f}s vs the last {span:.0f}s:")
    for role, (first, last) in memory_changes(data).items():
        lines.append(f"  {role:<34} {first:8.1f} -> {last:8.1f}  ({last - first:+.1f})")
    kill = data["kill"]
    if kill:
        if kill.get("pid") is None:
            lines.append(f"kill at {kill['at_s']:.0f}s: {kill.get('error')}")
        else:
            started = kill.get("children_started", [])
            if not started:
                replaced = "no new triage child seen"
            elif len(started) == 1:
                replaced = f"replaced by pid {started[0][1]}, seen at {started[0][0]:.1f}s"
            else:
                replaced = (f"{len(started)} triage children started after it (first at "
                            f"{started[0][0]:.1f}s, last at {started[-1][0]:.1f}s)")  # fmt: skip
            resumed = (
                f"first classify after it finished at {kill['first_classify_after_s']:.1f}s"
                if kill["first_classify_after_s"] is not None
                else "no classify finished after it"
            )
            lines.append(
                f"kill: SIGKILL to the triage pool child pid {kill['pid']} "
                f"({'busy' if kill.get('busy') else 'idle'}) at {kill['at_s']:.1f}s; {replaced}; "
                f"{resumed}; in the log: "
                + ", ".join(f"{count} {label}" for label, count in kill["log"].items())
            )
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    """Three panels on one time axis: queue depth, ingest-to-final latency, RSS per process."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import offset_copy

    run, samples, latency, kill = data["run"], data["samples"], data["latency"], data["kill"]
    in_minutes = run["minutes"] > 3
    scale, unit = (60.0, "minutes") if in_minutes else (1.0, "seconds")
    times = [t / scale for t in samples["t"]]
    figure, (depth_axis, latency_axis, memory_axis) = plt.subplots(
        3, 1, sharex=True, figsize=(12, 10), height_ratios=[1, 1, 1.4], layout="constrained"
    )
    duration = f"{run['minutes']:g}-minute run"
    offered = f"{run['rate_offered']:.1f} msg/s offered"
    if run["capacity"]:
        offered += f" ({run['fraction']:.0%} of {run['capacity']:.1f} msg/s measured end to end)"
    final = data["final"]
    figure.suptitle(
        f"mailscore soak, {duration}: {offered}\n{data['requests']['accepted']} messages "
        f"accepted, {final['failed']} failed, {final['lost']} lost"
        + (", one triage pool child SIGKILLed" if kill else "")
        + f"  ·  {run['machine']}, {run['date'][:10]}",
        fontsize=11,
    )

    depth_axis.stackplot(
        times,
        samples["queued"],
        samples["processing"],
        labels=["queued (database)", "processing (database)"],
        colors=["#9ecae1", "#3182bd"],
        alpha=0.9,
    )
    for queue, style in zip(QUEUES, ("-", "--", ":"), strict=True):
        depth_axis.plot(
            times,
            samples[queue],
            style,
            color="#d95f02",
            linewidth=1.2,
            label=f"Redis list '{queue}'",
        )
    depth_axis.set_ylabel("messages / tasks waiting")
    depth_axis.set_title("Queue depth", loc="left", fontsize=10)
    depth_axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    depth_axis.set_ylim(bottom=0)
    depth_axis.margins(y=0.15)

    starts = [(s + run["window_s"] / 2) / scale for s in latency["start_s"]]
    latency_axis.plot(starts, latency["p95_s"], "o-", color="#e6550d", label="p95")
    latency_axis.plot(starts, latency["p50_s"], "o-", color="#31a354", label="p50")
    unfinished = [
        start
        for start, ingested, final in zip(
            starts, latency["ingested"], latency["count"], strict=True
        )
        if ingested > final
    ]
    if unfinished:
        latency_axis.plot(unfinished, [0.93] * len(unfinished), "x", color="#cb181d",
                          transform=latency_axis.get_xaxis_transform(),
                          label="not all final")  # fmt: skip
    latency_axis.set_ylabel("seconds")
    latency_axis.set_title(
        f"Ingest to final state, messages ingested in each {run['window_s']:g} s window",
        loc="left",
        fontsize=10,
    )
    latency_axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    latency_axis.set_ylim(bottom=0)

    # Largest first, so that the legend reads in the order of the lines; each entry says how
    # far the process moved between the first and the last stretch of the stream.
    changes = memory_changes(data)
    roles = sorted(samples["rss_mib"], key=lambda r: -max(v or 0 for v in samples["rss_mib"][r]))
    colours = plt.get_cmap("tab10").colors
    for index, role in enumerate(roles):
        # A gap (no such process at that moment, e.g. a killed child not yet replaced) stays
        # a gap in the line.
        ys = [math.nan if v is None else v for v in samples["rss_mib"][role]]
        first, last = changes.get(role, (None, None))
        label = role if first is None else f"{role}: {first:.0f} → {last:.0f} ({last - first:+.1f})"
        memory_axis.plot(times, ys, color=colours[index % 10], linewidth=1.4, label=label,
                         linestyle="-" if index < 10 else "--")  # fmt: skip
    memory_axis.set_ylabel("RSS, MiB")
    span, _ = edges(data)
    memory_axis.set_title(f"Memory per process (legend: mean MiB, first {span:.0f} s → last "
                          f"{span:.0f} s of the stream)", loc="left", fontsize=10)  # fmt: skip
    memory_axis.set_ylim(bottom=0)
    memory_axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    memory_axis.set_xlabel(f"{unit} since the stream started")

    stream_end = run["stream_s"] / scale
    killed = kill["at_s"] / scale if kill and kill.get("pid") else None
    for axis in (depth_axis, latency_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.axvspan(stream_end, max(times[-1], stream_end), color="0.92", zorder=0)
        if killed is not None:
            axis.axvline(killed, color="#cb181d", linestyle="--", linewidth=1.5)
    marks = [(stream_end, "stream ends ", "0.35")]
    if killed is not None:
        state = {True: "busy ", False: "idle "}.get(kill.get("busy"), "")
        marks.append((killed, f"SIGKILL {state}triage child {kill['pid']} ", "#cb181d"))
    for axis in (depth_axis, latency_axis):
        for where, text, colour in marks:
            beside = offset_copy(axis.get_xaxis_transform(), fig=figure, x=-3, units="points")
            axis.text(where, 0.97, text, transform=beside, rotation=90, ha="right", va="top",
                      fontsize=8, color=colour)  # fmt: skip
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(data: dict, stem: Path) -> tuple[Path, Path]:
    series = stem.with_name(f"{stem.name}-series.json")
    picture = stem.with_name(f"{stem.name}.png")
    series.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    plot(data, picture)
    return picture, series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the stream")
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--rate", type=float, help="offer this many messages per second")
    given.add_argument(
        "--capacity",
        type=float,
        help="end-to-end capacity in messages per second, known from before",
    )
    given.add_argument(
        "--measure-capacity",
        action="store_true",
        help="measure the capacity with a burst first (the default)",
    )
    parser.add_argument(
        "--burst", type=int, default=600, help="messages in the capacity burst (default 600)"
    )
    parser.add_argument(
        "--fraction", type=float, default=0.7, help="share of the capacity to offer (default 0.7)"
    )
    parser.add_argument(
        "--kill-worker-at",
        type=float,
        metavar="SHARE",
        help="SIGKILL a triage pool child this far through the stream (0-1)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--window",
        type=float,
        default=10.0,
        help="seconds of ingest per latency point (default 10)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the last messages after the stream",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write STEM.png and STEM-series.json (default docs/soak, "
        "or docs/soak-worker-killed with --kill-worker-at)",
    )
    parser.add_argument(
        "--plot-only",
        type=Path,
        metavar="SERIES_JSON",
        help="draw the figure again from a run's -series.json, and print its summary",
    )
    options = parser.parse_args()
    if options.plot_only:
        name = options.plot_only.name
        if not name.endswith("-series.json") or not options.plot_only.exists():
            parser.error("--plot-only takes an existing STEM-series.json written by a soak run")
        data = json.loads(options.plot_only.read_text())
        picture = options.plot_only.with_name(name.removesuffix("-series.json") + ".png")
        plot(data, picture)
        print(summary(data))
        print(f"figure: {picture}")
        return
    if options.minutes <= 0:
        parser.error("--minutes must be above 0")
    if not 0 < options.fraction <= 1:
        parser.error("--fraction must be above 0 and at most 1")
    if options.rate is not None and options.rate <= 0:
        parser.error("--rate must be above 0 messages per second")
    if options.capacity is not None and options.capacity <= 0:
        parser.error("--capacity must be above 0 messages per second")
    if options.kill_worker_at is not None and not 0 < options.kill_worker_at < 1:
        parser.error("--kill-worker-at must be between 0 and 1 (a share of the stream)")
    if options.interval <= 0 or options.window <= 0 or options.burst <= 0:
        parser.error("--interval, --window and --burst must be above 0")
    default = "soak-worker-killed" if options.kill_worker_at else "soak"
    stem = options.output or ROOT / "docs" / default

    data = run(options)
    picture, series = write(data, stem)
    print(summary(data))
    print(f"figure: {picture}\nseries: {series}")


if __name__ == "__main__":
    main()
