"""The MIME parser under property-based fuzzing: real messages, mutated the ways broken and
hostile mail is broken, never make it raise anything but its own error or run away in memory.

The budget is fixed for CI (a derandomized run of a set number of examples); each parse is
allowed a generous deadline, which only a runaway parse misses."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.inbox.engine import (
    DEFAULT_LIMITS,
    ParsedMessage,
    UnparseableMessage,
    parse_envelope,
    parse_message,
    parser,
)
from apps.inbox.engine.mailbox import iter_messages

pytestmark = pytest.mark.reliability

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "demo.mbox"
MAX_INPUT = 1024 * 1024
# Generous for a 1 MB input: the parser holds the bytes, their text and the parts a few times.
MEMORY_BOUND = 64 * 1024 * 1024
CORPUS_SEEDS = 200


def _seeds() -> list[bytes]:
    """The bundled mailbox, and an even spread over the SpamAssassin corpus where it is here."""
    seeds = [item.raw for item in iter_messages([SAMPLES]) if item.raw]
    corpus = Path(django_settings.MAILSCORE_SPAM_CORPUS)
    if corpus.is_dir():
        files = [p for p in sorted(corpus.rglob("*")) if p.is_file() and p.name != "README.md"]
        step = max(1, len(files) // CORPUS_SEEDS)
        seeds += [path.read_bytes() for path in files[::step][:CORPUS_SEEDS]]
    return seeds


SEEDS = _seeds()


def _header_end(raw: bytes) -> int:
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\r\n\r\n")) if i >= 0]
    return min(ends) + 1 if ends else len(raw)


def flip_bytes(draw, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 32))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def truncate(draw, raw: bytes) -> bytes:
    return raw[: draw(st.integers(0, len(raw)))]


def splice(draw, raw: bytes) -> bytes:
    other = draw(st.sampled_from(SEEDS))
    start = draw(st.integers(0, len(other)))
    piece = other[start : start + draw(st.integers(0, 4096))]
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + piece + raw[at:]


def insert_bytes(draw, raw: bytes) -> bytes:
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(st.binary(min_size=1, max_size=512)) + raw[at:]


def duplicate_header(draw, raw: bytes) -> bytes:
    end = _header_end(raw)
    lines = raw[:end].splitlines(keepends=True)
    if not lines:
        return raw
    line = draw(st.sampled_from(lines))
    return line * draw(st.integers(2, 5000)) + raw


def long_header(draw, raw: bytes) -> bytes:
    name = draw(st.sampled_from([b"Subject", b"To", b"Content-Type", b"Received", b"X-Junk"]))
    unit = draw(
        st.sampled_from([b"a", b"=?utf-8?q?x?= ", b"<a@b> ", b'\\";', b"a=b; ", b"(", b","])
    )
    return name + b": " + unit * draw(st.integers(1000, 200_000)) + b"\r\n" + raw


def nest(draw, raw: bytes) -> bytes:
    """Wrap the message in levels of multipart or message/rfc822, as hostile mail nests."""
    levels = draw(st.integers(1, 400))
    container = draw(st.sampled_from([b"multipart/mixed", b"message/rfc822"]))
    head, tail = b"", b""
    for level in range(levels):
        if container == b"message/rfc822":
            head += b"Content-Type: message/rfc822\r\n\r\n"
        else:
            boundary = b"b%d" % level
            head += b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\n' % (
                boundary,
                boundary,
            )
            tail = b"\r\n--%s--\r\n" % boundary + tail
    return b"From: nest@example.com\r\nSubject: nested\r\n" + head + raw + tail


def many_parts(draw, raw: bytes) -> bytes:
    count = draw(st.integers(1, 20_000))
    part = draw(st.sampled_from([b"", b"Content-Type: text/plain\r\n\r\nx", b"\r\n"]))
    body = b"".join(b"--P\r\n" + part + b"\r\n" for _ in range(count))
    return (b"From: parts@example.com\r\nContent-Type: multipart/mixed; boundary=P\r\n\r\n"
            + body + raw + b"\r\n--P--\r\n")  # fmt: skip


def reencode(draw, raw: bytes) -> bytes:
    header = draw(st.sampled_from([
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Transfer-Encoding: x-uuencode\r\n",
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n",
        b"Content-Type: text/html; charset=utf-7\r\n",
        b"Content-Type: multipart/alternative\r\n",
        b"Content-Type: multipart/digest; boundary=\"\"\r\n",
    ]))  # fmt: skip
    return header + raw


def line_endings(draw, raw: bytes) -> bytes:
    ending = draw(st.sampled_from([b"\r\n", b"\r", b"\n\n", b"\x00\n"]))
    return raw.replace(b"\n", ending)


MUTATIONS = [flip_bytes, truncate, splice, insert_bytes, duplicate_header, long_header, nest,
             many_parts, reencode, line_endings]  # fmt: skip


@st.composite
def mutated_messages(draw) -> bytes:
    raw = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(MUTATIONS))
        raw = mutation(draw, raw)[:MAX_INPUT]
    return raw


@pytest.fixture(scope="module", autouse=True)
def language_model_loaded():
    # The language model loads on the first parse (about 100 MB, once per process): measure the
    # parses, not that.
    parse_message(SEEDS[0])


def _within_memory(parse, raw: bytes):
    tracemalloc.start()
    try:
        return parse(raw, max_bytes=MAX_INPUT)
    except UnparseableMessage:
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"{parse.__name__} peaked at {peak:,} bytes on {len(raw):,}"


# A fixed budget for CI, derandomized; the deadline is missed only by a runaway parse.
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(FUZZ, max_examples=200)
@given(mutated_messages())
def test_mutated_mail_parses_within_bounds_or_raises_the_parsers_own_error(raw):
    parsed = _within_memory(parse_message, raw)
    if parsed is not None:
        assert isinstance(parsed, ParsedMessage) and isinstance(parsed.text, str)
        assert len(parsed.attachments) <= DEFAULT_LIMITS.max_mime_parts
        assert all(isinstance(defect, str) for defect in parsed.defects)
    _within_memory(parse_envelope, raw)


def _envelope_or_error(raw: bytes):
    try:
        return parse_envelope(raw, max_bytes=MAX_INPUT)
    except UnparseableMessage as exc:
        return str(exc)


@settings(FUZZ, max_examples=300)
@given(mutated_messages())
def test_the_envelope_reader_agrees_with_the_feed_parser_on_mutated_mail(raw):
    """parse_envelope reads plain header sections itself and hands the rest to the feed
    parser: on broken and hostile mail, the envelope is the one the feed parser gives."""
    own = _envelope_or_error(raw)
    reader = parser._envelope_fields
    parser._envelope_fields = lambda section, limits: None
    try:
        fed = _envelope_or_error(raw)
    finally:
        parser._envelope_fields = reader
    assert own == fed


def test_the_fuzz_starts_from_real_mail():
    assert len(SEEDS) >= 70
