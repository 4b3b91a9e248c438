"""One step of the chain over a batch of messages: load, parse once, compute, store.

Each app's steps module (apps/triage/steps.py, apps/verification/steps.py) runs its steps on a
batch. A ClaimedBatch works on stored messages held by one chain's claim and writes only those it
still holds; a MemoryBatch carries unsaved messages through the same steps in one process
(manage.py triage). A message whose step is recorded for its current run is passed on untouched,
which is what makes every step idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis.exceptions
from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core import metrics
from apps.inbox.engine import ParsedMessage
from apps.inbox.ingest import parsed_of_stored
from apps.inbox.models import Message, MessageStatus

logger = logging.getLogger(__name__)

# Faults of the services around us, worth retrying; anything else is the message's own problem.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    db.OperationalError,
    db.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


@dataclass(frozen=True)
class Deferred:
    """A step's result for a message that must be asked again later (a greylisting server): it
    keeps its claim for this long, and its step is not recorded."""

    seconds: float


class Batch:
    """The messages of a batch that the current step still has to do (todo, with their parsed
    form in parsed), and those it passes on untouched (handed_on)."""

    # Whether later steps run in other processes: then what one step leaves for the next (the
    # encoder's output) goes through Redis rather than staying in scratch.
    shared_between_processes = False
    stored = True  # its messages are rows in the database

    def __init__(self, *, reraise: tuple[type[BaseException], ...] = ()) -> None:
        self.step = ""
        self.todo: list[Message] = []
        self.parsed: list[ParsedMessage] = []
        self.handed_on: list[int] = []
        # Messages whose stored bytes no longer parse, failed by save() with the reason.
        self.unparseable: list[tuple[Message, Exception]] = []
        self.attempt = 1
        self.scratch: dict[str, Any] = {}
        self.started = time.perf_counter()
        # Errors that must reach the caller rather than fail a message (time limits, faults).
        self.reraise = (*TRANSIENT_ERRORS, *reraise)

    def begin(self, step: str) -> None:
        raise NotImplementedError

    def _select(self, step: str, messages: list[Message]) -> None:
        self.step, self.todo, self.parsed, self.handed_on = step, [], [], []
        self.unparseable = []
        self.started = time.perf_counter()
        for message in messages:
            if message.steps.get(step, {}).get("run") == message.runs:
                self.handed_on.append(message.id)
                continue
            try:
                parsed = parsed_of_stored(message)
            except Exception as exc:  # the stored bytes no longer parse: this message only
                reason = ValueError(f"cannot parse the stored message: {exc}")
                self.unparseable.append((message, reason))
                continue
            self.todo.append(message)
            self.parsed.append(parsed)

    def parsed_of(self, messages: list[Message]) -> list[ParsedMessage]:
        position = {m.id: i for i, m in enumerate(self.todo)}
        return [self.parsed[position[m.id]] for m in messages]

    def compute(self, work: Callable[[list[Message], list[ParsedMessage]], list]) -> list:
        """work() over the whole batch; if it fails on something other than a fault of the
        services around us, once per message, so that one bad message fails alone. Failures
        come back as exceptions in the message's place."""
        if not self.todo:
            return []
        try:
            return list(work(self.todo, self.parsed))
        except self.reraise:
            raise
        except Exception:
            logger.warning("Step %s failed on a batch; retrying its messages one by one",
                           self.step, exc_info=True)  # fmt: skip
        results: list[Any] = []
        for message, parsed in zip(self.todo, self.parsed, strict=True):
            try:
                results.extend(work([message], [parsed]))
            except self.reraise:
                raise
            except Exception as exc:
                results.append(exc)
        return results

    def _record(self, version: str, details: dict) -> dict:
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        return {
            "version": version,
            "duration_ms": round(elapsed_ms / max(1, len(self.todo)), 2),
            "batch": len(self.todo),
            "attempt": self.attempt,
            "finished_at": timezone.now().isoformat(),
            **details,
        }

    def _apply(self, message: Message, result: Any, apply: Callable, record: dict) -> None:
        if isinstance(result, Exception):
            reason = f"{type(result).__name__}: {result}"
            message.status = MessageStatus.FAILED
            message.failed_step, message.failure_reason = self.step, reason[:2000]
            message.steps[self.step] = {**record, "run": None, "error": reason}
        else:
            apply(message, result)
            message.steps[self.step] = {**record, "run": message.runs, "error": None}

    def save(self, results: list, apply: Callable[[Message, Any], None], version: str,
             fields: list[str], **details) -> list[int]:  # fmt: skip
        """Store each message's result (apply sets its fields) with the step's record; a message
        whose result is an exception is marked failed with it. Returns the ids to hand on."""
        raise NotImplementedError


