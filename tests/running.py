"""Running mailscore's commands as real processes in tests, and finding every process a run
started, so that a test can check that none is left and stop any that is."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(data_dir: Path) -> dict[str, str]:
    """The environment of a first start on a machine without servers: embedded PostgreSQL and
    Redis in data_dir, local settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}  # fmt: skip
    env["MAILSCORE_DATA_DIR"] = str(data_dir)
    env["MAILSCORE_ADMIN_PASSWORD"] = "run-test-password"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def processes_using(data_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names data_dir: the embedded PostgreSQL (-D) and Redis
    (its config file), and anything else started with it."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(str(data_dir) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of processes still running after timeout seconds."""
    deadline = time.monotonic() + timeout
    while (alive := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def kill_all(processes: list[psutil.Process]) -> None:
    for process in still_running(processes):
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


class UpRun:
    """`manage.py up` in a session of its own (as a terminal's foreground job would be), its
    output collected line by line. Everything it started is remembered, for the checks and so
    that whatever a failed test leaves is killed."""

    def __init__(self, data_dir: Path, *arguments: str, stdout=subprocess.PIPE, stderr=None):
        self.port, self.flower_port = free_port(), free_port()
        self.lines: list[str] = []
        self.output_ended = False
        self.seen: dict[int, psutil.Process] = {}
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "up", "--port", str(self.port),
             "--flower-port", str(self.flower_port), *arguments],
            cwd=ROOT, env=environment(data_dir), stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=subprocess.STDOUT if stderr is None else stderr, text=True,
            start_new_session=True,
        )  # fmt: skip
        if stdout is subprocess.PIPE:
            threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while self.process.poll() is None:
            self.remember_processes()
            time.sleep(0.5)

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.output_ended = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> re.Match:
        """The first output line from index `after` on that matches pattern."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if match := compiled.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or self.output_ended:
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; output:\n"
                        + self.output[-6000:]
                    )
                self._changed.wait(min(left, 0.5))

    def started_pids(self) -> dict[str, int]:
        """Each program's pid, as up last announced it."""
        return {m[1]: int(m[2]) for m in re.finditer(r"up \| (\S+) started \(pid (\d+)\)",
                                                     self.output)}  # fmt: skip

    def remember_processes(self) -> list[psutil.Process]:
        """Everything running under up now (supervisord, programs and their children, the
        embedded servers), added to what was seen before."""
        try:
            for process in psutil.Process(self.process.pid).children(recursive=True):
                self.seen.setdefault(process.pid, process)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def kill_everything(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        kill_all(list(self.seen.values()))
        self.process.wait(30)
