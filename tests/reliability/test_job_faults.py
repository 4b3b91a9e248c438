"""Bulk verification jobs through real faults: the verify worker killed in the middle of a job,
and Redis stopped and started while one runs and another is posted. Every job completes with
each input row answered once, with the verdicts the engine gives those addresses undisturbed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import psutil
import pytest
import redis

from apps.verification.engine import Verifier, VerifierConfig
from apps.verification.engine.cache import MemoryCache
from tests.reliability.conftest import BULK_DOMAINS, BULK_SERVERS
from tests.reliability.system import Database, MailSystem, wait_for

pytestmark = pytest.mark.reliability

# Sessions the verifiers may hold on one mail server, all of them together (the default).
PER_HOST_SESSIONS = 2
# What a job needs of the system: no model pools.
JOB_PROCESSES = ("web", "verify", "maintenance", "beat")
JOB_ENVIRONMENT = {
    # A dead run's shards come back within seconds rather than the default half minute.
    "MAILSCORE_JOB_LEASE_SECONDS": "5",
    "MAILSCORE_SWEEP_SECONDS": "2",
    "MAILSCORE_THROTTLE_VERIFY": "off",
    "MAILSCORE_THROTTLE_READ": "off",
    # Ten domains take turns at each bulk server's sessions: waiting for a turn is no fault of
    # the server's, so the budget covers the whole job.
    "MAILSCORE_SMTP_PER_HOST_CONCURRENCY": str(PER_HOST_SESSIONS),
    "MAILSCORE_SMTP_ADDRESS_BUDGET": "120",
}
# Mailboxes of every kind the bulk server has: known, role, full, disabled, unknown.
LOCAL_PARTS = ("alice", "bob", "carol", "support", "fullbox", "gone")
PER_DOMAIN = 30
FINISHED = ("completed", "failed", "cancelled")
JOB_TIMEOUT = 150
REDIS_OUTAGE_SECONDS = 8


def bulk_addresses(tag: str, per_domain: int = PER_DOMAIN) -> list[str]:
    """per_domain distinct addresses on each bulk domain, shuffled so that input order is not
    domain order."""
    local_parts = [*LOCAL_PARTS, *(f"{tag}{n}" for n in range(per_domain - len(LOCAL_PARTS)))]
    emails = [f"{local}@{domain}" for domain in BULK_DOMAINS for local in local_parts]
    random.Random(tag).shuffle(emails)
    return emails


def expected_answers(farm, emails: list[str]) -> dict[str, tuple[str, str]]:
    """(verdict, reason) per address from the engine in this process, with a cache of its own,
    against the same farm and with the settings the system's workers have.

    The bulk servers answer every command, so none of their addresses times out undisturbed. The
    sessions per server are held to a few: dozens at once, on a loaded machine where the farm
    shares this process, slow the replies past the command timeout and make the reference itself
    the disturbed one. An address that still timed out is asked once more."""
    config = VerifierConfig(
        helo_hostname="verifier.mailscore.test",
        mail_from="bounces@mailscore.test",
        smtp_port=farm.farm.port,
        dns_nameservers=(farm.farm.nameserver,),
        dns_timeout=1.0,
        connect_timeout=1.0,
        command_timeout=2.0,
        address_budget=120.0,
        per_host_rate=0,
        per_host_concurrency=4 * PER_HOST_SESSIONS,
        greylist_initial_delay=0.5,
        allow_special_use_domains=True,
        smtp_allowed_networks=("127.0.0.0/8",),  # the farm is on loopback
    )

    def answers(addresses: list[str]) -> dict[str, tuple[str, str]]:
        results = asyncio.run(Verifier(config, cache=MemoryCache()).verify_many(addresses))
        return {a: (str(r.verdict), str(r.reason)) for a, r in zip(addresses, results, strict=True)}

    expected = answers(emails)
    timed_out = [email for email, (_, reason) in expected.items() if reason == "timeout"]
    if timed_out:
        expected.update(answers(timed_out))
    return expected


class JobsApi:
    """The jobs API of a running system, as a client sees it."""

    def __init__(self, system: MailSystem) -> None:
        self.system = system

    def _call(self, url: str, body: bytes | None = None) -> tuple[int, dict, dict]:
        headers = {"X-API-Key": self.system.api_key, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=body, headers=headers,
                                         method="POST" if body is not None else "GET")  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = {"body": text[:500].decode(errors="replace")}
            return error.code, dict(error.headers), answer

    def post(self, emails: list[str]) -> tuple[int, dict, dict]:
        body = json.dumps({"emails": emails}).encode()
        return self._call(f"{self.system.url}/api/v1/jobs", body)

    def create(self, emails: list[str]) -> dict:
        code, _, job = self.post(emails)
        assert code == 202, f"POST /api/v1/jobs answered {code}: {job}\n{self.system.report()}"
        return job

    def get(self, url: str) -> dict:
        code, _, body = self._call(url)
        assert code == 200, f"GET {url} answered {code}: {body}"
        return body

    def results(self, job: dict) -> list[dict]:
        rows, url = [], f"{job['results_url']}?page_size=5000"
        while url:
            page = self.get(url)
            rows.extend(page["results"])
            url = page["next"]
        return rows

    def wait_until_finished(self, job: dict, timeout: float = JOB_TIMEOUT) -> dict:
        seen: list[dict] = [{}]

        def finished() -> dict | None:
            try:
                seen[0] = self.get(job["url"])
            except (AssertionError, OSError):
                return None  # the web process may be restarting
            return seen[0] if seen[0].get("status") in FINISHED else None

        return wait_for(finished, timeout=timeout, interval=0.5, explain=lambda: (
            f"job {job['id']} is {seen[0].get('status')}, {seen[0].get('progress')}; "
            f"{politeness_slots(self.system)}\n{self.system.report()}"))  # fmt: skip

    def wait_until_partly_done(self, job: dict, *, server_busy: bool = False,
                               timeout: float = 90) -> dict:  # fmt: skip
        """The job once a quarter of its rows or more are answered, and not all: several
        domains done, others in hand, for a fault to hit. server_busy: and at a moment when
        the verifier holds every session a bulk server allows."""
        seen: list[dict] = [{}]

        def partly() -> dict | None:
            seen[0] = self.get(job["url"])
            if seen[0]["status"] in FINISHED:
                raise AssertionError(f"the job finished before a fault could hit it: {seen[0]}")
            progress = seen[0]["progress"]
            if not progress["total"] / 4 <= progress["done"] < progress["total"]:
                return None
            if server_busy and not any(len(held) >= PER_HOST_SESSIONS
                                       for held in slots_held(self.system).values()):  # fmt: skip
                return None
            return seen[0]

        return wait_for(partly, timeout=timeout, interval=0.05, explain=lambda: (
            f"job {job['id']} never was part-way: {seen[0].get('status')}, "
            f"{seen[0].get('progress')}, {politeness_slots(self.system)}\n"
            f"{self.system.report()}"))  # fmt: skip


BULK_IPS = {server.ip for server in BULK_SERVERS}


def slots_held(system: MailSystem) -> dict[str, list[int]]:
    """The bulk servers' sessions the verifiers hold, as the shared limits in Redis record
    them: server address -> the seconds each slot's lease has left."""
    client = redis.Redis.from_url(system.redis.url, socket_timeout=2)
    try:
        now, held = time.time(), {}
        for key in client.scan_iter("mailscore:verify:slots:*"):
            ip = key.decode().rpartition(":")[2]
            if ip in BULK_IPS:
                leases = client.zrangebyscore(key, now, "+inf", withscores=True)
                held[ip] = sorted(round(expiry - now) for _, expiry in leases)
        return held
    finally:
        client.close()


