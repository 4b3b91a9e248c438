"""Verdicts, reasons and the result object returned for every address."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    DELIVERABLE = "deliverable"
    UNDELIVERABLE = "undeliverable"
    RISKY = "risky"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    OK = "ok"
    INVALID_SYNTAX = "invalid_syntax"
    NO_SUCH_DOMAIN = "no_such_domain"
    NULL_MX = "null_mx"
    NO_MAIL_SERVER = "no_mail_server"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_FULL = "mailbox_full"
    MAILBOX_DISABLED = "mailbox_disabled"
    CATCH_ALL = "catch_all"
    DISPOSABLE = "disposable"
    ROLE_ACCOUNT = "role_account"
    GREYLISTED = "greylisted"
    RATE_LIMITED = "rate_limited"
    BLOCKED = "blocked"
    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    SMTP_ERROR = "smtp_error"
    DNS_ERROR = "dns_error"
    SMTP_SKIPPED = "smtp_skipped"
    # Every mail server address was loopback, private, link-local or otherwise not public, and
    # none is in MAILSCORE_SMTP_ALLOWED_NETWORKS: nothing was connected to.
    FORBIDDEN_ADDRESS = "forbidden_address"
    ALLOW_LISTED = "allow_listed"
    DENY_LISTED = "deny_listed"
    # Decided by mail seen rather than by the SMTP dialogue (apps/verification/engine/evidence.py).
    SENT_AUTHENTICATED_MAIL = "sent_authenticated_mail"
    HARD_BOUNCED = "hard_bounced"


# Each reason implies one verdict. "unknown" reasons mean we could not tell; none of them may ever
# be reported as undeliverable, because a blocked or slow verifier says nothing about the mailbox.
VERDICT_OF = {
    Reason.OK: Verdict.DELIVERABLE,
    Reason.ALLOW_LISTED: Verdict.DELIVERABLE,
    Reason.SENT_AUTHENTICATED_MAIL: Verdict.DELIVERABLE,
    Reason.INVALID_SYNTAX: Verdict.UNDELIVERABLE,
    Reason.NO_SUCH_DOMAIN: Verdict.UNDELIVERABLE,
    Reason.NULL_MX: Verdict.UNDELIVERABLE,
    Reason.NO_MAIL_SERVER: Verdict.UNDELIVERABLE,
    Reason.MAILBOX_NOT_FOUND: Verdict.UNDELIVERABLE,
    Reason.MAILBOX_DISABLED: Verdict.UNDELIVERABLE,
    Reason.DENY_LISTED: Verdict.UNDELIVERABLE,
    Reason.HARD_BOUNCED: Verdict.UNDELIVERABLE,
    Reason.CATCH_ALL: Verdict.RISKY,
    Reason.DISPOSABLE: Verdict.RISKY,
    Reason.ROLE_ACCOUNT: Verdict.RISKY,
    Reason.MAILBOX_FULL: Verdict.RISKY,
    Reason.GREYLISTED: Verdict.UNKNOWN,
    Reason.RATE_LIMITED: Verdict.UNKNOWN,
    Reason.BLOCKED: Verdict.UNKNOWN,
    Reason.TIMEOUT: Verdict.UNKNOWN,
    Reason.CONNECTION_FAILED: Verdict.UNKNOWN,
    Reason.SMTP_ERROR: Verdict.UNKNOWN,
    Reason.DNS_ERROR: Verdict.UNKNOWN,
    Reason.SMTP_SKIPPED: Verdict.UNKNOWN,
    Reason.FORBIDDEN_ADDRESS: Verdict.UNKNOWN,
}

# 0-100: how likely a message to this address reaches a person. Documented in docs/verification.md.
BASE_SCORE = {
    Reason.OK: 95,
    Reason.ALLOW_LISTED: 100,
    # Below ok: the mail was sent days or weeks ago, a RCPT reply is from now.
    Reason.SENT_AUTHENTICATED_MAIL: 85,
    Reason.ROLE_ACCOUNT: 70,
    Reason.CATCH_ALL: 55,
    Reason.SMTP_SKIPPED: 60,
    Reason.GREYLISTED: 50,
    Reason.RATE_LIMITED: 50,
    Reason.BLOCKED: 50,
    Reason.SMTP_ERROR: 40,
    Reason.TIMEOUT: 40,
    Reason.MAILBOX_FULL: 35,
    Reason.CONNECTION_FAILED: 35,
    Reason.DNS_ERROR: 30,
    # A mail server inside a private network is what a forged or hostile domain looks like.
    Reason.FORBIDDEN_ADDRESS: 10,
    Reason.DISPOSABLE: 20,
}


def score_for(reason: Reason, *, is_free: bool, is_role: bool, catch_all: bool | None) -> int:
    if VERDICT_OF[reason] is Verdict.UNDELIVERABLE:
        return 0
    score = BASE_SCORE[reason]
    if reason is Reason.OK and catch_all is None:
        score -= 10  # accepted, but we could not rule out a catch-all
    if is_role and reason not in (Reason.ROLE_ACCOUNT, Reason.ALLOW_LISTED):
        score -= 10
    if is_free and reason is not Reason.ALLOW_LISTED:
        score -= 5  # free mailboxes are abandoned more often than company ones
    return max(0, min(100, score))


@dataclass
class SmtpStep:
    command: str
    code: int | None
    text: str
    enhanced_code: str | None = None
    elapsed_ms: float = 0.0


@dataclass
class SmtpReport:
    checked: bool = False
    host: str | None = None
    address: str | None = None
    can_connect: bool = False
    tls: bool = False
    connection: str | None = None  # "new" or "reused"
    is_catch_all: bool | None = None
    is_deliverable: bool | None = None
    reply_kind: str | None = None
    attempts: int = 0
    retry_after: float | None = None
    error: str | None = None
    steps: list[SmtpStep] = field(default_factory=list)


@dataclass
class VerificationResult:
    address: str
    verdict: Verdict
    reason: Reason
    score: int
    normalized: str | None = None
    syntax: dict[str, Any] = field(default_factory=dict)
    mx: dict[str, Any] = field(default_factory=dict)
    smtp: SmtpReport = field(default_factory=SmtpReport)
    is_disposable: bool = False
    is_role: bool = False
    is_free: bool = False
    suggestion: str | None = None
    cached: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    # The mail that decided the verdict (engine/evidence.py): kind, seen_at (ISO 8601), detail.
    # Empty where the checks alone decided it.
    evidence: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # Shallow copies field by field: dataclasses.asdict deep-copies every value, which costs
        # more than the verification itself when a bulk job serialises every result.
        data = dict(vars(self))
        data["verdict"] = str(self.verdict)
        data["reason"] = str(self.reason)
        data["syntax"] = dict(self.syntax)
        data["mx"] = dict(self.mx)
        data["timings"] = dict(self.timings)
        data["evidence"] = [dict(item) for item in self.evidence]
        smtp = data["smtp"] = dict(vars(self.smtp))
        smtp["steps"] = [dict(vars(step)) for step in self.smtp.steps]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationResult:
        smtp = dict(data.get("smtp") or {})
        smtp["steps"] = [SmtpStep(**step) for step in smtp.get("steps", [])]
        return cls(
            **{
                **data,
                "verdict": Verdict(data["verdict"]),
                "reason": Reason(data["reason"]),
                "smtp": SmtpReport(**smtp),
            }
        )
