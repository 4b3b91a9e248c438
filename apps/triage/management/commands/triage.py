"""manage.py triage: the whole chain in-process on .eml files, mbox files, maildirs or folders."""

from __future__ import annotations

import json
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.inbox.batch import MemoryBatch
from apps.inbox.engine import UnparseableMessage, parse_message
from apps.inbox.engine.mailbox import iter_messages
from apps.inbox.ingest import parse_limits
from apps.inbox.models import MessageStatus
from apps.triage.engine.encoder import ModelLoadError
from apps.triage.services import get_triager
from apps.triage.steps import TRIAGE_STEPS
from apps.verification import steps as verification_steps


class Command(BaseCommand):
    help = ("Triage messages in-process (no broker needed): classify, prioritize, summarize, draft "
            "a reply and verify the sender. Accepts .eml files, mbox files, maildirs and folders.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--json", action="store_true", help="one JSON object per message")
        parser.add_argument("--no-verify", action="store_true", help="skip sender verification")
        parser.add_argument("--no-smtp", action="store_true",
                            help="verify senders without SMTP (syntax, DNS, lists, trust)")  # fmt: skip

    def handle(self, *args, **options) -> None:
        try:
            triager = get_triager()
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from exc
        if triager.degraded:
            self.stderr.write(f"warning: {triager.degraded}")
        self.as_json = options["json"]
        if not self.as_json:
            self.stdout.write(
                f"{'SOURCE':<34} {'CATEGORY':<13} {'CONF':>5} {'PRIO':<4} {'SUBJECT':<34} SUMMARY"
            )
        errors = done = 0
        batch: list[tuple[str, object]] = []
        limit, limits = settings.MAILSCORE_MAX_MESSAGE_BYTES, parse_limits()
        show_progress = sys.stderr.isatty()
        for item in iter_messages(options["paths"]):
            if item.error:
                errors += 1
                self.stderr.write(f"error: {item.error}")
                continue
            try:
                parsed = parse_message(item.raw, max_bytes=limit, limits=limits)
                batch.append((item.source, parsed, item.raw))
            except UnparseableMessage as exc:
                errors += 1
                self.stderr.write(f"error: {item.source}: {exc}")
                continue
            if len(batch) >= triager.chunk_size:
                done += self._flush(triager, batch, options)
                batch = []
                if show_progress:
                    self.stderr.write(f"\rtriaged {done} messages", ending="")
        done += self._flush(triager, batch, options)
        self.stderr.write(f"{done} messages triaged, {errors} errors")
        if errors:
            raise CommandError(
                f"{errors} input(s) could not be read; see the errors above.", returncode=1
            )

    def _flush(self, triager, batch, options) -> int:
        """The chain's own steps, on messages held in memory: nothing is stored."""
        if not batch:
            return 0
        run = MemoryBatch([message for _, message, _ in batch], [raw for _, _, raw in batch])
        started = time.perf_counter()
        for step in TRIAGE_STEPS:
            step(run)
        if not options["no_verify"]:
            verification_steps.verify_sender(run, smtp=not options["no_smtp"])
        total_ms = round((time.perf_counter() - started) * 1000 / len(batch), 3)
        for (source, parsed, _), message in zip(batch, run.messages, strict=True):
            self._emit(source, parsed, message, triager, total_ms, options)
        return len(batch)

    def _emit(self, source, parsed, message, triager, total_ms, options) -> None:
        if message.status == MessageStatus.FAILED:
            self.stderr.write(f"error: {source}: {message.failed_step}: {message.failure_reason}")
            return
        timings = {f"{name}_ms": record["duration_ms"] for name, record in message.steps.items()}
        verification = None if options["no_verify"] else message.sender_result
        record = {
            "source": source,
            "message_id": parsed.message_id,
            "from": parsed.from_address,
            "subject": parsed.subject,
            "language": parsed.language,
            "category": message.category_result,
            "priority": message.priority_result,
            "summary": message.summary,
            "draft_reply": message.draft_result,
            "verification": verification,
            "timings": {**timings, "total_ms": total_ms},
            "model_versions": triager.versions,
        }
        if self.as_json:
            self.stdout.write(json.dumps(record, ensure_ascii=False, default=str))
            return
        category = record["category"]
        shown_source = source if len(source) <= 34 else "…" + source[-33:]
        subject = parsed.subject if len(parsed.subject) <= 34 else parsed.subject[:33] + "…"
        self.stdout.write(
            f"{shown_source:<34} {category['label']:<13} {category['confidence']:>5.2f} "
            f"{record['priority']['level']:<4} {subject:<34} {record['summary'][:80]}"
        )
