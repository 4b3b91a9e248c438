"""MX resolution against the farm's DNS server."""

import asyncio

import pytest

from apps.verification.engine.dns import MxResolver, MxStatus, parse_nameservers


@pytest.fixture
def resolver(farm):
    return MxResolver((farm.nameserver,), timeout=1.0)


def lookup(resolver, domain):
    return asyncio.run(resolver.lookup(domain))


def test_mx_in_preference_order_with_addresses(resolver):
    result = lookup(resolver, "failover.test")
    assert result.status is MxStatus.OK
    assert [(h.host, h.preference) for h in result.hosts] == [
        ("mx1.failover.test", 10),
        ("mx2.failover.test", 20),
    ]
    assert result.hosts[1].addresses == ["127.0.0.20"]


def test_implicit_mx_from_a_record(resolver):
    result = lookup(resolver, "implicit.test")
    assert result.status is MxStatus.OK and result.implicit
    assert result.hosts[0].addresses == ["127.0.0.10"]


@pytest.mark.parametrize(
    ("domain", "status"),
    [
        ("nullmx.test", MxStatus.NULL_MX),
        ("does-not-exist.test", MxStatus.NO_SUCH_DOMAIN),
        ("nomail.test", MxStatus.NO_MAIL_SERVER),
        ("danglingmx.test", MxStatus.NO_MAIL_SERVER),
        ("servfail.test", MxStatus.SERVFAIL),
        ("dnstimeout.test", MxStatus.TIMEOUT),
    ],
)
def test_failures_are_kept_apart(resolver, domain, status):
    assert lookup(resolver, domain).status is status


def test_nameserver_entries():
    parsed = parse_nameservers(["127.0.0.1", "127.0.0.1:5353", "[::1]:5300", "localhost:53"])
    assert [(n.address, n.port) for n in parsed][:3] == [
        ("127.0.0.1", 53),
        ("127.0.0.1", 5353),
        ("::1", 5300),
    ]
    assert parsed[3].port == 53
