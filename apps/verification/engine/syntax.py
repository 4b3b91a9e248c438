"""Address syntax and normalisation (RFC 5321/5322, IDNA 2008 / UTS 46) via email-validator."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import email_validator

# RFC 5321 4.5.3.1: 64 octets of local part, 255 of domain. Anything far longer is refused before
# the validator sees it, so a 10,000-character line costs nothing.
MAX_INPUT_LENGTH = 64 + 1 + 255


@dataclass(frozen=True)
class SyntaxResult:
    valid: bool
    normalized: str | None = None
    local_part: str | None = None
    domain: str | None = None
    ascii_domain: str | None = None
    smtputf8: bool = False
    error: str | None = None

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "local_part": self.local_part,
            "domain": self.domain,
            "ascii_domain": self.ascii_domain,
            "smtputf8": self.smtputf8,
            "error": self.error,
        }


def check_syntax(
    address: str,
    *,
    allow_quoted_local: bool = False,
    allow_domain_literal: bool = False,
    allow_special_use_domains: bool = False,
) -> SyntaxResult:
    if not isinstance(address, str):
        return SyntaxResult(valid=False, error="The address must be text.")
    candidate = address.strip()
    if not candidate:
        return SyntaxResult(valid=False, error="The address is empty.")
    if len(candidate) > MAX_INPUT_LENGTH:
        return SyntaxResult(
            valid=False,
            error=f"The address is {len(candidate)} characters long; at most 254 are accepted.",
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in candidate):
        return SyntaxResult(
            valid=False, error="The address contains control characters or undecodable bytes."
        )
    try:
        checked = email_validator.validate_email(
            candidate,
            check_deliverability=False,
            strict=True,  # enforce the RFC 5321 length limits on local part and address
            allow_smtputf8=True,
            allow_quoted_local=allow_quoted_local,
            allow_domain_literal=allow_domain_literal,
            test_environment=allow_special_use_domains,
        )
    except email_validator.EmailNotValidError as exc:
        return SyntaxResult(valid=False, error=str(exc))
    domain = checked.domain
    ascii_domain = checked.ascii_domain
    if getattr(checked, "domain_address", None) is not None:
        ascii_domain = domain  # an address literal such as [192.0.2.1]
    return SyntaxResult(
        valid=True,
        normalized=checked.normalized,
        local_part=checked.local_part,
        domain=domain.lower(),
        ascii_domain=(ascii_domain or domain).lower(),
        smtputf8=checked.smtputf8,
    )
