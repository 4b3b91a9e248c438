"""Delivery status notifications (RFC 3464): per-recipient outcomes and which are hard bounces,
on the real DSNs of the SpamAssassin corpus and on malformed ones."""

from __future__ import annotations

import base64
from email import message_from_bytes

import pytest

from apps.inbox.engine.bounces import MAX_RECIPIENTS, hard_bounces, recipient_statuses
from apps.inbox.engine.parser import parse_message


def dsn(*blocks: str, newline: str = "\r\n", report_type: str = "delivery-status") -> bytes:
    """A delivery status notification with these per-recipient blocks (lines joined by \\n)."""
    fields = (newline + newline).join(block.replace("\n", newline) for block in blocks)
    text = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "To: support@mailscore.test\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="B1"\n\n'
        "--B1\nContent-Type: text/plain\n\nThe mail could not be delivered.\n"
        "--B1\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.net\nArrival-Date: Mon, 2 Mar 2026 09:00:00 +0000\n\n"
    ).replace("\n", newline)
    return (text + fields + newline + newline + "--B1--" + newline).encode()


def recipient(address: str, action: str = "failed", status: str = "5.1.1", **extra: str) -> str:
    lines = [f"Final-Recipient: rfc822; {address}", f"Action: {action}", f"Status: {status}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return "\n".join(lines)


def hard(raw) -> list[str]:
    return [status.recipient for status in hard_bounces(raw)]


# The real mail: the corpus holds one RFC 3464 report (a Postfix delay warning) and bounces in
# free text, which are not read.
DELAY_WARNING = "easy-ham-2/01311.b6a06b3e24130a32172b4c5225a1d5a6.txt"
FREE_TEXT_BOUNCES = [
    "easy-ham-2/01304.af5f3a2d3a0a19785aeaeeb3d7e36040.txt",
    "spam-2/00169.86268e75abd1bd4bda4d6c129681df34.txt",
]


def test_a_real_postfix_delay_warning_is_read_and_is_no_hard_bounce(spam_corpus):
    raw = (spam_corpus / DELAY_WARNING).read_bytes()
    assert parse_message(raw).is_delivery_report
    [status] = recipient_statuses(raw)
    assert (status.recipient, status.action, status.status) == ("khera@kcilink.com", "delayed", "")
    assert status.diagnostic.startswith("X-Postfix; connect to yertle.kcilink.com")
    assert not status.is_hard_bounce
    assert hard_bounces(raw) == []


@pytest.mark.parametrize("name", FREE_TEXT_BOUNCES)
def test_real_free_text_bounces_are_not_read(spam_corpus, name):
    raw = (spam_corpus / name).read_bytes()
    assert b"delivery" in raw.lower() or b"undeliverable" in raw.lower()
    assert recipient_statuses(raw) == []


def test_every_message_of_the_corpus_reads_without_an_error(spam_corpus):
    reports = 0
    for path in sorted(spam_corpus.glob("*/*")):
        statuses = recipient_statuses(path.read_bytes())
        reports += bool(statuses)
        assert all("@" in status.recipient for status in statuses)
    assert reports >= 1  # the delay warning above


def test_a_hard_bounce_with_crlf_line_ends():
    raw = dsn(recipient("gone@example.com", diagnostic_code="smtp; 550 5.1.1 User unknown"))
    [status] = hard_bounces(raw)
    assert status.recipient == "gone@example.com"
    assert (status.action, status.status) == ("failed", "5.1.1")
    assert status.diagnostic == "smtp; 550 5.1.1 User unknown"


def test_which_failures_are_hard_bounces():
    raw = dsn(
        recipient("unknown@example.com", status="5.1.1"),
        recipient("nodomain@example.com", status="5.1.2"),
        recipient("moved@example.com", status="5.1.10"),
        recipient("disabled@example.com", status="5.2.1"),
        recipient("full@example.com", status="5.2.2"),
        recipient("policy@example.com", status="5.7.1"),
        recipient("routing@example.com", status="5.4.4"),
        recipient("system@example.com", status="5.3.0"),
        recipient("sender@example.com", status="5.1.8"),  # our sender address, not theirs
        recipient("later@example.com", action="delayed", status="4.4.1"),
        recipient("temporary@example.com", status="4.2.2"),
        recipient("fine@example.com", action="delivered", status="2.0.0"),
        recipient("relayed@example.com", action="relayed", status="2.0.0"),
    )
    assert len(recipient_statuses(raw)) == 13
    assert hard(raw) == [
        "unknown@example.com",
        "nodomain@example.com",
        "moved@example.com",
        "disabled@example.com",
    ]


def test_loose_formatting_is_read():
    raw = dsn(
        "FINAL-RECIPIENT: RFC822;<Bob@Example.COM>\nACTION: Failed (permanent)\nSTATUS: 5.1.1 (bad mailbox)",
        "final-recipient:rfc822;carol@example.com\naction:failed\nstatus:5.2.1",
        "Final-Recipient: dave@example.com\nAction: failed\nStatus: 5.1.1",  # no address type
        "Final-Recipient: rfc822; eve@example.com\nAction: failed\nStatus:\n  5.1.1",  # folded
        newline="\n",
    )
    assert hard(raw) == [
        "Bob@Example.COM",
        "carol@example.com",
        "dave@example.com",
        "eve@example.com",
    ]


def test_the_original_recipient_is_the_address_we_sent_to():
    raw = dsn(
        "Original-Recipient: rfc822;alias@example.com\n" + recipient("mailbox@internal.example.com")
    )
    [status] = hard_bounces(raw)
    assert (status.recipient, status.final_recipient) == (
        "alias@example.com",
        "mailbox@internal.example.com",
    )


def test_a_class_only_status_takes_the_code_of_the_diagnostic():
    raw = dsn(
        recipient(
            "unknown@example.com",
            status="5.0.0",
            diagnostic_code="smtp; 550 5.1.1 <unknown@example.com>: no such user",
        ),
        recipient(
            "blocked@example.com",
            status="5.0.0",
            diagnostic_code="smtp; 550 5.7.1 rejected by policy",
        ),
        recipient("vague@example.com", status="5.0.0", diagnostic_code="smtp; 550 rejected"),
        recipient(
            "mixed@example.com", status="5.0.0", diagnostic_code="smtp; 452 4.2.2 over quota"
        ),
    )
    statuses = {s.recipient: s.status for s in recipient_statuses(raw)}
    assert statuses == {
        "unknown@example.com": "5.1.1",
        "blocked@example.com": "5.7.1",
        "vague@example.com": "5.0.0",
        "mixed@example.com": "5.0.0",  # another class than the report's: not taken
    }
    assert hard(raw) == ["unknown@example.com"]


@pytest.mark.parametrize(
    "block",
    [
        "Action: failed\nStatus: 5.1.1",  # no recipient
        "Final-Recipient: rfc822; gone@example.com\nStatus: 5.1.1",  # no action
        "Final-Recipient: rfc822; gone@example.com\nAction: failed",  # no status
        "Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: five",
        "Final-Recipient: x400; /C=US/ADMD=x/S=gone/\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822; not an address\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822; @example.com\nAction: failed\nStatus: 5.1.1",
        "Final-Recipient: rfc822;\nAction: failed\nStatus: 5.1.1",
        "\x00\xff garbage : : ;;\n\n\n",
    ],
)
def test_blocks_missing_what_it_takes_are_no_hard_bounce(block):
    assert hard(dsn(block)) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00 not mail at all",
        b"Subject: hi\r\n\r\nJust a message about message/delivery-status reports.\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\n",
        b"Content-Type: message/delivery-status\r\n\r\n",
        b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\nContent-Type: message/delivery-status",
    ],
)
def test_malformed_mail_gives_nothing_and_no_error(raw):
    assert hard_bounces(raw) == []


