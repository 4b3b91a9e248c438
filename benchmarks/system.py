"""Shared by the platform benchmarks: a fresh mailscore on embedded PostgreSQL and Redis, its
processes started the way `make run` starts them, and a corpus of real mail made unique per run.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "spamassassin"
SAMPLES = ROOT / "samples" / "demo.mbox"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def corpus(count: int) -> list[bytes]:
    """count real messages (the spam corpus, then the samples), each with a Message-ID unique to
    this run so that every one is stored."""
    from apps.inbox.engine.mailbox import iter_messages

    sources = [CORPUS] if CORPUS.exists() else []
    raws = [m.raw for m in iter_messages([*sources, SAMPLES]) if m.raw]
    run = uuid.uuid4().hex[:8]
    chosen = []
    for index in range(count):
        raw = raws[index % len(raws)]
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
            [sys.executable, "-m", "gunicorn", "mailscore.wsgi:application", "--bind",
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
