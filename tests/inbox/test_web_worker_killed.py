"""A gunicorn worker killed (SIGKILL, by its pid) while mail pours in through the real web
process, group commit and all: every message answered 2xx is stored once under the id it was
answered with, a message whose request died with the worker is stored when the client sends it
again (200 if the dead worker's group had committed it, 202 if not), and gunicorn replaces the
worker."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from apps.accounts.models import ApiKey
from apps.inbox.models import Message, MessageStatus
from tests.web_process import gunicorn_on_test_database

MESSAGES = 320
CLIENTS = 16


def post(base: str, key: str, raw: bytes) -> tuple[int | None, int | str]:
    """(status, id), or (None, the error) when no answer came."""
    request = urllib.request.Request(
        f"{base}/api/v1/messages", data=raw, method="POST",
        headers={"X-API-Key": key, "Content-Type": "message/rfc822"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())["id"]
    except urllib.error.HTTPError as error:
        return error.code, error.read()[:200].decode(errors="replace")
    except OSError as error:
        return None, f"{type(error).__name__}: {error}"


def until_answered(base: str, key: str, raw: bytes) -> tuple[int | None, int | str]:
    """As a client does: send again until an answer comes (the replacement worker may still be
    starting)."""
    deadline = time.monotonic() + 60
    while True:
        status, answer = post(base, key, raw)
        if status is not None or time.monotonic() > deadline:
            return status, answer
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_web_worker_killed_amid_ingest_loses_no_answered_message(tmp_path):
    _, key = ApiKey.issue("killed-worker")
    run = uuid.uuid4().hex[:8]
    mails = {
        f"<killed-{run}-{n}@web.test>": (
            f"From: Dana <dana@example.com>\nTo: support@example.com\nSubject: order {n}\n"
            f"Message-ID: <killed-{run}-{n}@web.test>\n"
            f"Date: Sat, 05 Dec 2026 09:00:00 +0000\n\nWhere is order {n}?\n"
        ).encode()
        for n in range(MESSAGES)
    }
    with gunicorn_on_test_database(tmp_path, workers=2) as web:
        workers = psutil.Process(web.process.pid).children()
        assert len(workers) == 2
        victim = workers[0]
        with ThreadPoolExecutor(CLIENTS) as pool:
            sent = {mid: pool.submit(post, web.base, key, raw) for mid, raw in mails.items()}
            # Mid-stream: a quarter answered, the clients still sending.
            deadline = time.monotonic() + 60
            while sum(future.done() for future in sent.values()) < MESSAGES // 4:
                assert time.monotonic() < deadline, "the web answered too slowly to begin"
                time.sleep(0.005)
            victim.send_signal(signal.SIGKILL)
            first = {mid: future.result() for mid, future in sent.items()}
        unanswered = [mid for mid, (status, _) in first.items() if status is None]
        again = {mid: until_answered(web.base, key, mails[mid]) for mid in unanswered}
        deadline = time.monotonic() + 30
        while True:
            now = [p.pid for p in psutil.Process(web.process.pid).children()]
            if victim.pid not in now and len(now) == 2:
                break
            assert time.monotonic() < deadline, f"gunicorn did not replace the worker: {now}"
            time.sleep(0.1)

    assert unanswered, "the kill met no request in flight: nothing was tested"
    outside = {mid: answer for mid, answer in {**first, **again}.items()
               if answer[0] not in (None, 200, 202)}  # fmt: skip
    assert not outside, f"answers outside the contract: {list(outside.items())[:5]}"
    assert all(status in (200, 202) for status, _ in again.values()), again

    rows = {}
    for mid, row_id, state in Message.objects.filter(message_id_header__in=list(mails)).values_list(
        "message_id_header", "id", "status"
    ):
        assert mid not in rows, f"{mid} stored twice"
        rows[mid] = (row_id, state)
    assert sorted(rows) == sorted(mails), f"{len(mails) - len(rows)} messages not stored"
    for mid, (status, answer) in {**first, **again}.items():
        if status in (200, 202):
            assert rows[mid][0] == answer, f"{mid} answered with id {answer}, stored as {rows[mid]}"
    assert {state for _, state in rows.values()} == {MessageStatus.QUEUED}
    print(f"\n{len(unanswered)} requests died with the worker; sent again: "
          f"{sum(s == 202 for s, _ in again.values())} stored then (202), "
          f"{sum(s == 200 for s, _ in again.values())} already stored by it (200)")  # fmt: skip
