"""The direct ingest route (apps/inbox/direct_ingest.py) answers as Django's handler and DRF do:
the same requests sent to both, on real PostgreSQL and Redis, get the same status, headers, body
and django-prometheus metrics; every case the route does not answer reaches Django untouched;
and in the real web process it is the route ingest takes."""

from __future__ import annotations

import io
import json
import re
import sys
import urllib.request
import uuid

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from prometheus_client import REGISTRY

from apps.accounts.models import ApiKey
from apps.accounts.scopes import Scope
from apps.inbox.direct_ingest import DirectIngest
from apps.inbox.models import Message
from tests.web_process import gunicorn_on_test_database

pytestmark = pytest.mark.django_db

# Differ between any two answers: when, the count left in the window, and the length of a body
# that holds an id (the names of the headers are compared too).
VARYING_HEADERS = {"date", "x-ratelimit-remaining", "x-ratelimit-reset", "content-length"}


@pytest.fixture
def apps():
    """(the direct route over Django's handler, Django's handler alone), on the test's
    transaction: like Django's test client, no connection is closed at a request's end."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        django = WSGIHandler()
        yield DirectIngest(django), django
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def key() -> str:
    return ApiKey.issue("direct")[1]


def mail(subject: str = "Order 5521 arrived damaged") -> bytes:
    return (
        f"From: Dana Reyes <dana@example.com>\r\nTo: support@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{uuid.uuid4().hex}@example.com>\r\n"
        "Date: Thu, 03 Dec 2026 09:12:00 +0100\r\n\r\nThe box was crushed; please send another.\r\n"
    ).encode()


def call(app, body: bytes = b"", *, method: str = "POST", path: str = "/api/v1/messages",
         query: str = "", headers: dict[str, str] | None = None,
         content_type: str | None = "message/rfc822", length: bool = True):  # fmt: skip
    """(status, headers, body) of one request through a WSGI application."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": query,
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": True, "wsgi.run_once": False,
    }  # fmt: skip
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"], started["headers"] = status, response_headers

    response = app(environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return int(started["status"].split()[0]), started["headers"], content


def direct_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("mailscore_ingest_direct_total", {"outcome": outcome}) or 0.0


def comparable(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers if name.lower() not in VARYING_HEADERS}


def without_ids(content: bytes):
    """A JSON answer with the message's id in it made neutral (each ingest stores its own), or
    the body as it is."""
    try:
        return json.loads(re.sub(rb"\d+", b"0", content))
    except ValueError:
        return content


def django_http_samples() -> dict[tuple, float]:
    """django-prometheus's samples, timings left out (they differ between any two requests)."""
    samples = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("django_http") or "latency" in family.name:
            continue
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def latency_counts() -> dict[tuple, float]:
    counts = {}
    for family in REGISTRY.collect():
        if family.name.startswith("django_http") and "latency" in family.name:
            for sample in family.samples:
                if sample.name.endswith("_count") or sample.name.endswith("_total"):
                    counts[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return counts


def delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before.get(name, 0.0) for name in after
            if after[name] != before.get(name, 0.0)}  # fmt: skip


def test_an_accepted_message_and_its_copy_are_answered_as_django_answers_them(apps, key):
    direct, django = apps
    answered = direct_count("answered")
    for app in (direct, django):
        raw = mail()
        first = call(app, raw, headers={"X-API-Key": key})
        again = call(app, raw, headers={"X-API-Key": key, "Accept": "application/json"})
        assert (first[0], again[0]) == (202, 200)
        assert json.loads(again[2])["id"] == json.loads(first[2])["id"]
        if app is direct:
            direct_answers = (first, again)
            assert direct_count("answered") == answered + 2
        else:
            assert direct_count("answered") == answered + 2  # Django's handler counts nothing
    for ours, theirs in zip(direct_answers, (first, again), strict=True):
        assert comparable(ours[1]) == comparable(theirs[1])
        assert [name for name, _ in ours[1]] == [name for name, _ in theirs[1]]
        assert without_ids(ours[2]) == without_ids(theirs[2])
    stored = Message.objects.filter(id=json.loads(direct_answers[0][2])["id"]).get()
    assert stored.status == "queued" and stored.source_detail == "key direct"


def test_the_metrics_of_a_direct_answer_are_those_of_django(apps, key):
    direct, django = apps
    changes = []
    for app in (direct, django):
        samples, latencies = django_http_samples(), latency_counts()
        assert call(app, mail(), headers={"X-API-Key": key})[0] == 202
        changes.append((delta(samples, django_http_samples()),
                        delta(latencies, latency_counts())))  # fmt: skip
    assert changes[0] == changes[1]
    views = {dict(labels).get("view") for _, labels in changes[0][0]}
    assert "message-list" in views


def test_input_that_is_not_mail_gets_the_same_422(apps, key):
    direct, django = apps
    answered = direct_count("answered")
    answers = []
    for app in (direct, django, direct):
        not_mail = f"\x00\x01 {uuid.uuid4()} is not an e-mail message at all".encode()
        answers.append(call(app, not_mail, headers={"X-API-Key": key}))
    again = call(direct, not_mail, headers={"X-API-Key": key})
    ours, theirs = answers[:2]
    assert ours[0] == theirs[0] == again[0] == 422
    assert comparable(ours[1]) == comparable(theirs[1])
    assert without_ids(ours[2]) == without_ids(theirs[2])
    assert json.loads(ours[2])["error"]["code"] == "not_rfc822"
    # The same input again finds its failed row.
    assert json.loads(again[2])["id"] == json.loads(answers[2][2])["id"]
    assert Message.objects.filter(failed_step="ingest").count() == 3
    assert direct_count("answered") == answered + 3


# Each case: what the request has instead of the plain ingest's (a key with the write scope, a
# raw message, its length; a header given as None is left out), the status Django answers, and
# whether the route had begun on it (counted as handed on) or left it to Django at its first
# line and headers.
CASES = {
    "no key": (lambda keys: {"headers": {"X-API-Key": None}}, 401, 0),
    "an unknown key": (lambda keys: {"headers": {"X-API-Key": "msk_not-a-key"}}, 401, 1),
    "a read-only key": (lambda keys: {"headers": {"X-API-Key": keys["read"]}}, 403, 1),
    "an empty body": (lambda keys: {"body": b"  \r\n"}, 400, 1),
    "a host not allowed": (lambda keys: {"headers": {"Host": "evil.example"}}, 400, 1),
    "an Accept it cannot render": (lambda keys: {"headers": {"Accept": "text/html"}}, 406, 0),
    "an empty Accept": (lambda keys: {"headers": {"Accept": ""}}, 406, 0),
    "a format in the query": (lambda keys: {"query": "format=json"}, 202, 0),
    "JSON": (
        lambda keys: {
            "body": json.dumps({"raw": mail().decode()}).encode(),
            "content_type": "application/json",
        },
        202,
        0,
    ),
    "another content type": (lambda keys: {"content_type": "text/plain"}, 415, 0),
    "a chunked body": (
        lambda keys: {"length": False, "headers": {"Transfer-Encoding": "chunked"}},
        411,
        0,
    ),
    "a GET": (lambda keys: {"method": "GET", "body": b""}, 200, 0),
    "a trailing slash": (lambda keys: {"path": "/api/v1/messages/"}, 404, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_the_route_does_not_answer_reaches_django_untouched(apps, key, case):
    direct, django = apps
    keys = {"write": key, "read": ApiKey.issue("reader", scopes=[Scope.READ])[1]}
    differences, status, handed_on = CASES[case]
    answers = []
    for app in (direct, django):
        kwargs = {"body": mail()} | differences(keys)
        headers = {"X-API-Key": key} | kwargs.get("headers", {})
        kwargs["headers"] = {name: value for name, value in headers.items() if value is not None}
        before = direct_count("handed_on"), direct_count("answered")
        answers.append(call(app, **kwargs))
        if app is direct:
            counted = direct_count("handed_on") - before[0], direct_count("answered") - before[1]
            assert counted == (handed_on, 0)
    ours, theirs = answers
    assert ours[0] == theirs[0] == status, ours[2][:300]
    assert comparable(ours[1]) == comparable(theirs[1])
    assert without_ids(ours[2]) == without_ids(theirs[2])


def test_behind_a_tls_proxy_the_answers_match_too(key, settings):
    """The production settings' HTTPS redirect and HSTS, read by the same middleware."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        django = WSGIHandler()
        direct = DirectIngest(django)
        handed_on = direct_count("handed_on")
        plain = [call(app, mail(), headers={"X-API-Key": key}) for app in (direct, django)]
        assert plain[0][0] == plain[1][0] == 301
        assert comparable(plain[0][1]) == comparable(plain[1][1])
        assert direct_count("handed_on") == handed_on + 1
        answered = direct_count("answered")
        secure = [call(app, mail(), headers={"X-API-Key": key, "X-Forwarded-Proto": "https"})
                  for app in (direct, django)]  # fmt: skip
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    assert secure[0][0] == secure[1][0] == 202
    assert direct_count("answered") == answered + 1
    assert comparable(secure[0][1]) == comparable(secure[1][1])
    assert "strict-transport-security" in comparable(secure[0][1])
    assert json.loads(secure[0][2])["url"].startswith("https://localhost/api/v1/messages/")


def test_a_used_up_limit_is_answered_429_by_django(apps, key, settings):
    direct, _ = apps
    settings.MAILSCORE_THROTTLE_WRITE = "2/min"
    statuses = [call(direct, mail(), headers={"X-API-Key": key})[0] for _ in range(3)]
    assert statuses == [202, 202, 429]
    refused = call(direct, mail(), headers={"X-API-Key": key})
    assert refused[0] == 429 and dict(refused[1])["Retry-After"]
    assert json.loads(refused[2])["error"]["code"] == "throttled"


def test_a_revoked_key_is_refused_on_the_direct_route(apps, key):
    from django.utils import timezone

    direct, _ = apps
    assert call(direct, mail(), headers={"X-API-Key": key})[0] == 202
    stored = ApiKey.objects.get(name="direct")
    stored.revoked_at = timezone.now()
    stored.save()  # announces the change; this process forgets the key at once
    assert call(direct, mail(), headers={"X-API-Key": key})[0] == 401


def get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": "Bearer direct-route-metrics"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        return response.read()


def post(url: str, raw: bytes, key: str) -> tuple[int, dict[str, str], dict]:
    headers = {"X-API-Key": key, "Content-Type": "message/rfc822"}
    request = urllib.request.Request(url, data=raw, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        return response.status, dict(response.headers), json.loads(response.read())


@pytest.mark.django_db(transaction=True)
def test_the_web_process_takes_the_direct_route_for_ingest(tmp_path, monkeypatch):
    """gunicorn as the Procfile starts it: ingest is answered on the direct route, with the
    headers of the one through Django (a query string sends a request there), 60 in a row on one
    worker's connections, each stored once."""
    _, key = ApiKey.issue("web-direct")
    monkeypatch.setenv("MAILSCORE_METRICS_TOKEN", "direct-route-metrics")
    with gunicorn_on_test_database(tmp_path / "metrics") as web:
        answers = [post(f"{web.base}/api/v1/messages", mail(f"n {n}"), key) for n in range(60)]
        through_django = post(f"{web.base}/api/v1/messages?via=django", mail(), key)
        scraped = get(f"{web.base}/metrics").decode()
    assert {status for status, _, _ in answers} == {202}
    ids = [body["id"] for _, _, body in answers]
    assert Message.objects.filter(id__in=ids).count() == len(set(ids)) == 60
    assert through_django[0] == 202
    assert answers[0][2]["url"].startswith(web.base + "/api/v1/messages/")
    ours = {name.lower() for name in answers[0][1]} - VARYING_HEADERS
    theirs = {name.lower() for name in through_django[1]} - VARYING_HEADERS
    assert ours == theirs
    assert 'mailscore_ingest_direct_total{outcome="answered"} 60.0' in scraped
    accepted = re.compile(r'django_http_responses_total_by_status_view_method_total\{'
                          r'method="POST",status="202",view="message-list"\} 61\.0')  # fmt: skip
    assert accepted.search(scraped), scraped[:3000]
