"""Raw RFC 822 bytes in, a clean structure out.

Real mail is messy: wrong or unknown charsets, broken MIME, HTML-only bodies, nested messages.
Nothing here raises on such input; it decodes with replacement and records what was odd. Hostile
mail is read within limits (ParseLimits): past one, the parser stops reading that part of the
message and records a defect, so the message is still triaged on what was read. The one error
that leaves the parser is UnparseableMessage, with a reason a person can read.
"""

from __future__ import annotations

import codecs
import copy
import email
import email.errors
import email.feedparser
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime

import charset_normalizer

from apps.inbox.engine.html import html_to_text
from apps.inbox.engine.quotes import split_reply

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
ACCEPTED = "Accepted: an RFC 822 message (header lines, a blank line, then the body)."


class UnparseableMessage(ValueError):
    """The one error the parser raises; its text says what was wrong and what is accepted."""


class MessageTooLarge(UnparseableMessage):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"The message is {size:,} bytes; messages up to {limit:,} bytes are accepted "
            "(MAILSCORE_MAX_MESSAGE_BYTES)."
        )
        self.size, self.limit = size, limit


def bare_message_id(message_id: str | None) -> str:
    """A Message-ID without its angle brackets and surrounding space: how two headers naming
    one message are compared."""
    return (message_id or "").strip().strip("<>").strip()


@dataclass(frozen=True)
class ParseLimits:
    """How much of a message the parser reads. The message size limit (max_bytes) is the only
    one that refuses a message: nothing of an oversized one is read. Past any of these, the
    parser reads on without that part and records a defect, because what it did read (the
    headers, the first parts, the start of the text) is still worth triaging."""

    # Each level costs the standard parser a few stack frames; it fails near 330 levels.
    max_mime_depth: int = 50
    # Each part is an object in memory and a step of every walk over the message.
    max_mime_parts: int = 1000
    # Per header section (the message's and each part's), as Postfix's header_size_limit:
    # the standard library parses some long fields in quadratic time.
    max_header_bytes: int = 100 * 1024
    # The sum over all parts of what base64 and quoted-printable decode to: what is held in
    # memory and what the text steps work through.
    max_decoded_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_mime_depth", "max_mime_parts", "max_header_bytes", "max_decoded_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"ParseLimits.{name} must be a positive whole number, not {value!r}."
                )


DEFAULT_LIMITS = ParseLimits()
# Content-Type and Content-Disposition parameters are parsed again on every lookup, in time that
# grows with the field's length times its ";" count (1 MB of them took 465 s). Real ones, RFC 2231
# continued file names included, fit in 4 KiB and 32 parameters.
MAX_PARAMETER_FIELD_BYTES = 4096
MAX_PARAMETERS = 32
_PARAMETER_FIELDS = ("content-type", "content-disposition")
# What the parser is fed at a time; the part count is checked between chunks.
_FEED_BYTES = 8192


@dataclass
class Attachment:
    filename: str | None
    content_type: str
    size: int | None  # decoded; None when the decoded size limit left it undecoded
    sha256: str | None
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

    @property
    def auto_submitted(self) -> str:
        """The Auto-Submitted header, lower case ("" where absent): "no" says a person sent it,
        anything else that a machine did (RFC 3834)."""
        return (self.header("Auto-Submitted") or "").strip().lower()

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


def decode_header_value(value, hint: str | None = None) -> str:
    """RFC 2047 encoded words to text; undecodable pieces replaced, never raised. NUL, which no
    header may hold (RFC 5322) and PostgreSQL cannot store in text, is dropped. hint: the
    charset the message declares for its text, for header bytes written raw, without an
    encoded word (as Korean, Chinese and Japanese mailers often did)."""
    return _decode_header_value(value, hint).replace("\x00", "")


