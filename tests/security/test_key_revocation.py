"""A key revoked (or deleted) in the admin is refused by every web process from the very next
request, not after the 30 s its lookup is cached: tried against a second web process (a real
gunicorn on loopback) that had just accepted, and cached, the key. And a process that cannot
hear changes (Redis away, its subscription dropped) trusts no cached key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from apps.accounts import authentication
from apps.accounts.models import ApiKey
from apps.core.connections import redis_connection
from tests.web_process import stop

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(url: str, headers: dict[str, str] | None = None) -> int | None:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _database_url() -> str:
    """The test database (pytest-django's), which this process and the other one share."""
    params = connection.get_connection_params()
    host = params.get("host", "")
    user, password, port = params.get("user", ""), params.get("password", ""), params.get("port")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{credentials}/{params['dbname']}?host={host}" + (
            f"&port={port}" if port else ""
        )
    return f"postgresql://{credentials}{host}:{port or 5432}/{params['dbname']}"


@pytest.fixture
def other_web_process(transactional_db, settings):
    """A gunicorn of its own (one worker, so every request reaches the same key cache) on the
    test database and Redis."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="mailscore.settings.test",
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    server = subprocess.Popen(
        [str(BIN_DIR / "gunicorn"), "mailscore.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while _status(f"{url}/health/live") != 200:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"gunicorn did not start: {server.communicate()[0][-2000:]}")
        time.sleep(0.2)
    yield url
    stop(server)


@pytest.fixture
def admin(admin_user) -> Client:
    signed_in = Client()
    signed_in.force_login(admin_user)
    return signed_in


def _accepted_and_cached(url: str, secret: str) -> None:
    # Twice: the first request looks the key up and caches it, the second is served from cache.
    for _ in range(2):
        assert _status(f"{url}/api/v1/messages", {"X-API-Key": secret}) == 200


def test_a_key_revoked_in_the_admin_is_refused_by_another_process_at_once(other_web_process, admin):
    key, secret = ApiKey.issue("crm-to-revoke")
    _, kept_secret = ApiKey.issue("crm-kept")
    _accepted_and_cached(other_web_process, secret)
    _accepted_and_cached(other_web_process, kept_secret)

    response = admin.post(
        "/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302, response.content[:500]
    key.refresh_from_db()
    assert key.revoked_at is not None

    assert _status(f"{other_web_process}/api/v1/messages", {"X-API-Key": secret}) == 401
    # Other keys go on working (after one fresh lookup each).
    assert _status(f"{other_web_process}/api/v1/messages", {"X-API-Key": kept_secret}) == 200


def test_a_key_deleted_in_the_admin_is_refused_by_another_process_at_once(other_web_process, admin):
    key, secret = ApiKey.issue("crm-to-delete")
    _accepted_and_cached(other_web_process, secret)
    response = admin.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:500]
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert _status(f"{other_web_process}/api/v1/messages", {"X-API-Key": secret}) == 401


def test_without_redis_no_key_is_trusted_from_the_cache(transactional_db, settings):
    """Redis unreachable: changes to keys cannot be heard, so every request asks the database,
    and a key revoked meanwhile is refused."""
    key, _ = ApiKey.issue("crm-redis-down")
    assert authentication._lookup(key.key_hash) is not None
    assert key.key_hash in authentication._seen
    settings.REDIS_URL = f"redis://127.0.0.1:{_free_port()}/0"  # nothing listens there
    redis_connection.cache_clear()
    try:
        assert authentication._key_changes.cache_trusted() is False
        assert key.key_hash not in authentication._seen
        ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
        assert authentication._lookup(key.key_hash) is None
    finally:
        redis_connection.cache_clear()


def test_a_process_that_lost_its_subscription_empties_its_cache_and_listens_again(
    transactional_db, redis_client
):
    """The server drops the listening connection (as a Redis restart would): a change announced
    while nobody listened is not missed, as the cache is emptied before listening again."""
    key, _ = ApiKey.issue("crm-dropped")
    assert authentication._lookup(key.key_hash) is not None
    assert authentication._key_changes.cache_trusted() is True
    listeners = [c for c in redis_client.client_list() if c.get("cmd") in ("subscribe", "ping")
                 and int(c.get("sub", 0)) > 0]  # fmt: skip
    assert listeners, redis_client.client_list()
    for listener in listeners:
        redis_client.client_kill_filter(_id=listener["id"])
    # Revoked while nobody listened: the row changes, no announcement is heard.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    assert authentication._lookup(key.key_hash) is None
    authentication._key_changes._retry_at = 0.0  # not waiting out RESUBSCRIBE_SECONDS here
    assert authentication._key_changes.cache_trusted() is True  # listening again


def test_a_subscription_gone_silent_is_found_out_by_a_ping(
    transactional_db, redis_client, monkeypatch
):
    """Redis stops answering without closing the connection (CLIENT PAUSE on the real server):
    the subscription's PING goes unanswered, and the process stops trusting its cache."""
    monkeypatch.setattr(authentication, "LIVENESS_SECONDS", 0.2)
    key, _ = ApiKey.issue("crm-silent")
    assert authentication._lookup(key.key_hash) is not None
    assert authentication._key_changes.cache_trusted() is True
    redis_client.execute_command("CLIENT", "PAUSE", 4000, "ALL")
    try:
        deadline = time.monotonic() + 3
        while authentication._key_changes.cache_trusted() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert authentication._key_changes.cache_trusted() is False
        assert key.key_hash not in authentication._seen
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    # Quiet but alive: the PING is answered, and the cache stays trusted and whole. A second
    # to answer, not 0.2: on a busy machine a live Redis (or this process) can be late by more.
    # Set before listening again: at 0.2, a pause of this process right after the subscription
    # sent a PING whose answer, taken during the sleep below, then counted as the silence's end.
    monkeypatch.setattr(authentication, "LIVENESS_SECONDS", 1.0)
    authentication._key_changes._retry_at = 0.0  # not waiting out RESUBSCRIBE_SECONDS here
    assert authentication._key_changes.cache_trusted() is True  # listening again
    assert authentication._lookup(key.key_hash) is not None
    assert key.key_hash in authentication._seen
    time.sleep(1.2)  # silent past LIVENESS_SECONDS: the next look sends a PING
    assert authentication._key_changes.cache_trusted() is True
    assert authentication._key_changes._pinged_at, "no PING was sent"
    deadline = time.monotonic() + 0.9
    while authentication._key_changes._pinged_at and time.monotonic() < deadline:
        time.sleep(0.05)
        assert authentication._key_changes.cache_trusted() is True
    assert not authentication._key_changes._pinged_at, "the PING was not answered"
    assert key.key_hash in authentication._seen


