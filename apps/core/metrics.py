"""mailscore's own Prometheus series (docs/operations.md, "Metrics"): every family, the helpers
that record them, and the collector that reads queues, partitions and retention at scrape.

Under gunicorn and Celery's prefork pool each process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR, and one scrape reads them all (multiprocess mode): the web's /metrics
for its gunicorn workers, each worker's exporter (start_exporter) for its pool's children.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# The Celery queues (tasks/queues.py's CeleryQueue; a test keeps the two equal). core imports no
# task module, so the names are repeated here.
QUEUES = ("triage", "generate", "verify", "maintenance", "webhooks")
# kombu's Redis transport keeps a queue's tasks of priority 0 in a list named for the queue, and
# those of other priorities in lists with these suffixes (its default priority steps).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
# The header each task gets when it is published (tasks/observability.py): seconds since the
# epoch. Celery's own message has no time of sending.
PUBLISHED_AT_HEADER = "mailscore_published_at"
# Where apply_retention leaves the time it last finished (seconds since the epoch).
RETENTION_LAST_RUN_KEY = "mailscore:retention:last_run"

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The chain's steps, as Batch.begin names them.
STEPS = ("classify", "prioritize", "summarize", "draft_reply", "verify_sender")

# A step runs on a whole batch (up to MAILSCORE_PIPELINE_BATCH messages), so its durations reach
# minutes; a model call is one encoder or generator batch.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

MESSAGES_INGESTED = Counter(
    "mailscore_messages_ingested_total",
    "Inputs offered to ingest, by source and outcome (accepted, duplicate, refused).",
    ["source", "outcome"],
)
INGEST_STORE_GROUP = Histogram(
    "mailscore_ingest_store_group_size",
    "Messages stored in one round trip and one commit: grouped by the web's group commit, or alone.",
    ["mode"],
    buckets=(1, 2, 4, 8, 16),
)
INGEST_DIRECT = Counter(
    "mailscore_ingest_direct_total",
    "Raw-message ingest POSTs taken by the web's direct route: answered there, or handed on to "
    "Django's handler (a refused key, a used-up limit, a failed store, ...).",
    ["outcome"],
)
MESSAGES_FINISHED = Counter(
    "mailscore_messages_finished_total",
    "Messages that left the chain, by category, priority and final status.",
    ["category", "priority", "status"],
)
STEP_DURATION = Histogram(
    "mailscore_step_duration_seconds",
    "Seconds one chain step took over one batch of messages.",
    ["step"],
    buckets=STEP_BUCKETS,
)
STEP_FAILURES = Counter(
    "mailscore_step_failures_total",
    "Messages a chain step marked failed.",
    ["step"],
)
INFERENCE_SECONDS = Histogram(
    "mailscore_inference_seconds",
    "Seconds of one model call over a batch.",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "mailscore_inference_batch_size",
    "Messages given to one model call.",
    ["model"],
    buckets=BATCH_SIZE_BUCKETS,
)
VERIFICATIONS = Counter(
    "mailscore_verifications_total",
    "Verification results, by verdict, reason and what asked (chain, validate, job).",
    ["verdict", "reason", "source"],
)
SMTP_REPLIES = Counter(
    "mailscore_smtp_replies_total",
    "Replies from mail servers to verification probes, by class (none: no reply came).",
    ["code_class"],
)
WEBHOOK_DELIVERIES = Counter(
    "mailscore_webhook_deliveries_total",
    "Webhook delivery attempts, by event and outcome (delivered, failed, retrying).",
    ["event", "outcome"],
)


# --- Recording ------------------------------------------------------------------------------


def count_ingested(source: str, outcome: str) -> None:
    MESSAGES_INGESTED.labels(source=source or "unknown", outcome=outcome).inc()


def count_direct_ingest(outcome: str) -> None:
    INGEST_DIRECT.labels(outcome=outcome).inc()


def observe_store_group(mode: str, size: int) -> None:
    INGEST_STORE_GROUP.labels(mode=mode).observe(size)


def count_finished(category: str | None, priority: str | None, status: str) -> None:
    MESSAGES_FINISHED.labels(
        category=category or "none", priority=priority or "none", status=status
    ).inc()


def observe_step(step: str, seconds: float) -> None:
    STEP_DURATION.labels(step=step).observe(seconds)


def count_step_failures(step: str, count: int = 1) -> None:
    if count:
        STEP_FAILURES.labels(step=step).inc(count)


@contextmanager
def inference(model: str, size: int) -> Iterator[None]:
    """Times one model call over `size` messages: `with inference("encoder", len(texts)): ...`.
    A call that raises is not counted."""
    started = time.perf_counter()
    yield
    if size:
        INFERENCE_SECONDS.labels(model=model).observe(time.perf_counter() - started)
        INFERENCE_BATCH_SIZE.labels(model=model).observe(size)


def smtp_code_class(code: int | None) -> str:
    if code is None or not 200 <= code < 600:
        return "none"
    return f"{code // 100}xx"


def record_verification(result, source: str) -> None:
    """Count a verification result (the engine's VerificationResult) and the SMTP replies its
    probe got. A result served from the cache counts as a verification, its replies not again."""
    VERIFICATIONS.labels(verdict=str(result.verdict), reason=str(result.reason),
                         source=source).inc()  # fmt: skip
    if not result.cached:
        count_smtp_replies(result.smtp)


def count_smtp_replies(smtp) -> None:
    """One count per reply in the probe's dialogue; a probe that connected to no server (or got
    no greeting) counts one "none"."""
    if not smtp.checked:
        return
    classes = [smtp_code_class(step.code) for step in smtp.steps]
    for code_class in classes or ["none"]:
        SMTP_REPLIES.labels(code_class=code_class).inc()


def count_webhook_delivery(event: str, outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(event=event, outcome=outcome).inc()


def mark_retention_run(client, when: float | None = None) -> None:
    """Remember when apply_retention finished (read at scrape); client is a Redis client."""
    client.set(RETENTION_LAST_RUN_KEY, f"{time.time() if when is None else when:.3f}")


# --- Read at scrape -------------------------------------------------------------------------


def queue_lists(queue: str) -> list[str]:
    return [queue + suffix for suffix in _PRIORITY_SUFFIXES]


def queue_depths(client) -> dict[str, int]:
    """Tasks waiting in each queue: one pipelined LLEN per list."""
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        for name in queue_lists(queue):
            pipe.llen(name)
    counts = iter(pipe.execute())
    return {queue: sum(next(counts) for _ in _PRIORITY_SUFFIXES) for queue in QUEUES}


def _published_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        headers = json.loads(raw).get("headers") or {}
        return float(headers[PUBLISHED_AT_HEADER])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def oldest_ages(client, now: float | None = None) -> dict[str, float]:
    """Seconds the oldest waiting task of each queue has waited (0 when none waits, or when it
    was published without the header). kombu pushes on the left and takes from the right: the
    oldest is the last element."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    for queue in QUEUES:
        for name in queue_lists(queue):
            pipe.lindex(name, -1)
    tails = iter(pipe.execute())
    ages = {}
    for queue in QUEUES:
        published = [_published_at(next(tails)) for _ in _PRIORITY_SUFFIXES]
        known = [p for p in published if p is not None]
        ages[queue] = max(0.0, now - min(known)) if known else 0.0
    return ages


