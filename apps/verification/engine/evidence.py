"""Mail we received as evidence about an address, and how it changes a verification result.

Two kinds of evidence:

- ``sent_aligned``: the address sent us mail that passed DMARC (its From domain authenticated
  it), so its mailbox existed when the mail was sent.
- ``hard_bounce``: a delivery status notification said delivery to the address failed for good
  because the mailbox is not there or is disabled (5.1.x, 5.2.1), so it did not exist then.

The rules, in order:

1. Answers the checks make certain without asking the mailbox's server stand: invalid syntax,
   no such domain, null MX, no mail server, the operator's allow and deny lists, and a
   disposable domain (that says what kind of address it is, which no mail changes).
2. A definitive answer from the mailbox's own server stands: the RCPT reply is from now, the
   mail was seen days or weeks ago. That is ok and role_account (accepted), mailbox_not_found and
   mailbox_disabled (refused), and mailbox_full (the server says the mailbox exists and cannot
   take mail now; neither kind of evidence is newer news about that).
3. Every other answer says nothing certain about the mailbox: catch_all (the server accepts any
   address), blocked, timeout, greylisted, rate_limited, connection_failed, smtp_error,
   dns_error and smtp_skipped. There the most recent evidence decides: sent_aligned makes the
   address deliverable (reason sent_authenticated_mail), hard_bounce undeliverable (reason
   hard_bounced). On a tie the bounce wins: it is about delivery, which is the question asked.

Evidence older than the caller's window should not be passed in; this module applies what it
is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from apps.verification.engine.result import (
    VERDICT_OF,
    Reason,
    VerificationResult,
    score_for,
)


class EvidenceKind(StrEnum):
    SENT_ALIGNED = "sent_aligned"
    HARD_BOUNCE = "hard_bounce"


@dataclass(frozen=True)
class Evidence:
    """One piece of mail that says something about an address's mailbox."""

    kind: EvidenceKind
    seen_at: datetime
    detail: str = ""  # the DSN's status and diagnostic, or the DMARC result and its authserv-id

    def to_dict(self) -> dict[str, str]:
        return {"kind": str(self.kind), "seen_at": self.seen_at.isoformat(), "detail": self.detail}


# Answers that mail evidence decides: none of them is a certain statement about the mailbox.
DECIDED_BY_EVIDENCE = frozenset(
    {
        Reason.CATCH_ALL,
        Reason.BLOCKED,
        Reason.TIMEOUT,
        Reason.GREYLISTED,
        Reason.RATE_LIMITED,
        Reason.CONNECTION_FAILED,
        Reason.SMTP_ERROR,
        Reason.DNS_ERROR,
        Reason.SMTP_SKIPPED,
    }
)
REASON_OF = {
    EvidenceKind.SENT_ALIGNED: Reason.SENT_AUTHENTICATED_MAIL,
    EvidenceKind.HARD_BOUNCE: Reason.HARD_BOUNCED,
}
# Which kind wins when two pieces carry the same time.
_TIE_ORDER = {EvidenceKind.SENT_ALIGNED: 0, EvidenceKind.HARD_BOUNCE: 1}


def deciding_evidence(evidence: Iterable[Evidence]) -> Evidence | None:
    """The most recent piece; a bounce over a sent message of the same moment."""
    return max(evidence, key=lambda e: (e.seen_at, _TIE_ORDER[e.kind]), default=None)


def apply_evidence(result: VerificationResult, evidence: Iterable[Evidence]) -> VerificationResult:
    """The result as the evidence for its address changes it (the module's rules): a new result
    naming the deciding piece in its evidence field, or the result itself where nothing
    changes."""
    if result.reason not in DECIDED_BY_EVIDENCE:
        return result
    deciding = deciding_evidence(evidence)
    if deciding is None:
        return result
    reason = REASON_OF[deciding.kind]
    return replace(
        result,
        verdict=VERDICT_OF[reason],
        reason=reason,
        score=score_for(
            reason,
            is_free=result.is_free,
            is_role=result.is_role,
            catch_all=result.smtp.is_catch_all,
        ),
        evidence=[deciding.to_dict()],
    )