def test_a_key_revoked_while_it_is_looked_up_is_not_cached(transactional_db):
    """Another request of the same process takes in the revocation while this one waits for
    the database, which it had asked before the revocation was committed: what it read is not
    cached. The requests are interleaved at the query, with real PostgreSQL and Redis."""
    key, _ = ApiKey.issue("crm-revoked-meanwhile")
    assert authentication._key_changes.cache_trusted()

    def revoked_meanwhile(execute, sql, params, many, context):
        result = execute(sql, params, many, context)  # the row as it was: not revoked
        if "accounts_apikey" in sql and sql.lstrip().upper().startswith("SELECT"):
            key.revoked_at = key.created_at
            key.save(update_fields=["revoked_at"])  # committed, then announced
            heard, deadline = authentication._key_changes.heard, time.monotonic() + 5
            while authentication._key_changes.heard == heard and time.monotonic() < deadline:
                authentication._key_changes.cache_trusted()  # another request taking it in
                time.sleep(0.01)
            assert authentication._key_changes.heard > heard, "the revocation was not heard"
        return result

    with connection.execute_wrapper(revoked_meanwhile):
        assert authentication._lookup(key.key_hash) is not None  # it read the row before
    assert key.key_hash not in authentication._seen
    assert authentication._lookup(key.key_hash) is None


def test_what_each_request_pays_for_the_revocation_check(transactional_db):
    """Not a timing assert: it prints the cost of taking in key changes on every API request."""
    assert authentication._key_changes.cache_trusted()
    rounds = 2000
    started = time.perf_counter()
    for _ in range(rounds):
        assert authentication._key_changes.cache_trusted()
    per_request = (time.perf_counter() - started) / rounds
    print(f"revocation check: {per_request * 1e6:.0f} µs per request")
