"""manage.py up (make run): the whole system on this machine, on the sample mailbox.

Migrates, makes sure there is an admin user, starts the Procfile's processes with honcho (web,
one worker per queue, beat, Flower), ingests the bundled sample mailbox and prints each
message's triage as it completes. Ctrl-C stops every process; the data directory keeps the
database, Redis and archives for the next start.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from honcho.environ import parse_procfile
from honcho.manager import Manager
from honcho.printer import Printer

from apps.inbox.ingest import ingest_paths
from apps.inbox.models import MessageStatus
from apps.inbox.progress import follow

SAMPLES = settings.BASE_DIR / "samples" / "demo.mbox"
PROCFILE = settings.BASE_DIR / "Procfile"


class Command(BaseCommand):
    help = ("Start mailscore on this machine (web, workers, beat, Flower), ingest the sample "
            "mailbox and print its triage. Ctrl-C stops everything.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("MAILSCORE_WEB_PORT", 8000))
        )
        parser.add_argument("--flower-port", type=int,
                            default=int(os.environ.get("MAILSCORE_FLOWER_PORT", 5555)))  # fmt: skip
        parser.add_argument("--no-samples", action="store_true", help="do not ingest the samples")
        parser.add_argument("--exit-when-done", action="store_true",
                            help="stop everything once the samples are triaged (for tests and CI); "
                                 "exits 1 if any failed or did not finish")  # fmt: skip
        parser.add_argument("--timeout", type=float, default=900.0,
                            help="seconds to wait for the samples (default 900)")  # fmt: skip

    def handle(self, *args, **options) -> None:
        self.options = options
        self.outcome: dict | None = None
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty(), prefix=True))
        environment = self._environment()
        for name, command in parse_procfile(PROCFILE.read_text()).processes.items():
            manager.add_process(name, command, env=environment, cwd=str(settings.BASE_DIR))
        web = f"http://127.0.0.1:{options['port']}"
        self.stdout.write(f"Starting mailscore: admin {web}/admin/  API {web}/api/v1/docs  "
                          f"Flower http://127.0.0.1:{options['flower_port']}/  "
                          f"data {settings.DATA_DIR}")  # fmt: skip
        follower = threading.Thread(target=self._samples, args=(web,), daemon=True)
        follower.start()
        manager.loop()  # until Ctrl-C, or a process stops
        self.stdout.write("mailscore stopped; the data directory keeps everything for next time.")
        if options["exit_when_done"]:
            if not self.outcome or not self.outcome["ok"]:
                raise CommandError(f"The samples did not all come out triaged: {self.outcome}")
        elif manager.returncode not in (0, None) and self.outcome is None:
            raise CommandError("A process stopped before the system was up; see its output above.")

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        environment["PATH"] = bin_dir + os.pathsep + environment.get("PATH", "")
        environment.setdefault("DJANGO_SETTINGS_MODULE", "mailscore.settings.local")
        environment.setdefault("DJANGO_DEBUG", "false")  # no tracebacks in pages
        environment["DATABASE_URL"] = os.environ["DATABASE_URL"]  # the embedded servers' URLs
        environment["REDIS_URL"] = os.environ["REDIS_URL"]
        environment["MAILSCORE_DATA_DIR"] = str(settings.DATA_DIR)
        environment["MAILSCORE_WEB_PORT"] = str(self.options["port"])
        environment["MAILSCORE_FLOWER_PORT"] = str(self.options["flower_port"])
        environment.setdefault("MAILSCORE_WEB_WORKERS", "2")
        environment.setdefault("MAILSCORE_WORKER_LOG_LEVEL", "warning")
        environment["PYTHONUNBUFFERED"] = "1"
        return environment

    def _ensure_admin(self) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write("Admin user: as created before (MAILSCORE_ADMIN_PASSWORD or the "
                              "password printed on first start).")  # fmt: skip
            return
        password = os.environ.get("MAILSCORE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        if os.environ.get("MAILSCORE_ADMIN_PASSWORD"):
            self.stdout.write("Admin user 'admin' created with MAILSCORE_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Admin user 'admin' created; password (shown only now): {password}")

    def _write(self, line: str) -> None:
        self.stdout.write(f"results | {line}")

    def _samples(self, web: str) -> None:
        try:
            if not self._wait_until_up(web):
                self.outcome = {"ok": False, "reason": "the web server did not come up"}
            elif self.options["no_samples"]:
                self.outcome = {"ok": True}
                self._write(f"Up. Send mail to {web}/api/v1/messages or run manage.py ingest.")
                return
            else:
                self.outcome = self._ingest_and_follow()
        except Exception as exc:  # report, then stop the run rather than hang
            self.outcome = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            self._write(f"error: {self.outcome['reason']}")
        if self.options["exit_when_done"] or not self.outcome.get("ok"):
            # The same path as Ctrl-C: honcho stops every process.
            os.kill(os.getpid(), signal.SIGINT)

    def _wait_until_up(self, web: str, timeout: float = 180.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{web}/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def _ingest_and_follow(self) -> dict:
        report = ingest_paths([SAMPLES], on_error=lambda e: self._write(f"error: {e}"))
        ids, new = report.message_ids, report.stored
        self._write(f"Ingested the sample mailbox: {new} new, {len(ids) - new} already stored. "
                    "Triage as it completes:")  # fmt: skip
        counts = follow(ids, self._write, timeout=self.options["timeout"])
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        self._write(f"Samples: {summary}.")
        finished = counts.get(MessageStatus.TRIAGED, 0) + counts.get(MessageStatus.NEEDS_REVIEW, 0)
        if not self.options["exit_when_done"]:
            self._write("The system keeps running; Ctrl-C stops it.")
        return {"ok": finished == len(ids) and bool(ids), "counts": counts}