def test_a_bounce_forwarded_as_an_attachment_is_read():
    inner = dsn(recipient("gone@example.com"))
    forward = (
        b"From: Jane <jane@customer.example>\r\nSubject: Fwd: Undelivered Mail\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=OUTER\r\n\r\n"
        b"--OUTER\r\nContent-Type: text/plain\r\n\r\nYour mail to my colleague bounced.\r\n"
        b"--OUTER\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--OUTER--\r\n"
    )
    assert not parse_message(forward).is_delivery_report
    assert hard(forward) == ["gone@example.com"]


def test_a_base64_encoded_report_part_is_read():
    fields = "Reporting-MTA: dns; mx.example.net\r\n\r\n" + recipient("gone@example.com").replace(
        "\n", "\r\n"
    )
    encoded = base64.encodebytes(fields.encode()).decode()
    raw = (
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}\r\n--B--\r\n"
    ).encode()
    assert hard(raw) == ["gone@example.com"]


def test_a_parsed_message_is_accepted_as_well():
    message = message_from_bytes(dsn(recipient("gone@example.com")))
    assert hard(message) == ["gone@example.com"]


def test_ten_thousand_recipients_are_read_up_to_the_cap():
    blocks = [recipient(f"user{i}@example.com") for i in range(10_000)]
    statuses = hard_bounces(dsn(*blocks))
    assert len(statuses) == MAX_RECIPIENTS
    assert statuses[0].recipient == "user0@example.com"
    assert len(recipient_statuses(dsn(*blocks), max_recipients=5)) == 5


def test_deeply_nested_forwards_end_without_an_error():
    raw = dsn(recipient("gone@example.com"))
    for depth in range(60):
        raw = f"Subject: Fwd {depth}\r\nContent-Type: message/rfc822\r\n\r\n".encode() + raw
    assert hard_bounces(raw) == []  # past the depth followed: not read, and no error
