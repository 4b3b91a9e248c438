"""/api/v1/webhooks on real PostgreSQL and Redis: endpoints made, read, changed and deleted with a
key holding the webhooks scope, the secret answered once, URLs refused as in the admin, and an
endpoint's deliveries once an event is sent to a real receiver on loopback."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import transaction
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.inbox.models import Message, MessageStatus
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint
from apps.webhooks.signals import message_triaged
from tests.review.conftest import raw_message, store

pytestmark = pytest.mark.django_db

WEBHOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://8.8.8.8/hooks/mailscore"  # a public literal: no DNS lookup


def client_for(name: str, **issue) -> APIClient:
    _, key = ApiKey.issue(name, **issue)
    return APIClient(HTTP_X_API_KEY=key)


@pytest.fixture
def api() -> APIClient:
    return client_for("integration", scopes=["webhooks"])


def error(response) -> dict:
    return response.json()["error"]


def create(api: APIClient, **body):
    body = {"url": PUBLIC_URL, "events": ["message.triaged"], **body}
    return api.post(WEBHOOKS, body, format="json")


def test_create_answers_the_secret_once(api):
    response = create(api, description="CRM", events=["job.completed", "message.triaged"])
    assert response.status_code == 201, response.content
    made = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert made["secret"] == endpoint.secret and made["secret_hint"] == endpoint.secret[-4:]
    assert made["url"] == PUBLIC_URL and made["description"] == "CRM" and made["active"] is True
    assert made["events"] == ["message.triaged", "job.completed"]  # canonical order
    assert response["Location"].endswith(f"{WEBHOOKS}/{endpoint.id}")
    assert made["deliveries_url"].endswith(f"{WEBHOOKS}/{endpoint.id}/deliveries")

    listed = api.get(WEBHOOKS).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == endpoint.id
    read = api.get(f"{WEBHOOKS}/{endpoint.id}").json()
    for body in (listed["results"][0], read):
        assert "secret" not in body and body["secret_hint"] == endpoint.secret[-4:]
        assert endpoint.secret not in str(body)
    assert read == listed["results"][0]


def test_patch_changes_only_what_is_given(api):
    endpoint_id = create(api, description="before").json()["id"]
    secret = WebhookEndpoint.objects.get().secret
    response = api.patch(f"{WEBHOOKS}/{endpoint_id}",
                         {"active": False, "events": ["message.reviewed"]}, format="json")  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["active"] is False and "secret" not in response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["message.reviewed"] and not endpoint.active
    assert endpoint.description == "before" and endpoint.url == PUBLIC_URL
    assert endpoint.secret == secret

    new_url = "https://9.9.9.9/other"
    assert api.patch(f"{WEBHOOKS}/{endpoint_id}", {"url": new_url},
                     format="json").json()["url"] == new_url  # fmt: skip
    assert api.put(f"{WEBHOOKS}/{endpoint_id}", {"url": new_url}, format="json").status_code == 405


def test_delete(api):
    endpoint_id = create(api).json()["id"]
    assert api.delete(f"{WEBHOOKS}/{endpoint_id}").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    missing = api.get(f"{WEBHOOKS}/{endpoint_id}")
    assert missing.status_code == 404 and error(missing)["code"] == "not_found"


@pytest.mark.parametrize(
    "url, said",
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is"),
        ("http://[::1]/hook", "::1 is"),
        ("http://10.1.2.3/hook", "10.1.2.3 is"),
        ("http://localhost/hook", "'localhost' resolves to"),
        ("ftp://8.8.8.8/hook", "The scheme 'ftp' is not allowed"),
    ],
)
def test_a_url_the_admin_refuses_is_refused_saying_what_is_accepted(api, url, said):
    response = create(api, url=url)
    assert response.status_code == 400, response.content
    refused = error(response)
    assert list(refused["fields"]) == ["url"]
    assert said in refused["message"]
    assert "Accepted: an http:// or https:// URL" in refused["message"]
    assert "MAILSCORE_WEBHOOK_ALLOWED_NETWORKS" in refused["message"]
    assert not WebhookEndpoint.objects.exists()

    # The same rule for a change of URL.
    endpoint_id = create(api).json()["id"]
    changed = api.patch(f"{WEBHOOKS}/{endpoint_id}", {"url": url}, format="json")
    assert changed.status_code == 400 and said in error(changed)["message"]
    assert WebhookEndpoint.objects.get().url == PUBLIC_URL


def test_an_allowed_network_is_accepted(api, loopback_allowed):
    response = create(api, url="http://127.0.0.1:8080/hook")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "body, field, said",
    [
        ({"events": ["message.sent"]}, "events", "Unknown events message.sent; accepted: "
         "message.triaged, message.reviewed, job.completed."),
        ({"events": []}, "events", "No events given."),
        ({"events": "message.triaged"}, "events", "Give the events as a list of names"),
        ({"secret": "mine"}, "secret", "Unknown field 'secret'. Accepted fields: url:"),
        ({"description": "x" * 201}, "description", "longer than 200 characters"),
        ({"active": "maybe"}, "active", '"active" must be true or false.'),
    ],
)  # fmt: skip
def test_other_fields_are_checked_saying_what_is_accepted(api, body, field, said):
    response = create(api, **body)
    assert response.status_code == 400, response.content
    assert list(error(response)["fields"]) == [field]
    assert said in error(response)["message"]


def test_url_and_events_are_required(api):
    response = api.post(WEBHOOKS, {}, format="json")
    assert response.status_code == 400
    assert set(error(response)["fields"]) == {"url", "events"}
    assert "Accepted:" in error(response)["fields"]["url"][0]


def test_a_key_without_the_webhooks_scope_gets_403():
    endpoint = WebhookEndpoint.objects.create(url=PUBLIC_URL, events=["message.triaged"])
    everyday = client_for("everyday")  # made without naming scopes: not webhooks
    assert ApiKey.objects.get(name="everyday").scopes == ["read", "write", "verify"]
    for response in (
        everyday.get(WEBHOOKS),
        everyday.get(f"{WEBHOOKS}/{endpoint.id}"),
        everyday.get(f"{WEBHOOKS}/{endpoint.id}/deliveries"),
        create(everyday),
        everyday.patch(f"{WEBHOOKS}/{endpoint.id}", {"active": False}, format="json"),
        everyday.delete(f"{WEBHOOKS}/{endpoint.id}"),
    ):
        assert response.status_code == 403, response.content
        refused = error(response)
        assert refused["code"] == "permission_denied" and refused["required_scope"] == "webhooks"
        assert refused["key_scopes"] == ["read", "verify", "write"]
        assert "--scopes webhooks" in refused["message"]
    assert WebhookEndpoint.objects.get().active


def test_no_key_gets_401():
    response = APIClient().get(WEBHOOKS)
    assert response.status_code == 401 and "X-API-Key" in error(response)["message"]
    assert create(APIClient()).status_code == 401


def test_the_scope_is_given_only_when_named(capsys):
    call_command("create_api_key", "by-default")
    call_command("create_api_key", "hooks", "--scopes", "read,webhooks")
    capsys.readouterr()
    assert ApiKey.objects.get(name="by-default").scopes == ["read", "write", "verify"]
    assert ApiKey.objects.get(name="hooks").scopes == ["read", "webhooks"]


@pytest.mark.usefixtures("loopback_allowed", "eager")
def test_deliveries_are_listed_after_an_event_is_sent(api, receiver,
                                                      django_capture_on_commit_callbacks):  # fmt: skip
    endpoint_id = create(api, url=receiver.url()).json()["id"]
    assert api.get(f"{WEBHOOKS}/{endpoint_id}/deliveries").json()["results"] == []
    message = store(raw_message(), category="billing", level="P1",
                    status=MessageStatus.NEEDS_REVIEW, confidence=0.3)  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        message_triaged.send_robust(sender=Message, messages=[message])
    assert len(receiver.received) == 1

    listed = api.get(f"{WEBHOOKS}/{endpoint_id}/deliveries")
    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert body["count"] == 1 and body["next"] is None
    [delivery] = body["results"]
    stored = WebhookDelivery.objects.get()
    assert delivery["id"] == str(stored.id) and delivery["event"] == "message.triaged"
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["payload"]["data"]["message_id"] == message.id
    [attempt] = delivery["attempt_log"]
    assert attempt["outcome"] == "delivered" and attempt["address"] == "127.0.0.1"
