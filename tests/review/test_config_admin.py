"""The configuration admin on real PostgreSQL, as a superuser: every page loads, input is
validated, an API key is shown once, and each change reaches the running triager and retention
without a restart."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey, hash_key
from apps.core import retention
from apps.core.models import RetentionPolicy
from apps.inbox.engine import parse_message
from apps.review.models import Feedback, FeedbackSource, ReplyExample, SavedView
from apps.triage.models import (
    CategoryConfig,
    ConfigRevision,
    ModelVersion,
    ReplyTemplate,
    SenderRule,
)
from apps.triage.services import get_triager

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("team_configuration")]

CATEGORY_FIELDS = ["name", "description", "examples", "expects_reply", "priority_base",
                   "reply_template", "position"]  # fmt: skip
TEMPLATE_FIELDS = ["name", "opening", "body", "closing", "signature"]


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def form_data(instance, fields: list[str], **changes) -> dict:
    """What the change form posts for instance, with changes: a checkbox left unticked is
    absent, an empty choice is ''."""
    data = {**model_to_dict(instance, fields=fields), **changes}
    posted = {}
    for name, value in data.items():
        if value is False:
            continue
        posted[name] = "on" if value is True else "" if value is None else value
    return posted


def form_errors(response) -> str:
    assert response.status_code == 200, "the form was expected back with its errors"
    form = response.context["adminform"].form
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def make_message(body: str, subject: str, sender: str):
    raw = (
        f"From: {sender}\nTo: support@example.com\nSubject: {subject}\n"
        f"Date: Wed, 04 Mar 2026 10:00:00 +0000\nMessage-ID: <{subject.replace(' ', '-')}@t>\n"
        f"\n{body}\n"
    )
    return parse_message(raw.encode())


@pytest.fixture
def config_rows(admin_user):
    """One row of each configured model that has none after migrating."""
    api_key, _ = ApiKey.issue("helpdesk")
    rows = {
        SenderRule: SenderRule.objects.create(kind="vip", value="ceo@example.com"),
        RetentionPolicy: RetentionPolicy.objects.create(days=120),
        ApiKey: api_key,
        ModelVersion: ModelVersion.objects.create(
            name="m-1",
            created_by="admin",
            feedback_count=12,
            evaluation={
                "before": {"category_accuracy": 0.8, "priority_exact": 0.7},
                "after": {"category_accuracy": 0.85, "priority_exact": 0.72},
            },
        ),
        Feedback: Feedback.objects.create(
            message_id=4242,
            source=FeedbackSource.ADMIN,
            user=admin_user,
            action="category sales -> support",
            model_category="sales",
            model_confidence=0.61,
            model_priority="P2",
            category="support",
        ),
        ReplyExample: ReplyExample.objects.create(
            category="support",
            message_text="How do I export?",
            reply="Use Reports > Export.",
            message_id=4242,
            created_by=admin_user,
        ),
        SavedView: SavedView.objects.create(name="Urgent", query="priority__exact=P0"),
        CategoryConfig: CategoryConfig.objects.get(name="billing"),
        ReplyTemplate: ReplyTemplate.objects.get(name="billing"),
    }
    yield rows
    retention.forget()


def revision_number() -> int:
    """How many times the triage configuration changed (the token workers compare moves with it)."""
    return ConfigRevision.objects.filter(pk=1).values_list("revision", flat=True).first() or 0


def test_review_records_use_the_configuration_admin():
    for model in (Feedback, ReplyExample, SavedView):
        registered = type(admin.site._registry[model])
        assert registered.__module__ == "apps.review.admin_config", (
            f"{model.__name__} is served by {registered.__module__}.{registered.__name__}; "
            "apps/review/admin.py should import apps.review.admin_config, which registers it."
        )


# Models whose rows are made elsewhere (retraining, reviewers, the single retention row once it
# exists) have no add page.
ADDABLE = {CategoryConfig, ReplyTemplate, SenderRule, ApiKey, SavedView}


def test_every_page_loads(admin_client, config_rows):
    for model, row in config_rows.items():
        name = model.__name__
        assert admin_client.get(admin_url(model, "changelist")).status_code == 200, name
        assert admin_client.get(admin_url(model, "change", row.pk)).status_code == 200, name
        expected = 200 if model in ADDABLE else 403
        assert admin_client.get(admin_url(model, "add")).status_code == expected, name
    RetentionPolicy.objects.all().delete()
    assert admin_client.get(admin_url(RetentionPolicy, "add")).status_code == 200


def test_category_list_and_validation(admin_client):
    listing = admin_client.get(admin_url(CategoryConfig, "changelist")).content.decode()
    assert "55 (P1)" in listing  # incident's default priority, with its level
    billing = CategoryConfig.objects.get(name="billing")
    url = admin_url(CategoryConfig, "change", billing.pk)

    errors = form_errors(admin_client.post(url, form_data(billing, CATEGORY_FIELDS,
                                                          name="Billing team")))  # fmt: skip
    assert "slug" in errors and "lower-case letters" in errors
    errors = form_errors(admin_client.post(url, form_data(billing, CATEGORY_FIELDS,
                                                          examples="\n  \n")))  # fmt: skip
    assert "at least one example" in errors

    examples = "  Where is my invoice?\n\n\nPlease refund me.  \n"
    response = admin_client.post(url, form_data(billing, CATEGORY_FIELDS, examples=examples))
    assert response.status_code == 302
    billing.refresh_from_db()
    assert billing.examples == "Where is my invoice?\nPlease refund me."

    for required in ("spam", "other"):
        category = CategoryConfig.objects.get(name=required)
        errors = form_errors(admin_client.post(
            admin_url(CategoryConfig, "change", category.pk),
            form_data(category, CATEGORY_FIELDS, name=f"{required}2")))  # fmt: skip
        assert f"The '{required}' category cannot be renamed" in errors
        assert "triage engine needs it" in errors
    assert CategoryConfig.objects.filter(name__in=["spam", "other"]).count() == 2


def test_spam_and_other_cannot_be_deleted(admin_client):
    spam = CategoryConfig.objects.get(name="spam")
    response = admin_client.get(admin_url(CategoryConfig, "delete", spam.pk), follow=True)
    assert any("cannot be deleted" in m for m in shown_messages(response))
    change_page = admin_client.get(admin_url(CategoryConfig, "change", spam.pk)).content.decode()
    assert admin_url(CategoryConfig, "delete", spam.pk) not in change_page

    feedback = CategoryConfig.objects.get(name="feedback")
    other = CategoryConfig.objects.get(name="other")
    response = admin_client.post(
        admin_url(CategoryConfig, "changelist"),
        {"action": "delete_selected", "_selected_action": [feedback.pk, other.pk], "post": "yes"},
        follow=True,
    )
    assert any("'other' category cannot be deleted" in m for m in shown_messages(response))
    assert CategoryConfig.objects.filter(pk__in=[feedback.pk, other.pk]).count() == 2

    admin_client.post(
        admin_url(CategoryConfig, "changelist"),
        {"action": "delete_selected", "_selected_action": [feedback.pk], "post": "yes"},
    )
    assert not CategoryConfig.objects.filter(pk=feedback.pk).exists()


def test_template_list_shows_the_categories_using_it(admin_client):
    support = ReplyTemplate.objects.get(name="support")
    CategoryConfig.objects.filter(name="sales").update(reply_template=support)
    listing = admin_client.get(admin_url(ReplyTemplate, "changelist")).content.decode()
    assert "sales, support" in listing


def test_sender_rules_are_validated_and_stored_lower_case(admin_client):
    url = admin_url(SenderRule, "add")
    for value in ("not an address", "jane@", "localhost", "@example.com"):
        errors = form_errors(admin_client.post(url, {"kind": "deny", "value": value}))
        assert "neither an address (jane@example.com) nor a domain (example.com)" in errors

    assert (
        admin_client.post(url, {"kind": "deny", "value": " Jane@Example.COM "}).status_code == 302
    )
    assert (
        admin_client.post(url, {"kind": "vip", "value": "Partner.Example.org"}).status_code == 302
    )
    assert set(SenderRule.objects.values_list("kind", "value")) == {
        ("deny", "jane@example.com"), ("vip", "partner.example.org"),
    }  # fmt: skip

    errors = form_errors(admin_client.post(url, {"kind": "deny", "value": "JANE@example.com"}))
    assert "already exists" in errors
    errors = form_errors(admin_client.post(url, {"kind": "allow", "value": "jane@example.com"}))
    assert "cannot be both allowed and denied" in errors

    listing = admin_client.get(admin_url(SenderRule, "changelist") + "?kind__exact=vip")
    assert "partner.example.org" in listing.content.decode()
    assert "jane@example.com" not in listing.content.decode()


def test_retention_change_is_seen_at_once(admin_client, settings):
    settings.MAILSCORE_RETENTION_DAYS = 90
    retention.forget()
    try:
        assert retention.retention_days() == 90  # and now kept in the process for a while
        listing = admin_client.get(admin_url(RetentionPolicy, "changelist"))
        assert any("90 days (MAILSCORE_RETENTION_DAYS" in m for m in shown_messages(listing))

        errors = form_errors(admin_client.post(admin_url(RetentionPolicy, "add"), {"days": 20}))
        assert "31" in errors
        response = admin_client.post(admin_url(RetentionPolicy, "add"), {"days": 120})
        assert response.status_code == 302
        assert retention.retention_days() == 120
        assert admin_client.get(admin_url(RetentionPolicy, "add")).status_code == 403

        response = admin_client.post(admin_url(RetentionPolicy, "change", 1), {"days": 45})
        assert response.status_code == 302
        assert retention.retention_days() == 45
        page = admin_client.get(admin_url(RetentionPolicy, "change", 1)).content.decode()
        assert "45 days (set here)" in page
    finally:
        retention.forget()


def test_api_key_is_shown_once_and_works_at_once(admin_client):
    response = admin_client.post(
        admin_url(ApiKey, "add"),
        {"name": "crm", "scopes": ["read", "write", "verify"], "_save": "Save"},
    )
    assert response.status_code == 200
    key = response.context["key"]
    assert key.startswith("msk_") and key in response.content.decode()
    assert "will not be shown again" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    stored = ApiKey.objects.get(name="crm")
    assert stored.key_hash == hash_key(key) and stored.key_start == key[:12]

    api = APIClient(HTTP_X_API_KEY=key)
    assert api.get("/api/v1/messages").status_code == 200

    for page in (admin_url(ApiKey, "changelist"), admin_url(ApiKey, "change", stored.pk)):
        content = admin_client.get(page).content.decode()
        assert stored.key_start in content and key not in content

    errors = form_errors(admin_client.post(admin_url(ApiKey, "add"), {"name": "crm"}))
    assert "already exists" in errors

    response = admin_client.post(
        admin_url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [stored.pk]}
    )
    assert response.status_code == 302
    assert api.get("/api/v1/messages").status_code == 401


def test_model_versions(admin_client):
    refused = ModelVersion.objects.create(
        name="m-2", evaluation={"before": {"category_accuracy": 0.8}, "after": {}, "refused": True}
    )
    good = ModelVersion.objects.create(
        name="m-3", created_by="admin", feedback_count=40,
        evaluation={"before": {"category_accuracy": 0.8, "priority_exact": 0.7},
                    "after": {"category_accuracy": 0.86, "priority_exact": 0.75}},
    )  # fmt: skip
    ModelVersion.objects.create(name="m-old", evaluation={"after": "not a dict"})
    changelist = admin_url(ModelVersion, "changelist")
    listing = admin_client.get(changelist).content.decode()
    assert "0.80 → 0.86" in listing and "0.70 → 0.75" in listing and "0.80 → ?" in listing

    detail = admin_client.get(admin_url(ModelVersion, "change", good.pk)).content.decode()
    assert "0.80 → 0.86" in detail and 'name="name"' not in detail  # shown, not editable

    response = admin_client.post(
        changelist, {"action": "activate_version", "_selected_action": [good.pk, refused.pk]},
        follow=True,
    )  # fmt: skip
    assert any("exactly one" in m for m in shown_messages(response))
    assert not ModelVersion.objects.filter(active=True).exists()

    revision = revision_number()
    admin_client.post(changelist, {"action": "activate_version", "_selected_action": [good.pk]})
    assert list(ModelVersion.objects.filter(active=True).values_list("name", flat=True)) == ["m-3"]
    assert revision_number() > revision

    response = admin_client.post(
        changelist, {"action": "activate_version", "_selected_action": [refused.pk]}, follow=True
    )
    assert any("scored worse" in m for m in shown_messages(response))
    assert list(ModelVersion.objects.filter(active=True).values_list("name", flat=True)) == ["m-2"]

    revision = revision_number()
    admin_client.post(changelist, {"action": "use_no_model", "_selected_action": [good.pk]})
    assert not ModelVersion.objects.filter(active=True).exists()
    assert revision_number() > revision


def test_review_records(admin_client, admin_user):
    key = ApiKey.issue("crm")[0]
    Feedback.objects.create(
        message_id=777, source=FeedbackSource.API, api_key=key, action="priority P2 -> P0",
        model_category="incident", model_confidence=0.9, model_priority="P2", priority="P0",
    )  # fmt: skip
    listing = admin_client.get(admin_url(Feedback, "changelist")).content.decode()
    assert 'href="/admin/inbox/message/777/change/"' in listing
    assert (
        "API key crm" in listing and "incident (0.90), P2" in listing and "incident, P0" in listing
    )

    example = ReplyExample.objects.create(category="support", message_text="Export?",
                                          reply="Use Reports.", message_id=777)  # fmt: skip
    response = admin_client.post(admin_url(ReplyExample, "change", example.pk),
                                 {"reply": "Open Reports, then Export."})  # fmt: skip
    assert response.status_code == 302
    example.refresh_from_db()
    assert example.reply == "Open Reports, then Export." and example.category == "support"

    response = admin_client.post(admin_url(SavedView, "add"), {
        "name": "Open P0", "query": "http://x/admin/inbox/message/?priority__exact=P0&status=open",
    })  # fmt: skip
    assert response.status_code == 302
    view = SavedView.objects.get(name="Open P0")
    assert view.query == "priority__exact=P0&status=open" and view.created_by == admin_user
    listing = admin_client.get(admin_url(SavedView, "changelist")).content.decode()
    assert 'href="/admin/inbox/message/?priority__exact=P0&amp;status=open"' in listing
    errors = form_errors(
        admin_client.post(admin_url(SavedView, "add"), {"name": "x", "query": "?"})
    )
    assert "query string" in errors


@pytest.fixture(scope="module")
def running_triager(django_db_blocker):
    """The process's triager, as a worker holds it: loaded once (the encoder takes a while)."""
    with django_db_blocker.unblock():
        return get_triager()


