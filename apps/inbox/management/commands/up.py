"""manage.py up (make run): the whole system on this machine, supervised, on the sample mailbox.

Migrates, makes sure there is an admin user, runs the Procfile's programs under supervisord (web,
one worker per queue, beat, Flower), ingests the bundled sample mailbox and prints each message's
triage as it completes. Ctrl-C stops everything; the data directory keeps the rest.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import get_default_password_validators
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from apps.inbox.ingest import ingest_paths
from apps.inbox.models import MessageStatus
from apps.inbox.progress import follow
from mailscore.supervision import (
    POLL_SECONDS,
    AlreadyRunning,
    Console,
    ProcfileError,
    Supervisor,
    read_procfile,
)

SAMPLES = settings.BASE_DIR / "samples" / "demo.mbox"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HEALTH_WAIT = 180.0
# The workers whose main process serves its pool's metrics, each on a port of its own from here
# up (docs/operations.md, "Metrics"); MAILSCORE_METRICS_PORT_<POOL> chooses one instead.
METRICS_POOLS = ("triage", "generate", "verify", "webhooks", "maintenance")
FIRST_METRICS_PORT = 9101


class Command(BaseCommand):
    help = ("Start mailscore on this machine (web, workers, beat, Flower) under supervision, "
            "ingest the sample mailbox and print its triage. Ctrl-C stops everything.")  # fmt: skip

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
        parser.add_argument("--procfile", type=Path, default=settings.BASE_DIR / "Procfile",
                            help="the programs to run, one `name: command` line each "
                                 "(default: the project's Procfile)")  # fmt: skip

    def handle(self, *args, **options) -> None:
        self.options = options
        self.outcome: dict | None = None
        self.signals = 0
        self.stop_requested = False
        try:
            programs = read_procfile(options["procfile"])
        except ProcfileError as exc:
            raise CommandError(str(exc)) from exc
        self.console = Console(self.stdout)
        try:
            call_command("migrate", interactive=False, verbosity=0)
            self._ensure_admin()
        except KeyboardInterrupt:
            raise CommandError("Interrupted before any program was started.") from None
        supervisor = Supervisor(
            programs, data_dir=settings.DATA_DIR, environment=self._environment(),
            directory=settings.BASE_DIR, console=self.console,
        )  # fmt: skip
        previous = {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}
        try:
            try:
                supervisor.start()
            except AlreadyRunning as exc:
                raise CommandError(str(exc)) from exc
            web = f"http://127.0.0.1:{options['port']}"
            self.console.write(f"Starting mailscore: admin {web}/admin/  API {web}/api/v1/docs  "
                               f"Flower http://127.0.0.1:{options['flower_port']}/  "
                               f"data {settings.DATA_DIR}  logs {supervisor.log_dir}")  # fmt: skip
            self.console.write(f"Flower sign-in: {self.flower_auth}")
            ports = "  ".join(f"{pool} :{self.metrics_ports[pool]}" for pool in METRICS_POOLS)
            self.console.write(f"Metrics: web {web}/metrics  workers {ports}  "
                               f"health {web}/health")  # fmt: skip
            threading.Thread(target=self._samples, args=(web,), daemon=True).start()
            while not (self.signals or self.stop_requested or supervisor.gave_up):
                if not supervisor.alive():
                    break
                supervisor.poll()
                time.sleep(POLL_SECONDS)
            supervisor.poll()
            unexpected_end = not supervisor.alive()
            self.console.line("up", self._stop_reason(supervisor))
        finally:
            supervisor.stop(hurry=lambda: self.signals > 1)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        connections.close_all()
        self.console.write("mailscore stopped; the data directory keeps everything for next time.")
        self._raise_for_outcome(supervisor, unexpected_end)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        # Counted only: the main loop acts on it, and writes no output from inside a handler.
        self.signals += 1

    def _stop_reason(self, supervisor: Supervisor) -> str:
        if supervisor.gave_up:
            return f"stopping everything: {supervisor.gave_up} is in a crash loop"
        if not supervisor.alive():
            return "supervisord ended on its own; stopping what is left"
        if self.stop_requested and not self.signals:
            return "stopping everything" + ("" if self.outcome.get("ok") else " after an error")
        if self.signals:
            return (f"stopping everything (each program gets {supervisor.limits.stop_seconds:g} s "
                    "to finish what it is doing; Ctrl-C again to kill at once)")  # fmt: skip
        return "stopping everything"

    def _raise_for_outcome(self, supervisor: Supervisor, unexpected_end: bool) -> None:
        log = supervisor.log_dir
        if supervisor.gave_up:
            raise CommandError(
                f"{supervisor.gave_up} kept exiting right after it started, so mailscore "
                f"stopped. Its output is above and in {log / supervisor.gave_up}.log."
            )
        if unexpected_end and not self.signals:
            raise CommandError(f"{supervisor.early_exit_reason()}. See {log}/supervisord.log.")
        if self.options["exit_when_done"]:
            if not self.outcome or not self.outcome["ok"]:
                raise CommandError(f"The samples did not all come out triaged: {self.outcome}")
        elif not self.signals and self.stop_requested and self.outcome and not self.outcome["ok"]:
            raise CommandError(f"{self.outcome['reason']}; the programs' output is in {log}.")

    def _environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        environment["PATH"] = bin_dir + os.pathsep + environment.get("PATH", "")
        # Named for every program: the web and worker entry points default to production.
        environment["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
        environment.setdefault("DJANGO_DEBUG", "false")  # no tracebacks in pages
        # The servers' URLs (embedded ones included): the programs use them and start none.
        environment["DATABASE_URL"] = os.environ["DATABASE_URL"]
        environment["REDIS_URL"] = os.environ["REDIS_URL"]
        environment["MAILSCORE_DATA_DIR"] = str(settings.DATA_DIR)
        environment["MAILSCORE_WEB_PORT"] = str(self.options["port"])
        environment["MAILSCORE_FLOWER_PORT"] = str(self.options["flower_port"])
        environment.setdefault("MAILSCORE_WEB_WORKERS", "2")
        environment.setdefault("MAILSCORE_WORKER_LOG_LEVEL", "warning")
        environment["PYTHONUNBUFFERED"] = "1"
        # Flower asks for these; generated for each run unless given.
        if not environment.get("FLOWER_BASIC_AUTH"):
            environment["FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(12)}"
        self.flower_auth = environment["FLOWER_BASIC_AUTH"]
        self.metrics_ports = {}
        for pool in METRICS_POOLS:
            variable = f"MAILSCORE_METRICS_PORT_{pool.upper()}"
            given = environment.get(variable, "").strip()
            if given and not given.isdigit():
                raise CommandError(f"{variable}={given!r}: give a port number, or leave it "
                                   "unset for a free port.")  # fmt: skip
            taken = set(self.metrics_ports.values())
            port = int(given) if given else _free_port_from(FIRST_METRICS_PORT, taken)
            environment[variable] = str(port)
            self.metrics_ports[pool] = port
        return environment

    def _ensure_admin(self) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.console.write("Admin user: as created before (MAILSCORE_ADMIN_PASSWORD or the "
                               "password printed on first start).")  # fmt: skip
            return
        given = os.environ.get("MAILSCORE_ADMIN_PASSWORD")
        # 24 random bytes: 32 URL-safe characters, well past every validator.
        password = given or secrets.token_urlsafe(24)
        refusals = _password_refusals(password, users.model(username="admin",
                                                            email="admin@localhost"))  # fmt: skip
        if refusals:
            raise CommandError(
                "MAILSCORE_ADMIN_PASSWORD was refused by the password validators "
                f"(AUTH_PASSWORD_VALIDATORS): {'; '.join(refusals)}. Choose a longer, less "
                "common one, or leave the variable unset to have a strong one generated."
            )
        users.create_superuser("admin", "admin@localhost", password)
        if given:
            self.console.write("Admin user 'admin' created with MAILSCORE_ADMIN_PASSWORD.")
        else:
            self.console.write(f"Admin user 'admin' created; password (shown only now): {password}")

    def _write(self, line: str) -> None:
        if not (self.signals or self.stop_requested):  # nothing more once stopping
            self.console.line("results", line)

    def _samples(self, web: str) -> None:
        try:
            if not self._wait_until_up(web):
                reason = f"The web server did not answer {web}/health within {HEALTH_WAIT:g} s"
                self.outcome = {"ok": False, "reason": reason}
                self._write(f"error: {reason}")
            elif self.options["no_samples"]:
                self.outcome = {"ok": True}
                self._write(f"Up. Send mail to {web}/api/v1/messages or run manage.py ingest.")
            else:
                self.outcome = self._ingest_and_follow()
        except Exception as exc:  # report, then stop the run rather than hang
            self.outcome = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            self._write(f"error: {self.outcome['reason']}")
        finally:
            connections.close_all()
        if self.options["exit_when_done"] or not self.outcome.get("ok"):
            self.stop_requested = True

    def _wait_until_up(self, web: str) -> bool:
        deadline = time.monotonic() + HEALTH_WAIT
        while time.monotonic() < deadline and not self.signals:
            try:
                with urllib.request.urlopen(f"{web}/health", timeout=2) as response:  # noqa: S310 (our own http://127.0.0.1 URL)
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


def _free_port_from(first: int, taken: set[int]) -> int:
    """The first port from first on that nothing listens on (another `up`, anything else)."""
    for port in range(first, first + 1000):
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise CommandError(f"No free port for the workers' metrics from {first} on; set "
                       "MAILSCORE_METRICS_PORT_<POOL> for each of them.")  # fmt: skip


def _password_refusals(password: str, user) -> list[str]:
    """Each configured validator that refuses the password, by name, with its reason."""
    refusals = []
    for validator in get_default_password_validators():
        try:
            validator.validate(password, user)
        except ValidationError as exc:
            refusals.append(f"{type(validator).__name__}: {' '.join(exc.messages)}")
    return refusals
