"""The Procfile's programs run under supervisord: restarted when they die, with backoff for quick
exits, a crash loop reported and stopped, and each line of output prefixed with its program."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import psutil

from mailscore.processes import die_with_this_process, stop_process, wait_stopped

PROGRAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
POLL_SECONDS = 0.2
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
# A program's output is printed a line at a time; a longer line is printed in pieces.
LONGEST_LINE = 64 * 1024


class ProcfileError(ValueError):
    """The Procfile cannot be read as `name: command` lines."""


class AlreadyRunning(RuntimeError):
    """Another manage.py up runs on the same data directory."""


@dataclass(frozen=True)
class Program:
    name: str
    command: str  # a shell command line, as in a Procfile


@dataclass(frozen=True)
class Limits:
    """How supervisord tells a crash loop from a process that died once."""

    # A program that stays up this long counts as started; one that exits sooner is retried
    # after 1 s, then 2 s, 3 s..., and given up after this many retries in a row.
    start_seconds: float = 10.0
    start_retries: int = 3
    # On stop, a program has this long after SIGTERM before its process group is killed.
    stop_seconds: float = 30.0


def read_procfile(path: Path) -> list[Program]:
    """One program per line, `name: command`; blank lines and lines starting with # are skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProcfileError(f"Cannot read the Procfile {path}: {exc.strerror}.") from exc
    programs: dict[str, Program] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not colon or not PROGRAM_NAME.match(name) or not command:
            raise ProcfileError(
                f"{path}, line {number}: expected `name: command` with a name of letters, digits, "
                f"- and _ (for example `web: gunicorn app`), found {line.strip()!r}."
            )
        if name in programs:
            raise ProcfileError(f"{path}, line {number}: the program {name!r} is listed twice.")
        programs[name] = Program(name, command)
    if not programs:
        raise ProcfileError(f"{path} lists no programs; add lines of the form `name: command`.")
    return list(programs.values())


class Console:
    """Prefixed lines to a stream, from any thread. Once the stream fails (the reader of a pipe
    has gone, as when `make run | tee` is interrupted) it writes nothing more, so that stopping
    never waits on, or fails for, output nobody reads."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost = False
        self._lock = threading.Lock()

    def line(self, prefix: str, text: str) -> None:
        self.write(f"{prefix} | {text}")

    def write(self, text: str) -> None:
        with self._lock:
            if self.lost:
                return
            try:
                self.stream.write(f"{text}\n")
                self.stream.flush()
            except (OSError, ValueError):
                self.lost = True
                _silence_standard_output()


class _LogTail:
    """New lines of a log file that supervisord writes and rotates (renames to .1, starts anew)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = None
        self.pending = b""
        if path.exists():  # what earlier runs wrote is not shown again
            self.file = path.open("rb")
            self.file.seek(0, os.SEEK_END)

    def lines(self) -> list[str]:
        if self.file is None:
            try:
                self.file = self.path.open("rb")
            except FileNotFoundError:
                return []
        data = self.file.read()
        try:
            replaced = os.stat(self.path).st_ino != os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            replaced = True
        if replaced:  # read the old file to its end; the new one is read from its start
            data += self.file.read()
            self.file.close()
            self.file = None
        return self._split(data)

    def rest(self) -> list[str]:
        """Everything left, the last line even without its newline."""
        lines = self.lines()
        if self.pending:
            lines.append(self.pending.decode(errors="replace"))
            self.pending = b""
        if self.file is not None:
            self.file.close()
            self.file = None
        return lines

    def _split(self, data: bytes) -> list[str]:
        chunks = (self.pending + data).split(b"\n")
        self.pending = chunks.pop()
        if len(self.pending) > LONGEST_LINE:
            chunks.append(self.pending)
            self.pending = b""
        return [chunk.rstrip(b"\r").decode(errors="replace") for chunk in chunks]


@dataclass
class _ProgramState:
    pid: int | None = None
    started_at: datetime | None = None
    running: bool = False  # stayed up past the start time
    quick_exits: int = 0
    groups: set[int] = field(default_factory=set)


# supervisord's log lines: "2025-01-31 12:00:00,123 INFO spawned: 'web' with pid 42".
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) (.*)$")
_SPAWNED = re.compile(r"^spawned: '(?P<name>[^']+)' with pid (?P<pid>\d+)$")
_SUCCESS = re.compile(r"^success: (?P<name>\S+) entered RUNNING state")
_EXITED = re.compile(r"^exited: (?P<name>\S+) \((?P<how>.+); (?:not )?expected\)$")
_STOPPED = re.compile(r"^stopped: (?P<name>\S+) \((?P<how>.+)\)$")
_GAVE_UP = re.compile(r"^gave up: (?P<name>\S+) entered FATAL state")
_WAITING = re.compile(r"^waiting for (?P<name>\S+) to stop$")
_KILLING = re.compile(r"^killing '(?P<name>[^']+)' \((?P<pid>\d+)\) with SIGKILL$")
_SPAWN_ERROR = re.compile(r"^spawnerr: (?P<message>.+)$")
_STOP_REQUEST = re.compile(r"^received SIG\w+ indicating exit request$")


