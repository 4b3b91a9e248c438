"""Mail as evidence in verification: the engine's rules, recording it through the real
verify_sender step, and the validate API and manage.py verify using it against the farm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.core.retention import delete_expired_rows
from apps.inbox import claims
from apps.inbox.ingest import ingest_raw
from apps.verification.engine.evidence import (
    DECIDED_BY_EVIDENCE,
    Evidence,
    EvidenceKind,
    apply_evidence,
)
from apps.verification.engine.result import (
    BASE_SCORE,
    VERDICT_OF,
    Reason,
    SmtpReport,
    Verdict,
    VerificationResult,
)
from apps.verification.evidence import record_for, with_mail_evidence
from apps.verification.models import MailEvidence
from apps.verification.validation import KEY_PREFIX
from tasks import pipeline

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SENT = Evidence(
    EvidenceKind.SENT_ALIGNED, NOW - timedelta(days=3), "dmarc=pass (mx.mailscore.test)"
)
BOUNCED = Evidence(EvidenceKind.HARD_BOUNCE, NOW - timedelta(days=1), "5.1.1 smtp; 550 5.1.1")

# --- The engine's rules ----------------------------------------------------------------------

# Answers that stand whatever the mail says: certain without the mailbox's server, or its own.
STANDS = {
    Reason.INVALID_SYNTAX,
    Reason.NO_SUCH_DOMAIN,
    Reason.NULL_MX,
    Reason.NO_MAIL_SERVER,
    Reason.ALLOW_LISTED,
    Reason.DENY_LISTED,
    Reason.DISPOSABLE,
    Reason.OK,
    Reason.ROLE_ACCOUNT,
    Reason.MAILBOX_NOT_FOUND,
    Reason.MAILBOX_DISABLED,
    Reason.MAILBOX_FULL,
    # A mail server inside this network is worth a reviewer's eye whatever mail was seen.
    Reason.FORBIDDEN_ADDRESS,
    # The evidence's own reasons: a result already decided by mail is not decided again.
    Reason.SENT_AUTHENTICATED_MAIL,
    Reason.HARD_BOUNCED,
}


def result_with(reason: Reason, **fields) -> VerificationResult:
    return VerificationResult(
        address="Jane@Example.com",
        verdict=VERDICT_OF[reason],
        reason=reason,
        score=BASE_SCORE.get(reason, 0),
        normalized="Jane@example.com",
        syntax={"valid": True},
        smtp=SmtpReport(checked=True, is_catch_all=reason is Reason.CATCH_ALL),
        **fields,
    )


def test_every_reason_either_stands_or_is_decided_by_evidence():
    assert STANDS.isdisjoint(DECIDED_BY_EVIDENCE)
    assert set(Reason) == STANDS | DECIDED_BY_EVIDENCE


def test_every_reason_has_a_verdict_and_every_reachable_one_a_score():
    assert set(VERDICT_OF) == set(Reason)
    scored = {r for r in Reason if VERDICT_OF[r] is not Verdict.UNDELIVERABLE}
    assert scored <= set(BASE_SCORE)


@pytest.mark.parametrize("reason", sorted(STANDS))
def test_certain_and_direct_answers_stand(reason):
    result = result_with(reason)
    for evidence in ([SENT], [BOUNCED], [SENT, BOUNCED]):
        assert apply_evidence(result, evidence) is result


@pytest.mark.parametrize("reason", sorted(DECIDED_BY_EVIDENCE))
def test_evidence_decides_what_the_server_would_not_say(reason):
    result = result_with(reason)
    sent = apply_evidence(result, [SENT])
    assert (sent.verdict, sent.reason) == (Verdict.DELIVERABLE, Reason.SENT_AUTHENTICATED_MAIL)
    assert sent.score == BASE_SCORE[Reason.SENT_AUTHENTICATED_MAIL]
    assert sent.evidence == [
        {"kind": "sent_aligned", "seen_at": SENT.seen_at.isoformat(), "detail": SENT.detail}
    ]
    bounced = apply_evidence(result, [BOUNCED])
    assert (bounced.verdict, bounced.reason, bounced.score) == (
        Verdict.UNDELIVERABLE,
        Reason.HARD_BOUNCED,
        0,
    )
    assert bounced.evidence[0]["kind"] == "hard_bounce"
    # What the checks found stays, beside the new verdict; the original is not changed.
    assert bounced.smtp is result.smtp and bounced.mx == result.mx
    assert (result.reason, result.evidence) == (reason, [])
    assert apply_evidence(result, []) is result


def test_the_most_recent_evidence_decides_and_a_bounce_wins_a_tie():
    result = result_with(Reason.CATCH_ALL)
    later_send = Evidence(EvidenceKind.SENT_ALIGNED, BOUNCED.seen_at + timedelta(hours=1))
    assert apply_evidence(result, [BOUNCED, SENT]).reason is Reason.HARD_BOUNCED
    assert apply_evidence(result, [later_send, BOUNCED]).reason is Reason.SENT_AUTHENTICATED_MAIL
    same_time = Evidence(EvidenceKind.SENT_ALIGNED, BOUNCED.seen_at)
    assert apply_evidence(result, [same_time, BOUNCED]).reason is Reason.HARD_BOUNCED
    assert apply_evidence(result, [BOUNCED, same_time]).reason is Reason.HARD_BOUNCED


def test_the_score_of_a_sent_address_counts_free_and_role_as_others_do():
    free_role = result_with(Reason.BLOCKED, is_free=True, is_role=True)
    assert (
        apply_evidence(free_role, [SENT]).score == BASE_SCORE[Reason.SENT_AUTHENTICATED_MAIL] - 15
    )


def test_the_evidence_travels_in_the_result_dict_and_old_dicts_still_load():
    decided = apply_evidence(result_with(Reason.TIMEOUT), [SENT])
    again = VerificationResult.from_dict(json.loads(json.dumps(decided.to_dict())))
    assert again == decided
    old = decided.to_dict()
    del old["evidence"]
    old["reason"], old["verdict"] = "timeout", "unknown"
    assert VerificationResult.from_dict(old).evidence == []


# --- Recording through the verify_sender step ------------------------------------------------

AUTHSERV = "mx.mailscore.test"


@pytest.fixture
def evidence_settings(farm_settings, redis_client):
    """The farm, Authentication-Results read from our own receiving server, no kept answers."""
    farm_settings.MAILSCORE_VERIFICATION = {
        **farm_settings.MAILSCORE_VERIFICATION,
        "trusted_authserv_ids": [AUTHSERV],
    }
    farm_settings.MAILSCORE_MAIL_EVIDENCE = True
    farm_settings.MAILSCORE_MAIL_EVIDENCE_DAYS = 90

    def clean() -> None:
        for key in redis_client.scan_iter(f"{KEY_PREFIX}*"):
            redis_client.delete(key)

    clean()
    yield farm_settings
    clean()


def mail_from(sender: str, *, dmarc: str = "pass", days_ago: int = 2, subject: str = "Hello",
              extra_headers: str = "", body: str = "Hello there.") -> bytes:  # fmt: skip
    domain = sender.rpartition("@")[2]
    date = format_datetime(timezone.now() - timedelta(days=days_ago))
    return (
        f"Authentication-Results: {AUTHSERV}; spf=pass smtp.mailfrom={domain}; "
        f"dmarc={dmarc} header.from={domain}\r\n"
        f"From: <{sender}>\r\nTo: support@mailscore.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}-{sender}-{dmarc}-{days_ago}>\r\n"
        f"Date: {date}\r\n{extra_headers}\r\n{body}\r\n"
    ).encode()


def bounce_for(*recipients: tuple[str, str], dmarc: str = "none", days_ago: int = 1) -> bytes:
    """A DSN from the farm's normal.test mail system: (address, status) per recipient."""
    blocks = "\r\n\r\n".join(
        f"Final-Recipient: rfc822;{address}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} mailbox unavailable"
        for address, status in recipients
    )
    headers = (
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n'
    )
    body = (
        "--R\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.normal.test\r\n"
        f"\r\n{blocks}\r\n\r\n--R--"
    )
    return mail_from("mailer-daemon@normal.test", dmarc=dmarc, days_ago=days_ago,
                     subject=f"Undelivered {recipients[0][0]}", extra_headers=headers,
                     body=body)  # fmt: skip


