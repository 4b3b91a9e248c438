"""manage.py ingest: store .eml files, mbox files, maildirs and folders and queue them."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.inbox.ingest import ingest_paths
from apps.inbox.models import MessageStatus
from apps.inbox.progress import follow


class Command(BaseCommand):
    help = ("Ingest mail from .eml files, mbox files, maildirs and folders of them, and queue it "
            "for triage. A file that is not mail or is too large is kept as a failed message with "
            "the reason; one that cannot be read is reported; the rest go on.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--wait", action="store_true",
                            help="wait for the workers and print each message's triage")  # fmt: skip
        parser.add_argument("--timeout", type=float, default=600.0,
                            help="seconds --wait waits at most (default 600)")  # fmt: skip

    def handle(self, *args, **options) -> None:
        report = ingest_paths(options["paths"], on_error=lambda e: self.stderr.write(f"error: {e}"))
        ids, errors = report.message_ids, report.errors
        kept = f" ({report.refused} of them kept as failed messages)" if report.refused else ""
        self.stdout.write(f"Stored {report.stored} new messages, {report.duplicates} already "
                          f"stored, {errors} not ingested{kept}.")  # fmt: skip
        if options["wait"] and ids:
            self.stdout.write("Waiting for the workers (Ctrl-C stops waiting; the work goes on).")
            counts = follow(ids, self.stdout.write, timeout=options["timeout"])
            summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            self.stdout.write(f"Done: {summary}.")
            unfinished = sum(n for s, n in counts.items()
                             if s in (MessageStatus.QUEUED, MessageStatus.PROCESSING))  # fmt: skip
            if unfinished:
                raise CommandError(
                    f"{unfinished} messages were still unfinished after {options['timeout']:.0f}s; "
                    "are the workers running? (make run starts them)"
                )
        if errors:
            raise CommandError(f"{errors} inputs could not be ingested (see above).")
