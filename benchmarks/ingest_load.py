"""Ingest API under load: open-loop POSTs of real mail at a fixed rate on loopback.

Requests are sent on a schedule (not one after another), and each latency is counted from the
moment its request was due, so a slow server cannot hide its queueing. A share of the requests
re-send a message already sent: they must get 200 and the first message's id. A re-send is sent
at its own time or as soon as its original has been answered, whichever is later (sent before,
it could overtake the original over another connection and be a first copy itself); its
latency counts from then. Afterwards the database must hold every accepted message exactly
once, each one queued for triage. The pipeline workers are not running, so the figure is the
web tier's own; the CPU each process took per request is read from /proc.

The generator shares the machine with the server, so it is a small HTTP/1.1 client on asyncio
that spends little CPU per request: each request's bytes are built before the clock starts,
one timer sends whatever is due, and answers are parsed as they arrive on up to 256 keep-alive
connections. Status 0 is no answer (connection refused or lost, nothing in 30 s, or an answer
it does not read, such as a chunked one); the reasons are printed when there are any.

    python benchmarks/ingest_load.py [--rate 300] [--seconds 20] [--workers N]

gunicorn runs with mailscore/gunicorn.conf.py, as the Procfile starts it; --workers overrides
the number of worker processes (default: the configuration's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import runpy
import uuid
from collections import Counter, deque
from contextlib import suppress
from urllib.parse import urlsplit

import psutil
from system import ROOT, System, corpus

# A request not answered in this long counts as not answered at all.
CLIENT_TIMEOUT_SECONDS = 30.0
# How often requests are checked against that limit: a request gives up at most this late.
TIMEOUT_CHECK_SECONDS = 0.1
# Keep-alive connections open at once: a request that finds none idle opens one up to this
# many, else waits for one.
MAX_CONNECTIONS = 256
# An answer's status line and headers larger than this are not an answer from gunicorn.
MAX_HEAD_BYTES = 64 * 1024
WARMUP = 50


def plan_requests(count: int, duplicate_share: float) -> tuple[list[tuple[int, bool]], int]:
    """(index into the corpus, is a re-send) for each slot of the schedule, and the number of
    distinct messages among them."""
    random.seed(7)
    plan, sent = [], 0
    for _ in range(count):
        if sent and random.random() < duplicate_share:
            plan.append((random.randrange(sent), True))
        else:
            plan.append((sent, False))
            sent += 1
    return plan, sent


class Request:
    """One slot of the schedule: which message, whether it is a re-send, when it was due (its
    latency counts from then) and when it stops waiting for an answer."""

    __slots__ = ("index", "resend", "due", "deadline")

    def __init__(self, index: int, resend: bool, due: float) -> None:
        self.index = index
        self.resend = resend
        self.due = due
        self.deadline = 0.0


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """(status, body length, whether the connection stays open) from an answer's status line
    and headers; ValueError, its text the reason counted, for an answer this client cannot
    read (chunked, without Content-Length, malformed)."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        raise ValueError("malformed status line")
    status = int(rest[:3])
    keep_alive = version == b"HTTP/1.1"
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            if not value.strip().isdigit():
                raise ValueError("malformed Content-Length")
            length = int(value)
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise ValueError("transfer-encoding (chunked) not supported")
    if status < 200:
        raise ValueError("interim 1xx answer not supported")
    if length is None:
        if status not in (204, 304):
            raise ValueError("answer without Content-Length")
        length = 0
    return status, length, keep_alive


