"""Raw RFC 822 bytes in, a clean structure out.

Real mail is messy: wrong or unknown charsets, broken MIME, HTML-only bodies, nested messages.
Nothing here raises on such input; it decodes with replacement and records what was odd. The
one refusal is a message over the configured size limit.
"""

from __future__ import annotations

import codecs
import email
import email.parser
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from apps.inbox.engine.html import html_to_text
from apps.inbox.engine.quotes import split_reply

DEFAULT_MAX_BYTES = 10 * 1024 * 1024


class MessageTooLarge(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The message is {size:,} bytes; messages up to {limit:,} bytes are accepted "
            "(MAILSCORE_MAX_MESSAGE_BYTES)."
        )
        self.size, self.limit = size, limit


@dataclass
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str
    disposition: str | None = None


@dataclass
class ParsedMessage:
    message_id: str | None
    subject: str
    from_name: str
    from_address: str | None
    reply_to: list[str]
    to: list[str]
    cc: list[str]
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    headers: dict[str, list[str]]
    text: str  # the whole readable body
    new_text: str  # what this message adds: no quoted history, no signature
    quoted_text: str
    signature: str
    sign_off_name: str | None
    html_only: bool
    attachments: list[Attachment] = field(default_factory=list)
    language: str | None = None
    size: int = 0
    is_delivery_report: bool = False
    defects: list[str] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str, default=None) -> list[str] | None:
        """Decoded values of a header, as email.message.Message.get_all gives them."""
        return self.headers.get(name.lower(), default)

    def to_dict(self) -> dict:
        return {
            "message_id": self.message_id,
            "subject": self.subject,
            "from": {"name": self.from_name, "address": self.from_address},
            "reply_to": self.reply_to,
            "to": self.to,
            "cc": self.cc,
            "date": self.date.isoformat() if self.date else None,
            "in_reply_to": self.in_reply_to,
            "references": self.references,
            "new_text": self.new_text,
            "html_only": self.html_only,
            "attachments": [vars(a) for a in self.attachments],
            "language": self.language,
            "size": self.size,
        }


def decode_header_value(value) -> str:
    """RFC 2047 encoded words to text; undecodable pieces replaced, never raised."""
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        value = str(value)
    try:
        return str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        parts = []
        try:
            chunks = decode_header(value)
        except Exception:  # noqa: BLE001 - the header is garbage; keep it as it came
            return str(value)
        for chunk, charset in chunks:
            if isinstance(chunk, bytes):
                parts.append(_decode_bytes(chunk, charset))
            else:
                parts.append(chunk)
        return "".join(parts)


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        return codecs.lookup(charset.strip().strip('"').lower()).name
    except LookupError:
        return None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Declared charset first, then UTF-8, then Windows-1252, which decodes any byte."""
    for candidate in (_codec(charset), "utf-8"):
        if candidate:
            try:
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    declared = _codec(charset)
    return data.decode(declared or "cp1252", errors="replace")


def _addresses(message: Message, name: str) -> list[tuple[str, str]]:
    values = [decode_header_value(v) for v in message.get_all(name, [])]
    try:
        return [(n, a) for n, a in getaddresses(values) if a or n]
    except Exception:  # noqa: BLE001 - malformed address lists are common in spam
        return []


def _date(message: Message, defects: list[str]) -> datetime | None:
    try:
        date = parsedate_to_datetime(message.get("Date")) if message.get("Date") else None
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("unparseable Date header")
        return None
    if date is not None and date.tzinfo is None:
        return None  # a date without a zone cannot be placed in time
    return date


@dataclass(frozen=True)
class Envelope:
    """The header fields ingest stores, read without decoding the body."""

    message_id: str | None
    subject: str
    from_name: str
    from_address: str | None
    date: datetime | None


def parse_envelope(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Envelope:
    """The few header fields needed to store a message, at a fraction of parse_message's cost."""
    if len(raw) > max_bytes:
        raise MessageTooLarge(len(raw), max_bytes)
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        raw, headersonly=True
    )
    from_pairs = _addresses(message, "From")
    from_name, from_address = from_pairs[0] if from_pairs else ("", None)
    return Envelope(
        message_id=(_message_ids(message.get("Message-ID")) or [None])[0],
        subject=" ".join(decode_header_value(message.get("Subject")).split()),
        from_name=from_name.strip().strip('"'),
        from_address=(from_address or "").strip() or None,
        date=_date(message, []),
    )


