"""Whatever the project starts, it stops: the embedded PostgreSQL and Redis stop with the process
that started them (at exit, on SIGTERM, and when it is killed outright), a second process on the
same data directory uses them and leaves them running, and neither `manage.py triage` nor a
pytest session leaves a server behind."""

from __future__ import annotations

import itertools
import json
import mailbox
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.running import ROOT, environment, processes_using, wait_gone

SERVICE_USER = """
import os, sys
from pathlib import Path
from mailscore import embedded
embedded.ensure_services(Path(sys.argv[1]))
print(os.environ["DATABASE_URL"], os.environ["REDIS_URL"], flush=True)
if sys.argv[2:] == ["wait"]:
    sys.stdin.read()
"""

SESSION_TEST = """
import json, os, psutil, psycopg, redis

def test_the_session_has_its_own_servers():
    assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        assert connection.execute("select 1").fetchone() == (1,)
    data_dir = os.environ["MAILSCORE_TEST_DATA_DIR"]
    servers = [p.pid for p in psutil.process_iter(["cmdline"])
               if any(data_dir in part for part in p.info["cmdline"] or ())]
    with open(os.environ["SERVERS_SEEN"], "w") as seen:
        json.dump(servers, seen)
"""


def servers_of(data_dir) -> dict[str, psutil.Process]:
    """The embedded servers running for data_dir, by kind."""
    found = {}
    for process in processes_using(data_dir):
        try:
            name = process.name()
        except psutil.NoSuchProcess:
            continue
        if name in ("postgres", "redis-server"):
            found[name] = process
    return found


def start_service_user(data_dir, *arguments: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE_USER, str(data_dir), *arguments], cwd=ROOT,
        env=environment(data_dir), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return process, process.stdout.readline().strip()


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path
    leftovers = processes_using(tmp_path)
    for process in leftovers:
        process.kill()
    assert not leftovers


def test_servers_stop_when_their_owner_exits_and_not_before(data_dir):
    owner, urls = start_service_user(data_dir, "wait")
    try:
        servers = servers_of(data_dir)
        assert set(servers) == {"postgres", "redis-server"}
        assert all(server.ppid() == owner.pid for server in servers.values())

        joiner, joined_urls = start_service_user(data_dir)
        assert joiner.wait(30) == 0
        assert joined_urls == urls  # the same servers, which the joiner leaves running
        assert all(server.is_running() for server in servers.values())

        owner.stdin.close()
        assert owner.wait(60) == 0
        assert not wait_gone(list(servers.values()), 10)
        assert not list(data_dir.glob("*.server.json"))
    finally:
        owner.kill()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_servers_stop_when_their_owner_is_stopped_by_a_signal(data_dir, stop):
    owner, _urls = start_service_user(data_dir, "wait")
    try:
        servers = list(servers_of(data_dir).values())
        assert len(servers) == 2
        owner.send_signal(stop)
        assert owner.wait(60) == -stop
        assert not wait_gone(servers, 30)
    finally:
        owner.kill()


def test_a_server_nobody_owns_is_replaced_by_one_that_stops(data_dir):
    """A PostgreSQL started with pg_ctl (as pgserver did) outlives whoever started it: the next
    command stops it and runs its own."""
    started = subprocess.run(
        [sys.executable, "-c", "import sys, pgserver; pgserver.get_server(sys.argv[1], "
         "cleanup_mode=None)", str(data_dir / "postgres")],
        cwd=ROOT, env=environment(data_dir), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    orphan = servers_of(data_dir)["postgres"]

    user, _urls = start_service_user(data_dir)
    assert user.wait(60) == 0
    assert not wait_gone([orphan], 10)
    assert not processes_using(data_dir)


def test_the_triage_command_leaves_no_server_running(data_dir, tmp_path_factory):
    messages = tmp_path_factory.mktemp("mail") / "two.mbox"
    target = mailbox.mbox(messages)
    for message in itertools.islice(mailbox.mbox(ROOT / "samples" / "demo.mbox"), 2):
        target.add(message)
    target.flush()
    env = environment(data_dir)
    # Rules and the light model: what is checked here is the servers' lifetime, which loading
    # the sentence encoder would only make longer.
    env["MAILSCORE_TRIAGE_MODE"] = "fallback"
    command = subprocess.Popen(
        [sys.executable, "manage.py", "triage", str(messages), "--no-verify"], cwd=ROOT,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: dict[str, psutil.Process] = {}
    while command.poll() is None:
        seen.update(servers_of(data_dir))
        time.sleep(0.2)
    output = command.stdout.read()
    assert command.returncode == 0, output[-3000:]
    assert "2 messages triaged, 0 errors" in output
    assert set(seen) == {"postgres", "redis-server"}  # it did start both
    assert not wait_gone(list(seen.values()), 10)
    assert not processes_using(data_dir)


def test_a_pytest_session_leaves_no_server_running(data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    (folder / "test_session.py").write_text(SESSION_TEST)
    seen_file = folder / "servers.json"
    env = environment(data_dir)
    env["MAILSCORE_TEST_DATA_DIR"] = str(data_dir)
    env["SERVERS_SEEN"] = str(seen_file)
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(folder / "test_session.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout[-3000:] + session.stderr[-3000:]
    servers = json.loads(seen_file.read_text())
    assert len(servers) == 2  # PostgreSQL and Redis, started for this session's data directory
    assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in servers)
    assert not processes_using(data_dir)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
