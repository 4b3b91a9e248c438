"""Password guessing against the admin sign-in, over real sockets to a live server on loopback:
after a few failures the user is locked out from that address (the right password too), others
are not, and the lock lifts after the cool-off. And the admin user `up` creates must pass the
password validators."""

from __future__ import annotations

import datetime as dt
import http.client
import io
import logging
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.accounts.models import ApiKey
from apps.inbox.management.commands.up import Command as UpCommand
from mailscore.supervision import Console

TARGET_PASSWORD = "correct horse battery staple 42"
BYSTANDER_PASSWORD = "another long passphrase 1729"
ATTACKER, BYSTANDER = "127.0.0.1", "127.0.0.2"
GUESSES = 30
COOL_OFF = dt.timedelta(seconds=2)


class Browser:
    """One client on its own loopback address, keeping its cookies, as a browser would."""

    def __init__(self, url: str, source_address: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.source = "127.0.0.1", parts.port, source_address
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, str]:  # fmt: skip
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30,
                                                source_address=(self.source, 0))  # fmt: skip
        sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} | (headers or {})
        payload = None
        if body is not None:
            payload = urlencode(body)
            sent |= {"Content-Type": "application/x-www-form-urlencoded",
                     "Referer": f"http://{self.host}:{self.port}{path}"}  # fmt: skip
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        text = response.read().decode("utf-8", "replace")
        connection.close()
        return response.status, text

    def sign_in(self, username: str, password: str) -> tuple[int, str]:
        _, form = self.request("GET", "/admin/login/?next=/admin/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        return self.request("POST", "/admin/login/?next=/admin/", {
            "csrfmiddlewaretoken": token, "username": username, "password": password,
            "next": "/admin/"})  # fmt: skip


@pytest.fixture
def accounts(transactional_db):
    users = get_user_model().objects
    users.create_superuser("target", "target@example.test", TARGET_PASSWORD)
    users.create_superuser("bystander", "bystander@example.test", BYSTANDER_PASSWORD)


def test_guessing_locks_the_user_from_that_address_until_the_cool_off(
    accounts, live_server, settings, caplog
):
    settings.AXES_COOLOFF_TIME = COOL_OFF
    caplog.set_level(logging.WARNING, logger="axes")
    attacker = Browser(live_server.url, ATTACKER)

    answers = [attacker.sign_in("target", f"guess-{n}") for n in range(GUESSES)]
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 5  # the default
    # Below the limit the form says the password was wrong; from the limit on, locked.
    assert {status for status, _ in answers[: limit - 1]} == {200}
    assert all("correct username and password" in text for _, text in answers[: limit - 1])
    assert {status for status, _ in answers[limit - 1 :]} == {429}
    assert all("Account locked" in text for _, text in answers[limit - 1 :])
    status, text = attacker.sign_in("target", TARGET_PASSWORD)
    assert (status, "Account locked" in text) == (429, True)
    assert "sessionid" not in attacker.cookies
    assert any("Locking out" in r.getMessage() for r in caplog.records), "the lockout is logged"

    # Another user from another address signs in, sees the lock in the admin, and the API
    # session that the docs page uses still works; so do API keys.
    bystander = Browser(live_server.url, BYSTANDER)
    status, _ = bystander.sign_in("bystander", BYSTANDER_PASSWORD)
    assert status == 302 and "sessionid" in bystander.cookies
    status, page = bystander.request("GET", "/admin/axes/accessattempt/")
    assert status == 200 and "target" in page and ATTACKER in page
    assert bystander.request("GET", "/api/v1/messages")[0] == 200
    _, key = ApiKey.issue("lockout-test")
    assert attacker.request("GET", "/api/v1/messages", headers={"X-API-Key": key})[0] == 200

    time.sleep(COOL_OFF.total_seconds() + 1)
    status, _ = attacker.sign_in("target", TARGET_PASSWORD)
    assert status == 302 and "sessionid" in attacker.cookies


def _run_up(monkeypatch, password: str | None) -> str:
    if password is None:
        monkeypatch.delenv("MAILSCORE_ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("MAILSCORE_ADMIN_PASSWORD", password)
    output = io.StringIO()
    command = UpCommand(stdout=output)
    command.console = Console(command.stdout)
    command._ensure_admin()
    return output.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("weak, validator", [
    ("password1", "CommonPasswordValidator"),
    ("short", "MinimumLengthValidator"),
    ("8412930567", "NumericPasswordValidator"),
])  # fmt: skip
def test_up_refuses_a_weak_admin_password_and_says_which_validator(monkeypatch, weak, validator):
    monkeypatch.setenv("MAILSCORE_ADMIN_PASSWORD", weak)
    with pytest.raises(CommandError, match=validator) as refused:
        call_command("up", "--no-samples", "--exit-when-done", stdout=io.StringIO())
    assert "MAILSCORE_ADMIN_PASSWORD" in str(refused.value)
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_up_creates_the_admin_from_a_strong_password_or_generates_and_prints_one(monkeypatch):
    output = _run_up(monkeypatch, None)
    printed = re.search(r"password \(shown only now\): (\S+)", output)[1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(printed)
    assert len(printed) >= 30
    assert printed not in _run_up(monkeypatch, None), "printed once, on creation only"

    admin.delete()
    output = _run_up(monkeypatch, TARGET_PASSWORD)
    assert TARGET_PASSWORD not in output
    assert get_user_model().objects.get(username="admin").check_password(TARGET_PASSWORD)