def months_ahead(bounds: Iterable[tuple[datetime, datetime]], now: datetime) -> int:
    """Whole months after the current one that partitions cover without a gap."""
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    covered = sorted((lower, upper) for lower, upper in bounds)
    month, count = _next_month(start), 0
    while any(lower <= month < upper for lower, upper in covered):
        count += 1
        month = _next_month(month)
    return count


def _next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def partition_bounds(connection, tables: tuple[str, ...]) -> dict[str, list]:
    """Each table's monthly partitions as (lower, upper) bounds, in one catalog query."""
    from apps.core.partitions import _BOUND

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT parent.relname, pg_get_expr(child.relpartbound, child.oid)
            FROM pg_inherits
            JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
            JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            JOIN pg_namespace ns ON ns.oid = parent.relnamespace
            WHERE parent.relname = ANY(%s) AND ns.nspname = current_schema()
            """,
            [list(tables)],
        )
        rows = cursor.fetchall()
    found: dict[str, list] = {table: [] for table in tables}
    for table, bound in rows:
        match = _BOUND.search(bound or "")
        if match:  # the DEFAULT partition has no bounds
            lower, upper = (
                datetime.fromisoformat(value).astimezone(UTC) for value in match.groups()
            )
            found[table].append((lower, upper))
    return found


class OperationsCollector:
    """mailscore_queue_depth, mailscore_queue_oldest_age_seconds,
    mailscore_partitions_months_ahead and mailscore_retention_last_run_timestamp_seconds, read
    when scraped: a pipelined LLEN and LINDEX per queue list, one GET, one catalog query. A
    source that does not answer leaves its families out of that scrape (and logs why)."""

    def __init__(self, redis_client, partition_bounds) -> None:
        # partition_bounds() -> {table: [(lower, upper), ...]}
        self.redis_client = redis_client
        self.partition_bounds = partition_bounds

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._partitions()

    def _queues(self) -> Iterator[Metric]:
        try:
            client = self.redis_client()
            depths = queue_depths(client)
            ages = oldest_ages(client)
            last_run = client.get(RETENTION_LAST_RUN_KEY)
        except Exception as exc:  # the scrape goes on without these; the alert on age fires
            logger.warning("Metrics: Redis unavailable for queue depths: %s", exc)
            return
        depth = GaugeMetricFamily("mailscore_queue_depth", "Tasks waiting in each queue.",
                                  labels=["queue"])  # fmt: skip
        age = GaugeMetricFamily(
            "mailscore_queue_oldest_age_seconds",
            "Seconds the oldest task waiting in each queue has waited (0: none waits).",
            labels=["queue"],
        )
        for queue in QUEUES:
            depth.add_metric([queue], depths[queue])
            age.add_metric([queue], ages[queue])
        yield depth
        yield age
        retention = GaugeMetricFamily(
            "mailscore_retention_last_run_timestamp_seconds",
            "When apply_retention last finished, in seconds since the epoch (0: never).",
        )
        retention.add_metric([], float(last_run) if last_run else 0.0)
        yield retention

    def _partitions(self) -> Iterator[Metric]:
        try:
            bounds = self.partition_bounds()
        except Exception as exc:
            logger.warning("Metrics: database unavailable for partitions: %s", exc)
            return
        family = GaugeMetricFamily(
            "mailscore_partitions_months_ahead",
            "Whole months after the current one that each partitioned table has partitions for.",
            labels=["table"],
        )
        now = datetime.now(UTC)
        for table, table_bounds in sorted(bounds.items()):
            family.add_metric([table], months_ahead(table_bounds, now))
        yield family


# --- Exposition -----------------------------------------------------------------------------


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROC_DIR_VARIABLE, "")


def process_registry() -> CollectorRegistry:
    """Every process's samples: read from the multiprocess directory where there is one, else
    this process's own."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def clear_multiprocess_dir() -> None:
    """Empty the multiprocess directory at start: files of processes from an earlier run would
    be summed with this one's. This process's own files stay: it may have them open already,
    and what it wrote to a removed file would be lost."""
    directory = multiprocess_dir()
    if not directory:
        return
    path = Path(directory)
    own = f"_{os.getpid()}.db"
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif not entry.name.endswith(own):
                entry.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)


def start_series() -> None:
    """Zero series for what may not happen for a long time (a step failing), so that the family
    is there from the start and rate() over it works. Called once the multiprocess directory is
    ready (a worker's start), not at import."""
    for step in STEPS:
        STEP_FAILURES.labels(step=step)


def start_exporter(port: int, address: str = "0.0.0.0") -> int:  # noqa: S104 (a pod's exporter is scraped from outside it; the NetworkPolicy admits only Prometheus)
    """An HTTP server for this process and its children's samples (a worker's main process, on
    MAILSCORE_METRICS_PORT). Returns the port it listens on (port 0 picks a free one)."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(port, addr=address, registry=process_registry())
    return server.server_port


def mark_process_dead(pid: int) -> None:
    """A process of the pool ended: its live gauges go (its counters stay in the sums)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
