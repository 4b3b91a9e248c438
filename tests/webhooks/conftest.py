"""Fixtures for webhooks: a real HTTP receiver on loopback, the verifier docs/api.md gives
receivers, and Celery run eagerly so that a committed delivery is sent in this process."""

from __future__ import annotations

import contextlib
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from apps.webhooks.models import WebhookEndpoint, WebhookEvent
from tests.review.conftest import reviewer, reviewer_client  # noqa: F401

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next of answers (status, extra headers), then 200s."""

    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    scheme: str = "http"

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


@contextlib.contextmanager
def running_receiver(tls: ssl.SSLContext | None = None):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            status, headers = state.answers.pop(0) if state.answers else (200, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            reply = b'{"ok": true}' if status < 300 else b"the receiver says no"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state = Receiver(host="127.0.0.1", port=server.server_address[1],
                     scheme="https" if tls else "http")  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def receiver():
    with running_receiver() as state:
        yield state


@pytest.fixture
def certificate_authority(tmp_path, monkeypatch):
    """A CA of our own that this process trusts (through SSL_CERT_FILE, as an operator would
    make a private CA trusted), to issue receivers' certificates."""
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return authority


def tls_context(authority: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
def loopback_allowed(settings):
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def eager():
    from mailscore.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def documented_verifier():
    """verify_mailscore_signature exactly as docs/api.md gives it to receivers."""
    text = DOCS.read_text()
    section = text[text.index("### Verifying a signature") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace["verify_mailscore_signature"]


def endpoint_for(url: str, *events: str) -> WebhookEndpoint:
    """An endpoint stored as it is, without the checks a save through the admin makes."""
    return WebhookEndpoint.objects.create(
        url=url, events=list(events or [WebhookEvent.MESSAGE_TRIAGED]), description="receiver"
    )
