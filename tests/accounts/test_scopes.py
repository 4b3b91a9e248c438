"""API key scopes and expiry on real PostgreSQL: 401 for no, wrong and expired keys, 403 for a key
without the scope an action needs, the create_api_key command and the admin's add page."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from apps.accounts import authentication
from apps.accounts.models import ApiKey, hash_key
from apps.accounts.permissions import scope_for
from apps.accounts.scopes import KeyPolicyError, Scope
from apps.inbox.models import Message
from mailscore.urls import router
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:accounts_apikey_add")
CHANGELIST_URL = reverse("admin:accounts_apikey_changelist")


def client_for(name: str, **issue) -> APIClient:
    _, key = ApiKey.issue(name, **issue)
    return APIClient(HTTP_X_API_KEY=key)


def error(response) -> dict:
    """The error in an API answer: its code, message and what else it tells."""
    return response.json()["error"]


def ingest(client: APIClient, text: str = "Please refund my order."):
    return client.post("/api/v1/messages", raw_message(text), content_type="message/rfc822")


@pytest.fixture
def stored_message_id() -> int:
    response = ingest(client_for("loader"))
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_no_key_and_a_wrong_key_get_401():
    response = APIClient().get("/api/v1/messages")
    assert response.status_code == 401 and "X-API-Key" in error(response)["message"]
    assert response["WWW-Authenticate"] == "X-API-Key"
    wrong = APIClient(HTTP_X_API_KEY="msk_not-a-key").get("/api/v1/messages")
    assert wrong.status_code == 401 and "not a valid" in error(wrong)["message"]


def test_a_key_made_without_scopes_may_do_everything():
    key, _ = ApiKey.issue("x")
    assert key.scopes == ["read", "write", "verify"] and key.expires_at is None
    assert key.is_active


def test_issue_refuses_unknown_or_no_scopes():
    with pytest.raises(KeyPolicyError, match="Unknown scope 'admin'.*read, write, verify"):
        ApiKey.issue("bad", scopes=["read", "admin"])
    with pytest.raises(KeyPolicyError, match="at least one scope"):
        ApiKey.issue("none", scopes=[])
    assert not ApiKey.objects.filter(name__in=["bad", "none"]).exists()


def test_an_expired_key_gets_401_saying_when_it_expired():
    ended = timezone.now() - dt.timedelta(days=2)
    key, secret = ApiKey.issue("old-crm", expires_at=ended)
    assert key.is_expired and not key.is_active
    response = APIClient(HTTP_X_API_KEY=secret).get("/api/v1/messages")
    assert response.status_code == 401
    assert error(response)["code"] == "authentication_failed"
    detail = error(response)["message"]
    assert "expired at" in detail and ended.strftime("%Y-%m-%d %H:%M:%S UTC") in detail
    assert hash_key(secret) not in authentication._seen


def test_a_cached_key_is_refused_once_it_expires():
    expiry = timezone.now() + dt.timedelta(seconds=2)
    _, secret = ApiKey.issue("short-lived", expires_at=expiry)
    client = APIClient(HTTP_X_API_KEY=secret)
    assert client.get("/api/v1/messages").status_code == 200
    assert hash_key(secret) in authentication._seen  # trusted from the cache from now on
    time.sleep(max(0.0, (expiry - timezone.now()).total_seconds()) + 0.1)
    response = client.get("/api/v1/messages")
    assert response.status_code == 401 and "expired at" in error(response)["message"]


def test_forget_drops_a_key_from_the_cache():
    key, secret = ApiKey.issue("revoked-soon")
    client = APIClient(HTTP_X_API_KEY=secret)
    assert client.get("/api/v1/messages").status_code == 200
    ApiKey.objects.filter(id=key.id).update(revoked_at=timezone.now())
    assert client.get("/api/v1/messages").status_code == 200  # the cache still trusts it
    authentication.forget(key.key_hash)
    assert client.get("/api/v1/messages").status_code == 401


def test_a_read_key_reads_but_cannot_write(stored_message_id):
    reader = client_for("dashboard", scopes=["read"])
    assert reader.get("/api/v1/messages").status_code == 200
    assert reader.get(f"/api/v1/messages/{stored_message_id}").status_code == 200
    before = Message.objects.count()
    for response in (
        ingest(reader, "A reader may not send this."),
        reader.post(f"/api/v1/messages/{stored_message_id}/feedback", {"category": "billing"},
                    format="json"),
        reader.post(f"/api/v1/messages/{stored_message_id}/rerun"),
    ):  # fmt: skip
        assert response.status_code == 403, response.content
        refused = error(response)
        assert refused["code"] == "permission_denied"
        assert refused["required_scope"] == "write" and refused["key_scopes"] == ["read"]
        assert "'write' scope" in refused["message"]
        assert "'dashboard' has read" in refused["message"]
    assert Message.objects.count() == before


def test_a_write_key_sends_but_cannot_read(stored_message_id):
    # Scopes do not imply each other: an ingest-only integration sees nothing it did not send.
    writer = client_for("mail-gateway", scopes=["write"])
    assert ingest(writer).status_code == 202
    for url in ("/api/v1/messages", f"/api/v1/messages/{stored_message_id}"):
        response = writer.get(url)
        assert response.status_code == 403
        assert error(response)["required_scope"] == "read"
        assert error(response)["key_scopes"] == ["write"]


def test_a_verify_key_can_use_neither_messages_endpoint():
    verifier = client_for("list-cleaner", scopes=["verify"])
    assert verifier.get("/api/v1/messages").status_code == 403
    assert ingest(verifier).status_code == 403
    # Asking what an endpoint accepts needs no particular scope.
    assert verifier.options("/api/v1/messages").status_code == 200


def test_a_method_the_api_does_not_route_is_405_not_a_scope_error(stored_message_id):
    reader = client_for("reader", scopes=["read"])
    assert reader.delete(f"/api/v1/messages/{stored_message_id}").status_code == 405


class VerifyProbe(APIView):
    """Stands in for the verification endpoints: one scope for the whole view."""

    required_scope = Scope.VERIFY

    def get(self, request):
        return Response({"caller": request.user.name})


def test_a_view_may_need_one_scope_for_every_action():
    factory = APIRequestFactory()
    _, verify_key = ApiKey.issue("verifier", scopes=["verify"])
    _, read_key = ApiKey.issue("reader", scopes=["read", "write"])
    allowed = VerifyProbe.as_view()(factory.get("/probe", HTTP_X_API_KEY=verify_key))
    assert allowed.status_code == 200 and allowed.data == {"caller": "verifier"}
    refused = VerifyProbe.as_view()(factory.get("/probe", HTTP_X_API_KEY=read_key))
    assert refused.status_code == 403 and refused.data["error"]["required_scope"] == "verify"
    assert refused.data["error"]["key_scopes"] == ["read", "write"]


class Unscoped(APIView):
    def get(self, request):
        return Response({})


def test_a_view_that_names_no_scope_is_closed():
    _, key = ApiKey.issue("everything")
    response = Unscoped.as_view()(APIRequestFactory().get("/unscoped", HTTP_X_API_KEY=key))
    assert response.status_code == 403 and "names no scope" in response.data["error"]["message"]


def test_every_routed_api_action_names_its_scope():
    standard = ("list", "retrieve", "create", "update", "partial_update", "destroy")
    for _, viewset, _ in router.registry:
        actions = [name for name in standard if hasattr(viewset, name)]
        actions += [extra.__name__ for extra in viewset.get_extra_actions()]
        for action in actions:
            view = viewset()
            view.action = action
            assert scope_for(view) in Scope.values, f"{viewset.__name__}.{action} names no scope"


def test_health_schema_and_docs_need_no_key():
    anonymous = APIClient()
    for url in ("/api/v1/schema", "/api/v1/docs"):
        assert anonymous.get(url).status_code == 200, url
    # /metrics asks for its own bearer token, never an API key (tests/security/test_headers.py).
    assert anonymous.get("/metrics").status_code == 403
    assert anonymous.get("/health").status_code in (200, 503)  # its answer, never 401 or 403


# --- manage.py create_api_key -----------------------------------------------------------------


def test_create_api_key_with_scopes_and_expiry(capsys):
    call_command("create_api_key", "crm", "--scopes", "read,verify", "--expires", "90d")
    out, err = capsys.readouterr()
    key = out.strip()
    stored = ApiKey.objects.get(name="crm")
    assert stored.key_hash == hash_key(key) and stored.scopes == ["read", "verify"]
    expected = timezone.now() + dt.timedelta(days=90)
    assert abs((stored.expires_at - expected).total_seconds()) < 600
    assert "Scopes: read, verify" in err and "Expires: 20" in err and key not in err
    client = APIClient(HTTP_X_API_KEY=key)
    assert client.get("/api/v1/messages").status_code == 200
    assert ingest(client).status_code == 403


@pytest.mark.parametrize(
    "expires, expected",
    [
        ("12h", dt.timedelta(hours=12)),
        ("2w", dt.timedelta(weeks=2)),
        ("2099-06-30", dt.datetime(2099, 6, 30, tzinfo=dt.UTC)),
        ("2099-06-30T12:00:00+02:00", dt.datetime(2099, 6, 30, 10, tzinfo=dt.UTC)),
    ],
)
def test_create_api_key_expiry_forms(capsys, expires, expected):
    call_command("create_api_key", "timed", "--expires", expires)
    capsys.readouterr()
    stored = ApiKey.objects.get(name="timed")
    assert stored.scopes == ["read", "write", "verify"]
    if isinstance(expected, dt.timedelta):
        assert abs((stored.expires_at - (timezone.now() + expected)).total_seconds()) < 600
    else:
        assert stored.expires_at == expected


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--scopes", "read,admin"],
            "Unknown scope 'admin'. Scopes are read, write, verify, webhooks.",
        ),
        (["--scopes", " , "], "at least one scope: read, write, verify"),
        (["--expires", "90x"], "Cannot read '90x' as an expiry. Give a duration such as 12h"),
        (["--expires", "0d"], "already over"),
        (["--expires", "2001-01-01"], "is in the past"),
    ],
)
def test_create_api_key_says_what_is_wrong(options, message):
    with pytest.raises(CommandError) as error:
        call_command("create_api_key", "refused", *options)
    assert message in str(error.value)
    assert not ApiKey.objects.filter(name="refused").exists()


# --- the admin ---------------------------------------------------------------------------------


def test_admin_creates_a_key_with_scopes_and_expiry(admin_client):
    response = admin_client.post(
        ADD_URL, {"name": "helpdesk", "scopes": ["read", "write"], "expires": "30d", "_save": "1"}
    )
    assert response.status_code == 200
    key = response.context["key"]
    page = response.content.decode()
    assert key in page and "will not be shown again" in page and "read, write" in page
    stored = ApiKey.objects.get(name="helpdesk")
    assert stored.key_hash == hash_key(key) and stored.scopes == ["read", "write"]
    assert abs((stored.expires_at - (timezone.now() + dt.timedelta(days=30))).total_seconds()) < 600

    api = APIClient(HTTP_X_API_KEY=key)
    assert api.get("/api/v1/messages").status_code == 200
    assert ingest(api).status_code == 202

    for page in (CHANGELIST_URL, reverse("admin:accounts_apikey_change", args=[stored.pk])):
        content = admin_client.get(page).content.decode()
        assert "read, write" in content and key not in content


def test_admin_add_page_offers_every_scope_ticked(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    for scope in ("read", "write", "verify"):
        assert re.search(rf'<input type="checkbox" name="scopes" value="{scope}"[^>]*checked', page)
    assert 'name="expires"' in page


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "no-scopes"}, "This field is required."),
        ({"name": "bad-expiry", "scopes": ["read"], "expires": "soon"}, "Cannot read 'soon'"),
        ({"name": "past", "scopes": ["read"], "expires": "2020-01-01"}, "is in the past"),
    ],
)
def test_admin_says_what_is_wrong(admin_client, data, message):
    response = admin_client.post(ADD_URL, data)
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert message in " ".join(str(e) for errors in form.errors.values() for e in errors)
    assert not ApiKey.objects.filter(name=data["name"]).exists()


def test_admin_list_shows_scopes_expiry_and_expired_keys(admin_client):
    ApiKey.issue("live", scopes=["verify"], expires_at=timezone.now() + dt.timedelta(days=5))
    ApiKey.issue("ended", scopes=["read"], expires_at=timezone.now() - dt.timedelta(days=1))
    ApiKey.issue("forever")
    listing = admin_client.get(CHANGELIST_URL).content.decode()
    assert "verify" in listing and "read, write, verify" in listing
    assert "(expired)" in listing and ">expired</strong>" in listing and "never" in listing
    expired_only = admin_client.get(CHANGELIST_URL, {"status": "expired"}).content.decode()
    assert ">ended<" in expired_only and ">forever<" not in expired_only
    active_only = admin_client.get(CHANGELIST_URL, {"status": "active"}).content.decode()
    assert ">live<" in active_only and ">forever<" in active_only
    assert ">ended<" not in active_only


def test_admin_revoke_stops_the_key_in_this_process_at_once(admin_client):
    key, secret = ApiKey.issue("to-revoke")
    api = APIClient(HTTP_X_API_KEY=secret)
    assert api.get("/api/v1/messages").status_code == 200  # now cached
    response = admin_client.post(CHANGELIST_URL, {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    assert api.get("/api/v1/messages").status_code == 401


# --- keys made before scopes existed -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_keys_made_before_scopes_existed_get_every_scope():
    before, after = [("accounts", "0001_initial")], [("accounts", "0002_apikey_scopes_expiry")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apikey = executor.loader.project_state(before).apps.get_model("accounts", "ApiKey")
        old_apikey.objects.create(name="legacy", key_hash="0" * 64, key_start="msk_legacy")
        MigrationExecutor(connection).migrate(after)
    finally:
        # Whatever happened, leave the reused test database fully migrated.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    legacy = ApiKey.objects.get(name="legacy")
    assert legacy.scopes == ["read", "write", "verify"] and legacy.expires_at is None
