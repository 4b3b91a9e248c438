"""manage.py triage: the whole chain in-process on .eml files, mbox files, maildirs or folders."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.inbox.engine import MessageTooLarge, parse_message
from apps.inbox.engine.mailbox import iter_messages
from apps.triage.engine.encoder import ModelLoadError
from apps.triage.services import get_triager


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
        limit = settings.MAILSCORE_MAX_MESSAGE_BYTES
        show_progress = sys.stderr.isatty()
        for item in iter_messages(options["paths"]):
            if item.error:
                errors += 1
                self.stderr.write(f"error: {item.error}")
                continue
            try:
                batch.append((item.source, parse_message(item.raw, max_bytes=limit)))
            except MessageTooLarge as exc:
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
        if not batch:
            return 0
        messages = [message for _, message in batch]
        started = time.perf_counter()
        outcomes = triager.triage(messages)
        verifications = [None] * len(messages)
        verify_ms = 0.0
        if not options["no_verify"]:
            started_verify = time.perf_counter()
            trusts = [outcome.trust for outcome in outcomes]
            verifications = asyncio.run(_verify(messages, trusts, smtp=not options["no_smtp"]))
            verify_ms = round((time.perf_counter() - started_verify) * 1000 / len(messages), 3)
        total_ms = round((time.perf_counter() - started) * 1000 / len(messages), 3)
        for (source, message), outcome, verification in zip(
            batch, outcomes, verifications, strict=True
        ):
            self._emit(source, message, outcome, verification, verify_ms, total_ms)
        return len(batch)

    def _emit(self, source, message, outcome, verification, verify_ms, total_ms) -> None:
        data = outcome.to_dict()
        record = {
            "source": source,
            "message_id": message.message_id,
            "from": message.from_address,
            "subject": message.subject,
            "category": data["category"],
            "priority": data["priority"],
            "summary": data["summary"],
            "draft_reply": data["draft_reply"],
            "verification": verification.to_dict() if verification else None,
            "timings": {**data["timings"], "verify_ms": verify_ms, "total_ms": total_ms},
            "model_versions": data["model_versions"],
        }
        if self.as_json:
            self.stdout.write(json.dumps(record, ensure_ascii=False, default=str))
            return
        category = record["category"]
        shown_source = source if len(source) <= 34 else "…" + source[-33:]
        subject = message.subject if len(message.subject) <= 34 else message.subject[:33] + "…"
        self.stdout.write(
            f"{shown_source:<34} {category['label']:<13} {category['confidence']:>5.2f} "
            f"{record['priority']['level']:<4} {subject:<34} {record['summary'][:80]}"
        )


async def _verify(messages, trusts, *, smtp: bool):
    from apps.verification.engine.sender import verify_senders
    from apps.verification.services import build_verifier

    return await verify_senders(messages, build_verifier(), trusts=trusts, smtp=smtp)