def answer_id(body: bytes) -> object:
    """The "id" of a JSON answer, None where there is none."""
    try:
        return json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time; the answer is read
    as its bytes arrive: status line, headers, then exactly Content-Length bytes of body."""

    def __init__(self, client: Client, request: Request) -> None:
        self.client = client
        self.request: Request | None = request
        self.transport: asyncio.Transport | None = None
        self.opening: asyncio.Future | None = None
        self.received = b""
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.request is not None:
            self.transport.write(self.client.payloads[self.request.index])

    def send(self, request: Request) -> None:
        self.request = request
        self.transport.write(self.client.payloads[request.index])  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        received = self.received + data if self.received else data
        head_end = received.find(b"\r\n\r\n")
        if head_end < 0:
            if len(received) > MAX_HEAD_BYTES:
                self.fail("answer head too long")
            else:
                self.received = received
            return
        if self.request is None:
            self.fail("answer to no request")
            return
        try:
            status, length, keep_alive = parse_head(received[:head_end])
        except ValueError as error:
            self.fail(str(error))
            return
        body_end = head_end + 4 + length
        if len(received) < body_end:
            self.received = received
            return
        if len(received) > body_end:
            self.fail("answer longer than its Content-Length")
            return
        self.received = b""
        request, self.request = self.request, None
        if not keep_alive:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]
        reusable = self if keep_alive else None
        self.client.answered(request, status, received[head_end + 4 :], reusable)

    def fail(self, reason: str) -> None:
        """Drop the connection; the request in flight on it, if any, had no answer."""
        self.closed = True
        self.received = b""
        if self.transport is not None:
            self.transport.abort()
        request, self.request = self.request, None
        if request is not None:
            self.client.not_answered(request, reason)

    def eof_received(self) -> None:
        # The server closed its side (an idle connection past gunicorn's keepalive): not to be
        # picked for a request in the moment before the transport reports the connection lost.
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        request, self.request = self.request, None
        if request is not None:
            reason = "connection reset" if exc else "connection closed by the server"
            self.client.not_answered(request, reason)
        self.client.gone(self)


class Client:
    """Sends the plan on its schedule over a pool of keep-alive connections and keeps the
    results: per request, one write, one read and a parse, with no coroutine of its own."""

    def __init__(self, url: str, key: str, raws: list[bytes], plan: list[tuple[int, bool]],
                 rate: float) -> None:  # fmt: skip
        address = urlsplit(url)
        self.host, self.port = address.hostname, address.port
        head = (f"POST /api/v1/messages HTTP/1.1\r\nHost: {address.netloc}\r\n"
                f"X-API-Key: {key}\r\nContent-Type: message/rfc822\r\n")  # fmt: skip
        self.payloads = [f"{head}Content-Length: {len(raw)}\r\n\r\n".encode() + raw for raw in raws]
        self.plan, self.rate = plan, rate
        self.loop = asyncio.get_running_loop()
        # The longest idle first (as aiohttp's pool): requests spread over every open
        # connection, and so over every gunicorn worker holding one, not onto the busiest few.
        self.idle: deque[Connection] = deque()
        self.connections: set[Connection] = set()  # open or opening
        self.waiting: deque[Request] = deque()  # for a connection, in order of their deadlines
        self.answered_at: dict[int, float] = {}
        self.held_resends: dict[int, list[Request]] = {}
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.first_ids: dict[int, object] = {}
        self.resends: list[tuple[int, object, int]] = []
        self.no_answer: Counter[str] = Counter()
        self.remaining = len(plan)
        self.next_slot = 0
        self.start = 0.0
        self.expiry: asyncio.TimerHandle | None = None
        self.finished = self.loop.create_future()

    async def run(self) -> float:
        """Sends every request and waits for the last answer; the seconds from start to then."""
        loop = self.loop
        self.start = loop.time() + 0.5
        loop.call_at(self.start, self.dispatch)
        self.expiry = loop.call_at(self.start + TIMEOUT_CHECK_SECONDS, self.expire)
        try:
            if self.remaining:
                await self.finished
            return loop.time() - self.start
        finally:
            if self.expiry is not None:
                self.expiry.cancel()
            for connection in self.connections:
                if connection.transport is not None:
                    connection.transport.close()

    def dispatch(self) -> None:
        """Sends every request now due, then waits for the next one's time."""
        now = self.loop.time()
        plan, start, rate, slot = self.plan, self.start, self.rate, self.next_slot
        while slot < len(plan):
            due = start + slot / rate
            if due > now:
                self.loop.call_at(due, self.dispatch)
                break
            index, resend = plan[slot]
            request = Request(index, resend, due)
            if not resend:
                self.submit(request, now)
            elif index in self.answered_at:
                request.due = max(due, self.answered_at[index])
                self.submit(request, now)
            else:
                self.held_resends.setdefault(index, []).append(request)
            slot += 1
        self.next_slot = slot

    def submit(self, request: Request, now: float) -> None:
        request.deadline = now + CLIENT_TIMEOUT_SECONDS
        while self.idle:
            connection = self.idle.popleft()
            if not connection.closed:
                connection.send(request)
                return
        if len(self.connections) < MAX_CONNECTIONS:
            self.open(request)
        else:
            self.waiting.append(request)

    def open(self, request: Request) -> None:
        connection = Connection(self, request)
        self.connections.add(connection)
        connection.opening = asyncio.ensure_future(self.connect(connection))

    async def connect(self, connection: Connection) -> None:
        try:
            await self.loop.create_connection(lambda: connection, self.host, self.port)
        except OSError as error:
            connection.closed = True
            self.connections.discard(connection)
            request, connection.request = connection.request, None
            if request is not None:
                reason = "connection refused" if isinstance(error, ConnectionRefusedError) else (
                    f"cannot connect: {error.strerror or type(error).__name__}")  # fmt: skip
                self.not_answered(request, reason)
            self.open_for_waiting()
        finally:
            connection.opening = None

    def open_for_waiting(self) -> None:
        if self.waiting and len(self.connections) < MAX_CONNECTIONS:
            self.open(self.waiting.popleft())

    def gone(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.open_for_waiting()

    def answered(self, request: Request, status: int, body: bytes,
                 reusable: Connection | None) -> None:  # fmt: skip
        now = self.loop.time()
        if reusable is not None:
            if self.waiting:
                reusable.send(self.waiting.popleft())
            else:
                self.idle.append(reusable)
        self.record(request, status, body, now)

    def not_answered(self, request: Request, reason: str) -> None:
        self.no_answer[reason] += 1
        self.record(request, 0, b"", self.loop.time())

    def record(self, request: Request, status: int, body: bytes, now: float) -> None:
        self.latencies.append(now - request.due)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        index = request.index
        if request.resend:
            self.resends.append((index, answer_id(body) if body else None, status))
        else:
            if status == 202:
                self.first_ids[index] = answer_id(body)
            self.answered_at[index] = now
            for resend in self.held_resends.pop(index, ()):
                resend.due = now
                self.submit(resend, now)
        self.remaining -= 1
        if not self.remaining:
            self.finished.set_result(None)

    def expire(self) -> None:
        """Gives up on the requests not answered in CLIENT_TIMEOUT_SECONDS: one timer looks
        now and then rather than one timer per request."""
        now = self.loop.time()
        while self.waiting and self.waiting[0].deadline <= now:
            self.not_answered(self.waiting.popleft(), "no answer in time")
        for connection in list(self.connections):
            request = connection.request
            if request is None or request.deadline > now:
                continue
            connection.request = None
            connection.closed = True
            if connection.transport is not None:
                connection.transport.abort()
            else:
                self.connections.discard(connection)
                if connection.opening is not None:
                    connection.opening.cancel()
            self.not_answered(request, "no answer in time")
            self.open_for_waiting()
        if self.remaining:
            self.expiry = self.loop.call_at(now + TIMEOUT_CHECK_SECONDS, self.expire)


async def load(url: str, key: str, raws: list[bytes], rate: float, duplicate_share: float):
    plan, distinct = plan_requests(len(raws), duplicate_share)
    client = Client(url, key, raws, plan, rate)
    elapsed = await client.run()
    return (client.latencies, client.statuses, client.first_ids, client.resends, elapsed,
            distinct, client.no_answer)  # fmt: skip


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU time of processes and their children, the ones already gone included (a parent is
    credited with a child's time when it reaps it)."""
    seen, total = set(), 0.0
    for parent in processes:
        with suppress(psutil.Error):
            for process in [parent, *parent.children(recursive=True)]:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                with suppress(psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system + times.children_user
                    total += times.children_system
    return total


def configured_workers() -> int:
    return runpy.run_path(str(ROOT / "mailscore" / "gunicorn.conf.py"))["workers"]


def committed_transactions() -> int:
    """Transactions PostgreSQL has committed in this database (its own statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn worker processes (default: gunicorn.conf.py's)")  # fmt: skip
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of re-sends")
    options = parser.parse_args()
    workers = options.workers or configured_workers()

    system = System()
    try:
        system.start_web_only(workers)
        total = int(options.rate * options.seconds)
        run = uuid.uuid4().hex[:8]
        raws = corpus(total, run)
        # A short warm-up so that every gunicorn worker has its connections open.
        asyncio.run(load(system.url, system.api_key, corpus(WARMUP), 50, 0.0))
        roles = {"web": [psutil.Process(system.process.pid)], **system.service_processes(),
                 "generator": [psutil.Process()]}  # fmt: skip
        # The generator's own process is the services' parent: count only its own time.
        generator = psutil.Process().cpu_times
        before = {role: cpu_seconds(found) for role, found in roles.items() if role != "generator"}
        generator_before = sum(generator()[:2])
        transactions_before = committed_transactions()
        latencies, statuses, first_ids, resends, elapsed, distinct, no_answer = asyncio.run(
            load(system.url, system.api_key, raws, options.rate, options.duplicates)
        )
        cpu = {role: cpu_seconds(roles[role]) - spent for role, spent in before.items()}
        cpu["generator"] = sum(generator()[:2]) - generator_before
    finally:
        system.stop()
    # Read once the web has stopped: its backends have written out their statistics.
    transactions = committed_transactions() - transactions_before

    from apps.inbox.models import Message, MessageStatus
    from tasks.queues import CeleryQueue

    rows = list(Message.objects.filter(message_id_header__startswith=f"<bench-{run}-")
                .values_list("message_id_header", "status"))  # fmt: skip
    queued = sum(state == MessageStatus.QUEUED for _, state in rows)
    import redis

    triage_waiting = redis.Redis.from_url(os.environ["REDIS_URL"]).llen(str(CeleryQueue.TRIAGE))
    sent = len(latencies)
    ok = sum(count for status, count in statuses.items() if 200 <= status < 300)
    errors = sum(count for status, count in statuses.items() if status >= 500)
    resend_ok = sum(status == 200 and first_ids.get(i) == mid for i, mid, status in resends)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"requests: {sent} in {elapsed:.1f}s = {sent / elapsed:.0f} req/s achieved "
          f"(target rate {options.rate:.0f}); gunicorn workers: {workers}")  # fmt: skip
    print(f"answered 2xx: {ok} of {sent} ({100 * ok / sent:.2f}%); 5xx: {errors}; "
          f"statuses: {dict(sorted(statuses.items()))} (0: no answer)")  # fmt: skip
    if no_answer:
        print(f"no answer, by reason: {dict(no_answer.most_common())}")
    print(f"latency ms: p50 {percentile(latencies, 0.50) * 1000:.1f}  "
          f"p95 {percentile(latencies, 0.95) * 1000:.1f}  "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f}  "
          f"max {max(latencies) * 1000:.1f}")  # fmt: skip
    print("CPU ms per request: " + "  ".join(
        f"{role} {seconds * 1000 / sent:.2f}" for role, seconds in cpu.items()))  # fmt: skip
    print(f"PostgreSQL transactions per request: {transactions / sent:.2f} (the group commit "
          f"stores the messages that arrive together in one)")  # fmt: skip
    distinct_rows = len({mid for mid, _ in rows})
    print(f"exactly once: {distinct} distinct messages sent, {statuses.get(202, 0)} accepted "
          f"(202), {len(rows)} rows stored, {distinct_rows} distinct: "
          f"{len(rows) == distinct_rows == distinct}")  # fmt: skip
    print(f"re-sends: {len(resends)}, answered 200 with the first id: {resend_ok} "
          f"({resend_ok == len(resends)})")  # fmt: skip
    print(
        f"queued for triage: {queued} of {len(rows)} rows queued, a dispatch waiting on the "
        f"triage queue: {triage_waiting > 0} ({queued == len(rows) and triage_waiting > 0})"
    )


if __name__ == "__main__":
    main()
