"""Sender trust signals from message headers."""

import asyncio
from email import message_from_string

import pytest

from apps.verification.engine import assess_sender, verify_sender
from apps.verification.engine.similarity import damerau_levenshtein, lookalike_of, suggest_domain
from apps.verification.engine.trust import parse_authentication_results


def message(headers: str):
    return message_from_string(headers.strip() + "\n\nbody\n")


def codes(report):
    return {signal.code for signal in report.signals}


def test_parse_authentication_results_with_comments_and_quotes():
    server, results = parse_authentication_results(
        "mx.mailscore.test 1; spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; "
        'dkim=pass header.d=example.com header.s="sel 1"; dmarc=pass header.from=example.com'
    )
    assert server == "mx.mailscore.test"
    assert [(r.method, r.result) for r in results] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
    ]
    assert results[1].properties == {"header.d": "example.com", "header.s": "sel 1"}


def test_parse_authentication_results_without_an_authserv_id():
    # Microsoft 365's form: no server name before the first result.
    server, results = parse_authentication_results(
        "spf=softfail (sender IP is 192.0.2.9) smtp.mailfrom=example.com; dkim=none (message not "
        "signed) header.d=none;dmarc=fail action=quarantine header.from=example.com;"
        "compauth=fail reason=000"
    )
    assert server == ""
    assert [(r.method, r.result) for r in results] == [
        ("spf", "softfail"),
        ("dkim", "none"),
        ("dmarc", "fail"),
        ("compauth", "fail"),
    ]
    assert parse_authentication_results("mx.example.org; none") == ("mx.example.org", [])
    assert parse_authentication_results("") == ("", [])


def test_id_less_results_are_read_when_no_authserv_id_is_configured():
    report = assess_sender(
        message("""
Authentication-Results: spf=fail (sender IP is 192.0.2.9) smtp.mailfrom=example.com; dkim=none (message not signed) header.d=none;dmarc=fail action=quarantine header.from=example.com;compauth=fail reason=000
From: <ceo@example.com>
""")
    )
    assert {"dmarc_fail", "spf_fail"} <= codes(report)
    assert report.level == "suspicious"


def test_authenticated_sender_is_trusted():
    report = assess_sender(
        message("""
Authentication-Results: mx.mailscore.test; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; dmarc=pass header.from=example.com
From: Jane Doe <jane@example.com>
""")
    )
    assert report.level == "trusted"
    assert {"dmarc_pass", "spf_pass", "dkim_pass"} <= codes(report)
    assert report.reply_address == "jane@example.com"


def test_dmarc_failure_is_suspicious():
    report = assess_sender(
        message("""
Authentication-Results: mx.mailscore.test; spf=fail smtp.mailfrom=example.com; dkim=none; dmarc=fail header.from=example.com
From: <ceo@example.com>
""")
    )
    assert report.level == "suspicious"
    assert {"dmarc_fail", "spf_fail"} <= codes(report)


def test_only_trusted_authserv_ids_count():
    forged_then_real = message("""
Authentication-Results: mx.mailscore.test; dmarc=fail header.from=example.com
Authentication-Results: forged.example; dmarc=pass header.from=example.com
From: <ceo@example.com>
""")
    report = assess_sender(forged_then_real, trusted_authserv_ids=("forged.example",))
    assert report.authserv_id == "forged.example"
    report = assess_sender(forged_then_real, trusted_authserv_ids=("mx.mailscore.test",))
    assert "dmarc_fail" in codes(report)
    # Without configuration the topmost header, added by the nearest server, is the one read.
    assert assess_sender(forged_then_real).authserv_id == "mx.mailscore.test"


def test_reply_to_on_another_domain():
    report = assess_sender(
        message("""
From: Billing <billing@example.com>
Reply-To: payments@elsewhere.example
""")
    )
    assert "reply_to_other_domain" in codes(report)
    assert report.reply_address == "payments@elsewhere.example"
    same_org = assess_sender(
        message("""
From: <billing@example.com>
Reply-To: <help@support.example.com>
""")
    )
    assert codes(same_org) >= {"reply_to_differs"} and "reply_to_other_domain" not in codes(
        same_org
    )


def test_display_name_holding_another_address():
    report = assess_sender(message('From: "security@paypal.com" <alerts@mailer.example>'))
    assert "display_name_spoof" in codes(report)
    assert report.level == "suspicious"
    honest = assess_sender(message('From: "alerts@mailer.example" <alerts@mailer.example>'))
    assert "display_name_spoof" not in codes(honest)


@pytest.mark.parametrize(
    ("domain", "target", "how"),
    [
        ("paypa1.com", "paypal.com", "confusable_characters"),
        ("rnicrosoft.com", "microsoft.com", "confusable_characters"),
        ("xn--pypal-4ve.com", "paypal.com", "confusable_characters"),  # Cyrillic а
        ("micosoft.com", "microsoft.com", "one_edit_away"),
        ("paypal-secure.com", "paypal.com", "contains_brand"),
        ("acme-corp.co", "acme-corp.com", "one_edit_away"),
        # аррӏе.com: all Cyrillic, with a palochka for the l.
        ("xn--80ak6aa92e.com", "apple.com", "confusable_characters"),
        ("paypal.com.secure-login.net", "paypal.com", "contains_brand"),
        ("xn--microsof-vch.com", "microsoft.com", "confusable_characters"),  # Cyrillic т
    ],
)
def test_lookalike_domains(domain, target, how):
    protected = ("acme-corp.com", "paypal.com", "microsoft.com", "apple.com")
    assert lookalike_of(domain, protected) == (target, how)


@pytest.mark.parametrize(
    "domain",
    [
        "paypal.com", "mail.paypal.com", "amazonaws.com", "example.org", "mail.com", "email.com",
        "xn--mnchen-3ya.de", "xn--d1acpjx3f.xn--p1ai",  # münchen.de, яндекс.рф
    ],
)  # fmt: skip
def test_genuine_domains_are_not_lookalikes(domain):
    assert lookalike_of(domain, ("paypal.com", "amazon.com", "gmail.com")) is None


def test_lookalike_of_the_operators_own_domain():
    report = assess_sender(message("From: IT <it@acme-c0rp.com>"), own_domains=("acme-corp.com",))
    assert "lookalike_domain" in codes(report) and report.level == "suspicious"


def test_typo_suggestions_and_distance():
    assert damerau_levenshtein("gmial.com", "gmail.com") == 1
    assert suggest_domain("gmial.com") == "gmail.com"
    assert suggest_domain("hotmial.com") == "hotmail.com"
    assert suggest_domain("yahoo.con") == "yahoo.com"
    assert suggest_domain("gmail.com") is None
    assert suggest_domain("acme.com") is None


def test_verify_sender_combines_trust_and_deliverability(make_verifier):
    result = asyncio.run(
        verify_sender(
            message("From: Alice <alice@normal.test>\nReply-To: nobody@normal.test"),
            make_verifier(),
        )
    )
    data = result.to_dict()
    assert data["trust"]["reply_address"] == "nobody@normal.test"
    assert data["deliverability"]["reason"] == "mailbox_not_found"