def politeness_slots(system: MailSystem) -> str:
    """slots_held for a message (a slot a dead worker held keeps the server from everyone
    else until its lease runs out)."""
    try:
        return f"slots held (server: seconds left): {slots_held(system) or 'none'}"
    except redis.RedisError as exc:
        return f"slots unknown ({exc})"


def item_rows(database: Database, job_id: str) -> list[tuple]:
    return database.query(
        "SELECT position, email, verdict, reason, checked_at FROM verification_job_item "
        "WHERE job_id = %s ORDER BY position, id",
        [job_id],
    )


def check_job(api: JobsApi, job: dict, emails: list[str],
              expected: dict[str, tuple[str, str]], context: str = "") -> dict:  # fmt: skip
    """The job completed with one answer per input row, in input order, the engine's own
    verdicts, and counts that add up; returns its final body. context: what the fault was,
    for a failure message."""
    body = api.get(job["url"])
    total = len(emails)
    assert body["status"] == "completed", body
    assert body["progress"] == {"done": total, "total": total, "percent": 100.0}, body
    assert sum(body["counts"].values()) == total, body

    rows = item_rows(Database(api.system.database_url), job["id"])
    assert [r[0] for r in rows] == list(range(total)), "rows lost or stored twice"
    assert [r[1] for r in rows] == emails
    unanswered = [r[0] for r in rows if r[4] is None or not r[2]]
    assert not unanswered, f"{len(unanswered)} rows without an answer: {unanswered[:10]}"

    results = api.results(job)
    assert [r["position"] for r in results] == list(range(total))
    assert [r["email"] for r in results] == emails
    assert Counter(r["verdict"] for r in results) == Counter(
        {verdict: n for verdict, n in body["counts"].items() if n}
    ), body["counts"]
    wrong = [(r["email"], r["verdict"], r["reason"], expected[r["email"]]) for r in results
             if (r["verdict"], r["reason"]) != expected[r["email"]]]  # fmt: skip
    assert not wrong, (
        f"{len(wrong)} answers differ from the engine's without faults (address, verdict, "
        f"reason, expected): {wrong[:10]}\n{context}\n{api.system.report(15)}"
    )
    return body


