"""The reviewer's workbench through the Django test client, on real PostgreSQL: the queue, its
filters and actions, and the message page with its actions."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from apps.inbox.models import ImapMailbox, Message, MessageStatus
from apps.review.models import Feedback, ReplyExample, SavedView
from apps.verification.engine.result import Reason
from tests.review.conftest import deliverability, demo_labels, demo_mail, raw_message, store

pytestmark = pytest.mark.django_db

QUEUE = reverse("admin:inbox_message_changelist")
SAVE_VIEW = reverse("admin:inbox_message_save_view")


def page(message: Message) -> str:
    return reverse("admin:inbox_message_change", args=[message.id])


def listed(response) -> list[int]:
    assert response.status_code == 200, response.status_code
    return [m.id for m in response.context["cl"].result_list]


def shown(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def text_of(response) -> str:
    """The page as a reader sees its text: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- The queue ------------------------------------------------------------------------------


def test_queue_shows_open_work_needs_review_first_then_level_then_oldest(reviewer_client):
    hours = lambda h: raw_message(age=timedelta(hours=h))  # noqa: E731
    triaged_p0_new = store(hours(1), level="P0")
    triaged_p0_old = store(hours(30), level="P0")
    triaged_p3 = store(hours(50), level="P3")
    triaged_no_level = store(hours(60), level="")
    review_p2 = store(hours(2), level="P2", status=MessageStatus.NEEDS_REVIEW, confidence=0.3)
    review_p1 = store(hours(3), level="P1", status=MessageStatus.NEEDS_REVIEW, confidence=0.3)
    # A reviewer's level counts, not the model's.
    raised = store(hours(5), level="P3", reviewed_priority="P0")
    done = store(hours(4), level="P0", status=MessageStatus.DONE)
    failed = store(hours(4), level="P0", status=MessageStatus.FAILED)
    queued = store(hours(4), level="", status=MessageStatus.QUEUED)

    ids = listed(reviewer_client.get(QUEUE))

    assert ids == [review_p1.id, review_p2.id, triaged_p0_old.id, raised.id, triaged_p0_new.id,
                   triaged_p3.id, triaged_no_level.id]  # fmt: skip
    assert not {done.id, failed.id, queued.id} & set(ids)


def test_queue_columns_say_who_what_and_why(reviewer_client):
    suspicious = store(
        raw_message(sender="PayPal Service <service@paypa1.com>", subject="Verify your account"),
        category="security", level="P1",
    )  # fmt: skip
    reviewed = store(raw_message(subject="Invoice question"), category="sales",
                     reviewed_category="billing", level="P2")  # fmt: skip

    response = reviewer_client.get(QUEUE)
    content = response.content.decode()

    badge = re.search(r'<span class="trust-badge trust-suspicious" title="([^"]*)">suspicious<',
                      content)  # fmt: skip
    assert badge and "imitates paypal.com" in html.unescape(badge.group(1))
    assert "service@paypa1.com" in content
    assert f'href="{page(suspicious)}' in content and "Verify your account" in content
    assert "category security (+55)" in content  # the level's top reason
    assert "billing ✓" in content and "the model said sales" in content
    assert re.search(r">\d+ (min|h)<", content)  # age in words
    assert reviewed.id in listed(response)


def test_level_counts_count_open_mail_by_level_and_link_to_it(reviewer_client):
    p0 = [store(raw_message(), level="P0") for _ in range(2)]
    store(raw_message(), level="P1", status=MessageStatus.NEEDS_REVIEW, confidence=0.2)
    store(raw_message(), level="P3", reviewed_priority="P1")
    store(raw_message(), level="P0", status=MessageStatus.DONE)  # not waiting

    response = reviewer_client.get(QUEUE)
    counts = re.search(r'<ul id="level-counts".*?</ul>', response.content.decode(), re.S).group(0)
    found = dict(re.findall(r'data-level="(P\d)">.*?<span class="count">(\d+)</span>', counts))
    assert found == {"P0": "2", "P1": "2", "P2": "0", "P3": "0"}
    assert f'href="{QUEUE}?priority=P0"' in counts

    assert sorted(listed(reviewer_client.get(f"{QUEUE}?priority=P0"))) == sorted(m.id for m in p0)


