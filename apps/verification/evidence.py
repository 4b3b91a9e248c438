"""Mail evidence about addresses: recorded by the triage chain's verify_sender step (record_for),
read when an address is verified (with_mail_evidence). The rules are in engine/evidence.py."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apps.inbox.engine.bounces import hard_bounces
from apps.inbox.models import Message
from apps.verification.engine.config import VerifierConfig
from apps.verification.engine.evidence import Evidence, EvidenceKind, apply_evidence
from apps.verification.engine.result import VerificationResult
from apps.verification.engine.syntax import check_syntax
from apps.verification.engine.trust import TrustReport
from apps.verification.models import MailEvidence
from apps.verification.services import verifier_config

DETAIL_CHARS = MailEvidence._meta.get_field("detail").max_length


def enabled() -> bool:
    return bool(settings.MAILSCORE_MAIL_EVIDENCE)


def address_key(address: str | None, config: VerifierConfig | None = None) -> str | None:
    """How an address is stored and looked up: normalised and lower-cased, as the validate API's
    cache keys it. None for what does not parse as an address."""
    if not address:
        return None
    config = config or verifier_config()
    syntax = check_syntax(
        address,
        allow_quoted_local=config.allow_quoted_local,
        allow_domain_literal=config.allow_domain_literal,
        allow_special_use_domains=config.allow_special_use_domains,
    )
    return syntax.normalized.lower() if syntax.valid else None


def result_key(result: VerificationResult) -> str | None:
    return result.normalized.lower() if result.normalized else None


def evidence_for(keys: Iterable[str | None]) -> dict[str, Evidence]:
    """The most recent evidence within MAILSCORE_MAIL_EVIDENCE_DAYS for each address key that
    has any, in one query however many keys are asked for."""
    wanted = sorted({key for key in keys if key})
    if not wanted or not enabled():
        return {}
    since = timezone.now() - timedelta(days=settings.MAILSCORE_MAIL_EVIDENCE_DAYS)
    # DISTINCT ON keeps the first row of each address in this order: the newest, and of two
    # equally new the bounce ("hard_bounce" sorts first), as engine.evidence.deciding_evidence.
    rows = (
        MailEvidence.objects.filter(address__in=wanted, seen_at__gte=since)
        .order_by("address", "-seen_at", "kind")
        .distinct("address")
        .values_list("address", "kind", "seen_at", "detail")
    )
    return {
        address: Evidence(EvidenceKind(kind), seen_at, detail)
        for address, kind, seen_at, detail in rows
    }


def apply_found(result: VerificationResult, found: dict[str, Evidence]) -> VerificationResult:
    """apply_evidence with what evidence_for found for the result's address."""
    evidence = found.get(result_key(result) or "")
    return apply_evidence(result, [evidence] if evidence else [])


def with_mail_evidence(results: list[VerificationResult]) -> list[VerificationResult]:
    """The results as the mail evidence for their addresses changes them (engine/evidence.py),
    looked up in one query."""
    found = evidence_for(result_key(result) for result in results)
    if not found:
        return results
    return [apply_found(result, found) for result in results]


def _dmarc_pass(trust: TrustReport) -> str | None:
    """The detail of an aligned DMARC pass for the From address, or None."""
    from_domain = (trust.from_address or "").rpartition("@")[2].lower().rstrip(".")
    for result in trust.authentication:
        if result.method != "dmarc" or result.result != "pass":
            continue
        header_from = result.properties.get("header.from", "").lower().rstrip(".")
        if header_from and header_from != from_domain:
            continue  # a pass for another domain than the one in From says nothing of it
        return f"dmarc=pass ({trust.authserv_id})" if trust.authserv_id else "dmarc=pass"
    return None


def _received(message: Message) -> datetime:
    return message.received_at or timezone.now()


def evidence_of(message: Message, trust: TrustReport, *, delivery_report: bool) -> list[tuple]:
    """(address key, kind, seen_at, detail) for what one triaged message says about mailboxes."""
    if trust.level == "suspicious":
        return []  # a forged DSN or a spoofed sender says nothing we should act on
    found = []
    config = verifier_config()
    # Not only delivery reports: a bounce forwarded as an attachment is read too (the cheap test
    # in hard_bounces skips every message without a delivery-status part).
    for bounce in hard_bounces(bytes(message.raw)):
        key = address_key(bounce.recipient, config)
        if key:
            detail = f"{bounce.status} {bounce.diagnostic}".strip()
            found.append((key, EvidenceKind.HARD_BOUNCE, _received(message), detail))
    # The From of a bounce is a mail system (MAILER-DAEMON), not a mailbox anyone reads.
    if not delivery_report:
        detail = _dmarc_pass(trust)
        key = address_key(trust.from_address, config) if detail else None
        if key:
            found.append((key, EvidenceKind.SENT_ALIGNED, _received(message), detail))
    return found


def record_for(messages: list[Message], delivery_reports: set[int]) -> set[str]:
    """Record the evidence the messages carry (their sender_result holds the trust report);
    delivery_reports are the ids of those parsed as delivery status notifications. Recording a
    message again adds nothing. Returns the address keys it holds evidence about."""
    if not enabled():
        return set()
    rows: dict[tuple, MailEvidence] = {}
    for message in messages:
        trust = (message.sender_result or {}).get("trust")
        if trust is None:
            continue
        report = TrustReport.from_dict(trust)
        for key, kind, seen_at, detail in evidence_of(
            message, report, delivery_report=message.id in delivery_reports
        ):
            rows.setdefault(
                (message.id, key, kind),
                MailEvidence(
                    address=key,
                    kind=str(kind),
                    seen_at=seen_at,
                    message_id=message.id,
                    detail=detail[:DETAIL_CHARS],
                ),
            )
    MailEvidence.objects.bulk_create(rows.values(), ignore_conflicts=True)
    return {key for _, key, _ in rows}
