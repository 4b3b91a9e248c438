"""Sender verification cannot be aimed inward: a domain whose MX resolves to loopback (the test's
own DNS server says so) gets verdict unknown, reason forbidden_address, and the test's own TCP
listener on that address sees no connection, unless MAILSCORE_SMTP_ALLOWED_NETWORKS lists the
network. Tried through the engine, the chain's verify_sender step and POST /api/v1/validate.

Private, link-local and metadata ranges are tried on the address check alone: tests send traffic
to loopback only."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.verification.engine import Verifier, VerifierConfig
from apps.verification.engine.addresses import InvalidNetworks, forbidden_reason, is_forbidden
from apps.verification.engine.cache import MemoryCache
from apps.verification.engine.sender import verify_sender
from apps.verification.validation import KEY_PREFIX
from apps.webhooks.targets import TargetRefused, vet
from tests.farm import Farm, FarmSpec

LOOPBACK = ("127.0.0.0/8",)
RECORDS = {
    # MX -> a host name -> 127.0.0.1, where the listener below counts connections.
    "inward.test": {"MX": ["10 mx.inward.test."]},
    "mx.inward.test": {"A": ["127.0.0.1"]},
    # No MX: the implicit MX is the domain's own address (RFC 5321 5.1).
    "implicit-inward.test": {"A": ["127.0.0.1"]},
}


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts and closes each."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="inward-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@pytest.fixture(scope="module")
def inward_dns() -> Iterator[Farm]:
    farm = Farm(FarmSpec(records=RECORDS)).start_in_thread()
    yield farm
    farm.stop_thread()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    listening = CountingListener()
    yield listening
    listening.close()


def engine_config(inward_dns: Farm, listener: CountingListener, **overrides) -> VerifierConfig:
    values = dict(
        helo_hostname="verifier.mailscore.test",
        mail_from="bounces@mailscore.test",
        smtp_port=listener.port,
        dns_nameservers=(inward_dns.nameserver,),
        dns_timeout=1.0,
        connect_timeout=1.0,
        command_timeout=1.0,
        per_host_rate=0,
        allow_special_use_domains=True,
        allow_domain_literal=True,
    )
    values.update(overrides)
    return VerifierConfig(**values)


def verify(config: VerifierConfig, *addresses: str):
    return asyncio.run(Verifier(config, cache=MemoryCache()).verify_many(list(addresses)))


INWARD = ["alice@inward.test", "bob@implicit-inward.test", "carol@[127.0.0.1]"]


def test_engine_refuses_a_loopback_mx_by_default(inward_dns, listener):
    results = verify(engine_config(inward_dns, listener), *INWARD)
    for result in results:
        assert (result.address, str(result.verdict), str(result.reason)) == (
            result.address,
            "unknown",
            "forbidden_address",
        )
        assert "127.0.0.1" in result.smtp.error and "loopback" in result.smtp.error
        assert not result.smtp.steps  # no CONNECT was even tried
    assert listener.connections == 0


def test_engine_connects_when_loopback_is_allowed(inward_dns, listener):
    results = verify(engine_config(inward_dns, listener, smtp_allowed_networks=LOOPBACK), *INWARD)
    # The listener closes every connection at once: the verifier did reach it.
    assert {str(r.reason) for r in results} == {"connection_failed"}
    assert listener.connections >= len(INWARD)


def test_an_allowed_network_elsewhere_does_not_open_loopback(inward_dns, listener):
    config = engine_config(inward_dns, listener, smtp_allowed_networks=("10.0.0.0/8", "::1/128"))
    [result] = verify(config, "alice@inward.test")
    assert str(result.reason) == "forbidden_address"
    assert listener.connections == 0


def test_a_bad_allowed_network_fails_when_the_config_is_built():
    with pytest.raises(InvalidNetworks, match="MAILSCORE_SMTP_ALLOWED_NETWORKS: 'intranet'"):
        VerifierConfig(smtp_allowed_networks=("127.0.0.0/8", "intranet"))


def test_the_chain_step_verify_sender_refuses_it(inward_dns, listener):
    message = email.message_from_bytes(
        b"From: Mallory <mallory@inward.test>\nTo: support@mailscore.test\n"
        b"Subject: hello\nMessage-ID: <inward-1@inward.test>\n\nhi\n"
    )
    verifier = Verifier(engine_config(inward_dns, listener), cache=MemoryCache())
    checked = asyncio.run(verify_sender(message, verifier))
    assert checked.deliverability is not None
    assert str(checked.deliverability.reason) == "forbidden_address"
    assert str(checked.deliverability.verdict) == "unknown"
    assert listener.connections == 0


@pytest.fixture
def validate_api(db, settings, redis_client, inward_dns, listener) -> Iterator[APIClient]:
    settings.MAILSCORE_VERIFICATION = {
        **settings.MAILSCORE_VERIFICATION,
        "helo_hostname": "verifier.mailscore.test",
        "mail_from": "bounces@mailscore.test",
        "smtp_port": listener.port,
        "dns_nameservers": [inward_dns.nameserver],
        "dns_timeout": 1.0,
        "connect_timeout": 1.0,
        "command_timeout": 1.0,
        "per_host_rate": 0,
        "allow_special_use_domains": True,
        "smtp_allowed_networks": [],
    }

    def forget_answers() -> None:
        for key in redis_client.scan_iter(f"{KEY_PREFIX}*"):
            redis_client.delete(key)

    forget_answers()
    _, key = ApiKey.issue("inward-test", scopes=["verify"])
    yield APIClient(HTTP_X_API_KEY=key)
    forget_answers()


def test_validate_api_refuses_it_then_connects_when_allowed(validate_api, settings, listener):
    response = validate_api.post("/api/v1/validate", {"email": "alice@inward.test"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["verdict"], body["reason"]) == ("unknown", "forbidden_address")
    assert listener.connections == 0

    settings.MAILSCORE_VERIFICATION = {
        **settings.MAILSCORE_VERIFICATION,
        "smtp_allowed_networks": list(LOOPBACK),
    }
    response = validate_api.post("/api/v1/validate", {"email": "bob@inward.test"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["reason"] == "connection_failed"
    assert listener.connections >= 1


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        "0.0.0.0",  # noqa: S104 - an address checked, nothing binds to it
        "::",
        "10.1.2.3",  # RFC 1918
        "172.16.0.1",
        "192.168.1.1",
        "fd00::1",  # unique local (ULA)
        "169.254.169.254",  # cloud metadata
        "169.254.1.1",
        "fe80::1",
        "fe80::1%eth0",
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",  # multicast
        "ff02::1",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "[127.0.0.1]",  # a domain literal
        "IPv6:::1",
        "not-an-address",
    ],
)
def test_non_public_addresses_are_forbidden(address):
    assert is_forbidden(address, ())
    assert forbidden_reason(address, ()) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "::ffff:8.8.8.8"])
def test_public_addresses_are_not(address):
    assert not is_forbidden(address, ())


def test_allowed_networks_open_only_themselves():
    allowed = "10.20.0.0/16, 127.0.0.0/8"
    assert not is_forbidden("10.20.5.5", allowed)
    assert not is_forbidden("127.0.0.1", allowed)
    assert not is_forbidden("::ffff:127.0.0.1", allowed)  # the IPv4 address it carries
    assert is_forbidden("10.21.0.1", allowed)
    assert is_forbidden("169.254.169.254", allowed)
    assert is_forbidden("::1", allowed)  # IPv6 loopback is another network
    with pytest.raises(InvalidNetworks, match="10.0.0.0/33"):
        is_forbidden("10.0.0.1", ["10.0.0.0/33"])


def test_webhooks_use_the_same_check_with_their_own_setting(settings):
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = []
    settings.MAILSCORE_SMTP_ALLOWED_NETWORKS = list(LOOPBACK)  # not the webhooks' setting
    with pytest.raises(TargetRefused, match="link-local"):
        vet("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(TargetRefused, match="loopback"):
        vet("http://127.0.0.1:9/hook")
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = list(LOOPBACK)
    assert vet("http://127.0.0.1:9/hook").port == 9