@pytest.fixture
def varied(colleague, reviewer):
    """A spread of messages, one for each thing the queue filters on."""
    ImapMailbox.objects.create(name="support-box", host="imap.mailscore.test", username="support",
                               password_env="MAILSCORE_IMAP_PASSWORD_SUPPORT")  # fmt: skip
    mail = {
        "billing": store(raw_message(subject="Invoice 2023 is wrong", age=timedelta(days=3)),
                         category="billing", level="P1"),
        "reviewed_billing": store(raw_message(), category="sales", reviewed_category="billing"),
        "needs_review": store(raw_message(), status=MessageStatus.NEEDS_REVIEW, confidence=0.3,
                              level="P3"),
        "no_level": store(raw_message(), level=""),
        "done": store(raw_message(), status=MessageStatus.DONE),
        "failed": store(raw_message(), status=MessageStatus.FAILED),
        "queued": store(raw_message(), status=MessageStatus.QUEUED, level=""),
        "risky": store(raw_message(), sender_verdict="risky",
                       sender_result={"trust": {}, "deliverability": deliverability(
                           "alice@customer.test", Reason.CATCH_ALL)}),
        "suspicious": store(raw_message(sender="PayPal <service@paypa1.com>")),
        "imap": store(raw_message(subject="From the support box"), source="imap",
                      source_detail="support-box/INBOX uid 7"),
        "mine": store(raw_message(), assignee=reviewer),
        "sams": store(raw_message(), assignee=colleague),
        "named": store(raw_message(subject="Strange request", sender="Zed Quux <zed@quux.test>",
                                   message_id="<unique-4711@quux.test>")),
        "old": store(raw_message(age=timedelta(days=20))),
    }  # fmt: skip
    return mail


def open_ids(mail: dict, *names: str) -> set[int]:
    return {mail[name].id for name in names}


OPEN_NAMES = ("billing", "reviewed_billing", "needs_review", "no_level", "risky", "suspicious",
              "imap", "mine", "sams", "named", "old")  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected", "link"),
    [
        ("status=done", ("done",), "?status=done"),
        ("status=failed", ("failed",), "?status=failed"),
        ("status=pipeline", ("queued",), "?status=pipeline"),
        ("status=all", (*OPEN_NAMES, "done", "failed", "queued"), "?status=all"),
        ("status=open", OPEN_NAMES, "?status=open"),
        ("priority=P1", ("billing",), "?priority=P1"),
        ("priority=none", ("no_level",), "?priority=none"),
        ("category=billing", ("billing", "reviewed_billing"), "?category=billing"),
        ("needs_review=yes", ("needs_review",), "?needs_review=yes"),
        ("needs_review=no", tuple(n for n in OPEN_NAMES if n != "needs_review"),
         "?needs_review=no"),
        ("verdict=risky", ("risky",), "?verdict=risky"),
        ("trust=suspicious", ("suspicious",), "?trust=suspicious"),
        ("mailbox=support-box", ("imap",), "?mailbox=support-box"),
        ("assignee=me", ("mine",), "?assignee=me"),
        ("assignee=sam", ("sams",), "?assignee=sam"),
        ("assignee=unassigned", tuple(n for n in OPEN_NAMES if n not in ("mine", "sams")),
         "?assignee=unassigned"),
        ("q=invoice+2023", ("billing",), None),
        ("q=zed%40quux.test", ("named",), None),
        ("q=Zed+Quux", ("named",), None),
        ("q=unique-4711", ("named",), None),
        ("status=all&priority=P1&category=billing", ("billing",), None),
    ],
)  # fmt: skip
def test_every_filter_is_a_get_parameter_and_a_link(reviewer_client, varied, query, expected, link):
    response = reviewer_client.get(f"{QUEUE}?{query}")

    assert set(listed(response)) == open_ids(varied, *expected)
    if link:
        unfiltered = reviewer_client.get(QUEUE).content.decode()
        assert f'href="{link}"' in unfiltered


