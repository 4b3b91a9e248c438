"""The verification farm, started once per test session, and verifiers pointed at it."""

from __future__ import annotations

import pytest
import trustme

from apps.verification.engine import Verifier, VerifierConfig
from apps.verification.engine.cache import MemoryCache
from tests.farm import Farm, FarmSpec, ServerSpec

KNOWN = ("alice", "bob", "carol", "support")

SCENARIO_SERVERS = [
    ServerSpec(
        "mx.normal.test", "127.0.0.10", "normal", known=KNOWN, full=("fullbox",), disabled=("gone",)
    ),
    ServerSpec("mx.catchall.test", "127.0.0.11", "catch_all"),
    ServerSpec("mx.greylist.test", "127.0.0.12", "greylist", known=KNOWN, greylist_min_age=1.0),
    ServerSpec("mx.onercpt.test", "127.0.0.13", "one_rcpt", known=KNOWN),
    ServerSpec("mx.tarpit.test", "127.0.0.14", "tarpit"),
    ServerSpec("mx.dropper.test", "127.0.0.15", "drop", known=KNOWN),
    ServerSpec("mx.tls.test", "127.0.0.16", "normal", known=KNOWN, tls=True),
    ServerSpec("mx.blocked.test", "127.0.0.17", "blocked", known=KNOWN, blocked_ips=("127.0.0.1",)),
    ServerSpec("mx.slow.test", "127.0.0.18", "normal", known=KNOWN, reply_delay=0.3),
    ServerSpec("mx2.failover.test", "127.0.0.20", "normal", known=KNOWN),
]


def _mx(domain: str, *hosts: str) -> dict:
    return {"MX": [f"{10 * (i + 1)} {host}." for i, host in enumerate(hosts)]}


SCENARIO_RECORDS = {
    "normal.test": _mx("normal.test", "mx.normal.test"),
    "catchall.test": _mx("catchall.test", "mx.catchall.test"),
    "greylist.test": _mx("greylist.test", "mx.greylist.test"),
    "onercpt.test": _mx("onercpt.test", "mx.onercpt.test"),
    "tarpit.test": _mx("tarpit.test", "mx.tarpit.test"),
    "dropper.test": _mx("dropper.test", "mx.dropper.test"),
    "tls.test": _mx("tls.test", "mx.tls.test"),
    "blocked.test": _mx("blocked.test", "mx.blocked.test"),
    "slow.test": _mx("slow.test", "mx.slow.test"),
    # The first MX refuses connections (nothing listens there); the second answers.
    "failover.test": _mx("failover.test", "mx1.failover.test", "mx2.failover.test"),
    "mx1.failover.test": {"A": ["127.0.0.19"]},
    "unreachable.test": _mx("unreachable.test", "mx.unreachable.test"),
    "mx.unreachable.test": {"A": ["127.0.0.21"]},
    "nullmx.test": {"MX": ["0 ."]},
    "implicit.test": {"A": ["127.0.0.10"]},  # no MX: the A record is the implicit MX
    "nomail.test": {"TXT": ['"v=spf1 -all"']},  # exists, but neither MX nor address
    "danglingmx.test": _mx("danglingmx.test", "gone.danglingmx.test"),
    "mailinator.com": _mx("mailinator.com", "mx.normal.test"),  # on the disposable list
    "gmail.com": _mx("gmail.com", "mx.normal.test"),  # a free provider, served by the farm
}


@pytest.fixture(scope="session")
def farm():
    authority = trustme.CA()
    cert = authority.issue_cert("mx.tls.test")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    spec = FarmSpec(
        servers=SCENARIO_SERVERS,
        records=SCENARIO_RECORDS,
        servfail=("servfail.test",),
        silent=("dnstimeout.test",),
    )
    farm = Farm(spec, tls_context=context).start_in_thread()
    yield farm
    farm.stop_thread()


@pytest.fixture
def farm_config(farm):
    farm.reset()

    def make(**overrides) -> VerifierConfig:
        values = dict(
            helo_hostname="verifier.mailscore.test",
            mail_from="bounces@mailscore.test",
            smtp_port=farm.port,
            dns_nameservers=(farm.nameserver,),
            dns_timeout=1.0,
            connect_timeout=1.0,
            command_timeout=2.0,
            address_budget=10.0,
            per_host_rate=0,
            greylist_initial_delay=0.5,
            allow_special_use_domains=True,
            # The farm is on loopback, where a verifier connects only if told it may.
            smtp_allowed_networks=("127.0.0.0/8",),
        )
        values.update(overrides)
        return VerifierConfig(**values)

    return make


@pytest.fixture
def make_verifier(farm_config):
    def make(**overrides) -> Verifier:
        return Verifier(farm_config(**overrides), cache=MemoryCache())

    return make


@pytest.fixture
def farm_settings(settings, farm, redis_client):
    farm.reset()
    settings.MAILSCORE_VERIFICATION = {
        **settings.MAILSCORE_VERIFICATION,
        "helo_hostname": "verifier.mailscore.test",
        "mail_from": "bounces@mailscore.test",
        "smtp_port": farm.port,
        "dns_nameservers": [farm.nameserver],
        "dns_timeout": 1.0,
        "connect_timeout": 1.0,
        "command_timeout": 2.0,
        "per_host_rate": 0,
        "greylist_initial_delay": 0.5,
        "allow_special_use_domains": True,
        # The farm is on loopback, where a verifier connects only if told it may.
        "smtp_allowed_networks": ["127.0.0.0/8"],
    }
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return settings
