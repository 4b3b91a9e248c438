"""Our own DKIM, SPF and DMARC check: real signatures, keys and policies served by a DNS server
of our own on loopback."""

from __future__ import annotations

import asyncio
import base64
import email
import time
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.inbox import claims
from apps.inbox.batch import ClaimedBatch
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message
from apps.verification.engine import VerifierConfig
from apps.verification.engine.authentication import check_authentication
from apps.verification.engine.sender import with_own_checks
from apps.verification.engine.trust import OWN_AUTHSERV_ID, assess_sender
from apps.verification.steps import verify_sender
from tests.farm import Farm, FarmSpec

CLIENT = "85.10.20.30"  # public, as the client that handed the mail in must be
STRANGER = "85.10.20.99"
RELAY = "85.10.20.77"
SPAMASSASSIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "spamassassin"


def _keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(public).decode()


PRIVATE_KEY, PUBLIC_KEY = _keys()


def txt(text: str) -> str:
    """A TXT record's zone text; a DKIM key is longer than one string's 255 characters."""
    return " ".join(f'"{text[i : i + 200]}"' for i in range(0, len(text), 200))


RECORDS = {
    "sel._domainkey.signer.test": {"TXT": [txt(f"v=DKIM1; k=rsa; p={PUBLIC_KEY}")]},
    "signer.test": {"TXT": [txt(f"v=spf1 ip4:{CLIENT} -all")]},
    "_dmarc.signer.test": {"TXT": [txt("v=DMARC1; p=reject; adkim=r; aspf=r")]},
    # Strict DKIM alignment: a signature by the organisation does not cover its subdomains.
    "sel._domainkey.strict.test": {"TXT": [txt(f"v=DKIM1; k=rsa; p={PUBLIC_KEY}")]},
    "_dmarc.strict.test": {"TXT": [txt("v=DMARC1; p=quarantine; sp=reject; adkim=s")]},
    "soft.test": {"TXT": [txt(f"v=spf1 ip4:{CLIENT} ~all")]},
    # Mechanisms that look names up: an include, then the domain's mail servers.
    "relay.test": {
        "TXT": [txt("v=spf1 include:signer.test mx -all")],
        "MX": ["10 out.relay.test."],
    },
    "out.relay.test": {"A": [RELAY]},
    # A bank that signs nothing we see here but publishes p=reject.
    "bank.test": {"TXT": [txt("v=spf1 -all")]},
    "_dmarc.bank.test": {"TXT": [txt("v=DMARC1; p=reject")]},
}
SILENT = ("slow._domainkey.signer.test",)
TIMEOUT = 0.5


@pytest.fixture(scope="module")
def dns_farm():
    farm = Farm(FarmSpec(records=RECORDS, silent=SILENT)).start_in_thread()
    yield farm
    farm.stop_thread()


