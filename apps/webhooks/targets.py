"""Where a webhook may be sent: http(s) URLs whose host resolves only to public addresses.

A receiver's URL is checked when it is saved and again at every delivery, after resolving its
name, and the delivery connects to the very address that was vetted: a name that resolved to a
public address at the check cannot be made to point at this network a moment later (DNS
rebinding). MAILSCORE_WEBHOOK_ALLOWED_NETWORKS lists networks allowed even so.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.verification.engine.addresses import (
    InvalidNetworks,
    IPAddress,
    IPNetwork,
    forbidden_reason,
    non_public_reason,
    parse_networks,
)

__all__ = ["IPAddress", "Target", "TargetRefused", "non_public_reason", "parse", "refusal", "vet"]

ACCEPTED = (
    "Accepted: an http:// or https:// URL whose host name resolves only to public internet "
    "addresses (or to a network listed in MAILSCORE_WEBHOOK_ALLOWED_NETWORKS)."
)


class TargetRefused(ValueError):
    """A URL, or an address its host resolves to, that webhooks may not be sent to."""


@dataclass(frozen=True)
class Target:
    """A vetted URL: where to connect (addresses, in the resolver's order) and what to ask for."""

    scheme: str
    host: str  # as the URL names it: the Host header and the TLS server name
    port: int
    path: str  # with the query string
    addresses: tuple[IPAddress, ...]


def allowed_networks() -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(
            settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS,
            setting="MAILSCORE_WEBHOOK_ALLOWED_NETWORKS",
        )
    except InvalidNetworks as exc:
        raise ImproperlyConfigured(str(exc)) from None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to an address, or None: it is public or in an allowed network.
    The same rule verification and IMAP follow (apps/verification/engine/addresses.py)."""
    return forbidden_reason(address, allowed_networks())


def parse(url: str) -> tuple[str, str, int, str]:
    """The scheme, host, port and path of a webhook URL; TargetRefused if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"{url!r} is not a valid URL ({exc}). {ACCEPTED}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused(f"The scheme {parts.scheme or '(none)'!r} is not allowed. {ACCEPTED}")
    if not parts.hostname:
        raise TargetRefused(f"{url!r} names no host. {ACCEPTED}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(
            "Credentials in the URL are not accepted: each delivery is signed with the "
            f"endpoint's secret instead. {ACCEPTED}"
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address a host name (or literal) stands for, in the resolver's order."""
    if is_literal(host):
        return (ipaddress.ip_address(host),)
    try:
        ascii_host = host.encode("idna").decode("ascii")
        found = socket.getaddrinfo(ascii_host, port, type=socket.SOCK_STREAM)
    except (UnicodeError, OSError) as exc:
        raise TargetRefused(f"The host {host!r} could not be resolved ({exc}).") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"The host {host!r} resolves to no address.")
    return tuple(addresses)


def vet(url: str) -> Target:
    """Parse, resolve and check a webhook URL: every address its host resolves to must be
    allowed, so that none of them can be reached by a retry or a second lookup."""
    scheme, host, port, path = parse(url)
    addresses = resolve(host, port)
    for address in addresses:
        reason = refusal(address)
        if reason is None:
            continue
        if is_literal(host):
            refused = f"{host} is {reason}"
        else:
            refused = f"The host {host!r} resolves to {address}, {reason}"
        raise TargetRefused(f"{refused}: webhooks are only sent to public addresses. {ACCEPTED}")
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)
