"""Bulk verification jobs: made from a list of addresses, checked shard by shard on the verify
pool, each address's answer stored as it comes.

A job's rows are split into shards by domain, so that every address of a domain is checked by
one run: the engine checks a domain's duplicates once, reuses its connections, and keeps its
politeness limits (shared through Redis with every other run). A shard's run holds a lease in
Redis while it works and renews it as it stores answers; when a worker dies, its lease runs out
and the sweep (resume_stalled) hands the shard to another run, which carries on with the rows
still unchecked. Storing an answer only fills a row that has none, so a shard run twice costs
work, never a wrong count.

A greylisting or rate-limiting server is asked again later rather than waited for: the shard
keeps those rows unchecked and is run again after the server's delay (doubling each time), and
after MAX_ATTEMPTS takes the answer as it is (unknown, greylisted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.exceptions
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from apps.core import metrics
from apps.core.connections import redis_connection
from apps.verification import validation
from apps.verification.engine.later import retry_countdown, wants_retry
from apps.verification.engine.result import VerificationResult
from apps.verification.evidence import with_mail_evidence
from apps.verification.models import (
    FINISHED_JOB_STATUSES,
    JobStatus,
    VerificationJob,
    VerificationJobItem,
)
from apps.verification.services import build_verifier
from apps.verification.signals import job_shards_ready
from apps.webhooks.signals import job_finished

logger = logging.getLogger(__name__)

# How often a shard's run stores what it has, renews its lease and looks for a cancellation.
FLUSH_SECONDS = 0.5
FLUSH_ROWS = 500
# Asked this many times in all, a greylisting server's answer is taken as it is.
MAX_ATTEMPTS = 6
LEASE_PREFIX = "mailscore:job:lease:"
QUEUED_PREFIX = "mailscore:job:queued:"
# A shard handed to the broker is not handed again for this long: the sweep would otherwise
# queue it once more on every pass while the verify pool is busy with other work.
QUEUED_SECONDS = 300


class JobError(Exception):
    """A job cannot do what was asked (cancel a finished job, say); the message says why."""


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().rstrip(".").lower()


def shard_of(email: str, shards: int) -> int:
    # crc32, not hash(): the same domain must land in the same shard in every process.
    return zlib.crc32(domain_of(email).encode("utf-8", "surrogatepass")) % shards


def create_job(emails: list[str], *, source: str, created_by: str = "") -> VerificationJob:
    """Store a job and its rows, and ask for its shards to be run once the rows are committed.
    The caller has checked the input (size, text)."""
    domains = {domain_of(email) for email in emails}
    shards = max(1, min(settings.MAILSCORE_JOB_SHARDS, len(domains)))
    with transaction.atomic():
        job = VerificationJob.objects.create(
            source=source,
            created_by=created_by,
            total=len(emails),
            unique=len({email.strip().lower() for email in emails}),
            shards=shards,
        )
        _copy_rows(job, emails)
        transaction.on_commit(lambda: announce(job.id, range(shards)))
    return job


def _copy_rows(job: VerificationJob, emails: list[str]) -> None:
    """The rows through COPY: a 100,000-address job is stored in well under a second."""
    columns = "job_id, position, email, shard, verdict, reason, attempts"
    statement = f"COPY verification_job_item ({columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for position, email in enumerate(emails):
            copy.write_row((job.id, position, email, shard_of(email, job.shards), "", "", 0))


def announce(job_id: uuid.UUID, shards) -> None:
    job_shards_ready.send(sender=VerificationJob, job_id=job_id, shards=list(shards))


def mark_queued(job_id: uuid.UUID, shard: int, seconds: float = QUEUED_SECONDS) -> bool:
    """Record that a run of the shard is in the broker; False when one already is."""
    key = f"{QUEUED_PREFIX}{job_id}:{shard}"
    return bool(redis_connection().set(key, "1", nx=True, ex=max(1, int(seconds))))


def forget_queued(job_id: uuid.UUID, shard: int) -> None:
    redis_connection().delete(f"{QUEUED_PREFIX}{job_id}:{shard}")


class ShardLease:
    """The right to check one shard, held in Redis while a run works on it."""

    def __init__(self, job_id: uuid.UUID, shard: int) -> None:
        self.key = f"{LEASE_PREFIX}{job_id}:{shard}"
        self.token = uuid.uuid4().hex
        self.client = redis_connection()

    def acquire(self) -> bool:
        return bool(self.client.set(self.key, self.token, nx=True, ex=self._seconds()))

    def renew(self) -> None:
        self.client.set(self.key, self.token, xx=True, ex=self._seconds())

    def release(self) -> None:
        # Redis away: the lease runs out by itself, and the error that ended the run is the one
        # worth raising.
        with contextlib.suppress(redis.exceptions.RedisError):
            if self.client.get(self.key) == self.token.encode():
                self.client.delete(self.key)

    @staticmethod
    def _seconds() -> int:
        return max(1, int(settings.MAILSCORE_JOB_LEASE_SECONDS))

    @classmethod
    def held(cls, job_id: uuid.UUID, shard: int) -> bool:
        client = redis_connection()
        return bool(
            client.exists(f"{LEASE_PREFIX}{job_id}:{shard}", f"{QUEUED_PREFIX}{job_id}:{shard}")
        )


@dataclass
class ShardOutcome:
    checked: int = 0
    # Rows left for a greylisting server: run the shard again after countdown seconds.
    later: int = 0
    countdown: float = 0.0
    attempt: int = 0


class _Verification(threading.Thread):
    """The engine on a shard's addresses, in an event loop of its own, handing each answer to
    the run's thread (which stores it: Django's database calls do not belong in an event loop)."""

    DONE = object()

    def __init__(self, emails: list[str]) -> None:
        super().__init__(name="job-verification", daemon=True)
        self.emails = emails
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._started = threading.Event()

    def run(self) -> None:
        async def verify() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            self._started.set()
            verifier = build_verifier()
            await verifier.verify_many(
                self.emails, greylist_wait=0, on_result=lambda i, r: self.answers.put((i, r))
            )

        try:
            asyncio.run(verify())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the run's thread, which raises it
            self.error = exc
        finally:
            self._started.set()
            self.answers.put(self.DONE)

    def stop(self) -> None:
        self._started.wait(5)
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)


def run_shard(job_id: uuid.UUID, shard: int) -> ShardOutcome | None:
    """Check what is left of one shard; None when there was nothing to do here (the job is
    over, or another run holds the shard)."""
    forget_queued(job_id, shard)
    status = VerificationJob.objects.filter(id=job_id).values_list("status", flat=True).first()
    if status is None or status in FINISHED_JOB_STATUSES:
        return None
    lease = ShardLease(job_id, shard)
    if not lease.acquire():
        return None
    try:
        VerificationJob.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, started_at=timezone.now()
        )
        rows = list(
            VerificationJobItem.objects.filter(job_id=job_id, shard=shard, checked_at=None)
            .order_by("position")
            .values_list("id", "email", "attempts")
        )
        outcome = _check_rows(job_id, rows, lease) if rows else ShardOutcome()
    finally:
        lease.release()
    if outcome.later:
        return outcome
    finish_if_done(job_id)
    return outcome


def _check_rows(job_id: uuid.UUID, rows: list[tuple[int, str, int]], lease: ShardLease):
    outcome = ShardOutcome()
    verification = _Verification([email for _, email, _ in rows])
    verification.start()
    pending: list[tuple[int, VerificationResult]] = []
    deferred: list[tuple[int, VerificationResult]] = []
    last_flush = time.monotonic()
    finished = False
    try:
        while not finished:
            try:
                answer = verification.answers.get(timeout=FLUSH_SECONDS)
            except queue.Empty:
                answer = None
            if answer is verification.DONE:
                finished = True
            elif answer is not None:
                index, result = answer
                row_id, _, attempts = rows[index]
                if wants_retry(result) and attempts + 1 < MAX_ATTEMPTS:
                    deferred.append((index, result))
                    if not result.cached:  # its verification counts when it is asked again
                        metrics.count_smtp_replies(result.smtp)
                else:
                    pending.append((row_id, result))
            due = len(pending) >= FLUSH_ROWS or time.monotonic() - last_flush >= FLUSH_SECONDS
            if finished or due:
                if _is_over(job_id):
                    # Cancelled (or failed) meanwhile: what is in hand or in flight is dropped.
                    return outcome
                outcome.checked += store_answers(pending)
                pending = []
                last_flush = time.monotonic()
                lease.renew()
    finally:
        if verification.is_alive():
            verification.stop()
        verification.join(10)
    if verification.error is not None:
        raise verification.error
    if deferred:
        ids = [rows[index][0] for index, _ in deferred]
        attempt = max(rows[index][2] for index, _ in deferred)
        VerificationJobItem.objects.filter(id__in=ids).update(attempts=attempt + 1)
        limit = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
        soonest = min(result.smtp.retry_after for _, result in deferred)
        outcome.later, outcome.attempt = len(deferred), attempt + 1
        outcome.countdown = retry_countdown(soonest, attempt, limit)
    return outcome


def _is_over(job_id: uuid.UUID) -> bool:
    status = VerificationJob.objects.filter(id=job_id).values_list("status", flat=True).first()
    return status is None or status in FINISHED_JOB_STATUSES


def store_answers(answers: list[tuple[int, VerificationResult]]) -> int:
    """Fill the rows' answers in one statement; a row that already has one keeps it."""
    if not answers:
        return 0
    # Mail evidence may decide what the server would not say (engine/evidence.py).
    results = with_mail_evidence([result for _, result in answers])
    checked_at = timezone.now()
    stamp = checked_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    ids, verdicts, reasons, bodies = [], [], [], []
    for (row_id, _), result in zip(answers, results, strict=True):
        metrics.record_verification(result, "job")
        body = {**validation.answer_of(result), "checked_at": stamp}
        ids.append(row_id)
        verdicts.append(body["verdict"])
        reasons.append(body["reason"])
        bodies.append(json.dumps(body))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE verification_job_item AS item
               SET verdict = given.verdict, reason = given.reason,
                   answer = given.answer::jsonb, checked_at = %s
              FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[])
                   AS given(id, verdict, reason, answer)
             WHERE item.id = given.id AND item.checked_at IS NULL
            """,
            [checked_at, ids, verdicts, reasons, bodies],
        )
        return cursor.rowcount


def finish_if_done(job_id: uuid.UUID) -> VerificationJob | None:
    """Complete the job when no row is left unchecked; the job when it was completed now."""
    with transaction.atomic():
        job = VerificationJob.objects.select_for_update().filter(id=job_id).first()
        if job is None or job.is_finished:
            return None
        if job.items.filter(checked_at=None).exists():
            return None
        job.status = JobStatus.COMPLETED
        job.finished_at = timezone.now()
        job.started_at = job.started_at or job.finished_at
        job.save(update_fields=["status", "finished_at", "started_at"])
        job_finished.send_robust(sender=VerificationJob, job=job, summary=summary(job))
    return job


def end_job(job_id: uuid.UUID, status: str, error: str = "") -> VerificationJob:
    """Cancel a job, or mark it failed: what is checked stays, the rest is not checked."""
    with transaction.atomic():
        job = VerificationJob.objects.select_for_update().filter(id=job_id).first()
        if job is None:
            raise JobError(f"There is no job {job_id}.")
        if job.is_finished:
            raise JobError(f"Job {job_id} is already {job.status}; only a queued or running job "
                           "can be cancelled.")  # fmt: skip
        job.status, job.error, job.finished_at = status, error, timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        job_finished.send_robust(sender=VerificationJob, job=job, summary=summary(job))
    return job


def counts(job: VerificationJob) -> dict[str, int]:
    """Rows by verdict, with "pending" for those not yet checked."""
    found = {"deliverable": 0, "undeliverable": 0, "risky": 0, "unknown": 0}
    for row in job.items.values("verdict").annotate(rows=Count("id")):
        found[row["verdict"] or "pending"] = row["rows"]
    found.setdefault("pending", 0)
    return found


def summary(job: VerificationJob) -> dict:
    """What the API and the job.completed event say of a job."""
    by_verdict = counts(job)
    done = job.total - by_verdict["pending"]
    return {
        "status": job.status,
        "source": job.source,
        "total": job.total,
        "unique": job.unique,
        "progress": {
            "done": done,
            "total": job.total,
            "percent": round(100 * done / job.total, 1) if job.total else 100.0,
        },
        "counts": {verdict: n for verdict, n in by_verdict.items() if verdict != "pending"},
        "created_at": _stamp(job.created_at),
        "started_at": _stamp(job.started_at),
        "finished_at": _stamp(job.finished_at),
        "error": job.error or None,
    }


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def stalled_shards() -> list[tuple[uuid.UUID, int]]:
    """Shards of open jobs with rows left that no run holds and the broker has not been handed:
    their run died with its worker, or was never queued (the broker was away)."""
    found = []
    open_jobs = VerificationJob.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    for job_id in open_jobs.values_list("id", flat=True):
        shards = set(
            VerificationJobItem.objects.filter(job_id=job_id, checked_at=None)
            .values_list("shard", flat=True)
            .distinct()
        )
        if not shards:
            finish_if_done(job_id)
        found.extend(
            (job_id, shard) for shard in sorted(shards) if not ShardLease.held(job_id, shard)
        )
    return found
