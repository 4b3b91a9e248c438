"""DKIM, SPF and DMARC checked by us, for mail that carries no Authentication-Results from a
receiving server we trust. dkimpy verifies signatures, pyspf evaluates SPF, DMARC is ours.

Every DNS lookup goes through dnspython's async resolver with the verifier's nameservers and
timeout; the libraries are handed what was fetched, so they never query DNS themselves and never
block the event loop. Failures are results (temperror, permerror), never exceptions.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any, Protocol

import dkim
import dns.asyncresolver
import dns.exception
import dns.resolver
import spf
from dkim.util import parse_tag_value

from apps.verification.engine.dns import build_resolver
from apps.verification.engine.trust import AuthResult, organisational_domain

logger = logging.getLogger(__name__)

# A message may carry many signatures (every list and forwarder adds one); a few are enough to
# find an aligned pass, and each costs a key lookup and a pass over the body.
MAX_SIGNATURES = 5
# Each SPF evaluation that meets an unfetched name stops, the name is fetched, and it starts
# again. RFC 7208 allows 10 mechanisms that look names up, an mx one up to 10 hosts: about 110
# names at most, fewer rounds since an MX answer's host addresses are fetched with it.
MAX_SPF_ROUNDS = 120
# Each method's lookups together get this many times the DNS timeout; past it, temperror.
LOOKUPS_PER_METHOD = 4
FAILED = ("timeout", "servfail")
DMARC_RECORD = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
SIGNATURE_HEADER = re.compile(rb"(?im)^dkim-signature\s*:")
BRACKETED_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")


class HeaderSource(Protocol):
    def get_all(self, name: str, default: Any = None) -> list | None: ...


@dataclass(frozen=True)
class Answer:
    """One DNS lookup: status is "ok", "nxdomain", "nodata", "timeout" or "servfail"."""

    status: str
    records: tuple = ()

    @property
    def failed(self) -> bool:
        return self.status in FAILED


class Lookups:
    """Each name and type asked once, through our resolver: per message, or shared by a batch of
    messages (mail from one domain asks for its records once), a lookup in flight awaited by
    whoever asks for it meanwhile."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self.answers: dict[tuple[str, str], Answer] = {}
        self._pending: dict[tuple[str, str], asyncio.Task] = {}

    async def get(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        if key not in self.answers:
            if key not in self._pending:
                self._pending[key] = asyncio.ensure_future(self._resolve(*key))
            answer = await asyncio.shield(self._pending[key])
            self.answers[key] = answer
            self._pending.pop(key, None)
        return self.answers[key]

    async def _resolve(self, name: str, rdtype: str) -> Answer:
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Answer("nxdomain")
        except dns.resolver.NoAnswer:
            return Answer("nodata")
        except dns.exception.Timeout:
            return Answer("timeout")
        except dns.exception.SyntaxError:
            return Answer("nxdomain")  # no such name can exist (an empty or too long label)
        except dns.exception.DNSException:
            # NoNameservers: every server answered SERVFAIL or refused.
            return Answer("servfail")
        return Answer("ok", tuple(answer))


def _txt(answer: Answer) -> list[bytes]:
    return [b"".join(rdata.strings) for rdata in answer.records]


# DKIM (RFC 6376) with dkimpy.


def _signature_tags(header_value: bytes) -> dict[str, str]:
    try:
        tags = parse_tag_value(header_value)
    except Exception:
        return {}
    return {
        f"header.{k.decode()}": re.sub(r"\s+", "", tags[k].decode("ascii", "replace"))
        for k in (b"d", b"s")
        if k in tags
    }


def _dkim_result(result: str, properties: dict[str, str], reason: str = "") -> AuthResult:
    if reason:
        properties = {**properties, "reason": reason[:300]}
    return AuthResult("dkim", result, properties)


async def check_dkim(raw: bytes, lookups: Lookups) -> list[AuthResult]:
    """One result per signature (the first MAX_SIGNATURES), "none" when there is none."""
    try:
        verifier = dkim.DKIM(raw)
    except Exception as exc:
        if not SIGNATURE_HEADER.search(raw):
            return [_dkim_result("none", {}, "the message has no DKIM-Signature")]
        return [_dkim_result("permerror", {}, f"the message cannot be read: {exc}")]
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if not signatures:
        return [_dkim_result("none", {}, "the message has no DKIM-Signature")]
    results = []
    for index, header_value in enumerate(signatures[:MAX_SIGNATURES]):
        results.append(await _check_signature(verifier, index, header_value, lookups))
    return results


async def _check_signature(verifier, index: int, header_value: bytes, lookups: Lookups):
    properties = _signature_tags(header_value)
    try:
        # Syntax, required tags, algorithm, expiry (x=) and time (t=): before any lookup.
        signature = verifier.verify_headerprep(index)[0]
    except Exception as exc:
        return _dkim_result("permerror", properties, f"malformed signature: {exc}")
    domain = signature[b"d"].decode("ascii", "replace")
    selector = signature[b"s"].decode("ascii", "replace")
    name = f"{selector}._domainkey.{domain}"
    answer = await lookups.get(name, "TXT")
    if answer.failed:
        return _dkim_result("temperror", properties, f"key lookup for {name}: {answer.status}")
    records = _txt(answer)
    if not records:
        return _dkim_result("permerror", properties, f"no key for signature at {name}")
    key = records[0]  # as dkimpy's own lookup takes it
    try:
        dkim.evaluate_pk(name, key)
    except Exception as exc:
        return _dkim_result("permerror", properties, f"unusable key at {name}: {exc}")

    def verify() -> bool:
        # dkimpy asks for the key through dnsfunc: it gets the record fetched above.
        return verifier.verify(index, dnsfunc=lambda _name, timeout=5: key)

    try:
        # Canonicalising and hashing a large body is CPU work: off the event loop.
        verified = await asyncio.to_thread(verify)
    except dkim.ValidationError as exc:  # the body hash differs, or the key's service type
        return _dkim_result("fail", properties, str(exc))
    except Exception as exc:
        return _dkim_result("permerror", properties, f"{type(exc).__name__}: {exc}")
    if verified:
        return _dkim_result("pass", properties)
    return _dkim_result("fail", properties, "the signature does not verify")


# SPF (RFC 7208) with pyspf.


class _Unfetched(Exception):
    """pyspf asked for a name not fetched yet: the evaluation stops and starts again."""


@dataclass
class _SpfAnswers:
    answers: dict[tuple[str, str], Answer]
    missing: set[tuple[str, str]] = field(default_factory=set)


_spf_answers: contextvars.ContextVar[_SpfAnswers | None] = contextvars.ContextVar(
    "spf_answers", default=None
)
_library_lookup = spf.DNSLookup


def _spf_records(answer: Answer, name: str, qtype: str) -> list:
    """What pyspf's dnspython lookup returns: ((name, type), value) pairs."""
    found = []
    for rdata in answer.records:
        if qtype in ("A", "AAAA"):
            value = rdata.address
        elif qtype == "MX":
            value = (rdata.preference, rdata.exchange)
        elif qtype == "PTR":
            value = rdata.target.to_text(True)
        elif qtype in ("TXT", "SPF"):
            value = rdata.strings
        else:
            continue
        found.append(((name, qtype), value))
    return found


def _spf_lookup(name, qtype, strict=True, timeout=None):
    """pyspf's DNS hook. Within our check it answers only from what we fetched; elsewhere in
    the process pyspf keeps its own lookup."""
    current = _spf_answers.get()
    if current is None:
        return _library_lookup(name, qtype, strict, timeout)
    key = (str(name).lower().rstrip("."), qtype)
    answer = current.answers.get(key)
    if answer is None:
        current.missing.add(key)
        raise _Unfetched(key)
    if answer.failed:
        raise spf.TempError(f"DNS {answer.status} for {key[0]} {qtype}")
    return _spf_records(answer, key[0], qtype)


# pyspf looks its records up through this module-level hook (spf.query.dns calls it); setting it
# here keeps pyspf off the system resolver whenever our check runs it.
spf.DNSLookup = _spf_lookup


def _public_ip(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address) if address.is_global else None


def connecting_client(message: HeaderSource) -> tuple[str | None, str, str]:
    """(client IP, HELO name, why there is no IP) from the Received headers: the first one from
    the top whose from-clause names a public IP. Above it are our own servers' internal hops
    (loopback, private addresses, or no from-clause at all); it is where the mail came in."""
    headers = [" ".join(str(h).split()) for h in message.get_all("Received", None) or []]
    if not headers:
        return None, "", "the message has no Received header"
    for header in headers:
        clause = re.match(r"(?i)\s*from\s+(.*?)(?:\s+by\s|;|$)", header)
        if not clause:
            continue
        for candidate in BRACKETED_IP.findall(clause.group(1)):
            ip = _public_ip(candidate)
            if ip:
                helo = clause.group(1).split()[0].strip("[]()")
                return ip, helo, ""
    return None, "", "no Received header names a public client IP"


def envelope_sender(message: HeaderSource) -> str:
    """Return-Path, else From: the address SPF checks. "" for the null sender (<>)."""
    for name in ("Return-Path", "From"):
        values = message.get_all(name, None) or []
        if not values:
            continue
        pairs = getaddresses([str(values[0])])
        return pairs[0][1].strip() if pairs else ""
    return ""


async def check_spf(message: HeaderSource, lookups: Lookups) -> AuthResult:
    ip, helo, why = connecting_client(message)
    sender = envelope_sender(message)
    properties = {"smtp.mailfrom": sender} if sender else {}
    if not ip:
        return AuthResult("spf", "none", {**properties, "reason": why})
    properties["client-ip"] = ip
    if helo:
        properties["smtp.helo"] = helo
    if not sender and not helo:
        return AuthResult("spf", "none", {**properties, "reason": "no sender and no HELO name"})
    for _ in range(MAX_SPF_ROUNDS):
        state = _SpfAnswers(lookups.answers)
        token = _spf_answers.set(state)
        try:
            result, _code, explanation = spf.query(i=ip, s=sender, h=helo).check()
        except _Unfetched:
            result, explanation = None, ""
        finally:
            _spf_answers.reset(token)
        if not state.missing:
            if result == "none":
                properties["reason"] = f"no SPF record for {sender.rpartition('@')[2] or helo}"
            elif result != "pass":
                properties["reason"] = explanation[:300]
            return AuthResult("spf", result, properties)
        missing = sorted(state.missing)
        answers = await asyncio.gather(*(lookups.get(name, qtype) for name, qtype in missing))
        # pyspf asks for each MX host's address next: fetch them all at once.
        address = "AAAA" if ":" in ip else "A"
        hosts = {
            rdata.exchange.to_text(omit_final_dot=True)
            for (_, qtype), answer in zip(missing, answers, strict=True)
            if qtype == "MX"
            for rdata in answer.records
        }
        await asyncio.gather(*(lookups.get(host, address) for host in hosts))
    return AuthResult("spf", "permerror", {**properties, "reason": "too many DNS lookups"})


# DMARC (RFC 7489): policy discovery and identifier alignment.


def _from_domain(message: HeaderSource) -> str | None:
    pairs = getaddresses([str(v) for v in message.get_all("From", None) or []])
    addresses = {address.lower() for _, address in pairs if "@" in address}
    if len(addresses) != 1:
        return None  # no From address, or several: DMARC has no single domain to check
    return addresses.pop().rsplit("@", 1)[1].rstrip(".") or None


def _aligned(domain: str | None, from_domain: str, mode: str) -> bool:
    if not domain:
        return False
    domain = domain.lower().rstrip(".")
    if mode == "s":
        return domain == from_domain
    return organisational_domain(domain) == organisational_domain(from_domain)


async def _dmarc_record(from_domain: str, lookups: Lookups) -> tuple[str, dict | str]:
    """(where it was found, its tags), or ("", why there is none) with why "timeout" or
    "servfail" when the lookup failed."""
    candidates = [from_domain]
    organisational = organisational_domain(from_domain)
    if organisational != from_domain:
        candidates.append(organisational)
    for domain in candidates:
        answer = await lookups.get(f"_dmarc.{domain}", "TXT")
        if answer.failed:
            return "", answer.status
        texts = [t.decode("utf-8", "replace").strip() for t in _txt(answer)]
        records = [t for t in texts if DMARC_RECORD.match(t)]
        if len(records) > 1:
            return "", f"more than one DMARC record at _dmarc.{domain}"
        if records:
            tags = {}
            for part in records[0].split(";"):
                key, sep, value = part.partition("=")
                if sep:
                    tags[key.strip().lower()] = value.strip()
            return domain, tags
    return "", f"no DMARC record for {from_domain}"


async def check_dmarc(
    message: HeaderSource, dkim_results: list[AuthResult], spf_result: AuthResult, lookups: Lookups
) -> AuthResult:
    from_domain = _from_domain(message)
    if not from_domain:
        return AuthResult("dmarc", "none", {"reason": "no single From domain"})
    properties = {"header.from": from_domain}
    found_at, tags = await _dmarc_record(from_domain, lookups)
    if not found_at:
        if tags in FAILED:
            return AuthResult("dmarc", "temperror", {**properties, "reason": f"lookup {tags}"})
        return AuthResult("dmarc", "none", {**properties, "reason": tags})
    policies = ("none", "quarantine", "reject")
    policy = tags.get("p", "").lower()
    if found_at != from_domain and tags.get("sp", "").lower() in policies:
        policy = tags["sp"].lower()
    if policy not in policies:
        if not tags.get("rua"):
            reason = f"the DMARC record at _dmarc.{found_at} has no valid p= tag"
            return AuthResult("dmarc", "none", {**properties, "reason": reason})
        policy = "none"  # RFC 7489 6.6.3: a record with reporting URIs acts as p=none
    properties["policy.p"] = policy
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    for result in dkim_results:
        domain = result.properties.get("header.d")
        if result.result == "pass" and _aligned(domain, from_domain, adkim):
            return AuthResult("dmarc", "pass", {**properties, "reason": f"aligned DKIM d={domain}"})
    mailfrom = spf_result.properties.get("smtp.mailfrom") or (
        f"postmaster@{spf_result.properties.get('smtp.helo', '')}"
    )
    spf_domain = mailfrom.rpartition("@")[2]
    if spf_result.result == "pass" and _aligned(spf_domain, from_domain, aspf):
        return AuthResult("dmarc", "pass", {**properties, "reason": f"aligned SPF {spf_domain}"})
    if any(r.result == "temperror" for r in [*dkim_results, spf_result]):
        reason = "no aligned pass, and a DKIM or SPF check could not be completed"
        return AuthResult("dmarc", "temperror", {**properties, "reason": reason})
    return AuthResult("dmarc", "fail", {**properties, "reason": "no aligned DKIM or SPF pass"})


# The whole check.


def _without_mbox_line(raw: bytes) -> bytes:
    # Mail read from an mbox file starts with its "From " separator line, which is not a header
    # and was never signed.
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw


async def _guarded(method: str, work, budget: float) -> Any:
    try:
        async with asyncio.timeout(budget):
            return await work
    except TimeoutError:
        return AuthResult(method, "temperror", {"reason": f"lookups took over {budget:g} s"})
    except Exception as exc:
        logger.warning("The %s check failed", method, exc_info=True)
        return AuthResult(method, "temperror", {"reason": f"{type(exc).__name__}: {exc}"})


async def check_authentication(
    raw: bytes,
    message: HeaderSource,
    *,
    nameservers: Iterable[str] = (),
    timeout: float = 5.0,
    resolver=None,
    lookups: Lookups | None = None,
) -> list[AuthResult]:
    """DKIM (a result per signature), SPF and DMARC for one message. raw: its exact bytes (the
    signatures cover them); message: its parsed headers (email.message.Message or the inbox's
    ParsedMessage). Lookups go through lookups (shared by a batch), else a resolver given or
    built from nameservers and timeout."""
    lookups = lookups or Lookups(resolver or build_resolver(nameservers, timeout))
    budget = LOOKUPS_PER_METHOD * timeout
    dkim_results, spf_result = await asyncio.gather(
        _guarded("dkim", check_dkim(_without_mbox_line(bytes(raw)), lookups), budget),
        _guarded("spf", check_spf(message, lookups), budget),
    )
    if isinstance(dkim_results, AuthResult):
        dkim_results = [dkim_results]
    dmarc_result = await _guarded(
        "dmarc", check_dmarc(message, dkim_results, spf_result, lookups), budget
    )
    return [*dkim_results, spf_result, dmarc_result]
