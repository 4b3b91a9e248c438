"""Fetch new mail from IMAP folders configured in the admin.

Each folder remembers its UIDVALIDITY and the highest UID ingested. A poll fetches only UIDs above
that one, read-only (BODY.PEEK, EXAMINE: nothing is marked seen), and stores them and the new
high-water mark in one transaction: a poll that dies half-way leaves nothing behind, and the next
one fetches the same messages again. When the server's UIDVALIDITY changes, old UIDs mean
nothing any more, so the folder is read from the start; ingest recognises the messages already
stored by their Message-ID.

Before each connection the mailbox is checked again (apps/inbox/imap_access.py): its password
variable, its host's addresses and its encryption. The connection then goes to the address that
was checked, not to a fresh lookup of the name, and TLS certificates are verified for the name.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.inbox.engine import MessageTooLarge
from apps.inbox.imap_access import MailboxRefused, password_env_error, vet_host
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import ImapMailbox, MessageSource

logger = logging.getLogger(__name__)

# Messages per poll; the rest come with the next poll.
POLL_LIMIT = 200
TIMEOUT_SECONDS = 60


class ImapError(Exception):
    pass


@dataclass
class PollResult:
    mailbox: str
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    uid_validity_changed: bool = False
    error: str = ""


class _CheckedIMAP4(imaplib.IMAP4):
    """IMAP4 that connects to an address checked beforehand, not to a new lookup of the name
    (which a hostile DNS server could point elsewhere in between)."""

    def __init__(self, host: str, port: int, address: str, **kwargs) -> None:
        self.checked_address = address
        super().__init__(host, port, **kwargs)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.checked_address, self.port), timeout)


class _CheckedIMAP4_SSL(imaplib.IMAP4_SSL):  # noqa: N801 - named after imaplib's class
    def __init__(self, host: str, port: int, address: str, **kwargs) -> None:
        self.checked_address = address
        super().__init__(host, port, **kwargs)

    def _create_socket(self, timeout: float | None) -> ssl.SSLSocket:
        raw = socket.create_connection((self.checked_address, self.port), timeout)
        return self.ssl_context.wrap_socket(raw, server_hostname=self.host)


def tls_context() -> ssl.SSLContext:
    """Certificates and host names verified, against the system's CAs and MAILSCORE_IMAP_CA_FILE."""
    context = ssl.create_default_context()
    if settings.MAILSCORE_IMAP_CA_FILE:
        try:
            context.load_verify_locations(cafile=settings.MAILSCORE_IMAP_CA_FILE)
        except (OSError, ssl.SSLError) as exc:
            raise ImapError(
                f"MAILSCORE_IMAP_CA_FILE={settings.MAILSCORE_IMAP_CA_FILE!r} could not be read as "
                f"PEM CA certificates: {exc}"
            ) from None
    return context


def _connect(mailbox: ImapMailbox) -> imaplib.IMAP4:
    try:
        address = str(vet_host(mailbox.host, mailbox.port, mailbox.security)[0])
    except MailboxRefused as exc:
        raise ImapError(str(exc)) from None
    if mailbox.security == "ssl":
        return _CheckedIMAP4_SSL(mailbox.host, mailbox.port, address,
                                 ssl_context=tls_context(), timeout=TIMEOUT_SECONDS)  # fmt: skip
    connection = _CheckedIMAP4(mailbox.host, mailbox.port, address, timeout=TIMEOUT_SECONDS)
    if mailbox.security == "starttls":
        try:
            connection.starttls(tls_context())
        except BaseException:
            with contextlib.suppress(OSError):
                connection.shutdown()
            raise
    return connection


def _check(response: tuple, what: str) -> list:
    status, data = response
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise ImapError(f"{what} failed: {detail or status}")
    return data


def _password(mailbox: ImapMailbox) -> str:
    # Checked here too: a row written around the admin (SQL, a fixture) meets the same rule.
    refused = password_env_error(mailbox.password_env)
    if refused:
        raise ImapError(refused)
    password = os.environ.get(mailbox.password_env)
    if password is None:
        raise ImapError(
            f"The environment variable {mailbox.password_env!r} holding the password for "
            f"{mailbox.name} is not set in the worker's environment."
        )
    return password


def _uid_validity(connection: imaplib.IMAP4) -> int:
    _, data = connection.response("UIDVALIDITY")
    if not data or data[0] is None:
        raise ImapError("The server did not report UIDVALIDITY for the folder.")
    return int(data[0])


def poll_mailbox(mailbox_id: int, *, limit: int = POLL_LIMIT) -> PollResult:
    """Fetch and store what is new in one folder. Skips a folder another poll is reading."""
    with transaction.atomic():
        mailbox = (
            ImapMailbox.objects.select_for_update(skip_locked=True)
            .filter(id=mailbox_id, enabled=True)
            .first()
        )
        if mailbox is None:
            return PollResult(mailbox=str(mailbox_id), error="disabled or being polled")
        result = PollResult(mailbox=mailbox.name)
        try:
            _fetch_into(mailbox, result, limit)
            mailbox.last_error = ""
        except (ImapError, imaplib.IMAP4.error, OSError) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            mailbox.last_error = result.error[:2000]
            logger.warning("IMAP poll of %s failed: %s", mailbox.name, result.error)
        mailbox.last_polled_at = timezone.now()
        mailbox.save(update_fields=["uid_validity", "last_uid", "last_polled_at", "last_error"])
    return result


def _fetch_into(mailbox: ImapMailbox, result: PollResult, limit: int) -> None:
    password = _password(mailbox)
    connection = _connect(mailbox)
    try:
        _check(connection.login(mailbox.username, password), "LOGIN")
        _check(
            connection.select(_quote(mailbox.folder), readonly=True), f"EXAMINE {mailbox.folder}"
        )
        validity = _uid_validity(connection)
        if mailbox.uid_validity != validity:
            result.uid_validity_changed = mailbox.uid_validity is not None
            mailbox.uid_validity, mailbox.last_uid = validity, 0
        data = _check(connection.uid("SEARCH", None, f"UID {mailbox.last_uid + 1}:*"), "SEARCH")
        # "n:*" always matches the highest UID, even one below n.
        uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > mailbox.last_uid)
        for uid in uids[:limit]:
            fetched = _check(connection.uid("FETCH", str(uid), "(BODY.PEEK[])"), f"FETCH {uid}")
            raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
            if raw is None:
                raise ImapError(f"FETCH {uid} returned no message body.")
            result.fetched += 1
            try:
                stored = ingest_raw(raw, source=MessageSource.IMAP,
                                    source_detail=f"{mailbox.name}/{mailbox.folder} uid {uid}")  # fmt: skip
            except MessageTooLarge as exc:
                result.rejected += 1
                logger.warning("IMAP %s uid %s not ingested: %s", mailbox.name, uid, exc)
            else:
                # Not mail: kept as a failed message with the reason, and counted as rejected.
                result.rejected += stored.refused
                result.stored += stored.created and not stored.refused
                result.duplicates += not stored.created and not stored.refused
            mailbox.last_uid = uid
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            connection.logout()


def _quote(folder: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./-]+", folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