class ClaimedBatch(Batch):
    """Stored messages held by one chain's claim. Writes are fenced by the claim: a message the
    sweep has taken back (its lease expired) is neither read nor written by this chain again."""

    shared_between_processes = True

    def __init__(self, claim: str, message_ids: list[int], *, attempt: int = 1,
                 reraise: tuple[type[BaseException], ...] = ()) -> None:  # fmt: skip
        super().__init__(reraise=reraise)
        self.claim, self.message_ids, self.attempt = claim, message_ids, attempt
        self.lease_seconds = settings.MAILSCORE_CLAIM_LEASE_SECONDS

    def begin(self, step: str) -> None:
        self.step = step
        rows = Message.objects.filter(
            id__in=self.message_ids, status=MessageStatus.PROCESSING, claim=self.claim
        ).order_by("id")
        self._select(step, list(rows))

    def save(self, results: list, apply: Callable[[Message, Any], None], version: str,
             fields: list[str], *, also: Callable[[list[Message]], None] | None = None,
             **details) -> list[int]:  # fmt: skip
        """As Batch.save; also() runs in the same transaction with the messages written, so that
        a retry after a fault never finds the step recorded and its other rows missing."""
        record = self._record(version, details)
        now = timezone.now()
        passed: list[int] = []
        written: list[Message] = []
        pairs = [*zip(self.todo, results, strict=True), *self.unparseable]
        with transaction.atomic():
            held = set(
                Message.objects.select_for_update()
                .filter(id__in=[m.id for m, _ in pairs], claim=self.claim,
                        status=MessageStatus.PROCESSING)
                .values_list("id", flat=True)
            )  # fmt: skip
            for message, result in pairs:
                if message.id not in held:
                    continue  # taken back by the sweep: another chain has it now
                if isinstance(result, Deferred):
                    message.lease_expires_at = now + timedelta(seconds=result.seconds)
                else:
                    self._apply(message, result, apply, record)
                    if message.status == MessageStatus.PROCESSING:
                        passed.append(message.id)
                written.append(message)
            self._write(written, fields, now=now)
            if also is not None:
                also([m for m in written if m.steps.get(self.step, {}).get("error") is None])
        lost = len(pairs) - len(held)
        if lost:
            logger.warning("Step %s: %d messages of claim %s were taken back; not written",
                           self.step, lost, self.claim)  # fmt: skip
        self._count(written)
        return sorted(self.handed_on + passed)

    def _count(self, written: list[Message]) -> None:
        """Metrics, once the step's writes are committed: its duration over the batch, the
        messages it failed, and those that left the chain."""
        if not (self.todo or self.unparseable):
            return  # every message was handed on untouched: the step did not run
        metrics.observe_step(self.step, time.perf_counter() - self.started)
        failed = sum(m.status == MessageStatus.FAILED for m in written)
        metrics.count_step_failures(self.step, failed)
        for message in written:
            if message.status != MessageStatus.PROCESSING:
                metrics.count_finished(message.category, message.priority, message.status)

    def _write(self, messages: list[Message], fields: list[str], *, now=None) -> None:
        if not messages:
            return
        now = now or timezone.now()
        lease = now + timedelta(seconds=self.lease_seconds)
        for message in messages:
            message.updated_at = now
            if message.status == MessageStatus.PROCESSING:
                # Handed on with a fresh lease, unless deferred further than that.
                message.lease_expires_at = max(message.lease_expires_at or now, lease)
            else:  # finished or failed: the claim ends here
                message.claim, message.lease_expires_at = None, None
        Message.objects.bulk_update(
            messages,
            sorted({*fields, "status", "failed_step", "failure_reason", "steps", "updated_at",
                    "claim", "lease_expires_at"}),
        )  # fmt: skip


class MemoryBatch(Batch):
    """Unsaved messages carried through every step in this process, for manage.py triage."""

    stored = False  # its messages are not rows: nothing to look up beside them

    def __init__(self, parsed: list[ParsedMessage], raws: list[bytes] | None = None) -> None:
        """raws: each message's bytes, where a step reads them (the sender check's DKIM)."""
        super().__init__()
        raws = raws if raws is not None else [b""] * len(parsed)
        self.messages = [
            Message(id=i + 1, raw=raw, parsed={}, runs=1, steps={},
                    status=MessageStatus.PROCESSING)
            for i, raw in enumerate(raws)
        ]  # fmt: skip
        self._parsed = {m.id: p for m, p in zip(self.messages, parsed, strict=True)}

    def begin(self, step: str) -> None:
        self.step, self.todo, self.handed_on = step, [], []
        self.started = time.perf_counter()
        for message in self.messages:
            if message.status == MessageStatus.PROCESSING:
                self.todo.append(message)
        self.parsed = [self._parsed[m.id] for m in self.todo]

    def save(self, results: list, apply: Callable[[Message, Any], None], version: str,
             fields: list[str], *, also: Callable[[list[Message]], None] | None = None,
             **details) -> list[int]:  # fmt: skip
        """As Batch.save, in memory only: nothing is written, so also() does not run."""
        record = self._record(version, details)
        passed = []
        for message, result in [*zip(self.todo, results, strict=True), *self.unparseable]:
            if isinstance(result, Deferred):
                continue
            self._apply(message, result, apply, record)
            if message.status == MessageStatus.PROCESSING:
                passed.append(message.id)
        return passed
