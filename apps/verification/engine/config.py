"""Everything the verifier can be told, with defaults that are safe on a real network."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from apps.verification.engine.addresses import parse_networks


@dataclass(frozen=True)
class VerifierConfig:
    # Identity. A real deployment sets both: an FQDN whose A record and PTR match the egress IP,
    # and a mailbox on that domain that accepts bounces. Never a big provider's name.
    helo_hostname: str = "localhost"
    mail_from: str = ""
    smtp_port: int = 25
    smtp_source_address: str = ""  # bind outgoing connections to this local IP
    # Networks (CIDRs) a mail server may be in although they are not public. Loopback, private,
    # link-local, CGNAT and other non-public addresses are never connected to otherwise, so that
    # a sender cannot point an MX at this network (apps/verification/engine/addresses.py).
    smtp_allowed_networks: tuple[str, ...] = ()
    # DNS: "host" or "host:port" entries; empty means the system resolver configuration.
    dns_nameservers: tuple[str, ...] = ()
    dns_timeout: float = 5.0
    # SMTP timeouts, in seconds. connect_timeout covers the TCP connect and the 220 greeting, so a
    # tarpit that accepts and never greets costs at most that much.
    connect_timeout: float = 10.0
    command_timeout: float = 15.0
    address_budget: float = 60.0
    # Politeness, per mail server IP.
    per_host_concurrency: int = 2
    per_host_rate: float = 5.0  # RCPT probes per second
    per_host_burst: int = 10
    max_domains_in_flight: int = 500
    # Greylisting and other 4xx replies: retry after a delay that doubles up to the maximum.
    greylist_initial_delay: float = 60.0
    greylist_max_delay: float = 900.0
    tls_verify: bool = False
    # Syntax options.
    allow_quoted_local: bool = False
    allow_domain_literal: bool = False
    allow_special_use_domains: bool = False  # .test, .example, ...: for local test farms only
    # Operator lists.
    allow_domains: tuple[str, ...] = ()
    deny_domains: tuple[str, ...] = ()
    allow_addresses: tuple[str, ...] = ()
    deny_addresses: tuple[str, ...] = ()
    disposable_extra_file: str = ""
    # Cache time-to-live, in seconds.
    ttl_deliverable: int = 7 * 24 * 3600
    ttl_undeliverable: int = 3 * 24 * 3600
    ttl_risky: int = 24 * 3600
    ttl_unknown: int = 15 * 60
    ttl_mx: int = 3600
    ttl_catch_all: int = 24 * 3600
    # Sender trust.
    own_domains: tuple[str, ...] = ()
    trusted_authserv_ids: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A mistyped network fails when the config is built, not at the first connection.
        parse_networks(self.smtp_allowed_networks, setting="MAILSCORE_SMTP_ALLOWED_NETWORKS")

    @property
    def envelope_sender(self) -> str:
        return self.mail_from or f"verify@{self.helo_hostname}"

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> VerifierConfig:
        """Build a config from a settings dict, ignoring keys that are not engine settings."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                continue
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)
