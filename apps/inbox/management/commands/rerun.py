"""manage.py rerun: run the chain again for finished or failed messages."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.inbox.ingest import rerun
from apps.inbox.models import Message, MessageStatus


class Command(BaseCommand):
    help = "Queue messages for a fresh run of the triage chain (by id, or every failed one)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="ID")
        parser.add_argument("--failed", action="store_true", help="every failed message")

    def handle(self, *args, **options) -> None:
        ids = list(options["ids"])
        if options["failed"]:
            ids += Message.objects.filter(status=MessageStatus.FAILED).values_list("id", flat=True)
        if not ids:
            raise CommandError("Give message ids, or --failed.")
        known = set(Message.objects.filter(id__in=ids).values_list("id", flat=True))
        missing = sorted(set(ids) - known)
        queued, busy = rerun(sorted(known))
        self.stdout.write(f"Queued {len(queued)} messages for a new run.")
        if busy:
            self.stderr.write(f"Still being processed, left alone: {', '.join(map(str, busy))}")
        if missing:
            raise CommandError(f"No such messages: {', '.join(map(str, missing))}")
