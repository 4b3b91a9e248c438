"""manage.py rerun: run the chain again for finished or failed messages."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.inbox.ingest import INGEST_STEP, rerun
from apps.inbox.models import Message, MessageStatus


class Command(BaseCommand):
    help = ("Queue messages for a fresh run of the triage chain (by id, or every failed one). "
            "Input refused at ingest is not mail and is never re-run.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="ID")
        parser.add_argument("--failed", action="store_true", help="every failed message")

    def handle(self, *args, **options) -> None:
        ids = list(options["ids"])
        if not ids and not options["failed"]:
            raise CommandError("Give message ids, or --failed.")
        if options["failed"]:
            failed = Message.objects.filter(status=MessageStatus.FAILED)
            ids += failed.exclude(failed_step=INGEST_STEP).values_list("id", flat=True)
            if not ids:
                refused = failed.filter(failed_step=INGEST_STEP).count()
                note = f" ({refused} inputs refused at ingest are not mail: never re-run.)"
                self.stdout.write(
                    f"Nothing to re-run: no message has failed in the chain.{note if refused else ''}"
                )
                return
        known = set(Message.objects.filter(id__in=ids).values_list("id", flat=True))
        missing = sorted(set(ids) - known)
        queued, left_alone = rerun(sorted(known))
        refused = sorted(
            Message.objects.filter(
                id__in=left_alone, status=MessageStatus.FAILED, failed_step=INGEST_STEP
            ).values_list("id", flat=True)
        )
        busy = sorted(set(left_alone) - set(refused))
        self.stdout.write(f"Queued {len(queued)} messages for a new run.")
        if busy:
            self.stderr.write(f"Still being processed, left alone: {', '.join(map(str, busy))}")
        problems = []
        if refused:
            problems.append(f"Refused at ingest (not mail; ingest a corrected message instead): "
                            f"{', '.join(map(str, refused))}")  # fmt: skip
        if missing:
            problems.append(f"No such messages: {', '.join(map(str, missing))}")
        if problems:
            raise CommandError("; ".join(problems))