def test_admin_changes_reach_the_running_triager(admin_client, running_triager):
    garden = make_message(
        "Hi,\n\nThe tomato seedlings in the greenhouse are wilting and the orchids need "
        "repotting. Could someone water the basil on the windowsill?\n\nThanks,\nRuth",
        "Greenhouse plants", "Ruth Miller <ruth@gardening.test>",
    )  # fmt: skip
    export = make_message(
        "Hello,\n\nHow do I export my monthly reports to CSV? I cannot find the option in the "
        "dashboard.\n\nThanks,\nCarol",
        "Exporting reports", "Carol King <carol@bigcustomer.test>",
    )  # fmt: skip
    lottery = make_message(
        "CONGRATULATIONS!!! You have WON $1,000,000 in our international lottery. Claim your "
        "FREE prize now, click here and send your bank details. Cheap meds, 100% guaranteed!!!",
        "You are a WINNER - claim your prize", "Lucky Draw <promo@deals.test>",
    )  # fmt: skip
    settings_question = make_message(
        "Hi,\n\nCould you tell me how to reset the notification settings for my team?\n\nBob",
        "Notification settings", "Bob Stone <bob@partner.test>",
    )  # fmt: skip
    messages = [garden, export, lottery, settings_question]
    before = get_triager().triage(messages)
    assert before[0].category.label != "facilities"
    assert before[1].category.label == "support" and before[1].priority.level == "P2"
    assert before[2].category.label == "spam"
    assert before[3].category.label != "spam"
    new_body = "Our product specialists will send you a step-by-step guide within one day."
    assert new_body not in before[1].draft.text

    def changed(response) -> None:
        assert response.status_code == 302, form_errors(response)

    revision = revision_number()
    facilities = CategoryConfig(
        name="facilities", description="The office itself: plants, the garden, the kitchen, desks.",
        examples="The seedlings in the greenhouse need watering.\n"
        "Could someone repot the orchids and water the basil?\n"
        "The tomato plants on the windowsill are wilting.\n"
        "The coffee machine on the third floor is leaking again.",
        expects_reply=False, priority_base=10, position=99,
    )  # fmt: skip
    changed(admin_client.post(admin_url(CategoryConfig, "add"),
                              form_data(facilities, CATEGORY_FIELDS)))  # fmt: skip
    support = ReplyTemplate.objects.get(name="support")
    changed(admin_client.post(admin_url(ReplyTemplate, "change", support.pk),
                              form_data(support, TEMPLATE_FIELDS, body=new_body)))  # fmt: skip
    for kind, value in (("deny", "Partner.test"), ("allow", "promo@deals.test"),
                        ("vip", "carol@bigcustomer.test")):  # fmt: skip
        changed(admin_client.post(admin_url(SenderRule, "add"), {"kind": kind, "value": value}))
    # Each save moved the revision: five changes, five bumps.
    assert revision_number() == revision + 5

    after = get_triager().triage(messages)
    assert after[0].category.label == "facilities", after[0].category.to_dict()
    assert new_body in after[1].draft.text
    assert after[1].priority.score == before[1].priority.score + 20
    assert after[1].priority.level == "P1"
    assert any("important sender" in r for r in after[1].priority.reasons)
    assert after[2].category.label != "spam" and "allow list" in after[2].category.decided_by
    assert after[3].category.label == "spam"
    assert after[3].category.decided_by == "deny list: partner.test"
