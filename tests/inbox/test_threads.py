"""Conversations: References and In-Reply-To first, then the subject and correspondent."""

from __future__ import annotations

import pytest

from apps.inbox.engine import parse_message
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message
from apps.inbox.threads import assign_threads, normalized_subject

pytestmark = pytest.mark.django_db


def mail(message_id: str, subject: str, *, sender: str = "ann@customer.test",
         in_reply_to: str = "", references: str = "", day: int = 2) -> bytes:  # fmt: skip
    headers = f"In-Reply-To: {in_reply_to}\n" if in_reply_to else ""
    headers += f"References: {references}\n" if references else ""
    return (f"From: {sender}\nTo: help@ours.test\nSubject: {subject}\nMessage-ID: {message_id}\n"
            f"Date: Mon, {day:02d} Nov 2026 09:00:00 +0000\n{headers}\nSome text.\n").encode()  # fmt: skip


def threaded(*raws: bytes) -> list[str]:
    """Ingest and thread each message in turn, as the classify step does batch by batch."""
    keys = []
    for raw in raws:
        message = ingest_raw(raw, source="api").message
        key = assign_threads([message], [parse_message(raw)])[message.id]
        Message.objects.filter(id=message.id).update(thread_key=key)
        keys.append(key)
    return keys


def test_replies_join_their_thread_by_headers():
    first, reply, second_reply, other = threaded(
        mail("<a1@customer.test>", "Printer offline"),
        mail("<a2@ours.test>", "Re: Printer offline", sender="help@ours.test",
             in_reply_to="<a1@customer.test>", references="<a1@customer.test>"),
        mail("<a3@customer.test>", "RE: Printer offline", in_reply_to="<a2@ours.test>",
             references="<a1@customer.test> <a2@ours.test>"),
        mail("<b1@customer.test>", "Printer offline"),  # same subject, a new conversation
    )  # fmt: skip
    assert first == reply == second_reply
    assert other != first


def test_a_reply_arriving_before_its_original_lands_in_the_same_thread():
    reply, original = threaded(
        mail("<c2@customer.test>", "Re: Contract", references="<c1@customer.test>"),
        mail("<c1@customer.test>", "Contract"),
    )
    assert reply == original


def test_subject_fallback_for_a_reply_without_headers():
    original, follow_up, stranger = threaded(
        mail("<d1@customer.test>", "Refund for order 77", day=2),
        mail("<d2@customer.test>", "AW: Refund for order 77", day=3),
        mail("<d3@other.test>", "Re: Refund for order 77", sender="bob@other.test", day=3),
    )
    assert follow_up == original
    assert stranger != original  # another correspondent is another conversation


def test_normalized_subject():
    assert normalized_subject("Re: FWD: aw:  Invoice  42") == "invoice 42"
    assert normalized_subject("RE[2]: Sv: Hello") == "hello"
