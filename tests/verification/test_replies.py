"""SMTP replies as real servers send them, and what each one means."""

import pytest

from apps.verification.engine.replies import ReplyKind, classify, enhanced_code

RCPT_REPLIES = [
    (250, "2.1.5 OK", ReplyKind.ACCEPTED),
    (251, "User not local; will forward", ReplyKind.ACCEPTED),
    (
        550,
        "5.1.1 The email account that you tried to reach does not exist.",
        ReplyKind.MAILBOX_NOT_FOUND,
    ),
    (
        550,
        "5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
        ReplyKind.MAILBOX_NOT_FOUND,
    ),
    (550, "5.5.0 Requested action not taken: mailbox unavailable", ReplyKind.MAILBOX_NOT_FOUND),
    (
        550,
        "5.4.1 Recipient address rejected: Access denied. AS(201806281)",
        ReplyKind.MAILBOX_NOT_FOUND,
    ),
    (550, "No such user here", ReplyKind.MAILBOX_NOT_FOUND),
    (550, "", ReplyKind.MAILBOX_NOT_FOUND),
    (553, "5.1.3 Bad recipient address syntax", ReplyKind.MAILBOX_NOT_FOUND),
    (452, "4.2.2 The email account that you tried to reach is over quota.", ReplyKind.MAILBOX_FULL),
    (552, "5.2.2 Mailbox full", ReplyKind.MAILBOX_FULL),
    (
        550,
        "5.2.1 The email account that you tried to reach is disabled.",
        ReplyKind.MAILBOX_DISABLED,
    ),
    (550, "Mailbox is inactive", ReplyKind.MAILBOX_DISABLED),
    (
        550,
        "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        ReplyKind.BLOCKED,
    ),
    (
        553,
        "5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list",
        ReplyKind.BLOCKED,
    ),
    (550, "5.7.1 Relaying denied", ReplyKind.BLOCKED),
    (554, "5.7.1 <x@example.com>: Relay access denied", ReplyKind.BLOCKED),
    (550, "5.7.606 Access denied, banned sending IP [192.0.2.1]", ReplyKind.BLOCKED),
    (
        550,
        "5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address",
        ReplyKind.BLOCKED,
    ),
    (451, "4.7.1 Greylisted, please try again later", ReplyKind.GREYLISTED),
    (450, "4.2.0 <x@example.com>: Recipient address rejected: Greylisted", ReplyKind.GREYLISTED),
    (451, "Temporary local problem", ReplyKind.GREYLISTED),
    (450, "4.7.28 Rate limited", ReplyKind.RATE_LIMITED),
    (421, "4.7.0 Too many connections from your IP, slow down", ReplyKind.RATE_LIMITED),
    (452, "4.5.3 Too many recipients", ReplyKind.TOO_MANY_RECIPIENTS),
    (554, "5.5.3 Too many recipients", ReplyKind.TOO_MANY_RECIPIENTS),
    (441, "4.4.1 No answer from host", ReplyKind.TEMPORARY),
    (554, "5.3.0 Other mail system problem", ReplyKind.PERMANENT),
]


@pytest.mark.parametrize(("code", "text", "kind"), RCPT_REPLIES)
def test_rcpt_replies(code, text, kind):
    assert classify(code, text, "rcpt") is kind


@pytest.mark.parametrize(
    ("code", "text", "stage", "kind"),
    [
        (
            554,
            "mx.example.com ESMTP not accepting messages from 192.0.2.1",
            "greeting",
            ReplyKind.BLOCKED,
        ),
        (421, "4.3.2 Service not available", "greeting", ReplyKind.TEMPORARY),
        (550, "5.7.1 Sender address rejected: Domain not found", "mail", ReplyKind.BLOCKED),
        (550, "5.1.0 Sender rejected", "mail", ReplyKind.BLOCKED),
        (451, "4.7.1 Try again later", "mail", ReplyKind.GREYLISTED),
        (501, "5.5.4 Invalid EHLO hostname", "ehlo", ReplyKind.BLOCKED),
    ],
)
def test_refusals_before_rcpt_are_about_us(code, text, stage, kind):
    assert classify(code, text, stage) is kind


def test_enhanced_codes():
    assert enhanced_code("5.1.1 User unknown") == "5.1.1"
    assert enhanced_code("4.7.28 Rate limited") == "4.7.28"
    assert enhanced_code("User unknown") is None
