"""MX resolution (RFC 5321 5.1, RFC 7505) with dnspython's async resolver."""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver


class MxStatus(StrEnum):
    OK = "ok"
    NULL_MX = "null_mx"
    NO_SUCH_DOMAIN = "no_such_domain"  # NXDOMAIN: certain
    NO_MAIL_SERVER = "no_mail_server"  # the domain exists, but nothing can receive its mail
    SERVFAIL = "servfail"  # the domain's nameservers failed: not a verdict
    TIMEOUT = "timeout"  # no answer in time: not a verdict


@dataclass
class MxHost:
    host: str
    preference: int
    addresses: list[str] = field(default_factory=list)


@dataclass
class MxLookup:
    domain: str
    status: MxStatus
    hosts: list[MxHost] = field(default_factory=list)
    implicit: bool = False
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "status": str(self.status),
            "implicit": self.implicit,
            "records": [
                {"host": h.host, "preference": h.preference, "addresses": h.addresses}
                for h in self.hosts
            ],
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, domain: str, data: dict) -> MxLookup:
        return cls(
            domain=domain,
            status=MxStatus(data["status"]),
            hosts=[
                MxHost(r["host"], r["preference"], list(r["addresses"])) for r in data["records"]
            ],
            implicit=data["implicit"],
            error=data.get("error"),
        )


def parse_nameservers(entries: tuple[str, ...] | list[str]) -> list[dns.nameserver.Nameserver]:
    """Turn "host", "host:port", "[v6]:port" entries into dnspython nameservers."""
    nameservers: list[dns.nameserver.Nameserver] = []
    for entry in entries:
        entry = entry.strip()
        host, port = entry, 53
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
            port = int(port_text)
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
            address = host
        except OSError:
            address = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0]
        nameservers.append(dns.nameserver.Do53Nameserver(address, port))
    return nameservers


def build_resolver(nameservers=(), timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """An async resolver asking the configured nameservers, else the system's configuration;
    each lookup bounded by timeout."""
    nameservers = tuple(nameservers)
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = parse_nameservers(nameservers)
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    return resolver


class MxResolver:
    def __init__(self, nameservers: tuple[str, ...] = (), timeout: float = 5.0) -> None:
        self._resolver = build_resolver(nameservers, timeout)

    async def _addresses(self, name: str) -> tuple[list[str], str | None]:
        """IPv4 first, then IPv6; the second value says why there are none."""
        results = await asyncio.gather(
            self._resolver.resolve(name, "A", search=False),
            self._resolver.resolve(name, "AAAA", search=False),
            return_exceptions=True,
        )
        addresses: list[str] = []
        failures: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                failures.append(_failure_kind(result))
            else:
                addresses.extend(rdata.address for rdata in result)
        if addresses:
            return addresses, None
        for kind in ("timeout", "servfail", "nxdomain"):
            if kind in failures:
                return [], kind
        return [], "nodata"

    async def lookup(self, domain: str) -> MxLookup:
        try:
            answer = await self._resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            return MxLookup(domain, MxStatus.NO_SUCH_DOMAIN, error="NXDOMAIN")
        except dns.resolver.NoAnswer:
            return await self._implicit_mx(domain)
        except dns.exception.DNSException as exc:
            kind = _failure_kind(exc)
            status = MxStatus.TIMEOUT if kind == "timeout" else MxStatus.SERVFAIL
            return MxLookup(domain, status, error=str(exc) or type(exc).__name__)

        records = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in answer]
        if any(host in ("", ".") for _, host in records):
            # RFC 7505: a domain publishing "MX 0 ." accepts no mail at all.
            return MxLookup(domain, MxStatus.NULL_MX, error="null MX (RFC 7505)")
        # RFC 5321 5.1: lowest preference first, equal preferences in random order.
        random.shuffle(records)
        records.sort(key=lambda record: record[0])
        resolved = await asyncio.gather(*(self._addresses(host) for _, host in records))
        hosts = [
            MxHost(host, preference, addresses)
            for (preference, host), (addresses, _) in zip(records, resolved, strict=True)
        ]
        if any(h.addresses for h in hosts):
            return MxLookup(domain, MxStatus.OK, hosts=hosts)
        reasons = {why for _, why in resolved}
        if "timeout" in reasons:
            return MxLookup(
                domain, MxStatus.TIMEOUT, hosts, error="MX hosts did not resolve in time"
            )
        if "servfail" in reasons:
            return MxLookup(domain, MxStatus.SERVFAIL, hosts, error="MX hosts failed to resolve")
        return MxLookup(domain, MxStatus.NO_MAIL_SERVER, hosts, error="no MX host has an address")

    async def _implicit_mx(self, domain: str) -> MxLookup:
        addresses, why = await self._addresses(domain)
        if addresses:
            return MxLookup(domain, MxStatus.OK, [MxHost(domain, 0, addresses)], implicit=True)
        if why == "timeout":
            return MxLookup(domain, MxStatus.TIMEOUT, implicit=True, error="A/AAAA timed out")
        if why == "servfail":
            return MxLookup(domain, MxStatus.SERVFAIL, implicit=True, error="A/AAAA failed")
        if why == "nxdomain":
            return MxLookup(domain, MxStatus.NO_SUCH_DOMAIN, error="NXDOMAIN")
        return MxLookup(domain, MxStatus.NO_MAIL_SERVER, error="no MX and no A/AAAA records")


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "nxdomain"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "nodata"
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        # dnspython raises NoNameservers once every server answered SERVFAIL or refused.
        return "servfail"
    return "servfail"
