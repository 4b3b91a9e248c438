"""Bodies that once made the API answer 500, sent to a real gunicorn (the Procfile's web line) on
loopback: JSON nested 1,000 deep, a "to" of nested lists or numbers, a numeric "date", a NUL in
a message/rfc822 header, and a chunked body that Django read as empty. Each is a clear 4xx with
the JSON error shape, or is stored as sent; none is a 500."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request

import pytest

from apps.accounts.models import ApiKey
from apps.inbox.models import Message
from tests.web_process import gunicorn_on_test_database

# The server commits what it stores; a test's own transaction sees it (read committed), and the
# module's fixtures delete it at the end, so no test needs the slow flush of a transactional one.
pytestmark = pytest.mark.django_db

FIELDS = {"from": "Dana <dana@example.com>", "to": ["support@example.com"],
          "subject": "Login fails", "text": "I cannot log in since Monday."}  # fmt: skip
DEEP = 1000


def nested(depth: int, inner: object = "a@example.com") -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> bytes:
    """An array nested depth levels deep, as text: json.dumps itself would recurse too deep."""
    return b"[" * depth + b'"a@example.com"' + b"]" * depth


@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker, tmp_path_factory):
    """gunicorn as the Procfile starts it, on the test database, one worker."""
    with (
        django_db_blocker.unblock(),
        gunicorn_on_test_database(tmp_path_factory.mktemp("prometheus")) as server,
    ):
        yield server.base, server.port


@pytest.fixture(scope="module")
def key(django_db_setup, django_db_blocker):
    """A key with every scope, committed so the server sees it; it and the messages it stored
    are deleted afterwards."""
    with django_db_blocker.unblock():
        row, secret = ApiKey.issue("odd-bodies")
    yield secret
    with django_db_blocker.unblock():
        Message.objects.filter(source_detail="key odd-bodies").delete()
        row.delete()


def stored() -> int:
    return Message.objects.filter(source_detail="key odd-bodies").count()


def post(base: str, path: str, key: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(  # noqa: S310 (loopback http only)
        f"{base}{path}", data=body, method="POST",
        headers={"X-API-Key": key, "Content-Type": content_type},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (as above)
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, json.loads(text)


def error_of(answer: tuple[int, dict], status: int) -> dict:
    got, body = answer
    assert got == status, body
    assert set(body["error"]) >= {"code", "message"}, body
    return body["error"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(deep_json(DEEP), id="array-1000-deep"),
        pytest.param(b'{"a":' * DEEP + b"1" + b"}" * DEEP, id="object-1000-deep"),
        pytest.param(json.dumps({**FIELDS, "to": nested(40)}).encode(), id="to-40-deep"),
        pytest.param(
            json.dumps({**FIELDS, "text": {"x": nested(200)}}).encode(), id="text-200-deep"
        ),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/validate", "/api/v1/jobs"])
def test_json_nested_deep_is_a_400(web, key, path, body):
    before = stored()
    error = error_of(post(web[0], path, key, body, "application/json"), 400)
    assert "nested more than 32 levels" in error["message"], error
    assert stored() == before


def test_deep_json_in_feedback_is_a_400(web, key):
    error = error_of(post(web[0], "/api/v1/messages/1/feedback", key, deep_json(DEEP),
                          "application/json"), 400)  # fmt: skip
    assert "nested more than 32 levels" in error["message"], error


@pytest.mark.parametrize(
    "to",
    [[["support@example.com"]], [[["a@example.com"], "b@example.com"]], [1, 2], 5, 1.5, True,
     {"address": "a@example.com"}],
    ids=["nested-list", "mixed-nesting", "numbers", "number", "float", "bool", "object"],
)  # fmt: skip
def test_a_to_of_nested_lists_or_numbers_is_a_400_naming_it(web, key, to):
    before = stored()
    body = json.dumps({**FIELDS, "to": to}).encode()
    error = error_of(post(web[0], "/api/v1/messages", key, body, "application/json"), 400)
    assert error["fields"] == {"to": [error["message"]]} or list(error["fields"]) == ["to"]
    assert "a string or a list of strings" in error["message"]
    assert stored() == before


@pytest.mark.parametrize("date", [20260101, 1.7e9, ["Tue, 01 Dec 2026"], {"day": 1}])
def test_a_date_that_is_not_a_string_is_a_400_naming_it(web, key, date):
    body = json.dumps({**FIELDS, "date": date}).encode()
    error = error_of(post(web[0], "/api/v1/messages", key, body, "application/json"), 400)
    assert list(error["fields"]) == ["date"] and '"date" must be a string' in error["message"]


def test_a_nul_in_a_raw_header_is_stored_stripped_with_the_raw_bytes_kept(web, key):
    raw = (b"From: Dana\x00 <dana@example.com>\r\nTo: support@example.com\r\n"
           b"Subject: Log\x00in fails\r\nMessage-ID: <odd-nul@example.com>\r\n\r\nHello\r\n")  # fmt: skip
    status, body = post(web[0], "/api/v1/messages", key, raw, "message/rfc822")
    assert status == 202, body
    stored = Message.objects.get(id=body["id"])
    assert stored.subject == "Login fails" and stored.from_address == "dana@example.com"
    assert bytes(stored.raw) == raw


def raw_exchange(port: int, request: bytes) -> tuple[int, dict]:
    """Send request bytes as they are and read the whole answer (the server closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(
        line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
    )  # fmt: skip
    if headers.get(b"Transfer-Encoding", b"").lower() == b"chunked":
        decoded = b""
        while payload:
            size_line, _, rest = payload.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, payload = decoded + rest[:size], rest[size + 2 :]
        payload = decoded
    return status, json.loads(payload)


def chunked(body: bytes, size: int = 40) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/api/v1/messages", "message/rfc822",
         b"From: dana@example.com\r\nSubject: chunked\r\n\r\nThe body came in chunks.\r\n"),
        ("/api/v1/messages", "application/json", json.dumps(FIELDS).encode()),
        ("/api/v1/validate", "application/json", b'{"email": "a@example.com"}'),
        ("/api/v1/jobs", "application/json", b'{"emails": ["a@example.com"]}'),
    ],
    ids=["rfc822", "json", "validate", "jobs"],
)  # fmt: skip
def test_a_chunked_body_is_a_411_not_an_empty_message(web, key, path, content_type, body):
    before = stored()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode() + chunked(body)
    error = error_of(raw_exchange(web[1], request), 411)
    assert error["code"] == "length_required" and "Content-Length" in error["message"]
    assert stored() == before


def test_the_same_body_with_a_content_length_is_taken(web, key):
    """The control: what the chunked test sent is a message the API takes."""
    body = b"From: dana@example.com\r\nSubject: chunked\r\n\r\nThe body came in one piece.\r\n"
    request = (
        f"POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
        f"Content-Type: message/rfc822\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    status, answer = raw_exchange(web[1], request)
    assert status == 202, answer
    assert Message.objects.filter(id=answer["id"], subject="chunked").exists()
