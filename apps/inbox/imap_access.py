"""What an IMAP mailbox may name: which environment variable holds its password, which hosts it
may connect to, and whether without encryption. Checked when a mailbox is saved and again just
before every connection, so a row written around the admin is held to the same rules.

An admin who could name any variable could have a worker send DATABASE_URL or the secret key as
the IMAP password to a server of their choosing; one who could name any host could reach inside
the workers' network. So: only variables named MAILSCORE_IMAP_PASSWORD_<something>, only public
addresses (or networks listed in MAILSCORE_SMTP_ALLOWED_NETWORKS), and unencrypted IMAP only to
loopback unless MAILSCORE_IMAP_ALLOW_PLAINTEXT says otherwise.
"""

from __future__ import annotations

import re
import socket

from django.conf import settings

from apps.verification.engine.addresses import (
    InvalidNetworks,
    IPAddress,
    as_address,
    forbidden_reason,
)

PASSWORD_ENV_PREFIX = "MAILSCORE_IMAP_PASSWORD_"  # noqa: S105 (a variable-name prefix, no secret)
PASSWORD_ENV_PATTERN = re.compile(rf"{PASSWORD_ENV_PREFIX}[A-Z0-9_]+")
PASSWORD_ENV_ACCEPTED = (
    f"Accepted: the name of an environment variable that starts with {PASSWORD_ENV_PREFIX} "
    f"followed by capital letters, digits or underscores, e.g. {PASSWORD_ENV_PREFIX}SUPPORT. "
    "Only such variables can be read as mailbox passwords, so that no other secret of the "
    "workers can be sent to a mail server."
)


class MailboxRefused(ValueError):
    """A mailbox setting that this installation will not act on; the message says why, field
    names the setting."""

    def __init__(self, message: str, field: str = "host") -> None:
        super().__init__(message)
        self.field = field


def password_env_error(name: str) -> str | None:
    """Why this variable may not hold a mailbox password, or None if it may."""
    if PASSWORD_ENV_PATTERN.fullmatch(name or ""):
        return None
    return f"{name!r} cannot hold an IMAP password. {PASSWORD_ENV_ACCEPTED}"


def vet_host(host: str, port: int, security: str) -> list[IPAddress]:
    """The addresses host resolves to, each one allowed for this mailbox; MailboxRefused if any
    is not (a non-public address outside MAILSCORE_SMTP_ALLOWED_NETWORKS, or a non-loopback one
    for unencrypted IMAP). Resolves the name; sends nothing to the host."""
    addresses = _resolve(host, port)
    try:
        for address in addresses:
            reason = forbidden_reason(address, settings.MAILSCORE_SMTP_ALLOWED_NETWORKS)
            if reason:
                raise MailboxRefused(
                    f"IMAP host {host!r} resolves to {address}, {reason}; mailboxes connect only "
                    "to public addresses or to networks listed in "
                    "MAILSCORE_SMTP_ALLOWED_NETWORKS."
                )
    except InvalidNetworks as exc:
        raise MailboxRefused(str(exc)) from None
    if security == "none" and not settings.MAILSCORE_IMAP_ALLOW_PLAINTEXT:
        remote = [a for a in addresses if not a.is_loopback]
        if remote:
            raise MailboxRefused(
                f"IMAP host {host!r} ({remote[0]}) is not on this machine, and security 'none' "
                "would send the password and mail unencrypted. Choose TLS or STARTTLS "
                "(or set MAILSCORE_IMAP_ALLOW_PLAINTEXT=true for a trusted network).",
                field="security",
            )
    return addresses


def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = as_address(host)
    if literal is not None:
        return [literal]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MailboxRefused(f"IMAP host {host!r} does not resolve: {exc}.") from None
    addresses = []
    for *_, sockaddr in found:
        address = as_address(sockaddr[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    if not addresses:
        raise MailboxRefused(f"IMAP host {host!r} has no IP address.")
    return addresses
