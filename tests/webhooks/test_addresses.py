"""Webhooks go to public addresses only: inside addresses are refused when an endpoint is saved
and again when a delivery is attempted (after resolving the host), and the receiver gets
nothing. MAILSCORE_WEBHOOK_ALLOWED_NETWORKS is empty here, as it is by default."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.urls import reverse

from apps.inbox.models import Message
from apps.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from apps.webhooks.signals import message_triaged
from apps.webhooks.targets import TargetRefused, non_public_reason, vet
from tests.review.conftest import raw_message, store
from tests.webhooks.conftest import endpoint_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager")]

INSIDE_HOSTS = {
    "loopback": "127.0.0.1",
    "loopback by name": "localhost",
    "IPv6 loopback": "[::1]",
    "IPv4-mapped loopback": "[::ffff:127.0.0.1]",
    "private": "10.1.2.3",
    "cloud metadata": "169.254.169.254",
    "unspecified": "0.0.0.0",
    "carrier-grade NAT": "100.64.0.7",
    "IPv6 link-local": "[fe80::1]",
    "IPv6 unique local": "[fd12:3456::1]",
    "multicast": "224.0.0.251",
    "NAT64 of loopback": "[64:ff9b::7f00:1]",
    "loopback as a decimal number": "2130706433",
}


@pytest.fixture(autouse=True)
def no_allowed_networks(settings):
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("host", INSIDE_HOSTS.values(), ids=INSIDE_HOSTS.keys())
def test_inside_addresses_are_refused_when_saved(host, receiver):
    endpoint = WebhookEndpoint(url=f"http://{host}:{receiver.port}/hook",
                               events=["message.triaged"])  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        endpoint.full_clean()
    [reason] = refused.value.message_dict["url"]
    assert "webhooks are only sent to public addresses" in reason
    assert "Accepted: an http:// or https:// URL" in reason


@pytest.mark.parametrize("host", INSIDE_HOSTS.values(), ids=INSIDE_HOSTS.keys())
def test_inside_addresses_are_refused_at_delivery(host, receiver,
                                                  django_capture_on_commit_callbacks):  # fmt: skip
    # Stored without the save's check, as if its name had pointed elsewhere then.
    endpoint_for(f"http://{host}:{receiver.port}/hook")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message_triaged.send_robust(sender=Message, messages=[store(raw_message())])

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
    assert delivery.last_error.startswith("Not sent:")
    assert "only sent to public addresses" in delivery.last_error
    assert delivery.last_status_code is None and delivery.attempt_log[0]["address"] == ""
    assert receiver.received == []


@pytest.mark.parametrize("url, says", [
    ("ftp://example.com/hook", "The scheme 'ftp' is not allowed"),
    ("file:///etc/passwd", "The scheme 'file' is not allowed"),
    ("example.com/hook", "The scheme '(none)' is not allowed"),
    ("https://user:pw@example.com/hook", "Credentials in the URL are not accepted"),
    ("http:///hook", "names no host"),
    ("http://example.com:99999/hook", "is not a valid URL"),
    ("http://no-such-host.invalid/hook", "could not be resolved"),
])  # fmt: skip
def test_only_http_urls_of_a_host_that_resolves_are_accepted(url, says):
    with pytest.raises(TargetRefused, match=says.replace("(", r"\(").replace(")", r"\)")):
        vet(url)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
])  # fmt: skip
def test_public_addresses_pass(address):
    assert non_public_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", [
    "172.16.0.1", "192.168.1.1", "198.18.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
    "::", "ff02::1", "::127.0.0.1", "2002:7f00:1::1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
])  # fmt: skip
def test_other_inside_and_special_addresses_are_not_public(address):
    assert non_public_reason(ipaddress.ip_address(address)) is not None


def test_allowed_networks_let_listed_addresses_through(settings, receiver):
    url = receiver.url()
    with pytest.raises(TargetRefused):
        vet(url)
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert [str(a) for a in vet(url).addresses] == ["127.0.0.1"]
    with pytest.raises(TargetRefused):
        vet("http://10.1.2.3/hook")  # only what is listed
    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = ["not-a-network"]
    with pytest.raises(ImproperlyConfigured, match="give CIDRs"):
        vet(url)


def test_the_admin_refuses_an_inside_url_and_says_what_is_accepted(reviewer_client, settings,
                                                                   receiver):  # fmt: skip
    add = reverse("admin:webhooks_webhookendpoint_add")
    form = {"url": "http://169.254.169.254/latest/meta-data/", "description": "metadata",
            "events": ["message.triaged"], "active": "on"}  # fmt: skip

    response = reviewer_client.post(add, form)
    assert response.status_code == 200
    assert "is a link-local address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()

    settings.MAILSCORE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    response = reviewer_client.post(add, {**form, "url": receiver.url()})
    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["message.triaged"] and endpoint.secret.startswith("whsec_")

    response = reviewer_client.post(add, {**form, "url": receiver.url(), "events": []})
    assert "Choose at least one event" in response.content.decode()
