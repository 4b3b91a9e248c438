"""A slow client cannot take the web tier: the web process started as the Procfile's web line
starts it (gunicorn, mailscore/gunicorn.conf.py, two workers), 50 sockets that each send half a
request's headers (or whole headers and part of a body) and then a byte now and then without
ever finishing, and meanwhile /health answers, within a second.

With gunicorn's sync workers two such sockets were enough to leave /health unanswered until the
worker timeout: each worker reads one request at a time and waits on the socket in hand."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.reliability.system import ServiceProcess, base_environment, program, read_procfile

SLOW_CLIENTS = 50
# The issue's own requirement: /health within a second while the slow clients hold on.
ANSWER_WITHIN_SECONDS = 1.0
HALF_SENT_HEADERS = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Slow: "
# Whole headers, then a body that never ends: the request cannot be handled until it has come.
HALF_SENT_BODY = (
    b"POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: message/rfc822\r\n"
    b"Content-Length: 100000\r\n\r\nSubject: slow\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def web(tmp_path: Path, redis_client) -> Iterator[tuple[ServiceProcess, int]]:
    """The Procfile's web line, on the test suite's PostgreSQL and Redis."""
    port = free_port()
    environment = base_environment(settings.DATABASE_URL, settings.REDIS_URL, tmp_path)
    environment.update({"MAILSCORE_WEB_PORT": str(port), "MAILSCORE_WEB_WORKERS": "2"})
    argv, assignments = program(read_procfile()["web"], environment)
    process = ServiceProcess("web", argv, {**environment, **assignments}, tmp_path / "web.log")
    process.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.running, f"the web process exited:\n{process.tail()}"
            try:
                if get(port, "/health/live", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the web never answered:\n{process.tail()}"
            time.sleep(0.2)
        yield process, port
    finally:
        process.stop()


class SlowClients:
    """Sockets that each send half a request, then one more byte every second."""

    def __init__(self, port: int, count: int, half_a_request: bytes) -> None:
        self.sockets = []
        for _ in range(count):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(half_a_request)
            # From here on nothing waits on these sockets: a read says at once whether the
            # server answered or closed, a drip that finds the buffer full is skipped.
            client.setblocking(False)
            self.sockets.append(client)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, name="slow-clients", daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(1.0):
            for client in self.sockets:
                try:
                    client.send(b"x")
                except OSError:
                    continue

    def still_open(self) -> int:
        """How many the server has neither answered nor closed."""
        count = 0
        for client in self.sockets:
            try:
                peeked = client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                count += 1  # nothing to read and not closed: still waiting on the server
                continue
            except OSError:
                continue
            if not peeked:
                continue  # closed by the server
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for client in self.sockets:
            client.close()


@pytest.mark.parametrize("half_a_request", [HALF_SENT_HEADERS, HALF_SENT_BODY],
                         ids=["headers", "body"])  # fmt: skip
def test_health_answers_within_a_second_while_50_clients_hold_half_sent_requests(
    web, half_a_request
):
    process, port = web
    slow = SlowClients(port, SLOW_CLIENTS, half_a_request)
    try:
        time.sleep(2.0)  # every slow socket accepted and a byte or two further along
        assert slow.still_open() == SLOW_CLIENTS  # the attack is in place, none turned away

        started = time.monotonic()
        status, body = get(port, "/health", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 200, body
        assert elapsed < ANSWER_WITHIN_SECONDS, f"/health took {elapsed:.2f} s"

        # And again, a few times, while the slow clients still hold on.
        for _ in range(5):
            started = time.monotonic()
            assert get(port, "/health/live", timeout=10)[0] == 200
            assert time.monotonic() - started < ANSWER_WITHIN_SECONDS
        assert slow.still_open() == SLOW_CLIENTS
        assert process.running, process.tail()
    finally:
        slow.close()