def _message_ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def _walk_body(part: Message, texts: list[str], htmls: list[str], attachments: list[Attachment],
               defects: list[str], depth: int = 0) -> None:  # fmt: skip
    if depth > 20:
        defects.append("MIME nesting deeper than 20 levels; the rest was skipped")
        return
    content_type = part.get_content_type()
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower() or None
    filename = part.get_filename()
    if filename:
        filename = decode_header_value(filename)
    if content_type == "message/rfc822" and depth > 0:
        # A forwarded message is an attachment of this one: its text is not this message's.
        _add_attachment(part, content_type, filename, disposition, attachments)
        return
    if part.is_multipart():
        for sub in part.get_payload() or []:
            if isinstance(sub, Message):
                _walk_body(sub, texts, htmls, attachments, defects, depth + 1)
        return
    if disposition == "attachment" or (filename and not content_type.startswith("text/")):
        _add_attachment(part, content_type, filename, disposition, attachments)
        return
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encodings
        payload = None
        defects.append(f"undecodable {content_type} part")
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
    if content_type == "text/html":
        htmls.append(_decode_bytes(payload, part.get_content_charset()))
    elif content_type.startswith("text/") or content_type == "message/delivery-status":
        texts.append(_decode_bytes(payload, part.get_content_charset()))
    else:
        _add_attachment(part, content_type, filename, disposition, attachments)


def _add_attachment(part, content_type, filename, disposition, attachments) -> None:
    # Metadata only: the payload is hashed and measured, never executed or unpacked.
    if content_type == "message/rfc822":
        inner = part.get_payload()
        data = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
    else:
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:  # noqa: BLE001
            data = b""
    attachments.append(
        Attachment(filename, content_type, len(data), hashlib.sha256(data).hexdigest(), disposition)
    )


def _language(text: str) -> str | None:
    sample = text.strip()[:2000]
    if len(sample) < 20:
        return None
    import py3langid

    language, _ = py3langid.classify(sample)
    return language


def parse_message(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMessage:
    if len(raw) > max_bytes:
        raise MessageTooLarge(len(raw), max_bytes)
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]  # an mbox "From " separator line, not a header
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    defects = [type(d).__name__ for d in message.defects]
    headers: dict[str, list[str]] = {}
    for name, value in message.items():
        headers.setdefault(name.lower(), []).append(decode_header_value(value))

    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    _walk_body(message, texts, htmls, attachments, defects)
    html_only = not any(t.strip() for t in texts) and bool(htmls)
    body = "\n\n".join(t for t in texts if t.strip()) if not html_only else ""
    if html_only:
        body = "\n\n".join(html_to_text(h) for h in htmls)
    body = body.replace("\r\n", "\n").replace("\x00", "")
    split = split_reply(body)

    from_pairs = _addresses(message, "From")
    from_name, from_address = from_pairs[0] if from_pairs else ("", None)
    date = _date(message, defects)
    content_type = message.get_content_type()
    report_type = (
        (message.get_param("report-type") or "").lower()
        if content_type == "multipart/report"
        else ""
    )
    return ParsedMessage(
        message_id=(_message_ids(message.get("Message-ID")) or [None])[0],
        subject=" ".join(decode_header_value(message.get("Subject")).split()),
        from_name=from_name.strip().strip('"'),
        from_address=(from_address or "").strip() or None,
        reply_to=[a for _, a in _addresses(message, "Reply-To") if a],
        to=[a for _, a in _addresses(message, "To") if a],
        cc=[a for _, a in _addresses(message, "Cc") if a],
        date=date,
        in_reply_to=(_message_ids(message.get("In-Reply-To")) or [None])[0],
        references=_message_ids(message.get("References")),
        headers=headers,
        text=body.strip(),
        new_text=split.new_text,
        quoted_text=split.quoted,
        signature=split.signature,
        sign_off_name=split.sign_off_name,
        html_only=html_only,
        attachments=attachments,
        language=_language(split.new_text or body),
        size=len(raw),
        is_delivery_report=report_type == "delivery-status",
        defects=defects,
    )