def kill_process_tree(system: MailSystem, name: str) -> list[int]:
    """SIGKILL a process of the system and every process under it, as the OOM killer or a lost
    node would; returns their pids."""
    process = system.processes[name]
    tree = [process.pid]
    with contextlib.suppress(psutil.NoSuchProcess):
        tree += [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGKILL)  # it leads a process group of its own
    process.popen.wait(10)
    return tree


class Supervisor:
    """Starts again every process of the system that exits, each second, as supervisord does
    under manage.py up (and Kubernetes in production)."""

    def __init__(self, system: MailSystem) -> None:
        self.system = system
        self.restarted: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.restarted.extend(self.system.restart_stopped())


def test_verify_worker_killed_mid_job(start_system, verification_farm):
    system = start_system(environment=JOB_ENVIRONMENT, processes=JOB_PROCESSES)
    api = JobsApi(system)
    database = Database(system.database_url)
    emails = bulk_addresses("kill")
    job = api.create(emails)
    # The worker dies connected to a mail server, holding all the sessions it allows.
    api.wait_until_partly_done(job, server_busy=True)

    killed = kill_process_tree(system, "verify")
    slots_at_kill = politeness_slots(system)
    # Give the database a moment to finish a statement the dead worker had sent, then note what
    # was checked: no other process writes answers, so nothing can change these rows but a
    # second check, which must not happen.
    time.sleep(1.0)
    before = {r[0]: r[4] for r in item_rows(database, job["id"]) if r[4] is not None}
    assert 0 < len(before) < len(emails), f"the kill was not mid-job: {len(before)} checked"
    rcpts_before = {emails[p]: verification_farm.rcpts.addresses[emails[p]] for p in before}

    with Supervisor(system) as supervisor:
        api.wait_until_finished(job)
    assert supervisor.restarted and all(n.startswith("verify") for n in supervisor.restarted), (
        supervisor.restarted
    )
    rcpts_after = {email: verification_farm.rcpts.addresses[email] for email in rcpts_before}

    fault = f"verify killed with {len(before)} rows checked and {slots_at_kill}"
    body = check_job(api, job, emails, expected_answers(verification_farm, emails), fault)
    after = {r[0]: r[4] for r in item_rows(database, job["id"])}
    rechecked = [(p, before[p], after[p]) for p in before if after[p] != before[p]]
    assert not rechecked, (
        f"{len(rechecked)} rows checked before the kill were checked again (position, "
        f"checked_at before, after): {rechecked[:5]}"
    )
    probed_again = {e: (rcpts_before[e], n) for e, n in rcpts_after.items() if n != 1}
    assert not probed_again, (
        f"addresses answered before the kill were probed again (RCPTs before, after): "
        f"{dict(list(probed_again.items())[:10])}"
    )
    print(f"\n{fault} (pids {killed}); completed {body['finished_at']}, counts "
          f"{body['counts']}")  # fmt: skip


def test_redis_stopped_and_started_mid_job(start_system, verification_farm):
    system = start_system(environment=JOB_ENVIRONMENT, processes=JOB_PROCESSES)
    api = JobsApi(system)
    running_emails = bulk_addresses("outage")
    posted_emails = bulk_addresses("down", per_domain=10)
    running = api.create(running_emails)
    api.wait_until_partly_done(running)

    with Supervisor(system) as supervisor:
        system.redis.stop()
        # The API keeps its contract while Redis is away: the job's rows are committed and the
        # sweep queues its shards once the broker is back.
        code, headers, posted = api.post(posted_emails)
        assert code == 202, (
            f"POST /api/v1/jobs with Redis down answered {code} {headers.get('Retry-After')}: "
            f"{posted}\n{system.report(15)}"
        )
        stored = Database(system.database_url).query(
            "SELECT count(*) FROM verification_job_item WHERE job_id = %s", [posted["id"]]
        )
        assert stored == [(len(posted_emails),)], stored
        time.sleep(REDIS_OUTAGE_SECONDS)
        during = api.get(running["url"])
        assert during["status"] in ("queued", "running"), f"the outage ended the job: {during}"
        system.redis.start()
        api.wait_until_finished(running)
        api.wait_until_finished(posted)

    expected = expected_answers(verification_farm, running_emails + posted_emails)
    first = check_job(api, running, running_emails, expected)
    second = check_job(api, posted, posted_emails, expected)
    print(f"\njob during the outage: {during['progress']} -> {first['counts']}; job posted "
          f"while Redis was down: {second['counts']}; restarted: "
          f"{supervisor.restarted or 'none'}")  # fmt: skip