class Supervisor:
    """supervisord in the foreground, as a child of this process, with a config generated into
    the data directory. Call start(), then poll() until it says to stop (or the user does), then
    stop(). Program output goes to <data>/logs/<program>.log and is echoed to the console."""

    def __init__(
        self,
        programs: list[Program],
        *,
        data_dir: Path,
        environment: dict[str, str],
        directory: Path,
        console: Console,
        limits: Limits | None = None,
    ) -> None:
        self.programs = programs
        self.state_dir = data_dir / "supervisor"
        self.log_dir = data_dir / "logs"
        self.environment = environment
        self.directory = directory
        self.console = console
        self.limits = limits or Limits()
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        self.gave_up: str | None = None  # the program in a crash loop, if any
        self.stopping = False
        self.states = {program.name: _ProgramState() for program in programs}
        self._tails: dict[str, _LogTail] = {}
        self._data_dir_lock: int | None = None

    @property
    def config_path(self) -> Path:
        return self.state_dir / "supervisord.conf"

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._take_data_dir()
        self.config_path.write_text(self._config())
        # Programs first, so that a program's last words come before the news of its exit.
        self._tails = {p.name: _LogTail(self.log_dir / f"{p.name}.log") for p in self.programs}
        self._tails["supervisord"] = _LogTail(self.log_dir / "supervisord.log")
        self.started_at = time.time()
        with open(self.state_dir / "supervisord.out", "wb") as output:
            # Its own session: the terminal's Ctrl-C comes to us, and we stop it in order. The
            # parent-death signal stops it, and so the programs, if we are killed outright.
            self.process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)],
                env=self.environment, cwd=self.directory, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_this_process(signal.SIGTERM),
            )  # fmt: skip

    def _take_data_dir(self) -> None:
        """One supervisord per data directory: a second would run a second set of programs and
        write into the same logs."""
        lock_path = self.state_dir / "supervisord.lock"
        descriptor = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip() or "another process"
            os.close(descriptor)
            raise AlreadyRunning(
                f"manage.py up is already running on {self.state_dir.parent} (pid {holder}); "
                "stop it first, or give this one another MAILSCORE_DATA_DIR."
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        self._data_dir_lock = descriptor

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> None:
        """Echo what the programs and supervisord wrote since the last call."""
        for name, tail in self._tails.items():
            for line in tail.lines():
                self._show(name, line)

    def early_exit_reason(self) -> str:
        """Why supervisord ended without being asked to, from what it printed."""
        output = (self.state_dir / "supervisord.out").read_text(errors="replace").strip()
        code = self.process.returncode if self.process else None
        return f"supervisord exited with status {code}" + (f": {output[-1500:]}" if output else "")

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> None:
        """Stop every program (SIGTERM to its process group, SIGKILL after the stop time), then
        supervisord; kill whatever is left of the programs' process groups. hurry() returning
        True (a second Ctrl-C) skips the waiting."""
        self.stopping = True
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.limits.stop_seconds + 15
            while self.alive() and time.monotonic() < deadline and not hurry():
                self.poll()
                time.sleep(POLL_SECONDS)
            if self.alive():
                stop_process(self.process, signal.SIGKILL, 10)
        if self.process is not None:
            self.process.wait()
        for name, tail in self._tails.items():  # the last lines, and the last pids
            for line in tail.rest():
                self._show(name, line)
        self._kill_leftovers(grace=0 if hurry() else 5)
        if self._data_dir_lock is not None:
            os.close(self._data_dir_lock)
            self._data_dir_lock = None

    def _kill_leftovers(self, grace: float) -> None:
        """Processes of the programs' groups still there once supervisord is gone (children that
        outlived their program, or everything after a second Ctrl-C): killed after grace s."""
        groups = set().union(*(state.groups for state in self.states.values()))
        if not groups:
            return
        deadline = time.monotonic() + grace
        while True:
            leftovers = _processes_in_groups(groups, since=self.started_at - 1)
            if not leftovers or time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
        if not leftovers:
            return
        pids = ", ".join(str(process.pid) for process in leftovers)
        self.console.line("up", f"killing what the programs left running: pids {pids}")
        for process in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        for process in leftovers:
            wait_stopped(process, 5)

    def _show(self, name: str, line: str) -> None:
        if name != "supervisord":
            self.console.line(name, line)
            return
        match = _LOG_LINE.match(line)
        if not match:
            return  # the rest of a multi-line message; supervisord.log keeps it
        stamp, level, message = match.groups()
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        text = self._describe(message, when)
        if text is None and level in ("WARN", "ERRO", "CRIT") and not _STOP_REQUEST.match(message):
            text = f"supervisord: {message}"
        if text:
            self.console.line("up", text)

    def _describe(self, message: str, when: datetime) -> str | None:
        """supervisord's account of a program, in words for the console (None: not shown)."""
        if match := _SPAWNED.match(message):
            state = self._state(match["name"])
            state.pid, state.started_at, state.running = int(match["pid"]), when, False
            state.groups.add(state.pid)  # supervisord makes each program a process group leader
            return f"{match['name']} started (pid {state.pid})"
        if match := _SUCCESS.match(message):
            state = self._state(match["name"])
            state.running, state.quick_exits = True, 0
            return None
        if match := _EXITED.match(message):
            return self._exited(match["name"], match["how"], when)
        if match := _STOPPED.match(message):
            self._state(match["name"]).pid = None
            return f"{match['name']} stopped ({match['how']})"
        if match := _GAVE_UP.match(message):
            self.gave_up = self.gave_up or match["name"]
            limits = self.limits
            return (
                f"{match['name']} keeps exiting within {limits.start_seconds:g} s of starting "
                f"({limits.start_retries + 1} times in a row): giving up"
            )
        if match := _WAITING.match(message):
            return f"waiting for {match['name']} to stop"
        if match := _KILLING.match(message):
            return (f"{match['name']} did not stop within {self.limits.stop_seconds:g} s of "
                    f"SIGTERM; killing its process group")  # fmt: skip
        if match := _SPAWN_ERROR.match(message):
            return f"could not start a program: {match['message']}"
        return None

    def _state(self, name: str) -> _ProgramState:
        return self.states.setdefault(name, _ProgramState())

    def _exited(self, name: str, how: str, when: datetime) -> str:
        state = self._state(name)
        lasted = (when - state.started_at).total_seconds() if state.started_at else None
        state.pid = None
        if self.stopping:
            return f"{name} exited ({how})"
        # The same rule as supervisord's: an exit before the start time is a quick one.
        quick = not state.running and lasted is not None and lasted < self.limits.start_seconds
        state.running = False
        if not quick:
            state.quick_exits = 0
            return f"{name} exited ({how}); restarting it"
        state.quick_exits += 1
        attempt, retries = state.quick_exits, self.limits.start_retries
        if attempt > retries:
            return f"{name} exited ({how}) {lasted:.1f} s after starting; no retries left"
        return (f"{name} exited ({how}) {lasted:.1f} s after starting; "
                f"retry {attempt} of {retries} in {attempt} s")  # fmt: skip

    def _config(self) -> str:
        limits = self.limits
        user = "user=root\n" if os.geteuid() == 0 else ""  # said outright, else it warns
        sections = [
            "; Written by manage.py up at every start; changes here are overwritten.\n"
            "[supervisord]\n"
            "nodaemon=true\n"
            "silent=true\n"
            f"{user}"
            f"logfile={_config_value(self.log_dir / 'supervisord.log')}\n"
            f"logfile_maxbytes={LOG_MAX_BYTES}\n"
            f"logfile_backups={LOG_BACKUPS}\n"
            f"pidfile={_config_value(self.state_dir / 'supervisord.pid')}\n"
            f"directory={_config_value(self.directory)}\n"
        ]
        # One group: supervisord stops the programs of a group together, and groups one by one.
        names = ",".join(program.name for program in self.programs)
        sections.append(f"[group:mailscore]\nprograms={names}\n")
        for program in self.programs:
            # `exec env` makes the program itself the process supervisord watches and signals,
            # after the shell has expanded ${VARIABLES} and NAME=value prefixes.
            command = shlex.join(["/bin/sh", "-c", f"exec env {program.command}"])
            sections.append(
                f"[program:{program.name}]\n"
                f"command={_config_value(command)}\n"
                f"directory={_config_value(self.directory)}\n"
                "autostart=true\n"
                "autorestart=true\n"
                f"startsecs={limits.start_seconds:g}\n"
                f"startretries={limits.start_retries}\n"
                "stopsignal=TERM\n"
                f"stopwaitsecs={limits.stop_seconds:g}\n"
                "stopasgroup=true\n"
                "killasgroup=true\n"
                "redirect_stderr=true\n"
                f"stdout_logfile={_config_value(self.log_dir / f'{program.name}.log')}\n"
                f"stdout_logfile_maxbytes={LOG_MAX_BYTES}\n"
                f"stdout_logfile_backups={LOG_BACKUPS}\n"
            )
        return "\n".join(sections)


def _silence_standard_output() -> None:
    """Point stdout, and stderr where it is the same pipe, at /dev/null: what is still buffered
    for them would otherwise fail again, and loudly, when Python exits."""
    try:
        out = os.fstat(1)
    except OSError:
        return
    descriptors = [1]
    with contextlib.suppress(OSError):
        err = os.fstat(2)
        if (err.st_dev, err.st_ino) == (out.st_dev, out.st_ino):
            descriptors.append(2)
    null = os.open(os.devnull, os.O_WRONLY)
    for descriptor in descriptors:
        os.dup2(null, descriptor)
    os.close(null)


def _config_value(value: object) -> str:
    # supervisord expands %(name)s in values; a literal % is written %%.
    return str(value).replace("%", "%%")


def _processes_in_groups(groups: set[int], since: float) -> list[psutil.Process]:
    """Live processes in these process groups started after since (a group id can be reused)."""
    found = []
    for process in psutil.process_iter():
        try:
            if (
                os.getpgid(process.pid) in groups
                and process.create_time() >= since
                and process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found