def triage(*raws: bytes) -> list[int]:
    """Ingest the messages and run the chain's verify_sender step on them, as the chain does."""
    ids = [ingest_raw(raw, source="api").message.id for raw in raws]
    claim = claims.claim_queued(len(ids), lease_seconds=60)
    assert sorted(claim.message_ids) == sorted(ids)
    pipeline.verify_sender({"claim": claim.token, "ids": claim.message_ids})
    return ids


def recorded() -> set[tuple[str, str]]:
    return set(MailEvidence.objects.values_list("address", "kind"))


@pytest.mark.django_db
def test_dmarc_aligned_mail_and_hard_bounces_are_recorded(evidence_settings):
    ids = triage(
        mail_from("Jane.Doe@Blocked.TEST", days_ago=3),
        bounce_for(
            ("anyone@catchall.test", "5.1.1"),
            ("full@catchall.test", "5.2.2"),
            ("policy@catchall.test", "5.7.1"),
            ("Gone@CatchAll.test", "5.2.1"),
        ),  # fmt: skip
    )
    assert recorded() == {
        ("jane.doe@blocked.test", "sent_aligned"),
        ("anyone@catchall.test", "hard_bounce"),
        ("gone@catchall.test", "hard_bounce"),
    }
    sent = MailEvidence.objects.get(kind="sent_aligned")
    assert sent.message_id == ids[0]
    assert sent.detail == f"dmarc=pass ({AUTHSERV})"
    assert abs(sent.seen_at - (timezone.now() - timedelta(days=3))) < timedelta(minutes=5)
    bounce = MailEvidence.objects.get(address="anyone@catchall.test")
    assert bounce.message_id == ids[1]
    assert bounce.detail.startswith("5.1.1 smtp; 550 5.1.1")


