"""Shared by the platform benchmarks: a fresh mailscore on embedded PostgreSQL and Redis, its
processes started the way `make run` starts them and found by role, its queue depths, and a corpus
of real mail made unique per run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import suppress
from functools import lru_cache
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "spamassassin"
SAMPLES = ROOT / "samples" / "demo.mbox"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def corpus(count: int, run: str | None = None) -> list[bytes]:
    """count real messages (the spam corpus, then the samples), each with a Message-ID unique to
    this run so that every one is stored: <bench-RUN-INDEX@mailscore.test>, RUN random unless
    given. The corpus' files start with an mbox "From " line, which separates messages in a
    mailbox and is no part of one: it is dropped, as a client posting a message would not send
    it (after the new Message-ID it would end the header section, and the message's own headers
    would be read as its body)."""
    from apps.inbox.engine.mailbox import iter_messages

    sources = [CORPUS] if CORPUS.exists() else []
    raws = [m.raw for m in iter_messages([*sources, SAMPLES]) if m.raw]
    run = run or uuid.uuid4().hex[:8]
    chosen = []
    for index in range(count):
        raw = raws[index % len(raws)]
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[-1]
        raw = re.sub(rb"(?im)^message-id:.*(\r?\n[ \t].*)*\r?\n", b"", raw, count=1)
        chosen.append(f"Message-ID: <bench-{run}-{index}@mailscore.test>\n".encode() + raw)
    return chosen


class System:
    """Embedded services in a temporary data directory, migrated, with an API key."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="mailscore-bench-"))
        os.environ["MAILSCORE_DATA_DIR"] = str(self.data_dir)
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        os.environ["DJANGO_SETTINGS_MODULE"] = "mailscore.settings.local"
        import django

        django.setup()  # starts the embedded PostgreSQL and Redis, exports their URLs
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from apps.accounts.models import ApiKey

        _, self.api_key = ApiKey.issue(f"bench-{uuid.uuid4().hex[:6]}")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment["PATH"]
        environment["DJANGO_DEBUG"] = "false"
        return environment

    def start(self, *arguments: str) -> None:
        """manage.py up without the samples, or gunicorn alone (web_only)."""
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--no-samples", "--port", str(self.port),
             "--flower-port", str(free_port()), *arguments],
            cwd=ROOT, env=self.environment(), stdout=self.log(), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.wait_until_up()

    def start_web_only(self, workers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "mailscore.wsgi:application",
             "-c", "mailscore/gunicorn.conf.py", "--bind",
             f"127.0.0.1:{self.port}", "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, env=self.environment(), stdout=self.log(), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.wait_until_up()

    def log(self):
        """The processes' output, kept with the data for a look after the run."""
        return open(self.data_dir / "processes.log", "ab")  # noqa: SIM115 - the child owns it

    def wait_until_up(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (self.data_dir / "processes.log").read_text(errors="replace")
                tail = "\n".join(log.splitlines()[-15:])
                raise RuntimeError(f"mailscore stopped while starting; its output ends:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mailscore did not come up")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def processes(self) -> dict[str, psutil.Process]:
        """The running system's processes by role: `up`, `web` and its `web worker`s, each
        queue's `<queue> worker` (the Celery master) and its `<queue> child`ren, `beat`,
        `flower`. Roles held by more than one process are numbered in order of start."""
        if self.process is None or self.process.poll() is not None:
            return {}
        return processes_by_role(self.process.pid)

    def service_processes(self) -> dict[str, list[psutil.Process]]:
        """The embedded Redis server and PostgreSQL's processes (postmaster and backends)."""
        import redis
        from django.db import connection

        found: dict[str, list[psutil.Process]] = {}
        with suppress(psutil.Error, OSError):
            pid = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")["process_id"]
            found["redis"] = [psutil.Process(pid)]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        with suppress(psutil.Error):
            postmaster = psutil.Process(backend).parent()
            if postmaster is not None:
                found["postgres"] = [postmaster, *postmaster.children()]
        return found


@lru_cache(maxsize=1)
def _redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def queue_depths(queues: tuple[str, ...]) -> dict[str, int]:
    """Messages `queued` and `processing` in the database, and the length of each Celery
    queue's Redis list (tasks waiting for a worker)."""
    from django.db.models import Count

    from apps.inbox.models import Message, MessageStatus

    waiting = (MessageStatus.QUEUED, MessageStatus.PROCESSING)
    counts = dict(
        Message.objects.filter(status__in=waiting).values_list("status").annotate(n=Count("id"))
    )
    depths = {str(status): counts.get(status, 0) for status in waiting}
    pipe = _redis(os.environ["REDIS_URL"]).pipeline()
    for queue in queues:
        pipe.llen(queue)
    depths.update(zip(queues, pipe.execute(), strict=True))
    return depths


SHELLS = {"sh", "bash", "dash"}


def _family(cmdline: list[str]) -> str | None:
    """What a command line runs: web, beat, flower, a queue's worker, or None (unknown)."""
    names = [Path(argument).name for argument in cmdline]
    if "gunicorn" in names:
        return "web"
    if "celery" not in names:
        return None
    if "worker" in cmdline:
        for index, argument in enumerate(cmdline):
            if argument in ("-Q", "--queues") and index + 1 < len(cmdline):
                return f"{cmdline[index + 1]} worker"
            if argument.startswith("--queues="):
                return f"{argument.partition('=')[2]} worker"
        return "worker"
    return next((name for name in ("beat", "flower") if name in cmdline), None)


def _program_name(cmdline: list[str]) -> str:
    """A process that is none of ours by name: its module (python -m) or its program."""
    if len(cmdline) > 2 and Path(cmdline[0]).name.startswith("python") and cmdline[1] == "-m":
        return cmdline[2].rpartition(".")[2]
    if len(cmdline) > 1 and Path(cmdline[0]).name.startswith("python"):
        return Path(cmdline[1]).name
    return Path(cmdline[0]).name


def processes_by_role(root_pid: int) -> dict[str, psutil.Process]:
    """root_pid (`up`) and every process under it, by role (see System.processes). Shells and
    the supervisor's own forks (the same command line as root) are left out."""
    root = psutil.Process(root_pid)
    candidates = []
    for process in [root, *root.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = process.cmdline()
            candidates.append((process, cmdline, process.ppid(), process.create_time()))
    root_cmdline = candidates[0][1] if candidates and candidates[0][0].pid == root_pid else None
    family_of = {process.pid: _family(cmdline) for process, cmdline, _, _ in candidates}
    named: dict[str, list[tuple[float, psutil.Process]]] = {}
    for process, cmdline, parent, created in candidates:
        if process.pid == root_pid:
            role = "up"
        elif cmdline == root_cmdline or not cmdline or Path(cmdline[0]).name in SHELLS:
            continue
        else:
            family = family_of[process.pid]
            if family is None:
                role = _program_name(cmdline)
            elif family_of.get(parent) == family:  # forked by its master: a pool child
                role = "web worker" if family == "web" else family.replace(" worker", " child")
            else:
                role = family
        named.setdefault(role, []).append((created, process))
    roles = {}
    for role, held in named.items():
        held.sort(key=lambda pair: pair[0])
        if len(held) == 1:
            roles[role] = held[0][1]
        else:
            roles.update({f"{role} {n}": process for n, (_, process) in enumerate(held, 1)})
    return roles
