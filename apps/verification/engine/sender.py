"""The pipeline's verify_sender step: trust signals plus deliverability of the reply address."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from apps.verification.engine.result import VerificationResult
from apps.verification.engine.trust import TrustReport, assess_sender
from apps.verification.engine.verifier import Verifier


@dataclass
class SenderVerification:
    trust: TrustReport
    deliverability: VerificationResult | None

    def to_dict(self) -> dict:
        return {
            "trust": self.trust.to_dict(),
            "deliverability": self.deliverability.to_dict() if self.deliverability else None,
        }


async def verify_sender(
    message: Message, verifier: Verifier, *, smtp: bool = True, greylist_wait: float = 0.0
) -> SenderVerification:
    config = verifier.config
    trust = assess_sender(
        message, own_domains=config.own_domains, trusted_authserv_ids=config.trusted_authserv_ids
    )
    deliverability = None
    if trust.reply_address:
        deliverability = await verifier.verify(
            trust.reply_address, smtp=smtp, greylist_wait=greylist_wait
        )
    return SenderVerification(trust=trust, deliverability=deliverability)


async def verify_senders(
    messages: list[Message],
    verifier: Verifier,
    *,
    trusts: list[TrustReport] | None = None,
    smtp: bool = True,
    greylist_wait: float = 0.0,
) -> list[SenderVerification]:
    """verify_sender for many messages at once: their reply addresses are verified together, so
    shared domains cost one MX lookup and share connections. Trust reports already made (the
    triage pipeline makes them for its drafts) are used as they are."""
    config = verifier.config
    if trusts is None:
        trusts = [
            assess_sender(
                m, own_domains=config.own_domains, trusted_authserv_ids=config.trusted_authserv_ids
            )
            for m in messages
        ]
    addresses = [t.reply_address for t in trusts if t.reply_address]
    results = iter(await verifier.verify_many(addresses, smtp=smtp, greylist_wait=greylist_wait))
    return [SenderVerification(t, next(results) if t.reply_address else None) for t in trusts]