def test_received_date_range_filters_and_keeps_the_other_filters(reviewer_client, varied):
    today = timezone.localdate()
    week_ago = today - timedelta(days=7)
    recent = reviewer_client.get(f"{QUEUE}?received_at__gte={week_ago}")
    assert varied["old"].id not in listed(recent) and varied["billing"].id in listed(recent)
    older = reviewer_client.get(f"{QUEUE}?received_at__lt={week_ago}&category=support")
    assert listed(older) == [varied["old"].id]

    # The form sets both dates and carries the other filters along.
    form = re.search(r'<form id="received-range".*?</form>', older.content.decode(), re.S).group(0)
    assert 'type="date" name="received_at__gte"' in form
    assert f'type="date" name="received_at__lt" value="{week_ago}"' in form
    assert '<input type="hidden" name="category" value="support">' in form

    assert reviewer_client.get(f"{QUEUE}?received_at__gte=yesterday").status_code == 302  # ?e=1


def test_one_row_per_thread_shows_each_threads_newest_open_message(reviewer_client):
    first = store(raw_message(age=timedelta(hours=9)), thread_key="order-17")
    second = store(raw_message(age=timedelta(hours=5)), thread_key="order-17")
    store(raw_message(age=timedelta(hours=1)), thread_key="order-17", status=MessageStatus.DONE)
    other_old = store(raw_message(age=timedelta(hours=8)), thread_key="refund-3")
    other_new = store(raw_message(age=timedelta(hours=2)), thread_key="refund-3")
    alone = store(raw_message(age=timedelta(hours=4)))
    alone_too = store(raw_message(age=timedelta(hours=3)))

    every = reviewer_client.get(QUEUE)
    assert len(listed(every)) == 6
    toggle = re.search(r'<a id="thread-toggle"[^>]*href="([^"]+)"', every.content.decode())
    assert toggle and "threads=1" in toggle.group(1)

    threads = reviewer_client.get(f"{QUEUE}?threads=1")
    assert set(listed(threads)) == {second.id, other_new.id, alone.id, alone_too.id}
    assert first.id not in listed(threads) and other_old.id not in listed(threads)
    assert "Show every message" in threads.content.decode()
    # The newest among what the filters select: the done message is not in the open queue.
    assert set(listed(reviewer_client.get(f"{QUEUE}?threads=1&status=all"))) >= {alone.id}
    assert second.id not in listed(reviewer_client.get(f"{QUEUE}?threads=1&status=all"))


