"""SMTP servers of the farm, on aiosmtpd, each playing one behaviour real mail servers show."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import ClassVar

from aiosmtpd.smtp import SMTP

BEHAVIOURS = (
    "normal",  # known mailboxes accepted, unknown ones 550 5.1.1, plus full and disabled ones
    "catch_all",  # every recipient accepted
    "greylist",  # 451 4.7.1 for a new (client, sender, recipient) triplet, accepted after a delay
    "one_rcpt",  # one recipient per connection; a second one gets 452 4.5.3
    "drop",  # closes the connection when RCPT arrives
    "blocked",  # 550 5.7.1 for blocked client IPs at RCPT
    "tarpit",  # accepts TCP and never greets
)


@dataclass
class ServerStats:
    open_connections: int = 0
    max_concurrency: int = 0
    connections: int = 0
    rcpts: int = 0
    tls_sessions: int = 0
    data_commands: int = 0
    rcpt_times: list[float] = field(default_factory=list)


@dataclass
class Mailboxes:
    known: frozenset[str] = frozenset()
    full: frozenset[str] = frozenset()
    disabled: frozenset[str] = frozenset()

    def reply(self, local_part: str, address: str) -> str:
        local_part = local_part.lower()
        if local_part in self.full:
            return "452 4.2.2 The email account that you tried to reach is over quota"
        if local_part in self.disabled:
            return "550 5.2.1 The email account that you tried to reach is disabled"
        if local_part in self.known:
            return "250 2.1.5 OK"
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"


@dataclass
class Behaviour:
    kind: str
    mailboxes: Mailboxes = field(default_factory=Mailboxes)
    greylist_min_age: float = 1.0
    blocked_ips: frozenset[str] = frozenset({"127.0.0.1"})
    stats: ServerStats = field(default_factory=ServerStats)
    _greylist_seen: dict = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.stats.rcpts += 1
        self.stats.rcpt_times.append(time.monotonic())
        local_part = address.rsplit("@", 1)[0]
        peer_ip = session.peer[0]
        kind = self.kind
        if kind == "drop":
            server.transport.close()
            return "250 OK"
        if kind == "blocked" and peer_ip in self.blocked_ips:
            return (
                f"550 5.7.1 Service unavailable; Client host [{peer_ip}] blocked using "
                "zen.spamhaus.org"
            )
        if kind == "one_rcpt":
            count = getattr(session, "rcpt_count", 0)
            session.rcpt_count = count + 1
            if count >= 1:
                return "452 4.5.3 Too many recipients in this session"
        if kind == "greylist":
            triplet = (peer_ip, envelope.mail_from, address.lower())
            first_seen = self._greylist_seen.setdefault(triplet, time.monotonic())
            if time.monotonic() - first_seen < self.greylist_min_age:
                return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again later"
        reply = "250 2.1.5 OK" if kind == "catch_all" else self.mailboxes.reply(local_part, address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        self.stats.data_commands += 1  # a verifier must never get here
        return "554 5.5.1 This farm accepts no mail"


class FarmSMTP(SMTP):
    """aiosmtpd's server plus concurrency counting and an optional delay before every reply."""

    def __init__(self, behaviour: Behaviour, *, reply_delay: float = 0.0, **kwargs) -> None:
        super().__init__(behaviour, enable_SMTPUTF8=True, **kwargs)
        self.behaviour = behaviour
        self.reply_delay = reply_delay

    def connection_made(self, transport) -> None:
        stats = self.behaviour.stats
        stats.connections += 1
        stats.open_connections += 1
        stats.max_concurrency = max(stats.max_concurrency, stats.open_connections)
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        self.behaviour.stats.open_connections -= 1
        super().connection_lost(error)

    async def push(self, status) -> None:
        text = status if isinstance(status, str) else status.decode()
        # Delay each reply once, before its last line ("250 ..."), not before each "250-" line.
        if self.reply_delay and text[3:4] != "-":
            await asyncio.sleep(self.reply_delay)
        await super().push(status)

    async def smtp_STARTTLS(self, arg: str) -> None:
        await super().smtp_STARTTLS(arg)
        if self._tls_protocol is not None:
            self.behaviour.stats.tls_sessions += 1


class Tarpit(asyncio.Protocol):
    """Accepts connections and never greets. A test may let go of them: after release(), it
    hangs up on every connection, held or new, until hold() again."""

    held: ClassVar[list] = []
    released: ClassVar[bool] = False
    # The farm's event loop, where release() must run (set by whoever starts the farm).
    loop: ClassVar[asyncio.AbstractEventLoop | None] = None

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    def connection_made(self, transport) -> None:
        self.stats.connections += 1
        self.transport = transport  # held open, never written to
        if Tarpit.released:
            transport.close()
        else:
            Tarpit.held.append(transport)

    def data_received(self, data: bytes) -> None:
        pass

    @classmethod
    def hold(cls) -> None:
        cls.released = False

    @classmethod
    def open_connections(cls) -> int:
        return sum(1 for transport in cls.held if not transport.is_closing())

    @classmethod
    def release(cls) -> None:
        def hang_up() -> None:
            cls.released = True
            for transport in cls.held:
                transport.close()
            cls.held.clear()

        assert cls.loop is not None, "the farm is not running"
        cls.loop.call_soon_threadsafe(hang_up)
