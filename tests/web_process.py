"""gunicorn as the Procfile starts it (mailscore/gunicorn.conf.py), on the test database, for
tests that need the real web process: its gevent workers, its group commit, its signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = Path(sys.executable).parent


@dataclass
class WebProcess:
    base: str  # http://127.0.0.1:port
    port: int
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gunicorn_on_test_database(metrics_dir: Path, *, workers: int = 1) -> Iterator[WebProcess]:
    """Call with database access allowed (the test database's name is read from Django)."""
    database = connection.settings_dict["NAME"]
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailscore.settings.test",
        "DATABASE_URL": urllib.parse.urlunsplit(url._replace(path=f"/{database}")),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    server = subprocess.Popen(
        [str(BIN_DIR / "gunicorn"), "mailscore.wsgi:application", "-c", "mailscore/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", "60",
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                with urllib.request.urlopen(f"{base}/health/live", timeout=2):  # noqa: S310 (loopback)
                    break
            except (OSError, urllib.error.HTTPError):
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.2)
        yield WebProcess(base, port, server)
    finally:
        stop(server, timeout=20)


def stop(server: subprocess.Popen, *, timeout: float = 30) -> None:
    """Stop a server the way a supervisor does: SIGTERM, then SIGKILL past the timeout."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
