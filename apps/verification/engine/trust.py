"""Is the sender who they claim to be? Signals from a message's headers, and a trust level.

Authentication-Results (RFC 8601) are read only from the receiving servers we trust: those named
in trusted_authserv_ids, or, when none are named, the topmost header (added by the server nearest
to us; anything below it may have been written by the sender). Without any, the results of our
own DKIM, SPF and DMARC check (engine/authentication.py) are scored by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from email.message import Message
from email.utils import getaddresses

from apps.verification.engine.similarity import WELL_KNOWN_DOMAINS, lookalike_of

ADDRESS_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
# The authserv-id our own check's results carry, as a receiving server's would carry its name.
OWN_AUTHSERV_ID = "mailscore"


@dataclass
class Signal:
    code: str
    severity: str  # "good", "info", "warning" or "danger"
    detail: str


@dataclass
class AuthResult:
    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class TrustReport:
    level: str  # "trusted", "neutral" or "suspicious"
    score: int  # 0-100
    from_address: str | None
    reply_address: str | None
    authserv_id: str | None = None
    authentication: list[AuthResult] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrustReport:
        return cls(**{
            **data,
            "authentication": [AuthResult(**a) for a in data.get("authentication", [])],
            "signals": [Signal(**s) for s in data.get("signals", [])],
        })  # fmt: skip


def _strip_comments(value: str) -> str:
    out, depth, quoted = [], 0, False
    for ch in value:
        if ch == '"' and depth == 0:
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
            continue
        if not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """(authserv-id, results) from one Authentication-Results header value. The id is "" when
    the header has none: Microsoft 365 writes "spf=pass (...) smtp.mailfrom=...; dkim=..."
    with no server name in front, so the first part is already a result."""
    parts = _split_outside_quotes(_strip_comments(" ".join(value.split())), ";")
    first = parts[0].strip().split()
    if first and "=" in first[0]:
        authserv_id, result_parts = "", parts
    else:
        authserv_id, result_parts = (first[0].lower() if first else ""), parts[1:]
    results = []
    for part in result_parts:
        tokens = [t for t in _split_outside_quotes(part.strip(), " ") if t]
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        properties = {}
        for token in tokens[1:]:
            key, sep, prop = token.partition("=")
            if sep:
                properties[key.lower()] = prop.strip('"')
        results.append(AuthResult(method.split("/")[0].lower(), result.lower(), properties))
    return authserv_id, results


def address_domain(address: str | None) -> str | None:
    """The domain of an address, lower case, without a trailing dot; None without one."""
    if not address or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].lower().rstrip(".")


def organisational_domain(domain: str) -> str:
    # The last two labels: enough to call mail.example.com and example.com one sender. Public
    # suffixes of three labels (example.co.uk) compare on their last three.
    labels = domain.split(".")
    keep = 3 if len(labels) > 2 and len(labels[-2]) <= 3 and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def trusted_authentication(
    message: Message, trusted_authserv_ids: tuple[str, ...] = ()
) -> tuple[str | None, list[AuthResult]]:
    """(authserv-id, results) of the Authentication-Results header we trust, or (None, [])."""
    trusted = {a.lower() for a in trusted_authserv_ids}
    for header in message.get_all("Authentication-Results", []):
        server, results = parse_authentication_results(str(header))
        if trusted and server not in trusted:
            continue
        return server, results
    return None, []


def _authentication_signals(authentication: list[AuthResult]) -> tuple[list[Signal], dict]:
    """The signals of a set of results, whoever checked them, and the verdict per method."""
    signals: list[Signal] = []
    verdicts = {r.method: r.result for r in authentication}
    if any(r.method == "dkim" and r.result == "pass" for r in authentication):
        verdicts["dkim"] = "pass"
    dmarc, spf, dkim = verdicts.get("dmarc"), verdicts.get("spf"), verdicts.get("dkim")
    if dmarc == "pass":
        signals.append(Signal("dmarc_pass", "good", "DMARC passed for the From domain."))
    elif dmarc in ("fail", "permerror"):
        signals.append(Signal("dmarc_fail", "danger", f"DMARC {dmarc} for the From domain."))
    if spf in ("fail", "softfail"):
        signals.append(Signal(f"spf_{spf}", "warning", f"SPF {spf} for the envelope sender."))
    elif spf == "pass":
        signals.append(Signal("spf_pass", "good", "SPF passed."))
    if dkim in ("fail", "permerror"):
        signals.append(Signal("dkim_fail", "warning", "No DKIM signature verified."))
    elif dkim == "pass":
        signals.append(Signal("dkim_pass", "good", "A DKIM signature verified."))
    return signals, verdicts


def assess_sender(
    message: Message,
    *,
    own_domains: tuple[str, ...] = (),
    trusted_authserv_ids: tuple[str, ...] = (),
    own_check: list[AuthResult] | None = None,
) -> TrustReport:
    """The sender's trust level and the signals behind it. own_check: the results of our own
    DKIM, SPF and DMARC check, used when no trusted Authentication-Results are present."""
    signals: list[Signal] = []
    from_pairs = getaddresses(message.get_all("From", []))
    from_name, from_address = from_pairs[0] if from_pairs else ("", "")
    from_address = from_address.strip() or None
    reply_pairs = getaddresses(message.get_all("Reply-To", []))
    reply_to = reply_pairs[0][1].strip() if reply_pairs and reply_pairs[0][1] else None
    from_domain = address_domain(from_address)
    if not from_domain:
        signals.append(Signal("from_unparseable", "warning", "The From header has no address."))

    # Authentication-Results from the servers we trust; without any, our own check's results.
    authserv_id, authentication = trusted_authentication(message, trusted_authserv_ids)
    if not authentication:
        signals.append(
            Signal(
                "no_authentication_results",
                "info",
                "No Authentication-Results from a trusted receiving server.",
            )
        )
        if own_check is not None:
            authserv_id, authentication = OWN_AUTHSERV_ID, own_check
            signals.append(
                Signal(
                    "own_authentication_check",
                    "info",
                    f"DKIM, SPF and DMARC were checked by {OWN_AUTHSERV_ID} itself.",
                )
            )
    found, verdicts = _authentication_signals(authentication)
    signals.extend(found)
    dmarc, spf, dkim = verdicts.get("dmarc"), verdicts.get("spf"), verdicts.get("dkim")

    # Replies that would go somewhere else than the sender.
    reply_domain = address_domain(reply_to)
    if reply_to and from_address and reply_to.lower() != from_address.lower():
        if (
            reply_domain
            and from_domain
            and organisational_domain(reply_domain) != organisational_domain(from_domain)
        ):
            signals.append(
                Signal(
                    "reply_to_other_domain",
                    "warning",
                    f"Replies go to {reply_to}, not to the sender's domain {from_domain}.",
                )
            )
        else:
            signals.append(Signal("reply_to_differs", "info", f"Replies go to {reply_to}."))

    # A display name that holds another address: "support@bank.com" <x@attacker.net>.
    for shown in ADDRESS_IN_TEXT.findall(from_name or ""):
        if from_address and shown.lower() != from_address.lower():
            signals.append(
                Signal(
                    "display_name_spoof",
                    "danger",
                    f"The display name shows {shown} but the mail is from {from_address}.",
                )
            )
            break

    protected = tuple(own_domains) + WELL_KNOWN_DOMAINS
    for role, domain in (("From", from_domain), ("Reply-To", reply_domain)):
        if not domain:
            continue
        match = lookalike_of(domain, protected)
        if match:
            target, how = match
            signals.append(
                Signal(
                    "lookalike_domain",
                    "danger",
                    f"The {role} domain {domain} imitates {target} ({how}).",
                )
            )

    score = 50
    weights = {"good": 12, "info": 0, "warning": -15, "danger": -40}
    for signal in signals:
        score += weights[signal.severity]
    score = max(0, min(100, score))
    if any(s.severity == "danger" for s in signals):
        level = "suspicious"
    elif dmarc == "pass" or (spf == "pass" and dkim == "pass"):
        level = "trusted" if not any(s.severity == "warning" for s in signals) else "neutral"
    else:
        level = "neutral"
    return TrustReport(
        level=level,
        score=score,
        from_address=from_address,
        reply_address=reply_to or from_address,
        authserv_id=authserv_id,
        authentication=authentication,
        signals=signals,
    )


# The review reason for mail from a sender whose identity failed its checks (level "suspicious":
# DMARC failed, the display name holds another address, or the domain imitates another) that the
# heads did not call spam.
# Phishing written as an invoice or a security notice reads like the real thing, so a person
# looks at it before anyone acts on it.
SENDER_REVIEW = "sender"


def review_reason(category: str | None, review: str | None, level: str | None) -> str | None:
    """Why a person should look at a triaged message before anyone relies on it, or None: the
    classifier's own reason (review) first, then the sender's trust level."""
    if review:
        return review
    if level == "suspicious" and category != "spam":
        return SENDER_REVIEW
    return None
