"""An authoritative DNS server over UDP for the farm's test domains, built on dnspython."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class Zone:
    """records: {name: {"MX": ["10 mx.a.test."], "A": ["127.0.0.10"], ...}}. A name that is absent
    answers NXDOMAIN; a present name without the asked type answers NOERROR with no data."""

    def __init__(self, records=None, servfail=(), silent=()) -> None:
        self.records = {k.lower().rstrip("."): v for k, v in (records or {}).items()}
        self.servfail = {n.lower() for n in servfail}
        self.silent = {n.lower() for n in silent}
        self.queries = 0

    def respond(self, wire: bytes) -> bytes | None:
        self.queries += 1
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        if name in self.silent:
            return None  # never answer: the resolver must time out
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            values = self.records[name].get(dns.rdatatype.to_text(question.rdtype), [])
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, 60, dns.rdataclass.IN, question.rdtype, values
                    )
                )
        return response.to_wire()


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        answer = self.zone.respond(data)
        if answer is not None:
            self.transport.sendto(answer, addr)


async def start_dns(zone: Zone, host: str = "127.0.0.1", port: int = 0):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _DnsProtocol(zone), local_addr=(host, port)
    )
    return transport, transport.get_extra_info("sockname")[1]
