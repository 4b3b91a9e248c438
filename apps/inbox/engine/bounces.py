"""Per-recipient outcomes of an RFC 3464 delivery status notification, and which of them say the
mailbox does not exist (a hard bounce).

Only the machine-readable message/delivery-status part is read: free-text bounces word the same
failure a thousand ways, and a guess would mark good addresses undeliverable.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser

# A report listing more recipients than this is read up to here: no mail we sent had more, and
# the rest would only cost time.
MAX_RECIPIENTS = 1000
# Parts visited and nesting followed while looking for the report (a forward of a forward of a
# bounce is as deep as real mail goes).
MAX_PARTS = 200
MAX_DEPTH = 8
MAX_FIELD_CHARS = 1000

# Without this text there is no delivery-status part anywhere in the message: a cheap test that
# spares parsing the other 99% of mail.
_MENTIONS_REPORT = re.compile(rb"message/delivery-status", re.IGNORECASE)
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
# Address types of Final-Recipient / Original-Recipient that hold an Internet address
# (RFC 3464 and RFC 6533's utf-8); anything else (x400, unknown) is not one we verify.
_INTERNET_ADDRESS_TYPES = {"rfc822", "utf-8", ""}
# 5.1.7 and 5.1.8 are about the sender's address, not the recipient's.
_SENDER_ADDRESS_DETAILS = {7, 8}


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a delivery status notification."""

    # The address as we sent to it: Original-Recipient where the report gives one (the address
    # before any forwarding), else Final-Recipient.
    recipient: str
    final_recipient: str | None
    action: str  # failed, delayed, delivered, relayed or expanded; lower case
    status: str  # the RFC 3463 code, e.g. "5.1.1"; "" when the block has none that reads
    diagnostic: str  # Diagnostic-Code as given, e.g. "smtp; 550 5.1.1 User unknown"

    @property
    def is_hard_bounce(self) -> bool:
        """Failed for good because the mailbox is not there or is disabled (5.1.x, 5.2.1);
        not a policy refusal (5.7.x), a full mailbox (5.2.2), a routing or network fault (5.4.x,
        5.3.x) or a delay (4.x.x)."""
        if self.action != "failed":
            return False
        match = _STATUS.fullmatch(self.status)
        if not match:
            return False
        klass, subject, detail = (int(n) for n in match.groups())
        if klass != 5:
            return False
        if subject == 1:
            return detail not in _SENDER_ADDRESS_DETAILS
        return subject == 2 and detail == 1


def recipient_statuses(
    message: bytes | Message, *, max_recipients: int = MAX_RECIPIENTS
) -> list[RecipientStatus]:
    """Every per-recipient block of the delivery status notifications in message (raw RFC 822
    bytes or a parsed message), including one forwarded as a message/rfc822 attachment. Empty for
    mail that holds none; never raises on malformed input."""
    if isinstance(message, bytes | bytearray | memoryview):
        raw = bytes(message)
        if not _MENTIONS_REPORT.search(raw):
            return []
        message = message_from_bytes(raw, policy=policy.compat32)
    statuses: list[RecipientStatus] = []
    for part in _delivery_status_parts(message):
        for fields in _recipient_blocks(part):
            status = _recipient_status(fields)
            if status is not None:
                statuses.append(status)
                if len(statuses) >= max_recipients:
                    return statuses
    return statuses


def hard_bounces(
    message: bytes | Message, *, max_recipients: int = MAX_RECIPIENTS
) -> list[RecipientStatus]:
    """The recipients a delivery status notification says have no mailbox (is_hard_bounce)."""
    statuses = recipient_statuses(message, max_recipients=max_recipients)
    return [status for status in statuses if status.is_hard_bounce]


def _delivery_status_parts(message: Message) -> list[Message]:
    found: list[Message] = []
    stack: list[tuple[Message, int]] = [(message, 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        part, depth = stack.pop()
        visited += 1
        if part.get_content_type() == "message/delivery-status":
            found.append(part)
            continue
        payload = part.get_payload()
        if depth < MAX_DEPTH and isinstance(payload, list):
            # Both multipart/* and message/rfc822 (a forwarded bounce) hold their parts here.
            stack.extend((sub, depth + 1) for sub in reversed(payload) if isinstance(sub, Message))
    return found


def _recipient_blocks(part: Message) -> list[dict[str, str]]:
    """The part's field blocks as {lower-case name: value}; the per-message block is among them
    and is told apart later by having no recipient."""
    payload = part.get_payload()
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
        # The email package reads the encoded lines as blocks of fields (and finds none): they
        # are the body of its first block.
        if isinstance(payload, list):
            payload = "".join(b.get_payload() for b in payload if isinstance(b.get_payload(), str))
        try:
            text = base64.b64decode(str(payload)).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            return []
    elif isinstance(payload, list):
        # The email package already split the blocks, one Message each.
        return [_fields(block.items()) for block in payload if isinstance(block, Message)]
    else:
        text = str(payload or "")
    parser = HeaderParser(policy=policy.compat32)
    return [_fields(parser.parsestr(block.strip() + "\n").items()) for block in _blocks(text)]


def _blocks(text: str) -> list[str]:
    return [block for block in _BLANK_LINE.split(text.strip()) if block.strip()]


def _fields(items) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in items:
        # The first of a repeated field counts, as in the headers of a message.
        fields.setdefault(name.strip().lower(), " ".join(str(value).split())[:MAX_FIELD_CHARS])
    return fields


def _recipient_status(fields: dict[str, str]) -> RecipientStatus | None:
    final = _address(fields.get("final-recipient", ""))
    original = _address(fields.get("original-recipient", ""))
    recipient = original or final
    if recipient is None:
        return None
    action = _strip_comments(fields.get("action", "")).strip().lower()
    status = _status_code(fields.get("status", ""), fields.get("diagnostic-code", ""))
    return RecipientStatus(
        recipient=recipient,
        final_recipient=final,
        action=action,
        status=status,
        diagnostic=fields.get("diagnostic-code", ""),
    )


def _address(value: str) -> str | None:
    """The address of "rfc822; user@example.com" (spaces, angle brackets and comments allowed),
    or None when the field holds no Internet address."""
    value = _strip_comments(value).strip()
    address_type, separator, address = value.partition(";")
    if not separator:
        address_type, address = "", value
    if address_type.strip().lower() not in _INTERNET_ADDRESS_TYPES:
        return None
    address = address.strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[len("mailto:") :]
    if address.count("@") < 1 or any(ch.isspace() for ch in address):
        return None
    local, _, domain = address.rpartition("@")
    return address if local and domain else None


def _status_code(status: str, diagnostic: str) -> str:
    """The RFC 3463 code of Status; where that is only a class (5.0.0), the more precise one the
    diagnostic's SMTP reply carries in the same class (Exim and others report 5.0.0 for
    "550 5.1.1 user unknown")."""
    found = _STATUS.search(status)
    code = found.group(0) if found else ""
    if code.endswith(".0.0") or not code:
        detailed = _STATUS.search(diagnostic)
        if detailed and (not code or detailed.group(1) == code[0]) and detailed.group(0) != code:
            return detailed.group(0)
    return code


def _strip_comments(value: str) -> str:
    out, depth = [], 0
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
