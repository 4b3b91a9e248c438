"""The farm: one event loop (in a thread or a process of its own) serving DNS and every SMTP
server. Each server listens on its own loopback address and all on one port, as real MX hosts do
on port 25."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from dataclasses import dataclass, field

from tests.farm.dns_server import Zone, start_dns
from tests.farm.smtp_servers import Behaviour, FarmSMTP, Mailboxes, ServerStats, Tarpit


@dataclass
class ServerSpec:
    name: str  # the MX host name
    ip: str
    kind: str = "normal"
    reply_delay: float = 0.0
    tls: bool = False
    known: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    greylist_min_age: float = 1.0
    blocked_ips: tuple[str, ...] = ("127.0.0.1",)


@dataclass
class FarmSpec:
    servers: list[ServerSpec] = field(default_factory=list)
    # Extra DNS records beyond each server's A record: {name: {"MX": [...], "A": [...]}}.
    records: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    servfail: tuple[str, ...] = ()
    silent: tuple[str, ...] = ()
    port: int = 0


def _free_port(ips: list[str]) -> int:
    """A port that is free on every one of the given addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((ips[0] if ips else "127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            for ip in ips[1:]:
                with socket.socket() as other:
                    other.bind((ip, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every farm address")


class Farm:
    def __init__(self, spec: FarmSpec, tls_context: ssl.SSLContext | None = None) -> None:
        self.spec = spec
        self.tls_context = tls_context
        records = {k: dict(v) for k, v in spec.records.items()}
        for server in spec.servers:
            records.setdefault(server.name, {}).setdefault("A", []).append(server.ip)
        self.zone = Zone(records, spec.servfail, spec.silent)
        self.behaviours: dict[str, Behaviour] = {}
        self.stats: dict[str, ServerStats] = {}
        self.port = spec.port or _free_port([s.ip for s in spec.servers])
        self.dns_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        transport, self.dns_port = await start_dns(self.zone)
        self._servers.append(transport)
        for spec in self.spec.servers:
            stats = ServerStats()
            self.stats[spec.ip] = stats
            if spec.kind == "tarpit":
                server = await loop.create_server(lambda s=stats: Tarpit(s), spec.ip, self.port)
            else:
                behaviour = Behaviour(
                    spec.kind,
                    Mailboxes(
                        frozenset(spec.known), frozenset(spec.full), frozenset(spec.disabled)
                    ),
                    greylist_min_age=spec.greylist_min_age,
                    blocked_ips=frozenset(spec.blocked_ips),
                    stats=stats,
                )
                self.behaviours[spec.ip] = behaviour
                tls = self.tls_context if spec.tls else None

                def factory(b=behaviour, delay=spec.reply_delay, tls=tls, name=spec.name):
                    return FarmSMTP(b, reply_delay=delay, hostname=name, tls_context=tls)

                server = await loop.create_server(factory, spec.ip, self.port)
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()

    def start_in_thread(self) -> Farm:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="verification-farm", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._loop and self._thread:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def reset(self) -> None:
        """Forget counters and greylisting memory, as between two tests."""
        for behaviour in self.behaviours.values():
            behaviour._greylist_seen.clear()
        self.reset_stats()

    def reset_stats(self) -> None:
        for stats in self.stats.values():
            stats.max_concurrency = stats.open_connections
            stats.connections = stats.rcpts = stats.tls_sessions = stats.data_commands = 0
            stats.rcpt_times.clear()