@pytest.mark.django_db
def test_what_does_not_count_is_not_recorded(evidence_settings):
    triage(
        mail_from("unauthenticated@blocked.test", dmarc="none"),
        mail_from("failed@blocked.test", dmarc="fail"),
        # A DMARC pass for another domain than the one in From.
        mail_from("other@blocked.test").replace(b"header.from=blocked.test", b"header.from=x.test"),
        # A bounce whose own sender fails DMARC is suspicious: a forgery says nothing.
        bounce_for(("anyone@catchall.test", "5.1.1"), dmarc="fail"),
        # A pass from a server that is not ours is not read.
        mail_from("forged@blocked.test").replace(AUTHSERV.encode(), b"forged.example"),
    )
    assert recorded() == set()


@pytest.mark.django_db
def test_recording_again_adds_nothing(evidence_settings):
    from apps.inbox.models import Message

    triage(mail_from("jane@blocked.test"), bounce_for(("anyone@catchall.test", "5.1.1")))
    assert MailEvidence.objects.count() == 2
    messages = list(Message.objects.all())
    record_for(messages, {m.id for m in messages if m.subject.startswith("Undelivered")})
    record_for(messages, set())
    assert MailEvidence.objects.count() == 2


@pytest.mark.django_db
def test_switched_off_nothing_is_recorded_or_used(evidence_settings):
    evidence_settings.MAILSCORE_MAIL_EVIDENCE = False
    triage(mail_from("jane@blocked.test"))
    assert recorded() == set()
    MailEvidence.objects.create(address="jane@example.com", kind="sent_aligned",
                                seen_at=timezone.now(), message_id=1)  # fmt: skip
    result = result_with(Reason.BLOCKED)
    assert with_mail_evidence([result]) == [result]


