"""The MIME parser on crafted edge cases and on every message of the real corpus."""

import hashlib

import pytest

from apps.inbox.engine import MessageTooLarge, UnparseableMessage, parse_message
from apps.inbox.engine.quotes import split_reply


def test_every_corpus_message_parses(spam_corpus):
    files = [p for p in sorted(spam_corpus.rglob("*")) if p.is_file() and p.name != "README.md"]
    assert len(files) > 4000
    with_text = 0
    for path in files:
        message = parse_message(path.read_bytes())
        with_text += bool(message.text)
    assert with_text / len(files) > 0.97


def test_encoded_headers_and_addresses():
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.com>\r\n"
        b'Reply-To: help@example.org\r\nTo: a@example.com, "B" <b@example.com>\r\n'
        b"Cc: c@example.com\r\nSubject: =?iso-8859-1?q?R=E9sum=E9?= ready\r\n"
        b"Date: Tue, 03 Mar 2026 10:00:00 +0100\r\nMessage-ID: <abc@example.com>\r\n"
        b"In-Reply-To: <prev@example.com>\r\nReferences: <first@example.com> <prev@example.com>\r\n\r\nHello there, how are you today?\r\n"
    )
    message = parse_message(raw)
    assert message.from_name == "Jürgen Müller" and message.from_address == "jm@example.com"
    assert message.subject == "Résumé ready"
    assert message.to == ["a@example.com", "b@example.com"] and message.cc == ["c@example.com"]
    assert message.reply_to == ["help@example.org"]
    assert message.date.isoformat() == "2026-03-03T10:00:00+01:00"
    assert message.message_id == "<abc@example.com>" and message.in_reply_to == "<prev@example.com>"
    assert message.references == ["<first@example.com>", "<prev@example.com>"]


def test_wrong_and_unknown_charsets_decode_with_replacement():
    wrong = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ncaf\xe9 cr\xe8me\r\n"
    assert "caf" in parse_message(wrong).text
    unknown = (
        b"Subject: x\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nna\xefve\r\n"
    )
    assert parse_message(unknown).text.startswith("na")


def test_html_only_mail_becomes_readable_text():
    raw = (b"Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><head><style>p{color:red}</style></head><body><p>Hello <b>World</b></p>"
           b"<script>alert(1)</script><p>Second&nbsp;line</p></body></html>")  # fmt: skip
    message = parse_message(raw)
    assert message.html_only
    assert message.text == "Hello World\n\nSecond line" or message.text.split() == [
        "Hello",
        "World",
        "Second",
        "line",
    ]
    assert "alert" not in message.text and "color" not in message.text


def test_multipart_attachments_and_nested_message():
    raw = (
        b"Subject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b'--XX\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="a.zip"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nUEsDBAo=\r\n"
        b"--XX\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"
        b"--XX--\r\n"
    )
    message = parse_message(raw)
    assert message.text == "See attached."
    archive, nested = message.attachments
    assert (archive.filename, archive.content_type, archive.size) == ("a.zip", "application/zip", 5)
    assert archive.sha256 == hashlib.sha256(b"PK\x03\x04\n").hexdigest()
    assert nested.content_type == "message/rfc822" and nested.size > 0


def test_broken_base64_and_garbage_do_not_raise():
    raw = b"Subject: x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64***\r\n"
    parse_message(raw)
    parse_message(b"\x00\xff\xfe garbage without headers")
    parse_message(b"")


def test_size_limit():
    with pytest.raises(MessageTooLarge, match="up to 100 bytes") as refused:
        parse_message(b"Subject: x\r\n\r\n" + b"a" * 200, max_bytes=100)
    assert isinstance(refused.value, UnparseableMessage)


def test_language():
    raw = (
        "Subject: x\n\nBonjour, nous avons un problème avec la facture du mois dernier.\n".encode()
    )
    assert parse_message(raw).language == "fr"


def test_delivery_report_flag():
    raw = (b"Subject: failed\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n--B--\r\n")  # fmt: skip
    assert parse_message(raw).is_delivery_report


def test_top_posted_reply_splits_history_and_signature():
    text = ("Thanks, the fix works.\n\nBest regards,\nJane Doe\nACME Corp\n\n"
            "On Tue, 3 Mar 2026 at 10:00, Support <support@example.com> wrote:\n> Please try again.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Thanks, the fix works."
    assert split.sign_off_name == "Jane Doe"
    assert "Please try again" in split.quoted


def test_outlook_style_history_and_dash_signature():
    text = ("Can you check again?\n-- \nJoe\n555-1234\n\nFrom: Support\nSent: Monday\n"
            "To: Joe\nSubject: RE: issue\n\nWe looked into it.\n")  # fmt: skip
    split = split_reply(text)
    assert split.new_text == "Can you check again?"
    assert split.signature.startswith("--") and "We looked into it." in split.quoted


def test_interleaved_answers_are_kept():
    text = "On Mon, Bob wrote:\n> Does it work?\nYes, since this morning.\n> And the export?\nStill broken.\n"
    split = split_reply(text)
    assert split.new_text.split("\n") == ["Yes, since this morning.", "Still broken."]