def test_saved_views_keep_a_filtered_queue_under_a_name(reviewer_client, varied):
    response = reviewer_client.post(
        SAVE_VIEW, {"name": "Billing P1", "query": "?priority=P1&category=billing&p=2"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{QUEUE}?priority=P1&category=billing"
    view = SavedView.objects.get(name="Billing P1")
    assert view.query == "priority=P1&category=billing" and view.created_by.username == "ruth"

    queue = reviewer_client.get(QUEUE).content.decode()
    assert f'href="{QUEUE}?priority=P1&amp;category=billing"' in queue
    assert 'id="save-view-form"' in queue
    assert listed(reviewer_client.get(f"{QUEUE}?{view.query}")) == [varied["billing"].id]

    again = reviewer_client.post(SAVE_VIEW, {"name": "Billing P1", "query": "status=done"},
                              follow=True)  # fmt: skip
    assert any("exists already" in m for m in shown(again))
    assert SavedView.objects.count() == 1
    unnamed = reviewer_client.post(SAVE_VIEW, {"name": " ", "query": ""}, follow=True)
    assert any("Give the view a name" in m for m in shown(unnamed))
    assert reviewer_client.get(SAVE_VIEW).status_code == 405


# --- The message page -----------------------------------------------------------------------


def hostile_message() -> bytes:
    """A reply with quoted history, a signature, an attachment, and an HTML alternative that
    tries to run a script and load a tracking pixel."""
    message = EmailMessage()
    message["From"] = "Bob Builder <bob@builder.test>"
    message["To"] = "support@mailscore.test"
    message["Cc"] = "wendy@builder.test"
    message["Reply-To"] = "bob.replies@builder.test"
    message["Subject"] = "Re: Crane rental contract"
    message["Message-ID"] = "<crane-42@builder.test>"
    message["Date"] = format_datetime(timezone.now() - timedelta(hours=2))
    message["Authentication-Results"] = "mx.mailscore.test; spf=pass smtp.mailfrom=builder.test; " \
        "dkim=pass header.d=builder.test; dmarc=pass header.from=builder.test"  # fmt: skip
    message.set_content(
        "Hi,\n\nThe crane arrives on Monday, please confirm the contract <b>today</b>.\n\n"
        "-- \nBob Builder\nBuilder & Sons\n\n"
        "On Fri, 3 Apr 2026, Support wrote:\n> When does the crane arrive?\n> Regards\n"
    )
    message.add_alternative(
        '<html><body><p>The crane arrives on Monday.</p><script>alert("owned")</script>'
        '<img src="http://tracker.example/pixel.gif?u=1"></body></html>',
        subtype="html",
    )
    message.add_attachment(b"%PDF-1.4 contract", maintype="application", subtype="pdf",
                           filename="contract.pdf")  # fmt: skip
    return message.as_bytes()


CSP_PARTS = ("default-src 'self'", "img-src 'self' data:", "script-src 'self'",
             "object-src 'none'", "frame-ancestors 'none'")  # fmt: skip


def test_message_page_shows_the_message_as_text_and_never_its_html(reviewer_client):
    message = store(hostile_message(), category="support")

    response = reviewer_client.get(page(message))
    assert response.status_code == 200
    content = response.content.decode()
    for part in CSP_PARTS:
        assert part in response["Content-Security-Policy"]

    headers = re.search(r'<table id="message-headers".*?</table>', content, re.S).group(0)
    for expected in ("Bob Builder &lt;bob@builder.test&gt;", "support@mailscore.test",
                     "wendy@builder.test", "bob.replies@builder.test", "Re: Crane rental contract",
                     "&lt;crane-42@builder.test&gt;", "spf=pass dkim=pass dmarc=pass"):  # fmt: skip
        assert expected in headers
    assert "The crane arrives on Monday, please confirm the contract &lt;b&gt;today&lt;/b&gt;" in (
        content
    )
    quoted = re.search(r'<details id="quoted-text".*?</details>', content, re.S).group(0)
    assert "&gt; When does the crane arrive?" in quoted
    assert "Builder &amp; Sons" in re.search(r'<div id="signature".*?</div>', content, re.S).group(
        0
    )
    attachments = re.search(r'<table id="attachments".*?</table>', content, re.S).group(0)
    assert "contract.pdf" in attachments and "application/pdf" in attachments
    assert "17 bytes" in attachments

    assert "<script>alert" not in content and "tracker.example" not in content
    assert "<b>today</b>" not in content


def test_an_html_only_message_is_shown_as_escaped_text(reviewer_client):
    raw = raw_message(
        '<html><body><p>Click <a href="http://phish.example/login">here</a> &lt;script&gt;</p>'
        '<script>document.location="http://phish.example"</script>'
        '<img src="http://tracker.example/p.gif"></body></html>',
        headers="MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n",
    )
    # Stored before the parsed form was kept: the page parses the raw bytes again.
    message = store(raw, keep_parsed=False)

    response = reviewer_client.get(page(message))
    content = response.content.decode()
    assert "only an HTML part" in content and "Click" in content
    assert "&lt;script&gt;" in content
    assert "<script>document" not in content and '<img src="http' not in content
    assert '<a href="http://phish' not in content
    assert "Content-Security-Policy" in response.headers


def test_step_results_are_put_in_words(reviewer_client):
    deadline_due = (timezone.now() + timedelta(days=1)).replace(hour=17, minute=0, microsecond=0)
    message = store(
        hostile_message(),
        category="support",
        level="P1",
        priority_score=60,
        priority_result={
            "score": 60, "level": "P1",
            "reasons": ["category support (+25)", "urgency language: today (+15)",
                        "deadline 'Monday' (+20)"],
            "deadlines": [{"text": "Monday", "due": deadline_due.isoformat()}],
        },
        summary="The crane arrives on Monday; Bob wants the contract confirmed today.",
    )  # fmt: skip
    message.sender_result["deliverability"] = deliverability("bob.replies@builder.test")
    Message.objects.filter(id=message.id).update(sender_result=message.sender_result)

    text = " ".join(text_of(reviewer_client.get(page(message))).split())

    assert "The model says support (90% sure), decided by category_head." in text
    assert "Runner-up: billing (7%)." in text
    assert "The model says P1 (score 60), because:" in text
    assert "urgency language: today (+15)" in text and "deadline 'Monday' (+20)" in text
    assert f"“Monday”, due {deadline_due:%a %d %b %Y} 17:00" in text
    assert "Bob wants the contract confirmed today." in text
    assert "Trust: verified the receiving server authenticated the sender's domain" in text
    assert "SPF pass , DKIM pass , DMARC pass" in text.replace(",", " ,").replace("  ", " ")
    assert "Reply address bob.replies@builder.test is deliverable." in text
    assert "Replies go to bob.replies@builder.test" in text  # a trust signal, in words
    assert "category-head 3 / all-MiniLM-L6-v2" in text and "13 ms" in text
    assert "1.8 s" in text  # verify_sender's duration
    assert 'id="raw-json"' in reviewer_client.get(page(message)).content.decode()


def test_lookalike_sender_warning_on_the_page(reviewer_client):
    message = store(raw_message(sender="PayPal Service <service@paypa1.com>"), category="security")
    text = text_of(reviewer_client.get(page(message)))
    assert "suspicious" in text and "The From domain paypa1.com imitates paypal.com" in text
    assert "Sent to review" not in text  # triaged before review went by the sender too


def test_mail_sent_to_review_for_its_sender_says_so(reviewer_client):
    message = store(raw_message("Your invoice is attached.", sender="PayPal <service@paypa1.com>"),
                    category="billing", status=MessageStatus.NEEDS_REVIEW)  # fmt: skip
    text = text_of(reviewer_client.get(page(message)))
    assert "Sent to review: the sender's identity failed its checks (see the sender)" in text


def test_no_draft_for_mailing_list_mail_and_why(reviewer_client):
    labels = demo_labels()
    newsletter_id = "<nws-005@demo.mailscore>"
    category, level = labels[newsletter_id]
    # Even where a team would answer the category, a list's mail gets no reply.
    message = store(demo_mail()[newsletter_id], category="support", level=level)

    content = reviewer_client.get(page(message)).content.decode()
    assert 'name="draft"' not in content and 'value="approve_draft"' not in content
    assert "sent to a mailing list (List-Id header)" in content

    spam = store(demo_mail()["<spm-002@demo.mailscore>"], category="spam", level="P3")
    assert "the message is spam" in reviewer_client.get(page(spam)).content.decode()
    notification = store(raw_message(subject="Build passed"), category="notification")
    assert (
        "notification mail expects no reply"
        in reviewer_client.get(page(notification)).content.decode()
    )


def test_a_draft_is_offered_with_where_it_came_from(reviewer_client):
    message = store(demo_mail()["<sup-001@demo.mailscore>"], category="support")
    content = reviewer_client.get(page(message)).content.decode()
    textarea = re.search(r'<textarea name="draft"[^>]*>(.*?)</textarea>', content, re.S)
    assert textarea and "we are looking into it" in textarea.group(1)
    assert "The chain wrote it from a reply template: the support template." in " ".join(
        text_of(reviewer_client.get(page(message))).split()
    )


def post(client, message: Message, action: str, **fields):
    current = Message.objects.get(id=message.id)
    data = {
        "category": current.effective_category,
        "priority": current.effective_priority,
        "assignee": str(current.assignee_id or ""),
        "draft": current.reviewed_draft or current.draft_reply,
        "action": action,
        **fields,
    }
    return client.post(page(message), data, follow=True)


def test_confirm_keeps_the_models_answer_as_the_reviewers(reviewer_client):
    message = store(raw_message(), category="billing", level="P2",
                    status=MessageStatus.NEEDS_REVIEW, confidence=0.4)  # fmt: skip

    response = post(reviewer_client, message, "confirm")

    assert response.redirect_chain == [(page(message), 302)]
    assert "Saved: confirmed." in shown(response)
    stored = Message.objects.get(id=message.id)
    assert stored.status == MessageStatus.TRIAGED
    assert (stored.reviewed_category, stored.reviewed_priority) == ("billing", "P2")
    assert stored.reviewed_by.username == "ruth"
    feedback = Feedback.objects.get(message_id=message.id)
    assert feedback.confirmed and feedback.model_category == "billing"
    assert feedback.model_confidence == 0.4
    history = re.search(r'<section id="feedback-history".*?</section>',
                        response.content.decode(), re.S).group(0)  # fmt: skip
    assert "ruth" in history and "confirmed" in history and "billing (0.40), P2" in history


def test_save_changes_applies_only_what_changed(reviewer_client, colleague):
    message = store(raw_message(), category="sales", level="P3")

    response = post(reviewer_client, message, "save", category="support", priority="P1",
                    assignee=str(colleague.id),
                    draft="Hello,\r\n\r\nWe refunded you today.\r\n\r\nRuth")  # fmt: skip

    assert ("Saved: category sales -> support, priority P3 -> P1, draft edited, assigned to sam."
            in shown(response))  # fmt: skip
    stored = Message.objects.get(id=message.id)
    assert (stored.reviewed_category, stored.reviewed_priority) == ("support", "P1")
    assert stored.reviewed_draft == "Hello,\n\nWe refunded you today.\n\nRuth"
    assert stored.assignee == colleague and stored.draft_approved_at is None
    assert stored.category == "sales"  # the model's answer stays beside the reviewer's

    unchanged = post(reviewer_client, message, "save")
    assert "Nothing to save: nothing was changed." in shown(unchanged)
    assert Feedback.objects.filter(message_id=message.id).count() == 1


def test_approve_draft_saves_the_edited_draft_and_keeps_it_as_an_example(reviewer_client):
    message = store(raw_message(), category="support")

    response = post(reviewer_client, message, "approve_draft", draft="Hello,\n\nFixed it.\n\nRuth")

    assert "Saved: draft edited, draft approved." in shown(response)
    stored = Message.objects.get(id=message.id)
    assert stored.draft_approved_at is not None
    assert stored.reviewed_draft == "Hello,\n\nFixed it.\n\nRuth"
    example = ReplyExample.objects.get(message_id=message.id)
    assert example.reply == stored.reviewed_draft and example.category == "support"


def test_assign_mark_done_and_rerun(reviewer_client, reviewer):
    message = store(raw_message())

    assert "Saved: assigned to ruth." in shown(
        post(reviewer_client, message, "assign", assignee=str(reviewer.id))
    )
    assert Message.objects.get(id=message.id).assignee == reviewer

    assert "Saved: marked done." in shown(post(reviewer_client, message, "done"))
    assert Message.objects.get(id=message.id).status == MessageStatus.DONE

    rerun = post(reviewer_client, message, "rerun")
    assert "Queued for a new run of the chain." in shown(rerun)
    stored = Message.objects.get(id=message.id)
    assert stored.status == MessageStatus.QUEUED and stored.runs == 2 and stored.steps == {}
    assert list(Feedback.objects.filter(message_id=message.id).order_by("id")
                .values_list("action", flat=True)) == [
        "assigned to ruth", "marked done", "re-run the chain"]  # fmt: skip


def test_a_refused_decision_is_shown_and_nothing_typed_is_lost(reviewer_client):
    message = store(raw_message(), category="sales", level="P3")

    response = post(reviewer_client, message, "approve_draft", category="support", draft="   ")

    assert response.status_code == 200 and not response.redirect_chain
    assert "An approved draft cannot be empty." in shown(response)
    content = response.content.decode()
    assert re.search(r'<option value="support" selected>', content)
    stored = Message.objects.get(id=message.id)
    assert stored.reviewed_category == "" and stored.draft_approved_at is None
    assert not Feedback.objects.filter(message_id=message.id).exists()


def test_a_message_the_chain_is_working_on_cannot_be_reviewed(reviewer_client):
    message = store(raw_message(), status=MessageStatus.PROCESSING)

    response = post(reviewer_client, message, "save", category="billing")

    assert any("is processing: only triaged, needs-review and done messages can be reviewed"
               in m for m in shown(response))  # fmt: skip
    assert Message.objects.get(id=message.id).reviewed_category == ""
    assert "still working on this message" in response.content.decode()


def test_thread_and_history_on_the_page(reviewer_client):
    earlier = store(raw_message(subject="Order 17 late", age=timedelta(days=2)),
                    thread_key="order-17", category="support")  # fmt: skip
    later = store(raw_message(subject="Re: Order 17 late", age=timedelta(hours=3)),
                  thread_key="order-17", status=MessageStatus.DONE)  # fmt: skip
    message = store(raw_message(subject="Re: Re: Order 17 late", age=timedelta(hours=1)),
                    thread_key="order-17")  # fmt: skip
    store(raw_message(subject="Unrelated"), thread_key="other")

    content = reviewer_client.get(page(message)).content.decode()
    thread = re.search(r'<section id="thread".*?</section>', content, re.S).group(0)
    assert thread.index(page(earlier)) < thread.index(page(later))
    assert "Re: Re: Order 17 late" not in thread and "Unrelated" not in thread
    assert "Done" in thread


# --- Bulk actions ---------------------------------------------------------------------------


def bulk(client, action: str, messages: list[Message], query: str = "", **fields):
    data = {"action": action, "_selected_action": [m.id for m in messages], "index": 0, **fields}
    return client.post(f"{QUEUE}?{query}", data, follow=True)


def test_bulk_set_category_reports_what_changed_and_what_was_left_alone(reviewer_client):
    ready = [store(raw_message(), category="sales") for _ in range(2)]
    busy = store(raw_message(), status=MessageStatus.QUEUED)

    response = bulk(reviewer_client, "set_category", [*ready, busy], "status=all",
                    category="support")  # fmt: skip

    assert "Category set to support: 2 messages." in shown(response)
    assert any(m.startswith("Left alone 1:") and f"Message {busy.id} is queued" in m
               for m in shown(response))  # fmt: skip
    for message in ready:
        assert Message.objects.get(id=message.id).reviewed_category == "support"
        assert Feedback.objects.get(message_id=message.id).action == "category sales -> support"
    assert not Feedback.objects.filter(message_id=busy.id).exists()

    # From the queue of open work, a message that left it meanwhile is left alone too.
    done = store(raw_message(), status=MessageStatus.DONE)
    response = bulk(reviewer_client, "set_category", [ready[0], done], category="billing")
    assert "Category set to billing: 1 message." in shown(response)
    assert any(f"Message {done.id} is no longer in this view" in m for m in shown(response))


def test_bulk_confirm_level_done_assign_and_rerun(reviewer_client, colleague, reviewer):
    messages = [store(raw_message(), status=MessageStatus.NEEDS_REVIEW, confidence=0.3,
                      level="P2") for _ in range(2)]  # fmt: skip
    ids = [m.id for m in messages]

    assert "Confirmed: 2 messages." in shown(bulk(reviewer_client, "confirm_selected", messages))
    assert set(Message.objects.filter(id__in=ids).values_list("status", flat=True)) == {"triaged"}

    assert "Level set to P0: 2 messages." in shown(
        bulk(reviewer_client, "set_priority", messages, priority="P0")
    )
    assert set(Message.objects.filter(id__in=ids).values_list("reviewed_priority", flat=True)) == {
        "P0"
    }

    assert "Assigned to sam: 2 messages." in shown(
        bulk(reviewer_client, "assign_selected", messages, assignee="sam")
    )
    assert "Assigned to ruth: 2 messages." in shown(
        bulk(reviewer_client, "assign_selected", messages, assignee="me")
    )
    assert set(Message.objects.filter(id__in=ids).values_list("assignee", flat=True)) == {
        reviewer.id
    }
    assert "Unassigned: 2 messages." in shown(
        bulk(reviewer_client, "assign_selected", messages, assignee="nobody")
    )

    assert "Marked done: 2 messages." in shown(bulk(reviewer_client, "mark_done", messages))
    assert set(Message.objects.filter(id__in=ids).values_list("status", flat=True)) == {"done"}

    processing = store(raw_message(), status=MessageStatus.PROCESSING)
    rerun = bulk(reviewer_client, "rerun_selected", [*messages, processing], "status=all")
    assert "Queued for a new run of the chain: 2 messages." in shown(rerun)
    assert any(f"Message {processing.id} is still being processed" in m for m in shown(rerun))
    assert set(Message.objects.filter(id__in=ids).values_list("status", flat=True)) == {"queued"}
    assert Feedback.objects.filter(message_id__in=ids).count() == 2 * 7


def test_a_bulk_action_that_needs_a_value_says_so(reviewer_client):
    message = store(raw_message(), category="sales")

    response = bulk(reviewer_client, "set_category", [message], category="")

    assert any("Choose a category in the action bar first" in m for m in shown(response))
    assert Message.objects.get(id=message.id).reviewed_category == ""
    assert not Feedback.objects.exists()


# --- Permissions ----------------------------------------------------------------------------


def test_no_adding_and_only_superusers_delete(client, reviewer_client, colleague):
    message = store(raw_message())
    assert reviewer_client.get(reverse("admin:inbox_message_add")).status_code == 403
    assert 'class="deletelink"' in reviewer_client.get(page(message)).content.decode()

    colleague.user_permissions.set(Permission.objects.filter(content_type__app_label="inbox"))
    client.force_login(colleague)
    assert client.get(page(message)).status_code == 200
    assert 'class="deletelink"' not in client.get(page(message)).content.decode()
    assert client.get(reverse("admin:inbox_message_delete", args=[message.id])).status_code == 403
    actions = client.get(QUEUE).content.decode()
    assert 'value="delete_selected"' not in actions and 'value="mark_done"' in actions


def test_viewing_without_change_permission_cannot_decide(client, colleague):
    message = store(raw_message())
    colleague.user_permissions.set(Permission.objects.filter(codename="view_message"))
    client.force_login(colleague)

    assert client.get(page(message)).status_code == 200
    assert 'value="confirm"' not in client.get(page(message)).content.decode()
    assert client.post(page(message), {"action": "confirm"}).status_code == 403
    assert not Feedback.objects.exists()


def test_the_queue_and_history_pages_carry_the_security_policy(reviewer_client):
    message = store(raw_message())
    for url in (QUEUE, reverse("admin:inbox_message_history", args=[message.id])):
        response = reviewer_client.get(url)
        assert response.status_code == 200
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


# --- Real mail ------------------------------------------------------------------------------


def test_the_demo_mailbox_in_the_queue_and_on_its_pages(reviewer_client):
    labels = demo_labels()
    stored = [store(raw, category=labels[mid][0], level=labels[mid][1])
              for mid, raw in demo_mail().items()]  # fmt: skip
    assert len(stored) == 70

    queue = reviewer_client.get(f"{QUEUE}?status=all&all=")
    assert len(listed(queue)) == 70
    first = Message.objects.get(id=listed(queue)[0])
    assert first.effective_priority == "P0"
    for message in stored:
        response = reviewer_client.get(page(message))
        assert response.status_code == 200, message.message_id_header
        assert "<script>" not in response.content.decode().split("</head>", 1)[1]


def test_real_spam_with_html_is_never_rendered(reviewer_client, spam_corpus):
    pattern = re.compile(rb"<(script|img|iframe)\b", re.I)
    samples = [p for p in sorted((spam_corpus / "spam-1").iterdir())
               if pattern.search(p.read_bytes())][:8]  # fmt: skip
    assert samples, "the corpus has spam with HTML"
    for path in samples:
        message = store(path.read_bytes(), category="spam", level="P3", keep_parsed=False)
        response = reviewer_client.get(page(message))
        assert response.status_code == 200, path.name
        body = response.content.decode().split('<div id="content-main"', 1)[1]
        assert not re.search(r"<(script|img|iframe)\b", body, re.I), path.name
        assert "Content-Security-Policy" in response.headers
