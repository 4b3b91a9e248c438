"""The verifier: syntax, DNS, lists and SMTP for many addresses at once, stopping each address as
soon as its verdict is certain.

Addresses are grouped by domain: one MX lookup per domain, a few SMTP connections per domain
reused for all of its addresses, many domains in flight at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions

from apps.verification.engine.addresses import forbidden_reason, is_forbidden
from apps.verification.engine.cache import MemoryCache, NoCache, RedisCache
from apps.verification.engine.config import VerifierConfig
from apps.verification.engine.dns import MxHost, MxLookup, MxResolver, MxStatus
from apps.verification.engine.lists import DomainLists
from apps.verification.engine.politeness import LocalLimiter, RedisLimiter
from apps.verification.engine.replies import ReplyKind
from apps.verification.engine.result import (
    VERDICT_OF,
    Reason,
    SmtpReport,
    VerificationResult,
    score_for,
)
from apps.verification.engine.similarity import suggest_domain
from apps.verification.engine.smtp import (
    CONNECTION_FAILED,
    FORBIDDEN_ADDRESS,
    TIMEOUT,
    ProbeOutcome,
    SmtpSession,
)
from apps.verification.engine.syntax import SyntaxResult, check_syntax

logger = logging.getLogger(__name__)

MX_REASONS = {
    MxStatus.NO_SUCH_DOMAIN: Reason.NO_SUCH_DOMAIN,
    MxStatus.NULL_MX: Reason.NULL_MX,
    MxStatus.NO_MAIL_SERVER: Reason.NO_MAIL_SERVER,
    MxStatus.SERVFAIL: Reason.DNS_ERROR,
    MxStatus.TIMEOUT: Reason.TIMEOUT,
}
PROBE_REASONS = {
    str(ReplyKind.MAILBOX_NOT_FOUND): Reason.MAILBOX_NOT_FOUND,
    str(ReplyKind.MAILBOX_FULL): Reason.MAILBOX_FULL,
    str(ReplyKind.MAILBOX_DISABLED): Reason.MAILBOX_DISABLED,
    str(ReplyKind.BLOCKED): Reason.BLOCKED,
    str(ReplyKind.GREYLISTED): Reason.GREYLISTED,
    str(ReplyKind.TEMPORARY): Reason.GREYLISTED,
    str(ReplyKind.RATE_LIMITED): Reason.RATE_LIMITED,
    str(ReplyKind.TOO_MANY_RECIPIENTS): Reason.SMTP_ERROR,
    str(ReplyKind.PERMANENT): Reason.SMTP_ERROR,
    TIMEOUT: Reason.TIMEOUT,
    CONNECTION_FAILED: Reason.CONNECTION_FAILED,
    FORBIDDEN_ADDRESS: Reason.FORBIDDEN_ADDRESS,
}
# Not cached per address: a later check must ask the server again (or, for a forbidden address,
# see a changed MAILSCORE_SMTP_ALLOWED_NETWORKS at once).
UNCACHED = {
    Reason.SMTP_SKIPPED,
    Reason.GREYLISTED,
    Reason.RATE_LIMITED,
    Reason.FORBIDDEN_ADDRESS,
}
# Address results are written to the cache in batches of this many (one pipeline each); the rest
# when the run ends.
CACHE_WRITE_BATCH = 200
# Replies that are not verdicts: asked again after a delay, within the caller's wait budget.
RETRYABLE = {str(ReplyKind.GREYLISTED), str(ReplyKind.TEMPORARY), str(ReplyKind.RATE_LIMITED)}


@dataclass
class _Item:
    """One input line, with what has been learned about it so far."""

    index: int
    address: str
    started: float
    syntax: SyntaxResult | None = None
    is_disposable: bool = False
    is_role: bool = False
    is_free: bool = False
    suggestion: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rcpt(self) -> str:
        """The address as sent in RCPT TO: an ASCII domain, the local part as normalised."""
        local = self.syntax.normalized.rsplit("@", 1)[0]
        return f"{local}@{self.syntax.ascii_domain}"


class Verifier:
    def __init__(
        self,
        config: VerifierConfig | None = None,
        *,
        cache=None,
        limiter=None,
        resolver: MxResolver | None = None,
        lists: DomainLists | None = None,
    ) -> None:
        self.config = config = config or VerifierConfig()
        self.cache = cache if cache is not None else MemoryCache()
        self.limiter = limiter or LocalLimiter(
            config.per_host_concurrency, config.per_host_rate, config.per_host_burst
        )
        self.resolver = resolver or MxResolver(config.dns_nameservers, config.dns_timeout)
        self.lists = lists or DomainLists(
            disposable_extra_file=config.disposable_extra_file,
            allow_domains=config.allow_domains,
            deny_domains=config.deny_domains,
            allow_addresses=config.allow_addresses,
            deny_addresses=config.deny_addresses,
        )

    @classmethod
    def shared_through_redis(
        cls, config: VerifierConfig, client, *, prefix: str, use_cache: bool = True
    ) -> Verifier:
        """A verifier whose cache and politeness limits live in Redis, so that they hold across
        every process using the same Redis and prefix."""
        limiter = RedisLimiter(
            client,
            concurrency=config.per_host_concurrency,
            rate=config.per_host_rate,
            burst=config.per_host_burst,
            prefix=prefix,
        )
        cache = RedisCache(client, prefix) if use_cache else NoCache()
        return cls(config, cache=cache, limiter=limiter)

    async def verify(self, address: str, **options) -> VerificationResult:
        return (await self.verify_many([address], **options))[0]

    async def verify_many(
        self,
        addresses: Iterable[str],
        *,
        smtp: bool = True,
        greylist_wait: float = 0.0,
        use_cache: bool = True,
        on_result: Callable[[int, VerificationResult], None] | None = None,
    ) -> list[VerificationResult]:
        """Verify every address; results come back in input order, and on_result(index, result)
        is called as each one is decided."""
        run = _Run(
            self, smtp=smtp, greylist_wait=greylist_wait, use_cache=use_cache, on_result=on_result
        )
        return await run.execute(list(addresses))


class _Run:
    """One verify_many call."""

    def __init__(self, verifier: Verifier, *, smtp, greylist_wait, use_cache, on_result) -> None:
        self.verifier = verifier
        self.config = verifier.config
        self.smtp = smtp
        self.greylist_deadline = time.monotonic() + max(0.0, greylist_wait)
        self.use_cache = use_cache
        self.on_result = on_result
        self.results: list[VerificationResult | None] = []
        self._cache_writes: list[asyncio.Task] = []
        self._unwritten: list[tuple[str, dict, int]] = []
        # MX and catch-all entries read from the cache with the addresses, by key.
        self._cached: dict[str, Any] = {}

    async def execute(self, addresses: list[str]) -> list[VerificationResult]:
        self.results = [None] * len(addresses)
        by_domain: dict[str, dict[str, list[_Item]]] = {}
        items = [
            _Item(index, address, time.perf_counter()) for index, address in enumerate(addresses)
        ]
        unfinished = [item for item in items if not self._precheck(item)]
        if self.use_cache and unfinished:
            # One batch of lookups for every address and every domain's MX and catch-all status,
            # not a round trip each.
            keys = [f"addr:{item.syntax.normalized.lower()}" for item in unfinished]
            domains = dict.fromkeys(item.syntax.ascii_domain for item in unfinished)
            domain_keys = [f"{kind}:{domain}" for domain in domains for kind in ("mx", "catchall")]
            cached = await self.verifier.cache.get_many(keys + domain_keys)
            self._cached = {key: found for key, found
                            in zip(domain_keys, cached[len(keys) :], strict=True)
                            if found is not None}  # fmt: skip
            unfinished = [item for item, found in zip(unfinished, cached[: len(keys)], strict=True)
                          if not self._answer_from_cache(item, found)]  # fmt: skip
        for item in unfinished:
            # Duplicates of one address are verified once and answered for every line.
            by_domain.setdefault(item.syntax.ascii_domain, {}).setdefault(
                item.syntax.normalized.lower(), []
            ).append(item)
        gate = asyncio.Semaphore(max(1, self.config.max_domains_in_flight))

        async def one_domain(domain: str, groups: dict[str, list[_Item]]) -> None:
            async with gate:
                try:
                    await self._verify_domain(domain, groups)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    # The shared limits are out of reach: no answer, the caller tries again.
                    raise
                except Exception as exc:
                    # A fault in one domain must not cost the answers for all the others.
                    logger.exception("verification of domain %s failed", domain)
                    for items in groups.values():
                        for item in items:
                            if self.results[item.index] is None:
                                self._finish(
                                    item, Reason.SMTP_ERROR, error=f"internal error: {exc}"
                                )

        await asyncio.gather(*(one_domain(d, g) for d, g in by_domain.items()))
        self._flush_cache_writes()
        await asyncio.gather(*self._cache_writes)
        return self.results  # type: ignore[return-value]

    def _precheck(self, item: _Item) -> bool:
        """Decide what needs no network and no cache; True when the item is finished."""
        config = self.config
        started = time.perf_counter()
        item.syntax = syntax = check_syntax(
            item.address,
            allow_quoted_local=config.allow_quoted_local,
            allow_domain_literal=config.allow_domain_literal,
            allow_special_use_domains=config.allow_special_use_domains,
        )
        item.timings["syntax_ms"] = _ms(started)
        if not syntax.valid:
            self._finish(item, Reason.INVALID_SYNTAX)
            return True
        lists = self.verifier.lists
        item.is_role = lists.is_role(syntax.local_part)
        item.is_free = lists.is_free(syntax.ascii_domain)
        item.is_disposable = lists.is_disposable(syntax.ascii_domain)
        suggested = suggest_domain(syntax.ascii_domain)
        item.suggestion = f"{syntax.local_part}@{suggested}" if suggested else None
        if lists.is_denied(syntax.normalized, syntax.ascii_domain):
            self._finish(item, Reason.DENY_LISTED)
            return True
        if lists.is_allowed(syntax.normalized, syntax.ascii_domain):
            self._finish(item, Reason.ALLOW_LISTED)
            return True
        return False

    def _answer_from_cache(self, item: _Item, cached: dict | None) -> bool:
        """Answer the item from its cached result, if there is one; True when it is finished."""
        if cached is None:
            return False
        result = VerificationResult.from_dict(cached)
        result.address, result.cached = item.address, True
        result.timings = {"total_ms": _ms(item.started)}
        self._deliver(item.index, result)
        return True

    async def _mx(self, domain: str) -> MxLookup:
        if domain.startswith("["):
            # An address literal names its server directly; there is nothing to look up.
            ip = domain.strip("[]").removeprefix("IPv6:")
            return MxLookup(domain, MxStatus.OK, [MxHost(domain, 0, [ip])], implicit=True)
        cached = self._cached.get(f"mx:{domain}")
        if cached is not None:
            return MxLookup.from_dict(domain, cached)
        lookup = await self.verifier.resolver.lookup(domain)
        if lookup.status not in (MxStatus.SERVFAIL, MxStatus.TIMEOUT):
            self._write_later(
                self.verifier.cache.set(f"mx:{domain}", lookup.as_dict(), self.config.ttl_mx)
            )
        return lookup

    async def _verify_domain(self, domain: str, groups: dict[str, list[_Item]]) -> None:
        representatives = [items[0] for items in groups.values()]
        started = time.perf_counter()
        lookup = await self._mx(domain)
        dns_ms = _ms(started)
        for items in groups.values():
            for item in items:
                item.timings["dns_ms"] = dns_ms

        def finish_all(reason: Reason, **extra) -> None:
            for items in groups.values():
                for item in items:
                    self._finish(item, reason, mx=lookup, **extra)

        if lookup.status is not MxStatus.OK:
            finish_all(MX_REASONS[lookup.status])
            return
        if representatives[0].is_disposable:
            finish_all(Reason.DISPOSABLE)
            return
        if not self.smtp:
            finish_all(Reason.SMTP_SKIPPED)
            return
        reachable = self._reachable(lookup)
        if reachable is None:
            finish_all(Reason.FORBIDDEN_ADDRESS, error=self._forbidden_error(lookup))
            return
        settled: set[str] = set()

        def settle(key: str, outcome: ProbeOutcome, attempts: int, smtp_ms: float, catch_all):
            settled.add(key)
            for item in groups[key]:
                item.timings["smtp_ms"] = smtp_ms
                self._finish_probe(item, lookup, outcome, attempts, catch_all)

        outcomes, catch_all = await self._smtp_with_retries(
            domain, reachable, representatives, settle
        )
        for key in groups.keys() - settled:
            settle(key, *outcomes[key], catch_all)

    def _reachable(self, lookup: MxLookup) -> MxLookup | None:
        """The lookup with only the addresses a connection may be opened to (public ones, or in
        smtp_allowed_networks); None when no address is left."""
        allowed = self.config.smtp_allowed_networks
        hosts = [
            MxHost(
                h.host, h.preference, [ip for ip in h.addresses if not is_forbidden(ip, allowed)]
            )
            for h in lookup.hosts
        ]
        if not any(h.addresses for h in hosts):
            return None
        return MxLookup(lookup.domain, lookup.status, hosts, lookup.implicit, lookup.error)

    def _forbidden_error(self, lookup: MxLookup) -> str:
        allowed = self.config.smtp_allowed_networks
        refused = "; ".join(
            f"{h.host} [{ip}] is {forbidden_reason(ip, allowed)}"
            for h in lookup.hosts
            for ip in h.addresses
        )
        return f"not connected: {refused} (allowed only in MAILSCORE_SMTP_ALLOWED_NETWORKS)"

    async def _smtp_with_retries(self, domain, lookup, items, settle):
        """Probe every address; ask again after a delay for those answered with a 4xx, while the
        wait budget lasts.

        An answer that can no longer change is settled at once (settle(key, outcome, attempts,
        smtp_ms, catch_all)): a final reply from a server known to refuse unknown mailboxes. Its
        verdict is then out while the domain's other addresses wait for their turn, rather than
        all of them at the end."""
        catch_all = self._cached.get(f"catchall:{domain}")
        state = {"catch_all": catch_all}
        outcomes: dict[str, tuple[ProbeOutcome, int, float]] = {}
        pending = items
        attempt = 0
        while pending:
            attempt += 1

            def answered(key: str, outcome: ProbeOutcome, smtp_ms: float, attempt=attempt) -> None:
                previous_ms = outcomes[key][2] if key in outcomes else 0.0
                outcomes[key] = (outcome, attempt, previous_ms + smtp_ms)
                # A catch-all answer may still turn out False; False itself is final (only the
                # catch-all probe sets True, and it runs while nothing is known).
                if outcome.kind not in RETRYABLE and state["catch_all"] is False:
                    settle(key, *outcomes.pop(key), False)

            await self._smtp_pass(domain, lookup, pending, state, answered)
            retry = []
            for item in pending:
                key = item.syntax.normalized.lower()
                if key not in outcomes:
                    continue  # settled
                outcome = outcomes[key][0]
                if outcome.kind in RETRYABLE:
                    retry.append(item)
            delay = self._retry_delay(attempt)
            remaining = self.greylist_deadline - time.monotonic()
            if not retry or remaining <= 0:
                break
            # The last retry waits only as long as the budget allows, so a short budget still
            # gets its second try just before it runs out.
            await asyncio.sleep(min(delay, remaining))
            pending = retry
        if state["catch_all"] is not None and catch_all is None:
            self._write_later(
                self.verifier.cache.set(
                    f"catchall:{domain}", state["catch_all"], self.config.ttl_catch_all
                )
            )
        return outcomes, state["catch_all"]

    def _retry_delay(self, attempt: int) -> float:
        return min(
            self.config.greylist_initial_delay * 2 ** (attempt - 1), self.config.greylist_max_delay
        )

    async def _smtp_pass(self, domain, lookup, items, state, answered) -> None:
        """One round over a domain's addresses with a few reused connections; answered(key,
        outcome, smtp_ms) hears each address's outcome as it comes."""
        queue = deque(items)
        outcomes: list[ProbeOutcome] = []
        server_outcome: list[ProbeOutcome] = []
        config = self.config
        limiter = self.verifier.limiter

        async def probe_one(session: SmtpSession, item: _Item, catch_all_rcpt: str | None):
            try:
                async with asyncio.timeout(config.address_budget):
                    return await session.probe(
                        item.rcpt, smtputf8=item.syntax.smtputf8, catch_all_rcpt=catch_all_rcpt
                    )
            except TimeoutError:
                await session.close()
                return ProbeOutcome(TIMEOUT, error="the address's time budget ran out")

        async def worker() -> None:
            session = SmtpSession(config, limiter, lookup.hosts)
            try:
                while queue:
                    item = queue.popleft()
                    started = time.perf_counter()
                    if server_outcome:
                        # The server already refused us or could not be reached: every other
                        # address of this domain would get the same answer now.
                        outcome = _copy_outcome(server_outcome[0])
                        answered(item.syntax.normalized.lower(), outcome, 0.0)
                        continue
                    probing = state["catch_all"] is None and not state.get("probing")
                    catch_all_rcpt = None
                    if probing:
                        state["probing"] = True
                        catch_all_rcpt = f"ms-probe-{uuid.uuid4().hex[:16]}@{domain}"
                    outcome = await probe_one(session, item, catch_all_rcpt)
                    if outcome.kind in (CONNECTION_FAILED, str(ReplyKind.TOO_MANY_RECIPIENTS)) and (
                        outcome.connection == "reused" or outcome.stage == "rcpt"
                    ):
                        # A dropped reused connection or a per-session recipient limit: once more,
                        # on a fresh connection.
                        await session.close()
                        retry = await probe_one(session, item, catch_all_rcpt)
                        retry.steps = outcome.steps + retry.steps
                        outcome = retry
                    if probing:
                        state["probing"] = False
                        if outcome.catch_all is not None:
                            state["catch_all"] = outcome.catch_all
                    if outcome.kind == ReplyKind.MAILBOX_NOT_FOUND:
                        state["catch_all"] = False  # it rejects unknown mailboxes
                    if outcome.about_the_server and outcome.kind not in RETRYABLE:
                        server_outcome.append(outcome)
                    outcomes.append(outcome)
                    answered(item.syntax.normalized.lower(), outcome, _ms(started))
            finally:
                await session.close()

        sessions = min(len(items), max(1, config.per_host_concurrency))
        await asyncio.gather(*(worker() for _ in range(sessions)))
        accepted = any(outcome.kind == ReplyKind.ACCEPTED for outcome in outcomes)
        if accepted and state["catch_all"] is None and not server_outcome:
            state["catch_all"] = await self._probe_catch_all(domain, lookup)

    async def _probe_catch_all(self, domain: str, lookup: MxLookup) -> bool | None:
        """A catch-all probe on a connection of its own, for servers that took one recipient per
        session."""
        session = SmtpSession(self.config, self.verifier.limiter, lookup.hosts)
        try:
            outcome = await session.probe(
                f"ms-probe-{uuid.uuid4().hex[:16]}@{domain}", smtputf8=False
            )
        finally:
            await session.close()
        if outcome.kind == ReplyKind.ACCEPTED:
            return True
        if outcome.kind in (ReplyKind.MAILBOX_NOT_FOUND, ReplyKind.MAILBOX_DISABLED):
            return False
        return None

    def _finish_probe(self, item, lookup, outcome: ProbeOutcome, attempts: int, catch_all) -> None:
        smtp = SmtpReport(
            checked=True,
            host=outcome.host,
            address=item.rcpt,
            can_connect=outcome.stage != "connect",
            tls=outcome.tls,
            connection=outcome.connection,
            is_catch_all=catch_all,
            reply_kind=outcome.kind,
            attempts=attempts,
            error=outcome.error,
            steps=outcome.steps,
        )
        if outcome.kind == ReplyKind.ACCEPTED:
            smtp.is_deliverable = True
            if catch_all:
                reason = Reason.CATCH_ALL
            elif item.is_role:
                reason = Reason.ROLE_ACCOUNT
            else:
                reason = Reason.OK
        else:
            reason = PROBE_REASONS.get(outcome.kind, Reason.SMTP_ERROR)
            if reason in (Reason.MAILBOX_NOT_FOUND, Reason.MAILBOX_DISABLED):
                smtp.is_deliverable = False
            if outcome.kind in RETRYABLE:
                smtp.retry_after = self._retry_delay(attempts)
        self._finish(item, reason, mx=lookup, smtp=smtp)

    def _finish(
        self,
        item: _Item,
        reason: Reason,
        *,
        mx: MxLookup | None = None,
        smtp: SmtpReport | None = None,
        error: str | None = None,
    ) -> None:
        syntax = item.syntax
        if error:
            smtp = smtp or SmtpReport()
            smtp.error = error
        catch_all = smtp.is_catch_all if smtp else None
        result = VerificationResult(
            address=item.address,
            verdict=VERDICT_OF[reason],
            reason=reason,
            score=score_for(
                reason, is_free=item.is_free, is_role=item.is_role, catch_all=catch_all
            ),
            normalized=syntax.normalized if syntax else None,
            syntax=syntax.as_dict() if syntax else {},
            mx=mx.as_dict() if mx else {},
            smtp=smtp or SmtpReport(),
            is_disposable=item.is_disposable,
            is_role=item.is_role,
            is_free=item.is_free,
            suggestion=item.suggestion,
            timings={**item.timings, "total_ms": _ms(item.started)},
        )
        self._deliver(item.index, result)
        if self.use_cache and result.normalized and reason not in UNCACHED:
            ttl = {
                "deliverable": self.config.ttl_deliverable,
                "undeliverable": self.config.ttl_undeliverable,
                "risky": self.config.ttl_risky,
                "unknown": self.config.ttl_unknown,
            }[result.verdict]
            key = f"addr:{result.normalized.lower()}"
            self._unwritten.append((key, result.to_dict(), ttl))
            if len(self._unwritten) >= CACHE_WRITE_BATCH:
                self._flush_cache_writes()

    def _flush_cache_writes(self) -> None:
        """Write the waiting cache entries in one batch, in the background so that a slow cache
        never holds a verdict back."""
        if self._unwritten:
            entries, self._unwritten = self._unwritten, []
            self._write_later(self.verifier.cache.set_many(entries))

    def _write_later(self, write) -> None:
        """A cache write in the background, awaited before the run returns: no verdict waits for
        the cache."""
        self._cache_writes.append(asyncio.ensure_future(write))

    def _deliver(self, index: int, result: VerificationResult) -> None:
        self.results[index] = result
        if self.on_result is not None:
            self.on_result(index, result)


def _copy_outcome(outcome: ProbeOutcome) -> ProbeOutcome:
    return ProbeOutcome(
        kind=outcome.kind,
        stage=outcome.stage,
        host=outcome.host,
        tls=outcome.tls,
        connection=None,
        error=f"not probed: the server answered another address of this domain: {outcome.error}",
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
