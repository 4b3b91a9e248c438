"""An admin aiming an IMAP mailbox at a worker secret or at an inside address: an IMAP server of
the test's own on loopback records every byte it receives, and Python's audit hook records every
connection the poll attempts, so "refused" means nothing was sent anywhere."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from apps.inbox.imap import poll_mailbox
from apps.inbox.imap_access import MailboxRefused, vet_host
from apps.inbox.models import ImapMailbox

pytestmark = pytest.mark.django_db

LOOPBACK = ["127.0.0.0/8"]
# TEST-NET-3 (RFC 5737): documentation only, never routed. Nothing is sent there; the audit hook
# would see the attempt.
REMOTE_HOST = "203.0.113.7"
GOOD_VARIABLE = "MAILSCORE_IMAP_PASSWORD_SECURITY_TEST"
GOOD_PASSWORD = "mailbox-password-for-this-test"

_connections: list[tuple] = []
_recording = threading.Event()


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and _recording.is_set():
        _connections.append(args[1])


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only while a test asks


@pytest.fixture
def connections():
    """Every address this process tries to connect to while the test runs."""
    _connections.clear()
    _recording.set()
    yield _connections
    _recording.clear()


class RecordingImapServer:
    """Answers like an IMAP server that refuses every LOGIN, and keeps everything it was sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.accepted = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._talk, args=(client,), daemon=True).start()

    def _talk(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as lines:
            client.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test server ready\r\n")
            for line in lines:
                with self.lock:
                    self.received += line
                tag, _, command = line.partition(b" ")
                verb = command.split(b" ", 1)[0].strip().upper()
                if verb == b"CAPABILITY":
                    client.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                elif verb == b"LOGOUT":
                    client.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                    return
                else:
                    client.sendall(tag + b" NO [AUTHENTICATIONFAILED] nothing here\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def imap_server():
    server = RecordingImapServer()
    yield server
    server.close()


@pytest.fixture
def loopback_allowed(settings):
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = LOOPBACK
    settings.MAILSCORE_IMAP_ALLOW_PLAINTEXT = False


def mailbox(**fields) -> ImapMailbox:
    """A row written straight to the database, around the admin's checks."""
    defaults = {"name": "probe", "host": "127.0.0.1", "port": 993, "security": "none",
                "username": "attacker", "password_env": GOOD_VARIABLE, "folder": "INBOX"}  # fmt: skip
    return ImapMailbox.objects.create(**(defaults | fields))


def test_the_admin_form_refuses_a_password_variable_outside_the_prefix(admin_client,
                                                                        imap_server,
                                                                        loopback_allowed):  # fmt: skip
    assert os.environ.get("DATABASE_URL"), "the workers' secret the attack is after"
    answer = admin_client.post("/admin/inbox/imapmailbox/add/", {
        "name": "exfiltrate", "host": "127.0.0.1", "port": imap_server.port, "security": "none",
        "username": "attacker", "password_env": "DATABASE_URL", "folder": "INBOX",
        "enabled": "on", "last_uid": 0})  # fmt: skip
    assert answer.status_code == 200  # the form again, with the error
    assert "cannot hold an IMAP password" in answer.content.decode()
    assert "MAILSCORE_IMAP_PASSWORD_" in answer.content.decode()
    assert not ImapMailbox.objects.exists()

    with pytest.raises(ValidationError) as refused:
        ImapMailbox(name="x", host="127.0.0.1", port=imap_server.port, security="none",
                    username="u", password_env="DJANGO_SECRET_KEY").full_clean()  # fmt: skip
    assert set(refused.value.message_dict) == {"password_env"}


def test_a_forced_row_naming_database_url_sends_nothing(imap_server, loopback_allowed,
                                                        connections, monkeypatch):  # fmt: skip
    secret = os.environ["DATABASE_URL"]
    box = mailbox(port=imap_server.port, password_env="DATABASE_URL")
    result = poll_mailbox(box.id)
    assert "'DATABASE_URL' cannot hold an IMAP password" in result.error
    assert "MAILSCORE_IMAP_PASSWORD_" in ImapMailbox.objects.get(id=box.id).last_error
    assert connections == [] and imap_server.accepted == 0
    assert secret.encode() not in imap_server.received

    # The same row with a variable of the allowed kind does reach the server: the recorder and
    # the hook do see what is sent, so the emptiness above means something.
    monkeypatch.setenv(GOOD_VARIABLE, GOOD_PASSWORD)
    ImapMailbox.objects.filter(id=box.id).update(password_env=GOOD_VARIABLE)
    assert "AUTHENTICATIONFAILED" in poll_mailbox(box.id).error
    assert ("127.0.0.1", imap_server.port) in connections
    assert GOOD_PASSWORD.encode() in imap_server.received
    assert secret.encode() not in imap_server.received


def test_plaintext_to_a_host_off_this_machine_is_refused_without_a_connection(
    settings, connections, monkeypatch
):
    # The remote address is allowed as a network here, so that encryption is what refuses it.
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    monkeypatch.setenv(GOOD_VARIABLE, GOOD_PASSWORD)
    with pytest.raises(ValidationError) as refused:
        ImapMailbox(name="remote", host=REMOTE_HOST, port=143, security="none", username="u",
                    password_env=GOOD_VARIABLE).full_clean()  # fmt: skip
    assert "unencrypted" in refused.value.message_dict["security"][0]

    box = mailbox(host=REMOTE_HOST, port=143)
    result = poll_mailbox(box.id)
    assert "security 'none'" in result.error and "MAILSCORE_IMAP_ALLOW_PLAINTEXT" in result.error
    assert connections == []

    # TLS to the same host, or the operator's explicit setting, passes the check (not connected).
    assert vet_host(REMOTE_HOST, 993, "ssl")
    settings.MAILSCORE_IMAP_ALLOW_PLAINTEXT = True
    assert vet_host(REMOTE_HOST, 143, "none")
    assert connections == []


@pytest.mark.parametrize("host, reason", [
    ("127.0.0.1", "loopback"),
    ("localhost", "loopback"),
    ("10.1.2.3", "private"),
    ("169.254.169.254", "link-local"),
    ("::ffff:169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
])  # fmt: skip
def test_inside_addresses_are_refused_unless_their_network_is_allowed(
    host, reason, settings, connections, monkeypatch
):
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = []
    monkeypatch.setenv(GOOD_VARIABLE, GOOD_PASSWORD)
    with pytest.raises(MailboxRefused, match=reason):
        vet_host(host, 993, "ssl")
    with pytest.raises(ValidationError) as refused:
        ImapMailbox(name="inside", host=host, port=993, security="ssl", username="u",
                    password_env=GOOD_VARIABLE).full_clean()  # fmt: skip
    assert "MAILSCORE_SMTP_ALLOWED_NETWORKS" in refused.value.message_dict["host"][0]
    assert "MAILSCORE_SMTP_ALLOWED_NETWORKS" in poll_mailbox(mailbox(host=host).id).error
    assert connections == []


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "imap-cert.pem", directory / "imap-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_imap(tmp_path_factory):
    """pymap on loopback with a self-signed certificate, offering STARTTLS."""
    cert, key = _self_signed(tmp_path_factory.mktemp("imap-tls"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "pymap"), "--host", "127.0.0.1", "--port", str(port),
         "--cert", str(cert), "--key", str(key),
         "dict", "--demo-user", "demouser", "--demo-password", GOOD_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the pymap IMAP server did not start") from None
            time.sleep(0.1)
    yield port, cert
    server.terminate()
    server.wait(10)


def test_tls_certificates_are_verified_and_a_ca_file_can_be_trusted(tls_imap, loopback_allowed,
                                                                     settings, monkeypatch):  # fmt: skip
    port, cert = tls_imap
    monkeypatch.setenv(GOOD_VARIABLE, GOOD_PASSWORD)
    box = mailbox(port=port, security="starttls", username="demouser")
    settings.MAILSCORE_IMAP_CA_FILE = ""
    assert "CERTIFICATE_VERIFY_FAILED" in poll_mailbox(box.id).error

    settings.MAILSCORE_IMAP_CA_FILE = str(cert)
    assert poll_mailbox(box.id).error == ""
