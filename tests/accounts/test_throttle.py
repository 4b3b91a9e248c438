"""Per-key rate limits on real PostgreSQL and Redis: 429 with Retry-After and the limit headers,
one count per key and scope shared through Redis, and requests let through when Redis is away."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.accounts.throttling import KEY_PREFIX, Rate, parse_rate
from apps.inbox.models import Message
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db

LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


def issue(name: str, **options) -> tuple[ApiKey, str]:
    return ApiKey.issue(name, **options)


def read(client: APIClient):
    return client.get("/api/v1/messages")


def test_over_the_read_limit_answers_429_with_retry_after_and_limit_headers(settings):
    settings.MAILSCORE_THROTTLE_READ = "3/min"
    _, key = issue("poller")
    client = APIClient(HTTP_X_API_KEY=key)
    for remaining in (2, 1, 0):
        response = read(client)
        assert response.status_code == 200
        assert response["X-RateLimit-Limit"] == "3"
        assert response["X-RateLimit-Remaining"] == str(remaining)
        assert 1 <= int(response["X-RateLimit-Reset"]) <= 60
    refused = read(client)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Limit"] == "3" and refused["X-RateLimit-Remaining"] == "0"
    assert refused["X-RateLimit-Reset"] == refused["Retry-After"]
    assert refused.json()["error"]["code"] == "throttled"
    detail = refused.json()["error"]["message"]
    assert "'poller' may make 3 read requests per minute" in detail
    assert "Expected available in" in detail


def test_over_the_write_limit_nothing_is_stored(settings):
    settings.MAILSCORE_THROTTLE_WRITE = "2/min"
    _, key = issue("gateway")
    client = APIClient(HTTP_X_API_KEY=key)
    statuses = [
        client.post("/api/v1/messages", raw_message(f"Message {n}"),
                    content_type="message/rfc822").status_code
        for n in range(3)
    ]  # fmt: skip
    assert statuses == [202, 202, 429]
    assert Message.objects.count() == 2


def test_clients_with_the_same_key_share_one_count_kept_in_redis(settings, redis_client):
    settings.MAILSCORE_THROTTLE_READ = "4/min"
    row, key = issue("shared")
    first, second = APIClient(HTTP_X_API_KEY=key), APIClient(HTTP_X_API_KEY=key)
    assert read(first).status_code == 200
    assert read(second).status_code == 200
    assert read(first)["X-RateLimit-Remaining"] == "1"
    counter = f"{KEY_PREFIX}read:{row.key_hash}"
    assert redis_client.get(counter) == b"3"
    assert 0 < redis_client.pttl(counter) <= 60_000
    # Another web process counting a request with this key is another INCR on the same counter.
    redis_client.incr(counter)
    assert read(second).status_code == 429


def test_a_large_limit_is_reported_to_redis_a_thousandth_at_a_time(settings, redis_client):
    """5,000 a minute: a process admits 4 requests on its own count, and the fifth reports all
    five in one round trip. The other processes' requests arrive with each report."""
    settings.MAILSCORE_THROTTLE_READ = "5000/min"
    row, key = issue("busy-poller")
    client = APIClient(HTTP_X_API_KEY=key)
    counter = f"{KEY_PREFIX}read:{row.key_hash}"
    remaining, in_redis = [], []
    for _ in range(11):
        response = read(client)
        assert response.status_code == 200
        remaining.append(int(response["X-RateLimit-Remaining"]))
        in_redis.append(int(redis_client.get(counter)))
    assert remaining == [5000 - n for n in range(1, 12)]
    assert in_redis == [1, 1, 1, 1, 1, 6, 6, 6, 6, 6, 11]
    # Another process used up the window: the next report finds out, and from then on this one
    # refuses without asking again.
    redis_client.incrby(counter, 5000)
    for _ in range(4):
        assert read(client).status_code == 200  # admitted on this process's count
    assert read(client).status_code == 429
    assert int(redis_client.get(counter)) == 5000 + 16
    for _ in range(4):
        refused = read(client)
        assert refused.status_code == 429 and refused["X-RateLimit-Remaining"] == "0"
    assert int(redis_client.get(counter)) == 5000 + 16


def test_the_first_request_after_a_window_closes_is_reported_at_once(settings, redis_client):
    settings.MAILSCORE_THROTTLE_READ = "5000/s"
    row, key = issue("next-window")
    client = APIClient(HTTP_X_API_KEY=key)
    counter = f"{KEY_PREFIX}read:{row.key_hash}"
    for _ in range(3):  # one reported, two counted here
        assert read(client).status_code == 200
    assert redis_client.get(counter) == b"1"
    time.sleep(1.2)  # the one-second window closes in Redis and here
    response = read(client)
    assert response.status_code == 200
    assert redis_client.get(counter) == b"1"  # a new window, opened by this request's report
    assert response["X-RateLimit-Remaining"] == "4999"