def compose(
    *,
    sender: str = "jane@signer.test",
    received_from: str | None = CLIENT,
    return_path: str | None = None,
    extra: str = "",
    body: str = "Hello,\r\nthe invoice is attached.\r\n",
) -> bytes:
    headers = []
    if received_from:
        headers.append(
            f"Received: from mail.signer.test (mail.signer.test [{received_from}])\r\n"
            "\tby mx.mailscore.test with ESMTPS id 4a1; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        )
    if return_path:
        headers.append(f"Return-Path: <{return_path}>\r\n")
    headers += [
        extra,
        f"From: Jane <{sender}>\r\nTo: support@mailscore.test\r\n",
        "Subject: Invoice 2026-118\r\nMessage-ID: <inv-118@signer.test>\r\n",
        "Date: Tue, 1 Dec 2026 09:59:58 +0000\r\n",
    ]
    return ("".join(headers) + "\r\n" + body).encode()


def sign(raw: bytes, *, domain: str = "signer.test", selector: str = "sel") -> bytes:
    """The message with a DKIM-Signature above it, as the signer's outbound server adds it;
    the Received header (added later, by the receiving side) is not signed."""
    lines = raw.split(b"\r\n")
    hops = []
    while lines and (lines[0].startswith(b"Received:") or lines[0].startswith(b"\t")):
        hops.append(lines.pop(0) + b"\r\n")
    unsigned = b"\r\n".join(lines)
    signature = dkim.sign(
        unsigned,
        selector.encode(),
        domain.encode(),
        PRIVATE_KEY,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return b"".join(hops) + signature + unsigned


def check(dns_farm, raw: bytes, timeout: float = TIMEOUT):
    message = email.message_from_bytes(raw)
    results = asyncio.run(
        check_authentication(raw, message, nameservers=(dns_farm.nameserver,), timeout=timeout)
    )
    return {r.method: r for r in results}, results


def test_valid_signature_passes_dkim_and_aligned_dmarc(dns_farm):
    raw = sign(compose(return_path="bounces@signer.test"))
    found, _ = check(dns_farm, raw)
    assert found["dkim"].result == "pass"
    assert found["dkim"].properties["header.d"] == "signer.test"
    assert found["dkim"].properties["header.s"] == "sel"
    assert found["spf"].result == "pass"
    assert found["spf"].properties["smtp.mailfrom"] == "bounces@signer.test"
    assert found["dmarc"].result == "pass"
    assert found["dmarc"].properties["header.from"] == "signer.test"
    assert found["dmarc"].properties["policy.p"] == "reject"

    report = assess_sender(email.message_from_bytes(raw), own_check=list(found.values()))
    assert report.level == "trusted" and report.authserv_id == OWN_AUTHSERV_ID
    signals = {s.code for s in report.signals}
    assert {"own_authentication_check", "dkim_pass", "spf_pass", "dmarc_pass"} <= signals


def test_body_altered_after_signing_fails_dkim(dns_farm):
    raw = sign(compose(received_from=None))
    tampered = raw.replace(b"the invoice is attached", b"pay to the new account")
    found, _ = check(dns_farm, tampered)
    assert found["dkim"].result == "fail"
    assert "body hash" in found["dkim"].properties["reason"]
    assert found["dmarc"].result == "fail"  # nothing aligned passed


def test_signature_whose_key_is_not_published(dns_farm):
    found, _ = check(dns_farm, sign(compose(), selector="gone"))
    # RFC 6376 6.1.2: no key record is a permanent failure (dkimpy: "missing public key").
    assert found["dkim"].result == "permerror"
    assert "no key" in found["dkim"].properties["reason"]


def test_key_lookup_that_never_answers_is_a_temperror_within_the_timeout(dns_farm):
    started = time.monotonic()
    found, _ = check(dns_farm, sign(compose(received_from=None), selector="slow"))
    assert found["dkim"].result == "temperror"
    assert time.monotonic() - started < 3 * TIMEOUT + 1
    # No aligned pass, and DKIM could not be completed: DMARC cannot say fail.
    assert found["dmarc"].result == "temperror"


def test_malformed_signature_is_a_permerror(dns_farm):
    raw = compose(extra="DKIM-Signature: v=1; a=rsa-sha256; d=signer.test; b=%%%\r\n")
    found, _ = check(dns_farm, raw)
    assert found["dkim"].result == "permerror"
    # Bytes that are no message at all still give a result per method, never an exception.
    _, results = check(dns_farm, b"DKIM-Signature: \x00\xff\r\nno colon here\r\n\r\n")
    assert [r.method for r in results] == ["dkim", "spf", "dmarc"]


@pytest.mark.parametrize(
    ("ip", "sender", "expected"),
    [
        (CLIENT, "jane@signer.test", "pass"),
        (STRANGER, "jane@signer.test", "fail"),
        (STRANGER, "jane@soft.test", "softfail"),
        (CLIENT, "jane@relay.test", "pass"),  # through include:signer.test
        (RELAY, "jane@relay.test", "pass"),  # through mx
        (STRANGER, "jane@relay.test", "fail"),
        (CLIENT, "jane@nospf.test", "none"),
    ],
)
def test_spf_from_the_received_client_ip(dns_farm, ip, sender, expected):
    found, _ = check(dns_farm, compose(sender=sender, received_from=ip))
    assert found["spf"].result == expected
    assert found["spf"].properties["client-ip"] == ip


def test_internal_hops_above_the_one_that_brought_the_mail_in_are_skipped(dns_farm):
    raw = compose(
        extra="Received: from localhost (localhost [127.0.0.1]) by mx.mailscore.test;"
        " Tue, 1 Dec 2026 10:00:01 +0000\r\n"
    )
    raw = b"Received: by 2002:a05:6a10:1::1 with SMTP id x; Tue, 1 Dec 2026 10:00:02\r\n" + raw
    found, _ = check(dns_farm, raw)
    assert found["spf"].result == "pass"  # the public hop below the internal ones


def test_no_received_header_means_spf_none(dns_farm):
    found, results = check(dns_farm, compose(received_from=None))
    assert found["spf"].result == "none"
    assert "Received" in found["spf"].properties["reason"]
    assert found["dkim"].result == "none"
    assert [r.method for r in results] == ["dkim", "spf", "dmarc"]


def test_unaligned_signature_under_p_reject_fails_dmarc(dns_farm):
    # Signed, validly, by signer.test; From claims bank.test, which publishes p=reject.
    raw = sign(compose(sender="ceo@bank.test", received_from=STRANGER))
    found, _ = check(dns_farm, raw)
    assert found["dkim"].result == "pass"
    assert found["spf"].result == "fail"
    assert found["dmarc"].result == "fail"
    assert found["dmarc"].properties["policy.p"] == "reject"
    report = assess_sender(email.message_from_bytes(raw), own_check=list(found.values()))
    assert report.level == "suspicious"


@pytest.mark.parametrize(
    ("sender", "signer", "expected", "policy"),
    [
        ("jane@news.signer.test", "signer.test", "pass", "reject"),  # relaxed, org's record
        ("jane@strict.test", "strict.test", "pass", "quarantine"),
        ("jane@news.strict.test", "strict.test", "fail", "reject"),  # strict; sp= applies
    ],
)
def test_dmarc_record_of_the_organisational_domain_and_alignment_modes(
    dns_farm, sender, signer, expected, policy
):
    found, _ = check(dns_farm, sign(compose(sender=sender, received_from=None), domain=signer))
    assert found["dkim"].result == "pass"
    assert (found["dmarc"].result, found["dmarc"].properties["policy.p"]) == (expected, policy)


def test_trusted_authentication_results_win_over_our_check(dns_farm):
    trusted = (
        "Authentication-Results: mx.mailscore.test; spf=pass smtp.mailfrom=signer.test;"
        " dmarc=pass header.from=signer.test\r\n"
    )
    raws = [sign(compose(extra=trusted)), sign(compose())]
    messages = [email.message_from_bytes(r) for r in raws]
    config = VerifierConfig(dns_nameservers=(dns_farm.nameserver,), dns_timeout=TIMEOUT)
    trusts = [assess_sender(m) for m in messages]
    queries = dns_farm.zone.queries
    checked = asyncio.run(with_own_checks(messages, raws, trusts, config))
    assert checked[0] is trusts[0] and checked[0].authserv_id == "mx.mailscore.test"
    assert checked[1].authserv_id == OWN_AUTHSERV_ID and checked[1].level == "trusted"
    # Only the second message was looked up: its key, its SPF record, its DMARC record.
    assert dns_farm.zone.queries - queries == 3


def test_a_batch_asks_for_each_name_once(dns_farm):
    # Ten signed messages from one domain: one key, one SPF record, one DMARC record in all.
    raws = [sign(compose(body=f"Invoice {n} attached.\r\n")) for n in range(10)]
    messages = [email.message_from_bytes(raw) for raw in raws]
    trusts = [assess_sender(m) for m in messages]
    config = VerifierConfig(dns_nameservers=(dns_farm.nameserver,), dns_timeout=TIMEOUT)
    queries = dns_farm.zone.queries
    checked = asyncio.run(with_own_checks(messages, raws, trusts, config))
    assert dns_farm.zone.queries - queries == 3
    assert all(t.authserv_id == OWN_AUTHSERV_ID and t.level == "trusted" for t in checked)


def test_real_world_mail_gives_a_result_per_method(dns_farm):
    if not SPAMASSASSIN.is_dir():
        pytest.skip(f"the SpamAssassin corpus is not at {SPAMASSASSIN}")
    paths = sorted((SPAMASSASSIN / "easy-ham-1").glob("*.txt"))[:3]
    paths += sorted((SPAMASSASSIN / "spam-1").glob("*.txt"))[:3]
    for path in paths:
        raw = path.read_bytes()  # mbox "From " line and all, as a file upload may carry it
        _, results = check(dns_farm, raw)
        assert {r.method for r in results} == {"dkim", "spf", "dmarc"}, path.name
    # 2002's mail predates DKIM: one of them, signed now, verifies despite its old, folded,
    # tab-indented headers.
    raw = paths[0].read_bytes().split(b"\n", 1)[1].replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signed = dkim.sign(raw, b"sel", b"signer.test", PRIVATE_KEY) + raw
    found, _ = check(dns_farm, signed)
    assert found["dkim"].result == "pass"


@pytest.mark.django_db
def test_the_verify_sender_step_checks_stored_mail_itself(dns_farm, settings, redis_client):
    settings.MAILSCORE_VERIFICATION = {
        **settings.MAILSCORE_VERIFICATION,
        "dns_nameservers": [dns_farm.nameserver],
        "dns_timeout": TIMEOUT,
        "allow_special_use_domains": True,
    }
    raw = sign(compose(return_path="bounces@signer.test"))
    stored = ingest_raw(raw, source="api").message
    claim = claims.claim_queued(10, lease_seconds=60)
    assert claim.message_ids == [stored.id]

    verify_sender(ClaimedBatch(claim.token, claim.message_ids), smtp=False)

    stored = Message.objects.get(id=stored.id)
    trust = stored.sender_result["trust"]
    assert trust["authserv_id"] == OWN_AUTHSERV_ID
    assert {(a["method"], a["result"]) for a in trust["authentication"]} == {
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    }
    assert "own_authentication_check" in {s["code"] for s in trust["signals"]}
    assert stored.sender_trust == "trusted"
    assert stored.steps["verify_sender"]["error"] is None