def _decode_header_value(value, hint: str | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        # Raw bytes that are not ASCII: the standard library marks them unknown-8bit and would
        # read each as a replacement character. Read them as the body's text is read.
        value = "".join(
            _decode_bytes(chunk, None if charset == "unknown-8bit" else charset, hint)
            if isinstance(chunk, bytes) else chunk
            for chunk, charset in decode_header(value)
        )  # fmt: skip
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
        name = codecs.lookup(charset.strip().strip('"').lower()).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return None
    # US-ASCII is many mailers' default label, whatever the bytes: it names no charset for them.
    if name == "ascii":
        return None
    # Mail labelled ISO-8859-1 is written in Windows-1252 (curly quotes, dashes and the euro sign
    # in 0x80-0x9F), as browsers read it too; ISO-8859-1 would read those as invisible controls.
    return "cp1252" if name == "iso8859-1" else name


def _decode_bytes(data: bytes, charset: str | None, hint: str | None = None) -> str:
    return _decoded_text(data, charset, hint)[0]


def _decoded_text(data: bytes, charset: str | None, hint: str | None = None) -> tuple[str, str]:
    """The text and the charset it was read in: the declared charset first, then UTF-8, then
    the hint (the charset an HTML part declares in its own <meta>, or the body's for the
    headers). Where none of them reads every byte, the declared charset or else the hint, with
    the bytes it cannot read replaced; where neither is known, a non-Latin script found in the
    bytes, else Windows-1252, which decodes any byte. (A US-ASCII label declares nothing.)"""
    declared, hinted = _codec(charset), _codec(hint)
    for candidate in (declared, "utf-8", hinted):
        if candidate:
            try:
                return data.decode(candidate), candidate
            except (UnicodeDecodeError, LookupError):
                continue
    fallback = declared or hinted or _non_latin_charset(data) or "cp1252"
    return data.decode(fallback, errors="replace"), fallback


# Bytes that are not ASCII needed before a charset is guessed: a few accented letters say too
# little to tell one code page from another.
_GUESS_MIN_BYTES = 8


def _non_latin_charset(data: bytes) -> str | None:
    """The charset of undeclared (or wrongly declared) text in a script other than Latin:
    Chinese, Japanese, Korean, Cyrillic, Greek. charset-normalizer guesses; its guess is taken
    only where most of the letters it reads are outside the Latin blocks. Undeclared Western mail
    stays Windows-1252, its usual charset: a guess between Latin code pages on a few accented
    letters is more often wrong than it."""
    sample = data[:20000]
    if sum(byte > 127 for byte in sample[:4096]) < _GUESS_MIN_BYTES:
        return None
    best = charset_normalizer.from_bytes(sample).best()
    if best is None:
        return None
    letters = [c for c in str(best) if ord(c) > 127 and c.isalpha()]
    non_latin = sum(ord(c) > 0x24F for c in letters)
    if len(letters) < _GUESS_MIN_BYTES // 2 or 2 * non_latin <= len(letters):
        return None
    return _codec(best.encoding)


_CHARSET_PARAMETER = rb"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]{1,40})"
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?" + _CHARSET_PARAMETER, re.I)


def _html_charset(payload: bytes) -> str | None:
    """The charset an HTML document declares in its own <meta>, where its part declares none."""
    found = _META_CHARSET.search(payload[:4096])
    return found.group(1).decode("ascii") if found else None


_ANY_CHARSET = re.compile(_CHARSET_PARAMETER, re.I)


def _charset_in(raw: bytes) -> str | None:
    """The first charset other than ASCII that the message's bytes declare anywhere (a part's
    header, an HTML <meta>): where only the header section is parsed, the likeliest charset of
    header bytes written raw, as the body that parse_message reads would give it."""
    for found in _ANY_CHARSET.finditer(raw[:65536]):
        codec = _codec(found.group(1).decode("ascii"))
        if codec:
            return codec
    return None


def _message_charset(message: Message) -> str | None:
    """The first charset the message declares for a text part, other than ASCII: the likeliest
    charset of header bytes written raw."""
    for part in message.walk():
        if part.get_content_maintype() in ("text", "multipart"):
            codec = _codec(_parameter(part.get_content_charset))
            if codec:
                return codec
    return None


def _field(message: Message, name: str) -> str:
    """A header field's value as text. With bytes that are not ASCII in it, the standard parser
    gives a Header object rather than a str; those bytes read as replacement characters."""
    value = message.get(name)
    return "" if value is None else str(value).replace("\x00", "")


def _parameter(lookup) -> str | None:
    """A MIME parameter (file name, charset), or None where the standard library fails on it:
    it raises ValueError for an RFC 2231 value whose charset name holds a NUL."""
    try:
        return lookup()
    except (ValueError, LookupError, UnicodeError):
        return None


def _addresses(message: Message, name: str, hint: str | None = None) -> list[tuple[str, str]]:
    values = [decode_header_value(v, hint) for v in message.get_all(name, [])]
    try:
        return [(n, a) for n, a in getaddresses(values) if a or n]
    except Exception:  # noqa: BLE001 - malformed address lists are common in spam
        return []


def _date(message: Message, defects: list[str]) -> datetime | None:
    try:
        date = parsedate_to_datetime(_field(message, "Date")) if message.get("Date") else None
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


class _Part(Message):
    """A message or MIME part as the bounded parser builds it."""

    beyond_depth_limit = False


class _BoundedFeedParser(email.feedparser.BytesFeedParser):
    """The standard library's parser, with the structural limits applied as it reads.

    It extends two of FeedParser's internal methods, whose behaviour has been the same since
    Python 3.3 (the project runs on 3.11): one is called when a part begins, the other with the
    header lines of each part, before anything in them is interpreted."""

    def __init__(self, limits: ParseLimits, notes: dict[str, str]) -> None:
        super().__init__(_factory=_Part, policy=email.policy.compat32)
        self.limits, self.notes = limits, notes
        self.parts = 0

    def _new_message(self) -> None:
        super()._new_message()
        self.parts += 1

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(_fit_header_section(lines, self.limits, self.notes))
        part = self._cur
        depth = len(self._msgstack) - 1
        if depth >= self.limits.max_mime_depth and part.get_content_maintype() in (
            "multipart",
            "message",
        ):
            # Read the rest of this part as one opaque leaf: no deeper level is opened, so the
            # parser's recursion stays bounded.
            del part["Content-Type"]
            part["Content-Type"] = "application/octet-stream"
            part.beyond_depth_limit = True
            self.notes.setdefault(
                "depth",
                f"MIME parts nested deeper than {self.limits.max_mime_depth} levels were not read "
                "(MAILSCORE_MAX_MIME_DEPTH).",
            )


def _fit_header_section(lines: list[str], limits: ParseLimits, notes: dict[str, str]) -> list[str]:
    """The header lines of one section, within the limits.

    Postfix keeps what fits of an oversized header and discards the excess; here each field is
    kept whole if it still fits and left out otherwise, so one huge field cannot push out the
    small ones after it (From, Subject, Content-Type) that the rest of the parse depends on.
    Lengths are bytes: the parser holds each byte as one character (ASCII, surrogateescape)."""
    fields: list[list[str]] = []
    for line in lines:
        if fields and line[:1] in (" ", "\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    kept: list[str] = []
    used = 0
    left_out: list[tuple[str, int]] = []
    for lines_of_field in fields:
        size = sum(map(len, lines_of_field))
        name = lines_of_field[0][:100].split(":", 1)[0].strip().lower()
        if name in _PARAMETER_FIELDS and (
            size > MAX_PARAMETER_FIELD_BYTES
            or sum(line.count(";") for line in lines_of_field) > MAX_PARAMETERS
        ):
            lines_of_field = [_cut_parameters(lines_of_field)]
            notes.setdefault(
                f"parameters {name}",
                f"a {name} field of {size:,} bytes was cut to its first {MAX_PARAMETERS} "
                f"parameters within {MAX_PARAMETER_FIELD_BYTES:,} bytes.",
            )
            size = len(lines_of_field[0])
        if used + size > limits.max_header_bytes:
            left_out.append((name, size))
            continue
        kept.extend(lines_of_field)
        used += size
    if left_out:
        shown = ", ".join(f"{name[:40]} ({size:,} bytes)" for name, size in left_out[:5])
        more = f" and {len(left_out) - 5:,} more" if len(left_out) > 5 else ""
        notes.setdefault(
            "header",
            f"header fields over the limit of {limits.max_header_bytes:,} bytes per header section "
            f"were left out (MAILSCORE_MAX_HEADER_BYTES): {shown}{more}.",
        )
    return kept


def _cut_parameters(lines_of_field: list[str]) -> str:
    joined = "".join(lines_of_field)
    cut, separators = -1, 0
    while separators <= MAX_PARAMETERS:
        cut = joined.find(";", cut + 1, MAX_PARAMETER_FIELD_BYTES)
        if cut < 0:
            break
        separators += 1
    if cut < 0:  # fewer separators than allowed: the length was over; end at the last whole one
        joined = joined[:MAX_PARAMETER_FIELD_BYTES]
        cut = joined.rfind(";")
    return (joined[:cut] if cut > 0 else joined).rstrip("\r\n") + "\n"


def _read_structure(raw: bytes, limits: ParseLimits, notes: dict[str, str]) -> _Part:
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]  # an mbox "From " separator line, not a header
    parser = _BoundedFeedParser(limits, notes)
    for start in range(0, len(raw), _FEED_BYTES):
        parser.feed(raw[start : start + _FEED_BYTES])
        if parser.parts > limits.max_mime_parts:
            notes.setdefault("parts", _parts_note(limits))
            break
    return parser.close()


def _parts_note(limits: ParseLimits) -> str:
    return (
        f"more than {limits.max_mime_parts:,} MIME parts; the parts after those and the rest of "
        "the message were not read (MAILSCORE_MAX_MIME_PARTS)."
    )


def _header_section(raw: bytes) -> bytes:
    """The bytes up to the blank line that ends the headers (all of them if there is none)."""
    if raw.startswith((b"\n", b"\r\n")):
        return b""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    return raw[: min(ends) + 1] if ends else raw


def _unparseable(exc: Exception) -> UnparseableMessage:
    return UnparseableMessage(
        f"The message could not be parsed ({type(exc).__name__}: {str(exc)[:200]}). {ACCEPTED}"
    )


def parse_envelope(
    raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, limits: ParseLimits = DEFAULT_LIMITS
) -> Envelope:
    """The few header fields needed to store a message, at a fraction of parse_message's cost.

    Raises UnparseableMessage (MessageTooLarge over max_bytes), never anything else."""
    if len(raw) > max_bytes:
        raise MessageTooLarge(len(raw), max_bytes)
    try:
        section = _header_section(raw)
        message = _envelope_fields(section, limits) or _read_structure(section, limits, {})
        charset = _message_charset(message) or _charset_in(raw)
        from_pairs = _addresses(message, "From", charset)
        from_name, from_address = from_pairs[0] if from_pairs else ("", None)
        return Envelope(
            message_id=(_message_ids(_field(message, "Message-ID")) or [None])[0],
            subject=" ".join(decode_header_value(message.get("Subject"), charset).split()),
            from_name=from_name.strip().strip('"'),
            from_address=(from_address or "").strip() or None,
            date=_date(message, []),
        )
    except Exception as exc:  # noqa: BLE001 - the parser's one error type is all that leaves it
        raise _unparseable(exc) from exc


# The fields parse_envelope reads.
_ENVELOPE_FIELDS = frozenset({"message-id", "subject", "from", "date", "content-type"})
# A header line as the standard library's feed parser reads one: a name of printable ASCII but
# the colon, then the colon.
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def _envelope_fields(section: bytes, limits: ParseLimits) -> _Part | None:
    """The envelope's fields of a plain header section, read without the feed parser (which
    costs most of an ingest's parse, reading every Received line and signature as it reads the
    Subject), into the same message object: each field's lines joined and stored by the same
    policy call. None for a section the feed parser reads in a way of its own (a line that is
    not a header, a bare CR, a second "From " line, a section past the header limits, a
    Content-Type the bounded parser cuts): it reads those. tests/inbox/test_parser.py holds the
    two readings equal over the real mail here."""
    if section.startswith(b"From ") and b"\n" in section:
        section = section.split(b"\n", 1)[1]  # an mbox "From " line, as _read_structure skips it
    if (
        section.startswith(b"From ")
        or len(section) > limits.max_header_bytes
        or limits.max_mime_depth < 1
        or section.count(b"\r") != section.count(b"\r\n")
    ):
        return None
    # Lines as the feed parser splits them: with no bare CR, at each LF, the ends kept.
    lines = section.decode("ascii", "surrogateescape").split("\n")
    last = lines.pop()
    lines = [line + "\n" for line in lines] + ([last] if last else [])
    message = _Part()
    fields: list[list[str]] = []
    reading = False  # whether the lines now are an envelope field's
    for number, line in enumerate(lines):
        if line[:1] in (" ", "\t"):
            if number == 0:
                return None
            if reading:
                fields[-1].append(line)
            continue
        name = _HEADER_NAME.match(line)
        if name is None:
            return None
        reading = line[: name.end() - 1].lower() in _ENVELOPE_FIELDS
        if reading:
            fields.append([line])
    for field_lines in fields:
        if field_lines[0][:13].lower() == "content-type:" and (
            sum(map(len, field_lines)) > MAX_PARAMETER_FIELD_BYTES
            or sum(line.count(";") for line in field_lines) > MAX_PARAMETERS
        ):
            return None
        message.set_raw(*message.policy.header_source_parse(field_lines))
    return message


def _message_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


@dataclass
class _Body:
    """What the walk over the parts collects, and what it has spent of the limits."""

    limits: ParseLimits
    notes: dict[str, str]
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    parts: int = 0
    decoded: int = 0
    not_decoded: int = 0
    charset: str | None = None  # the first charset other than ASCII that a text part was read in
    # The first code page (not UTF-8) that a raw file name was read in: the same mailer wrote
    # the others, so one guess serves every part.
    filename_charset: str | None = None

    @property
    def budget(self) -> int:
        return self.limits.max_decoded_bytes - self.decoded


def _decoded_size_bound(part: Message, encoded: str) -> int:
    # Base64 decodes to at most three bytes per four characters; the other encodings never
    # decode to more than they take.
    cte = _field(part, "Content-Transfer-Encoding").strip().lower()
    return len(encoded) * 3 // 4 + 3 if cte == "base64" else len(encoded)


def _encoded(part: Message) -> str:
    """A leaf part's payload as transferred, before base64 or quoted-printable decoding."""
    try:
        payload = part.get_payload()
    except (ValueError, LookupError):
        # With bytes that are not ASCII in it, the standard library reads the payload in its
        # declared charset, and fails on a charset name holding a NUL: take it as stored.
        payload = part._payload
    return payload if isinstance(payload, str) else ""


def _decode_text_payload(part: Message, body: _Body) -> bytes | None:
    """The part's decoded bytes, cut to what is left of the decoded size limit; None when
    nothing is left."""
    encoded = _encoded(part)
    if body.budget <= 0:
        body.not_decoded += 1
        return None
    if _decoded_size_bound(part, encoded) > body.budget:
        # Decode only a prefix that covers what is left: quoted-printable takes at most three
        # characters a byte, base64 fewer.
        part = copy.copy(part)
        part.set_payload(encoded[: 3 * body.budget + 4])
        body.not_decoded += 1
    payload = _decoded(part, body)[: body.budget]
    body.decoded += len(payload)
    return payload


def _serialized(inner: Message, body: _Body) -> bytes:
    try:
        return inner.as_bytes()
    except Exception:  # noqa: BLE001 - one broken forwarded message spoils only its own part
        body.notes.setdefault("unserializable", "a forwarded message that could not be read.")
        return b""


def _decoded(part: Message, body: _Body) -> bytes:
    try:
        return part.get_payload(decode=True) or b""
    except Exception:  # noqa: BLE001 - one broken transfer encoding spoils only its own part
        body.notes.setdefault(
            f"undecodable {part.get_content_type()}",
            f"an undecodable {part.get_content_type()} part was left out.",
        )
        return b""


# Text that machines read, not people: an invitation's calendar data or a contact card beside
# the invitation's own words. It is kept as an attachment, not read as what the sender wrote.
DATA_TEXT_TYPES = frozenset(
    {"text/calendar", "text/x-vcalendar", "text/vcard", "text/x-vcard", "text/directory"}
)


def _walk_body(part: Message, body: _Body, depth: int = 0) -> None:
    body.parts += 1
    if body.parts > body.limits.max_mime_parts:
        body.notes.setdefault("parts", _parts_note(body.limits))
        return
    if getattr(part, "beyond_depth_limit", False):
        return  # the parser left it unread, and said so
    content_type = part.get_content_type()
    disposition = _field(part, "Content-Disposition").split(";")[0].strip().lower() or None
    filename = _filename(part, body)
    if content_type == "message/rfc822" and depth > 0:
        # A forwarded message is an attachment of this one: its text is not this message's.
        _add_attachment(part, content_type, filename, disposition, body)
        return
    if part.is_multipart():
        for sub in part.get_payload() or []:
            if isinstance(sub, Message):
                _walk_body(sub, body, depth + 1)
            if body.parts > body.limits.max_mime_parts:
                break
        return
    if (
        disposition == "attachment"
        or (filename and not content_type.startswith("text/"))
        or content_type in DATA_TEXT_TYPES
    ):
        _add_attachment(part, content_type, filename, disposition, body)
        return
    if (
        content_type == "text/html"
        or content_type.startswith("text/")
        or (content_type == "message/delivery-status")
    ):
        payload = _decode_text_payload(part, body)
        if payload is None:
            return
        declared = _parameter(part.get_content_charset)
        # Parts of one message come from one mailer: the first part's charset, declared or
        # found, is the likeliest for the next that declares none.
        hint = (_html_charset(payload) if content_type == "text/html" else None) or body.charset
        text, charset = _decoded_text(payload, declared, hint)
        if body.charset is None and not payload.isascii():
            body.charset = charset
        (body.htmls if content_type == "text/html" else body.texts).append(text)
    else:
        _add_attachment(part, content_type, filename, disposition, body)


def _filename(part: Message, body: _Body) -> str | None:
    """The part's file name. Bytes that are not ASCII written raw in the field (RFC 6532 allows
    UTF-8 there, and older mailers wrote their own code page) are read as the message's other
    raw header bytes are, with the body's charset as the hint; the standard library would read
    each of them as a replacement character."""
    raw = {
        name.lower(): value.encode("ascii", "surrogateescape")
        for name, value in part.raw_items()
        if name.lower() in _PARAMETER_FIELDS and isinstance(value, str)
    }
    if any(not value.isascii() for value in raw.values()):
        fields = Message()
        for name, value in raw.items():
            text, charset = _decoded_text(value, None, body.filename_charset or body.charset)
            if charset != "utf-8" and not value.isascii():
                # UTF-8 is tried first for every name anyway; what is kept is a code page.
                body.filename_charset = body.filename_charset or charset
            fields[name] = text
        part = fields
    filename = _parameter(part.get_filename)
    return decode_header_value(filename) if filename else filename


def _add_attachment(part: Message, content_type: str, filename: str | None,
                    disposition: str | None, body: _Body) -> None:  # fmt: skip
    # Metadata only: the payload is hashed and measured, never executed or unpacked. What does
    # not fit in the decoded size limit is not decoded at all.
    data: bytes | None
    if content_type == "message/rfc822":
        inner = part.get_payload()
        data = _serialized(inner[0], body) if isinstance(inner, list) and inner else b""
        if len(data) > body.budget:
            data = None
    else:
        fits = _decoded_size_bound(part, _encoded(part)) <= body.budget
        data = _decoded(part, body) if fits else None
    if data is None:
        body.not_decoded += 1
        body.attachments.append(Attachment(filename, content_type, None, None, disposition))
        return
    body.decoded += len(data)
    body.attachments.append(
        Attachment(filename, content_type, len(data), hashlib.sha256(data).hexdigest(), disposition)
    )


def _language(text: str) -> str | None:
    sample = text.strip()[:2000]
    if len(sample) < 20:
        return None
    import py3langid

    language, _ = py3langid.classify(sample)
    return language


def parse_message(
    raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, limits: ParseLimits = DEFAULT_LIMITS
) -> ParsedMessage:
    """Parse a whole message within the limits. Raises UnparseableMessage (MessageTooLarge over
    max_bytes), never anything else: whatever else goes wrong inside is turned into it."""
    if len(raw) > max_bytes:
        raise MessageTooLarge(len(raw), max_bytes)
    try:
        return _parse_message(raw, limits)
    except UnparseableMessage:
        raise
    except Exception as exc:  # noqa: BLE001 - the parser's one error type is all that leaves it
        raise _unparseable(exc) from exc


def _parse_message(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    notes: dict[str, str] = {}
    message = _read_structure(raw, limits, notes)
    defects = [type(d).__name__ for d in message.defects]
    body = _Body(limits, notes)
    _walk_body(message, body)
    if body.not_decoded:
        notes.setdefault(
            "decoded",
            f"the decoded size limit of {limits.max_decoded_bytes:,} bytes was reached; "
            f"{body.not_decoded:,} part(s) were cut or not decoded (MAILSCORE_MAX_DECODED_BYTES).",
        )
    # Header bytes written raw are likeliest in the charset the body was read in.
    charset = body.charset or _message_charset(message)
    headers: dict[str, list[str]] = {}
    for name, value in message.items():
        headers.setdefault(name.lower(), []).append(decode_header_value(value, charset))
    texts, htmls = body.texts, body.htmls
    html_only = not any(t.strip() for t in texts) and bool(htmls)
    text = "\n\n".join(t for t in texts if t.strip()) if not html_only else ""
    if html_only:
        text = "\n\n".join(html_to_text(h) for h in htmls)
    text = text.replace("\r\n", "\n").replace("\x00", "")
    split = split_reply(text)

    from_pairs = _addresses(message, "From", charset)
    from_name, from_address = from_pairs[0] if from_pairs else ("", None)
    date = _date(message, defects)
    content_type = message.get_content_type()
    report_type = ""
    if content_type == "multipart/report":
        value = _parameter(lambda: message.get_param("report-type"))
        report_type = (_parameter(lambda: collapse_rfc2231_value(value or "")) or "").lower()
    return ParsedMessage(
        message_id=(_message_ids(_field(message, "Message-ID")) or [None])[0],
        subject=" ".join(decode_header_value(message.get("Subject"), charset).split()),
        from_name=from_name.strip().strip('"'),
        from_address=(from_address or "").strip() or None,
        reply_to=[a for _, a in _addresses(message, "Reply-To") if a],
        to=[a for _, a in _addresses(message, "To") if a],
        cc=[a for _, a in _addresses(message, "Cc") if a],
        date=date,
        in_reply_to=(_message_ids(_field(message, "In-Reply-To")) or [None])[0],
        references=_message_ids(_field(message, "References")),
        headers=headers,
        text=text.strip(),
        new_text=split.new_text,
        quoted_text=split.quoted,
        signature=split.signature,
        sign_off_name=split.sign_off_name,
        html_only=html_only,
        attachments=body.attachments,
        language=_language(split.new_text or text),
        size=len(raw),
        is_delivery_report=report_type == "delivery-status",
        defects=defects + list(notes.values()),
    )
