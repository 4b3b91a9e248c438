"""The pipeline's verify_sender step: trust signals plus deliverability of the reply address."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import Message

from apps.verification.engine.authentication import Lookups, check_authentication
from apps.verification.engine.config import VerifierConfig
from apps.verification.engine.dns import build_resolver
from apps.verification.engine.result import VerificationResult
from apps.verification.engine.trust import TrustReport, assess_sender
from apps.verification.engine.verifier import Verifier

logger = logging.getLogger(__name__)

# Messages whose DKIM, SPF and DMARC are checked at once; each makes a handful of lookups and
# mostly waits for them.
OWN_CHECKS_IN_FLIGHT = 32


@dataclass
class SenderVerification:
    trust: TrustReport
    deliverability: VerificationResult | None

    def to_dict(self) -> dict:
        return {
            "trust": self.trust.to_dict(),
            "deliverability": self.deliverability.to_dict() if self.deliverability else None,
        }


def _assess(message: Message, config: VerifierConfig, own_check=None) -> TrustReport:
    return assess_sender(message, own_domains=config.own_domains,
                         trusted_authserv_ids=config.trusted_authserv_ids,
                         own_check=own_check)  # fmt: skip


async def with_own_checks(
    messages: list[Message],
    raws: list[bytes | None],
    trusts: list[TrustReport],
    config: VerifierConfig,
) -> list[TrustReport]:
    """The trust reports, with our own DKIM, SPF and DMARC check for each message that has no
    results from a trusted receiving server (and whose raw bytes are known). A check that fails
    leaves the report as it was: it never fails the step."""
    unchecked = [i for i, t in enumerate(trusts) if not t.authentication and raws[i]]
    if not unchecked:
        return trusts
    lookups = Lookups(build_resolver(config.dns_nameservers, config.dns_timeout))
    limit = asyncio.Semaphore(OWN_CHECKS_IN_FLIGHT)

    async def check(i: int) -> TrustReport:
        try:
            async with limit:
                results = await check_authentication(
                    raws[i], messages[i], timeout=config.dns_timeout, lookups=lookups
                )
            return _assess(messages[i], config, own_check=results)
        except Exception:
            logger.warning("Checking DKIM, SPF and DMARC failed", exc_info=True)
            return trusts[i]

    reports = await asyncio.gather(*(check(i) for i in unchecked))
    checked = dict(zip(unchecked, reports, strict=True))
    return [checked.get(i, trust) for i, trust in enumerate(trusts)]


async def verify_sender(
    message: Message,
    verifier: Verifier,
    *,
    raw: bytes | None = None,
    smtp: bool = True,
    greylist_wait: float = 0.0,
) -> SenderVerification:
    """raw: the message's exact bytes; with them, mail without trusted Authentication-Results
    gets our own DKIM, SPF and DMARC check."""
    config = verifier.config
    trust = _assess(message, config)
    if raw is not None:
        [trust] = await with_own_checks([message], [raw], [trust], config)
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
    raws: list[bytes | None] | None = None,
    trusts: list[TrustReport] | None = None,
    smtp: bool = True,
    greylist_wait: float = 0.0,
) -> list[SenderVerification]:
    """verify_sender for many messages at once: their reply addresses are verified together, so
    shared domains cost one MX lookup and share connections. Trust reports already made (the
    triage pipeline makes them for its drafts) are used as they are, except that those without
    trusted Authentication-Results get our own check when raws (each message's bytes) are
    given."""
    config = verifier.config
    if trusts is None:
        trusts = [_assess(m, config) for m in messages]
    # The reply addresses come from the headers, not from the authentication results: both
    # checks wait on the network, side by side.
    addresses = [t.reply_address for t in trusts if t.reply_address]
    checked, found = await asyncio.gather(
        with_own_checks(messages, raws, trusts, config) if raws is not None else _same(trusts),
        verifier.verify_many(addresses, smtp=smtp, greylist_wait=greylist_wait),
    )
    results = iter(found)
    return [SenderVerification(t, next(results) if t.reply_address else None) for t in checked]


async def _same(trusts: list[TrustReport]) -> list[TrustReport]:
    return trusts
