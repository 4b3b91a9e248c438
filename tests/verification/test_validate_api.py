"""POST /api/v1/validate against the loopback SMTP and DNS farm: the same verdicts as
`manage.py verify`, answers cached, and what the time budget leaves undecided finished in the
background."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.verification.validation import KEY_PREFIX
from mailscore.celery import app
from tasks.queues import CeleryQueue
from tasks.verification import finish_validation

pytestmark = pytest.mark.django_db

URL = "/api/v1/validate"
CHECK_NAMES = {"syntax", "dns", "mx", "smtp", "catch_all", "disposable", "role", "free"}


@pytest.fixture
def validate_settings(farm_settings, redis_client):
    """The farm, with no answers, pending checks or queued checks left from before."""

    def clean() -> None:
        for key in redis_client.scan_iter(f"{KEY_PREFIX}*"):
            redis_client.delete(key)
        redis_client.delete(str(CeleryQueue.VERIFY))

    clean()
    yield farm_settings
    clean()


@pytest.fixture
def api(validate_settings) -> APIClient:
    _, key = ApiKey.issue("validate-test", scopes=["verify"])
    return APIClient(HTTP_X_API_KEY=key)


def validate(api: APIClient, email: str) -> dict:
    response = api.post(URL, {"email": email}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def command_result(address: str) -> dict:
    out = StringIO()
    call_command("verify", "--json", "--no-cache", address, stdout=out)
    [line] = out.getvalue().splitlines()
    return json.loads(line)


def queued_checks(redis_client) -> int:
    return redis_client.llen(str(CeleryQueue.VERIFY))


@pytest.mark.parametrize(
    ("address", "verdict", "reason"),
    [
        ("alice@normal.test", "deliverable", "ok"),
        ("nobody@normal.test", "undeliverable", "mailbox_not_found"),
        ("someone@mailinator.com", "risky", "disposable"),
        ("support@normal.test", "risky", "role_account"),
        ("alice@gmial.com", "undeliverable", "no_such_domain"),
        ("not an address", "undeliverable", "invalid_syntax"),
    ],
)
def test_the_same_verdict_and_reason_as_manage_py_verify(api, address, verdict, reason):
    answer = validate(api, address)
    expected = command_result(address)
    assert (answer["verdict"], answer["reason"]) == (verdict, reason)
    assert (answer["verdict"], answer["reason"], answer["score"], answer["suggestion"]) == (
        expected["verdict"],
        expected["reason"],
        expected["score"],
        expected["suggestion"],
    )
    assert answer["email"] == address
    assert set(answer["checks"]) == CHECK_NAMES
    assert answer["cached"] is False
    assert answer["retry_after"] is None
    assert answer["checked_at"].endswith("Z")


def test_checks_say_what_each_step_found(api):
    checks = validate(api, "alice@normal.test")["checks"]
    assert checks == {"syntax": True, "dns": True, "mx": True, "smtp": True, "catch_all": False,
                      "disposable": False, "role": False, "free": False}  # fmt: skip
    checks = validate(api, "nobody@normal.test")["checks"]
    assert (checks["smtp"], checks["catch_all"]) == (False, False)
    checks = validate(api, "someone@mailinator.com")["checks"]
    assert (checks["disposable"], checks["smtp"]) == (True, None)  # no probe for a disposable
    assert validate(api, "support@normal.test")["checks"]["role"] is True
    assert validate(api, "alice@catchall.test")["checks"]["catch_all"] is True
    checks = validate(api, "x@nullmx.test")["checks"]
    assert (checks["dns"], checks["mx"], checks["smtp"]) == (True, False, None)
    checks = validate(api, "alice@gmial.com")["checks"]
    assert (checks["dns"], checks["mx"]) == (False, False)
    assert validate(api, "alice@gmial.com")["suggestion"] == "alice@gmail.com"
    checks = validate(api, "not an address")["checks"]
    assert checks == {"syntax": False, **{name: None for name in CHECK_NAMES - {"syntax"}}}


def test_a_second_call_is_answered_from_the_cache(api, validate_settings):
    first = validate(api, "alice@normal.test")
    validate_settings.MAILSCORE_VERIFICATION = {
        **validate_settings.MAILSCORE_VERIFICATION,
        "smtp_port": 9,  # nothing listens there: only the cache can still say deliverable
    }
    second = validate(api, "Alice@NORMAL.test")
    assert second["cached"] is True
    assert second["email"] == "Alice@NORMAL.test"
    assert {k: v for k, v in second.items() if k not in ("cached", "email")} == {
        k: v for k, v in first.items() if k not in ("cached", "email")
    }


def test_an_unknown_answer_is_kept_for_its_own_short_ttl(api, validate_settings, redis_client):
    validate_settings.MAILSCORE_VALIDATE_TTL_UNKNOWN = 0
    assert validate(api, "alice@unreachable.test")["verdict"] == "unknown"
    assert not redis_client.exists(f"{KEY_PREFIX}alice@unreachable.test")
    validate(api, "alice@normal.test")
    ttl = redis_client.ttl(f"{KEY_PREFIX}alice@normal.test")
    assert 0 < ttl <= validate_settings.MAILSCORE_VALIDATE_TTL_DELIVERABLE


def test_a_slow_server_is_answered_unknown_and_finished_in_the_background(
    api, validate_settings, redis_client
):
    validate_settings.MAILSCORE_VALIDATE_BUDGET_SECONDS = 0.3  # the tarpit never greets
    first = validate(api, "alice@tarpit.test")
    assert (first["verdict"], first["reason"], first["cached"]) == ("unknown", "timeout", False)
    assert first["retry_after"] >= 1
    assert first["checks"]["syntax"] is True and first["checks"]["smtp"] is None
    assert queued_checks(redis_client) == 1

    # While that check is pending, calls are answered from it and start no other.
    pending = validate(api, "alice@tarpit.test")
    assert (pending["verdict"], pending["reason"]) == ("unknown", "timeout")
    assert pending["retry_after"] >= 1
    assert queued_checks(redis_client) == 1

    finish_validation.apply(args=["alice@tarpit.test", "alice@tarpit.test"]).get()
    final = validate(api, "alice@tarpit.test")
    assert (final["verdict"], final["reason"], final["cached"]) == ("unknown", "timeout", True)
    assert final["retry_after"] is None
    assert not redis_client.exists(f"{KEY_PREFIX}pending:alice@tarpit.test")


@pytest.fixture
def worker(validate_settings):
    with start_worker(app, queues=[str(CeleryQueue.VERIFY)], perform_ping_check=False,
                      shutdown_timeout=30) as running:  # fmt: skip
        yield running


# The worker closes the database connections it finds when it starts, the test's own among them:
# this test runs outside a wrapping transaction, and makes its key once the worker is up.
@pytest.mark.django_db(transaction=True)
def test_a_greylisted_address_gets_its_verdict_from_the_background_check(
    worker, validate_settings, redis_client
):
    _, key = ApiKey.issue("validate-worker-test", scopes=["verify"])
    api = APIClient(HTTP_X_API_KEY=key)
    validate_settings.MAILSCORE_VALIDATE_BUDGET_SECONDS = 1
    first = validate(api, "bob@greylist.test")
    assert (first["verdict"], first["reason"], first["cached"]) == ("unknown", "greylisted", False)
    assert first["retry_after"] >= 1

    # The worker asks the server again after the countdown the greylisting asked for.
    deadline = time.monotonic() + 60
    while not redis_client.exists(f"{KEY_PREFIX}bob@greylist.test"):
        assert time.monotonic() < deadline, "the background check stored no answer"
        time.sleep(0.2)
    final = validate(api, "bob@greylist.test")
    assert (final["verdict"], final["reason"], final["cached"]) == ("deliverable", "ok", True)
    assert final["retry_after"] is None


def test_a_key_without_the_verify_scope_is_refused(validate_settings):
    _, key = ApiKey.issue("reader", scopes=["read", "write"])
    response = APIClient(HTTP_X_API_KEY=key).post(URL, {"email": "a@normal.test"}, format="json")
    assert response.status_code == 403, response.content
    assert response.json()["error"]["required_scope"] == "verify"


def test_no_key_is_a_401(validate_settings):
    response = APIClient().post(URL, {"email": "a@normal.test"}, format="json")
    assert response.status_code == 401, response.content


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ("[1, 2]", "body", "JSON object"),
        ("{}", "email", "required"),
        ('{"email": 42}', "email", "must be a string"),
        ('{"email": null}', "email", "must be a string"),
        ('{"email": "   "}', "email", "empty"),
        (json.dumps({"email": "a" * 400 + "@normal.test"}), "email", "at most 320"),
        ('{"email": "a\\ud800@normal.test"}', "email", "unpaired surrogate"),
        ('{"email": "a@normal.test", "smtp": false}', "smtp", "Unknown field"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(api, body, field, says):
    response = api.post(URL, body, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert says in error["message"]
    assert field in error["fields"]


def test_a_body_that_is_not_json_is_a_400_saying_what_is_accepted(api):
    response = api.post(URL, '{"email": ', content_type="application/json")
    assert response.status_code == 400, response.content
    assert '{"email": "alice@example.com"}' in response.json()["error"]["message"]
    response = api.post(
        URL, "email=a@normal.test", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415, response.content
    assert "application/json" in response.json()["error"]["message"]
