"""Which IP addresses this installation may open a connection to on a stranger's say-so.

A sender's MX record, an IMAP host an admin typed, a webhook receiver's URL: each names an
address chosen by someone else. Connecting to loopback, a private network, link-local (where
cloud metadata services such as 169.254.169.254 live) or any other non-public address would let
that someone reach inside the network the workers run in. Such addresses are refused unless the
operator lists their network as allowed (MAILSCORE_SMTP_ALLOWED_NETWORKS for verification and
IMAP, MAILSCORE_WEBHOOK_ALLOWED_NETWORKS for webhooks).

Plain Python: verification, IMAP and webhooks all ask the same function.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Python's ipaddress counts this as not global but names no category for it.
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
# IPv6 forms that carry an IPv4 address, each judged by the address it carries.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class InvalidNetworks(ValueError):
    """An allowed-networks entry that is not a network."""


def parse_networks(
    entries: Iterable[str | IPNetwork], *, setting: str = ""
) -> tuple[IPNetwork, ...]:
    """CIDRs ("10.20.0.0/16", "fd00:1::/64", a bare address) as networks; InvalidNetworks names
    the entry that is not one and says what is accepted."""
    if isinstance(entries, str):
        entries = entries.split(",")
    return _parse_networks(tuple(entries), setting)


@lru_cache(maxsize=64)
def _parse_networks(entries: tuple[str | IPNetwork, ...], setting: str) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in entries:
        if isinstance(entry, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(entry)
            continue
        text = str(entry).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            where = f"{setting}: " if setting else ""
            raise InvalidNetworks(
                f"{where}{text!r} is not a network; give CIDRs separated by commas, "
                "e.g. 10.20.0.0/16,fd00:1::/64."
            ) from None
    return tuple(networks)


def as_address(ip: str | IPAddress) -> IPAddress | None:
    """An address from text ("192.0.2.1", "fe80::1%eth0", "[127.0.0.1]", "IPv6:::1"), or None."""
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    text = str(ip).strip().strip("[]").removeprefix("IPv6:").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


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


def is_allowed_by(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether the address, or the IPv4 address an IPv6 one carries, is in one of the networks."""
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            candidates.append(carried)
    return any(
        candidate in network
        for candidate in candidates
        for network in networks
        if candidate.version == network.version
    )


def forbidden_reason(
    ip: str | IPAddress, allowed_networks: Iterable[str | IPNetwork] = ()
) -> str | None:
    """Why no connection may be opened to this address, or None: it is public, or in one of the
    allowed networks. Text that is not an address is refused too."""
    address = as_address(ip)
    if address is None:
        return f"{ip!r} is not an IP address"
    if is_allowed_by(address, parse_networks(allowed_networks)):
        return None
    return non_public_reason(address)


def is_forbidden(ip: str | IPAddress, allowed_networks: Iterable[str | IPNetwork] = ()) -> bool:
    """True for loopback, private (RFC 1918, ULA), link-local, carrier-grade NAT, unspecified,
    multicast and reserved addresses (IPv4 or carried in IPv6) outside the allowed networks."""
    return forbidden_reason(ip, allowed_networks) is not None