def test_each_key_and_each_scope_has_its_own_count(settings):
    settings.MAILSCORE_THROTTLE_READ = "1/min"
    _, busy = issue("busy")
    _, quiet = issue("quiet")
    busy_client = APIClient(HTTP_X_API_KEY=busy)
    assert read(busy_client).status_code == 200
    assert read(busy_client).status_code == 429
    assert read(APIClient(HTTP_X_API_KEY=quiet)).status_code == 200
    # The same key's writes are counted apart from its reads.
    response = busy_client.post("/api/v1/messages", raw_message("Still accepted."),
                                content_type="message/rfc822")  # fmt: skip
    assert response.status_code == 202
    assert response["X-RateLimit-Limit"] == str(parse_rate(settings.MAILSCORE_THROTTLE_WRITE).limit)


def test_a_request_refused_for_its_scope_is_not_counted(settings, redis_client):
    settings.MAILSCORE_THROTTLE_WRITE = "1/min"
    row, key = issue("reader", scopes=["read"])
    client = APIClient(HTTP_X_API_KEY=key)
    for _ in range(3):
        response = client.post("/api/v1/messages", raw_message("x"), content_type="message/rfc822")
        assert response.status_code == 403
    assert redis_client.get(f"{KEY_PREFIX}write:{row.key_hash}") is None


def test_requests_go_through_when_the_throttle_redis_is_unreachable(settings, caplog):
    settings.MAILSCORE_THROTTLE_READ = "1/min"
    settings.MAILSCORE_THROTTLE_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    _, key = issue("during-outage")
    client = APIClient(HTTP_X_API_KEY=key)
    with caplog.at_level(logging.WARNING, logger="apps.accounts.throttling"):
        responses = [read(client) for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert not any(header in responses[0] for header in LIMIT_HEADERS)
    warnings = [r for r in caplog.records if "rate limits are not enforced" in r.getMessage()]
    assert len(warnings) == 1 and "Redis does not answer" in warnings[0].getMessage()


def test_ingest_answers_while_the_throttle_redis_is_unreachable(settings):
    settings.MAILSCORE_THROTTLE_WRITE = "1/min"
    settings.MAILSCORE_THROTTLE_REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    _, key = issue("ingest-during-outage")
    client = APIClient(HTTP_X_API_KEY=key)
    for n in range(3):
        response = client.post("/api/v1/messages", raw_message(f"Outage {n}"),
                               content_type="message/rfc822")  # fmt: skip
        assert response.status_code == 202, response.content


def test_off_means_no_limit_and_no_headers(settings):
    settings.MAILSCORE_THROTTLE_READ = "off"
    _, key = issue("unlimited")
    client = APIClient(HTTP_X_API_KEY=key)
    for _ in range(3):
        response = read(client)
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response


@pytest.mark.parametrize(
    "text, rate",
    [
        ("600/min", Rate(600, 60)),
        ("100000/minute", Rate(100000, 60)),
        ("50/10s", Rate(50, 10)),
        ("5/ second", Rate(5, 1)),
        ("1000/h", Rate(1000, 3600)),
        ("20000/day", Rate(20000, 86400)),
        ("OFF", None),
        ("", None),
    ],
)
def test_rates_are_read(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["600", "600/fortnight", "ten/min", "5/0s", "-1/min"])
def test_a_rate_that_cannot_be_read_says_what_is_accepted(text):
    with pytest.raises(ImproperlyConfigured, match="MAILSCORE_THROTTLE_READ=.* is not a rate"):
        parse_rate(text, "MAILSCORE_THROTTLE_READ")


def test_a_bad_rate_setting_fails_the_system_check(settings):
    settings.MAILSCORE_THROTTLE_VERIFY = "120 per minute"
    errors = [e for e in run_checks() if e.id == "accounts.E001"]
    assert len(errors) == 1 and "MAILSCORE_THROTTLE_VERIFY='120 per minute'" in errors[0].msg
    assert "600/min" in errors[0].msg


def test_the_default_write_rate_leaves_room_for_the_ingest_benchmark():
    rate = parse_rate(django_settings.MAILSCORE_THROTTLE_WRITE)
    assert rate is not None and rate.limit / rate.seconds >= 1000