# --- Using it ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_evidence_is_read_in_one_query_within_its_window(evidence_settings,
                                                          django_assert_num_queries):  # fmt: skip
    now = timezone.now()
    MailEvidence.objects.bulk_create([
        MailEvidence(address="sent@example.com", kind="sent_aligned", message_id=1,
                     seen_at=now - timedelta(days=10)),
        MailEvidence(address="sent@example.com", kind="hard_bounce", message_id=2,
                     seen_at=now - timedelta(days=20)),
        MailEvidence(address="old@example.com", kind="hard_bounce", message_id=3,
                     seen_at=now - timedelta(days=100)),
        MailEvidence(address="bounced@example.com", kind="sent_aligned", message_id=4,
                     seen_at=now - timedelta(days=30)),
        MailEvidence(address="bounced@example.com", kind="hard_bounce", message_id=5,
                     seen_at=now - timedelta(days=5), detail="5.1.1"),
    ])  # fmt: skip

    def blocked(address: str) -> VerificationResult:
        return VerificationResult(address, Verdict.UNKNOWN, Reason.BLOCKED, 50,
                                  normalized=address)  # fmt: skip

    others = [blocked(f"user{i}@example.com") for i in range(3000)]
    results = [blocked("Sent@Example.com"), blocked("old@example.com"),
               blocked("bounced@example.com"), *others]  # fmt: skip
    with django_assert_num_queries(1):
        adjusted = with_mail_evidence(results)
    assert [r.reason for r in adjusted[:3]] == [
        Reason.SENT_AUTHENTICATED_MAIL,
        Reason.BLOCKED,  # only evidence past MAILSCORE_MAIL_EVIDENCE_DAYS
        Reason.HARD_BOUNCED,
    ]
    assert adjusted[2].evidence[0]["detail"] == "5.1.1"
    assert adjusted[3:] == others
    evidence_settings.MAILSCORE_MAIL_EVIDENCE_DAYS = 7
    assert [r.reason for r in with_mail_evidence(results[:3])] == [
        Reason.BLOCKED,
        Reason.BLOCKED,
        Reason.HARD_BOUNCED,
    ]


@pytest.mark.django_db
def test_retention_deletes_evidence_older_than_the_period(settings):
    settings.MAILSCORE_RETENTION_DAYS = 90
    now = timezone.now()
    for message_id, days in enumerate((10, 89, 91, 400)):
        MailEvidence.objects.create(address="a@example.com", kind="sent_aligned",
                                    seen_at=now - timedelta(days=days), message_id=message_id)  # fmt: skip
    deleted = delete_expired_rows(now, days=90)
    assert deleted["verification_mail_evidence"] == 2
    assert sorted(MailEvidence.objects.values_list("message_id", flat=True)) == [0, 1]
    assert delete_expired_rows(now, days=90)["verification_mail_evidence"] == 0


@pytest.fixture
def api(evidence_settings) -> APIClient:
    _, key = ApiKey.issue("evidence-test", scopes=["verify"])
    return APIClient(HTTP_X_API_KEY=key)


