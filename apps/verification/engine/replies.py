"""Classify SMTP replies by code, enhanced status code (RFC 3463) and text.

The hard part is telling "this mailbox does not exist" from "this server does not want to talk to
you": both often arrive as 550. Only the first may ever make an address undeliverable.
"""

from __future__ import annotations

import re
from enum import StrEnum


class ReplyKind(StrEnum):
    ACCEPTED = "accepted"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_FULL = "mailbox_full"
    MAILBOX_DISABLED = "mailbox_disabled"
    BLOCKED = "blocked"  # our IP, HELO or sender is refused by policy: says nothing of the mailbox
    GREYLISTED = "greylisted"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    TEMPORARY = "temporary"  # another 4xx
    PERMANENT = "permanent"  # another 5xx we cannot read as a mailbox verdict


ENHANCED_CODE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

_BLOCK_WORDS = re.compile(
    r"block|blacklist|blocklist|denylist|spamhaus|barracuda|spamcop|sorbs|\brbl\b|\bdnsbl\b|"
    r"reputation|client host|your ip|ip address|poor reputation|listed|banned|not allowed to send|"
    r"access denied|policy|rejected by|helo|reverse dns|ptr|rdns|spf|sender address rejected|"
    r"sender verify|authentication required|relay",
    re.IGNORECASE,
)
_UNKNOWN_WORDS = re.compile(
    r"user unknown|unknown user|no such user|no such mailbox|no such recipient|"
    r"does not exist|doesn't exist|not exist|unknown recipient|recipient unknown|invalid recipient|"
    r"recipient not found|address not found|mailbox not found|mailbox unavailable|"
    r"mailbox is unavailable|unrouteable|unroutable|no mailbox|not a valid mailbox|"
    r"user not found|account does not exist|address rejected: user|undeliverable address|"
    r"invalid address|unknown address|bad destination|no longer available",
    re.IGNORECASE,
)
_FULL_WORDS = re.compile(r"mailbox full|mailbox is full|\bquota\b|insufficient storage", re.I)
_DISABLED_WORDS = re.compile(
    r"\b(disabled|inactive|suspended|deactivated|locked|closed|no longer active)\b", re.I
)
_GREYLIST_WORDS = re.compile(
    r"greylist|graylist|grey-list|gray-list|try again later|please retry|temporarily deferred|"
    r"deferred|come back later|try later",
    re.I,
)
_RATE_WORDS = re.compile(
    r"rate limit|too many (connections|messages|requests|concurrent)|slow down|throttl|"
    r"exceeded|too fast|too many sessions",
    re.I,
)
_TOO_MANY_RCPT_WORDS = re.compile(r"too many recipients|recipient limit|one recipient", re.I)


def enhanced_code(text: str) -> str | None:
    match = ENHANCED_CODE.match(text or "")
    return ".".join(match.groups()) if match else None


def classify(code: int, text: str, stage: str = "rcpt") -> ReplyKind:
    """What a reply means. stage is the command it answers: greeting, ehlo, mail or rcpt."""
    text = text or ""
    if 200 <= code < 400:
        return ReplyKind.ACCEPTED
    enhanced = enhanced_code(text) or ""
    subject_detail = enhanced[2:] if enhanced else ""

    if subject_detail in ("5.3",) or _TOO_MANY_RCPT_WORDS.search(text):
        return ReplyKind.TOO_MANY_RECIPIENTS
    if (
        _RATE_WORDS.search(text)
        or subject_detail in ("7.28",)
        or code == 421
        and "too many" in text
    ):
        return ReplyKind.RATE_LIMITED

    if stage != "rcpt":
        # A refusal before RCPT is about us (our IP, HELO name or envelope sender), never about
        # the mailbox we have not named yet.
        if 400 <= code < 500:
            return ReplyKind.GREYLISTED if _GREYLIST_WORDS.search(text) else ReplyKind.TEMPORARY
        return ReplyKind.BLOCKED

    if 400 <= code < 500:
        if subject_detail == "2.2" or _FULL_WORDS.search(text):
            return ReplyKind.MAILBOX_FULL
        if (
            subject_detail == "7.1"
            and _BLOCK_WORDS.search(text)
            and not _GREYLIST_WORDS.search(text)
        ):
            return ReplyKind.BLOCKED
        return (
            ReplyKind.GREYLISTED
            if _GREYLIST_WORDS.search(text) or code in (450, 451)
            else (ReplyKind.TEMPORARY)
        )

    # 5xx at RCPT.
    if subject_detail == "4.1" and "recipient address rejected" in text.lower():
        # Microsoft 365's directory-based edge blocking: the recipient is not in the directory.
        return ReplyKind.MAILBOX_NOT_FOUND
    if subject_detail in ("1.1", "1.0", "1.3", "1.6", "1.10") and not _BLOCK_WORDS.search(text):
        return ReplyKind.MAILBOX_NOT_FOUND
    if subject_detail == "2.2" or code == 552 or _FULL_WORDS.search(text):
        return ReplyKind.MAILBOX_FULL
    if subject_detail == "2.1":
        return ReplyKind.MAILBOX_DISABLED
    if subject_detail.startswith("7.") or _BLOCK_WORDS.search(text):
        # 5.7.x is a security or policy refusal. Some servers send "5.7.1 user unknown"; believe
        # the words only when nothing in them points at us.
        if _UNKNOWN_WORDS.search(text) and not _BLOCK_WORDS.search(text):
            return ReplyKind.MAILBOX_NOT_FOUND
        return ReplyKind.BLOCKED
    if _DISABLED_WORDS.search(text):
        return ReplyKind.MAILBOX_DISABLED
    if subject_detail.startswith("1.") or _UNKNOWN_WORDS.search(text):
        return ReplyKind.MAILBOX_NOT_FOUND
    if code in (550, 551, 553) and not subject_detail:
        # A bare 550 to RCPT is RFC 5321's "mailbox unavailable".
        return ReplyKind.MAILBOX_NOT_FOUND
    return ReplyKind.PERMANENT
