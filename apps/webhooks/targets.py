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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ACCEPTED = (
    "Accepted: an http:// or https:// URL whose host name resolves only to public internet "
    "addresses (or to a network listed in MAILSCORE_WEBHOOK_ALLOWED_NETWORKS)."
)
# Python's ipaddress counts this as not global but names no category for it.
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
# IPv6 forms that carry an IPv4 address, each judged by the address it carries.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


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


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"MAILSCORE_WEBHOOK_ALLOWED_NETWORKS: {entry!r} is not a network; give CIDRs "
                "separated by commas, e.g. 10.20.0.0/16,fd00:1::/64."
            ) from None
    return networks


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo, compatible)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX or (address in IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why an address is not on the public internet, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            reason = non_public_reason(carried)
            if reason:
                return f"{reason} (the IPv6 address carries {carried})"
            if address.ipv4_mapped is not None:
                return None  # the IPv4 address itself, written as IPv6
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        if address.version == 4:
            return (
                "a link-local address (where cloud metadata services such as 169.254.169.254 live)"
            )
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in SHARED_ADDRESS_SPACE:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a public internet address"
    return None


def refusal(address: IPAddress) -> str | None:
    """Why webhooks may not go to an address, or None: it is public or in an allowed network."""
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and embedded_ipv4(address) is not None:
        candidates.append(embedded_ipv4(address))
    networks = allowed_networks()
    if any(candidate in network for candidate in candidates for network in networks
           if candidate.version == network.version):  # fmt: skip
        return None
    return non_public_reason(address)


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
