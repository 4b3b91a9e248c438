"""IMAP ingest against a real IMAP server (pymap, in-memory), started for these tests."""

from __future__ import annotations

import imaplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.inbox.imap import poll_mailbox
from apps.inbox.models import ImapMailbox, Message
from tasks.ingest import poll_imap
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db

USER, PASSWORD = "support", "imap-secret"


@pytest.fixture(scope="module")
def imap_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "pymap"), "--host", "127.0.0.1", "--port", str(port),
         "dict", "--demo-user", USER, "--demo-password", PASSWORD],
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
    yield port
    server.terminate()
    server.wait(10)


class Folder:
    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        with self.session() as imap:
            imap.create(name)

    def session(self):
        imap = imaplib.IMAP4("127.0.0.1", self.port)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, *messages: bytes) -> None:
        with self.session() as imap:
            for raw in messages:
                assert imap.append(self.name, None, None, raw.replace(b"\n", b"\r\n"))[0] == "OK"

    def recreate(self) -> None:
        with self.session() as imap:
            imap.delete(self.name)
            imap.create(self.name)


@pytest.fixture
def mailbox(imap_port, monkeypatch, request, settings):
    # The test's own server is on loopback, which mailboxes reach only where it is allowed.
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    monkeypatch.setenv("MAILSCORE_IMAP_PASSWORD_TEST", PASSWORD)
    name = f"Support-{request.node.name[-20:]}"
    folder = Folder(imap_port, name)
    box = ImapMailbox.objects.create(
        name=name, host="127.0.0.1", port=imap_port, security="none", username=USER,
        password_env="MAILSCORE_IMAP_PASSWORD_TEST", folder=name,
    )  # fmt: skip
    return box, folder


def test_new_mail_is_fetched_once_and_nothing_is_missed(mailbox):
    box, folder = mailbox
    folder.append(raw_message("first", message_id="<imap-1@normal.test>"),
                  raw_message("second", message_id="<imap-2@normal.test>"))  # fmt: skip
    result = poll_mailbox(box.id)
    assert (result.fetched, result.stored, result.error) == (2, 2, "")
    assert poll_mailbox(box.id).fetched == 0  # nothing new: nothing fetched again

    folder.append(raw_message("third", message_id="<imap-3@normal.test>"))
    result = poll_mailbox(box.id)
    assert (result.fetched, result.stored) == (1, 1)
    stored = Message.objects.filter(source="imap").order_by("id")
    assert [m.message_id_header for m in stored] == [
        "<imap-1@normal.test>", "<imap-2@normal.test>", "<imap-3@normal.test>"]  # fmt: skip
    assert stored[0].source_detail.endswith(
        "uid " + str(ImapMailbox.objects.get(id=box.id).last_uid - 2)
    )


def test_a_new_uidvalidity_rereads_the_folder_without_duplicates(mailbox):
    box, folder = mailbox
    old = raw_message("kept", message_id="<imap-kept@normal.test>")
    folder.append(old)
    poll_mailbox(box.id)
    validity = ImapMailbox.objects.get(id=box.id).uid_validity

    folder.recreate()  # the server renumbers: a new UIDVALIDITY
    folder.append(old, raw_message("new", message_id="<imap-new@normal.test>"))
    result = poll_mailbox(box.id)
    assert result.uid_validity_changed and result.fetched == 2
    assert (result.stored, result.duplicates) == (1, 1)
    assert ImapMailbox.objects.get(id=box.id).uid_validity != validity
    assert Message.objects.filter(message_id_header="<imap-kept@normal.test>").count() == 1


def test_bad_messages_and_bad_credentials_are_reported_not_fatal(mailbox, monkeypatch):
    box, folder = mailbox
    folder.append(
        b"no headers here at all\n", raw_message("fine", message_id="<imap-ok@normal.test>")
    )
    result = poll_mailbox(box.id)
    assert (result.fetched, result.rejected, result.stored) == (2, 1, 1)
    refused = Message.objects.get(source="imap", status="failed")
    assert refused.failed_step == "ingest"
    assert bytes(refused.raw).startswith(b"no headers here at all")
    assert refused.source_detail.startswith(f"{box.name}/")

    monkeypatch.setenv("MAILSCORE_IMAP_PASSWORD_TEST", "wrong")
    result = poll_imap()[0]
    assert "LOGIN" in result["error"] or "authentication" in result["error"].lower()
    assert ImapMailbox.objects.get(id=box.id).last_error
    monkeypatch.delenv("MAILSCORE_IMAP_PASSWORD_TEST")
    assert "is not set" in poll_mailbox(box.id).error