def validate(api: APIClient, email: str) -> dict:
    response = api.post("/api/v1/validate", {"email": email}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def command_result(address: str) -> dict:
    out = StringIO()
    call_command("verify", "--json", "--no-cache", address, stdout=out)
    [line] = out.getvalue().splitlines()
    return json.loads(line)


@pytest.mark.django_db
def test_a_blocked_verifier_is_answered_by_authenticated_mail_from_the_address(
    api, django_capture_on_commit_callbacks
):
    before = validate(api, "jane@blocked.test")
    assert (before["verdict"], before["reason"], before["evidence"]) == ("unknown", "blocked", [])
    assert validate(api, "jane@blocked.test")["cached"] is True

    with django_capture_on_commit_callbacks(execute=True):
        triage(mail_from("jane@blocked.test"))

    # Recording the evidence dropped the kept answer: this one is checked again.
    after = validate(api, "jane@blocked.test")
    assert (after["verdict"], after["reason"], after["cached"]) == (
        "deliverable",
        "sent_authenticated_mail",
        False,
    )
    assert after["score"] == 85
    assert after["checks"]["smtp"] is None  # the SMTP check still says it could not tell
    [evidence] = after["evidence"]
    assert evidence["kind"] == "sent_aligned" and evidence["detail"] == f"dmarc=pass ({AUTHSERV})"
    cli = command_result("jane@blocked.test")
    assert (cli["verdict"], cli["reason"], cli["evidence"]) == (
        "deliverable",
        "sent_authenticated_mail",
        after["evidence"],
    )
    # Another address of the same server has no evidence and stays unknown.
    assert validate(api, "john@blocked.test")["reason"] == "blocked"


@pytest.mark.django_db
def test_a_hard_bounce_makes_a_catch_all_address_undeliverable_but_not_an_accepted_one(
    api, django_capture_on_commit_callbacks
):
    assert validate(api, "anyone@catchall.test")["reason"] == "catch_all"
    with django_capture_on_commit_callbacks(execute=True):
        triage(bounce_for(("anyone@catchall.test", "5.1.1"), ("alice@normal.test", "5.1.1")))

    after = validate(api, "anyone@catchall.test")
    assert (after["verdict"], after["reason"], after["score"]) == (
        "undeliverable",
        "hard_bounced",
        0,
    )
    assert after["checks"]["catch_all"] is True
    assert after["evidence"][0]["detail"].startswith("5.1.1")
    cli = command_result("anyone@catchall.test")
    assert (cli["verdict"], cli["reason"]) == ("undeliverable", "hard_bounced")

    # The mailbox's own server accepts alice@normal.test now: its answer stands over the bounce.
    accepted = validate(api, "alice@normal.test")
    assert (accepted["verdict"], accepted["reason"], accepted["evidence"]) == (
        "deliverable",
        "ok",
        [],
    )


@pytest.mark.django_db
def test_the_command_table_says_what_mail_decided(evidence_settings):
    MailEvidence.objects.create(address="anyone@catchall.test", kind="hard_bounce",
                                seen_at=timezone.now(), message_id=1, detail="5.1.1 smtp; 550")  # fmt: skip
    out = StringIO()
    call_command("verify", "--no-cache", "anyone@catchall.test", stdout=out)
    row = out.getvalue().splitlines()[1]
    assert row.split()[1:4] == ["undeliverable", "hard_bounced", "0"]
    assert "hard_bounce" in row and "5.1.1 smtp; 550" in row


def test_the_command_works_without_a_database_and_says_so_once(farm, redis_client):
    farm.reset()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailscore.settings.test",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing",
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "MAILSCORE_ALLOW_SPECIAL_USE_DOMAINS": "1",
        "MAILSCORE_DNS_TIMEOUT": "1",
        "MAILSCORE_SMTP_PER_HOST_RATE": "0",
        "MAILSCORE_DNS_NAMESERVERS": farm.nameserver,
        "MAILSCORE_SMTP_PORT": str(farm.port),
        "MAILSCORE_SMTP_ALLOWED_NETWORKS": "127.0.0.0/8",  # the farm is on loopback
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "verify", "--json", "--no-cache",
         "alice@normal.test", "anyone@catchall.test"],
        capture_output=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.count("Mail evidence not used: the database cannot be read") == 1, stderr
    results = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [(r["reason"], r["evidence"]) for r in results] == [("ok", []), ("catch_all", [])]


@pytest.mark.django_db
def test_the_admin_lists_evidence_read_only(admin_client):
    row = MailEvidence.objects.create(address="gone@example.com", kind="hard_bounce",
                                      seen_at=timezone.now(), message_id=7, detail="5.1.1")  # fmt: skip
    listing = admin_client.get("/admin/verification/mailevidence/")
    assert listing.status_code == 200 and b"gone@example.com" in listing.content
    assert admin_client.get("/admin/verification/mailevidence/add/").status_code == 403
    page = admin_client.get(f"/admin/verification/mailevidence/{row.id}/change/")
    assert page.status_code == 200 and b'name="address"' not in page.content
