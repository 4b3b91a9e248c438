"""Corrections generalise, through the running system: mail in through the API, a reviewer's
feedback through the API, `manage.py retrain`, and new mail worded differently comes out the way
the reviewer decided, from the same worker processes (no restart), while the labelled set does
not get worse.

Each case's paraphrase is also sent before retraining, to show that the model got it wrong
then: what comes out right afterwards was learned."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.reliability.system import WORKERS, MailSystem, manage, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

FINISHED = ("triaged", "needs_review", "done", "failed")
# Hand-written corrections, each with a differently worded message of the same kind.
CORRECTIONS = Path(__file__).resolve().parents[2] / "samples" / "corrections.json"


@dataclass(frozen=True)
class Case:
    name: str
    original: tuple[str, str, str]  # sender, subject, body
    paraphrase: tuple[str, str, str]
    category: str | None = None  # the reviewer's decision; None: left alone
    priority: str | None = None


def _message(fields: dict) -> tuple[str, str, str]:
    return fields["from"], fields["subject"], fields["text"]


CASES = [
    Case(case["name"], _message(case["original"]), _message(case["paraphrase"]),
         case["category"], case["priority"])
    for case in json.loads(CORRECTIONS.read_text(encoding="utf-8"))["cases"]
]  # fmt: skip


def raw(sender: str, subject: str, body: str) -> bytes:
    return (f"From: {sender}\r\nTo: support@mailscore.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@learning.test>\r\n"
            f"Date: Tue, 01 Dec 2026 09:00:00 +0000\r\n\r\n{body}\r\n").encode()  # fmt: skip


def call(system: MailSystem, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict]:  # fmt: skip
    request = urllib.request.Request(f"{system.url}{path}", data=body, method=method,
                                     headers={"X-API-Key": system.api_key,
                                              "Content-Type": content_type})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def post_and_wait(system: MailSystem, messages: list[tuple[str, str, str]]) -> list[dict]:
    ids = []
    for message in messages:
        status, body = call(system, "POST", "/api/v1/messages", raw(*message), "message/rfc822")
        assert status == 202, body
        ids.append(body["id"])
    details: dict[int, dict] = {}

    def finished() -> bool:
        for message_id in ids:
            if message_id not in details:
                status, body = call(system, "GET", f"/api/v1/messages/{message_id}")
                if status == 200 and body["status"] in FINISHED:
                    details[message_id] = body
        return len(details) == len(ids)

    wait_for(finished, timeout=300, interval=1.0, explain=system.report)
    return [details[i] for i in ids]


def decided(detail: dict) -> tuple[str, str]:
    return detail["category"], detail["priority"]


# Training and triage on a whole running system, about two minutes. It also checks that the
# models misread every case first: where the heads come to read one right by themselves (they
# learn from each new round of labelled mail), samples/corrections.json needs another case.
def test_corrections_reach_differently_worded_mail_without_a_restart(start_system):
    system = start_system(
        processes=("web", "triage", "generate", "verify", "beat"),
        # Full-length encoding: this test is about what the model learns.
        environment={"MAILSCORE_MAX_TOKENS": "256", "MAILSCORE_PIPELINE_SMTP": "false"},
    )
    worker_pids = {name: system.processes[name].pid for name in WORKERS if name in system.processes}

    originals = post_and_wait(system, [case.original for case in CASES])
    before = post_and_wait(system, [case.paraphrase for case in CASES])
    for case, original, paraphrase in zip(CASES, originals, before, strict=True):
        assert original["status"] != "failed", original
        wanted = case.category or case.priority
        got = [original["category"] if case.category else original["priority"],
               paraphrase["category"] if case.category else paraphrase["priority"]]  # fmt: skip
        # What the reviewer corrects is what the model got wrong, on both wordings.
        assert wanted not in got, (case.name, decided(original), decided(paraphrase))

    # The reviewer's decisions, through the API.
    for case, original in zip(CASES, originals, strict=True):
        decision = {
            k: v for k, v in (("category", case.category), ("priority", case.priority)) if v
        }
        status, body = call(system, "POST", f"/api/v1/messages/{original['id']}/feedback",
                            json.dumps(decision).encode())  # fmt: skip
        assert status == 201, body
        assert body["model"]["category"] == original["category"]
        status, detail = call(system, "GET", f"/api/v1/messages/{original['id']}")
        assert detail["review"]["category"] == case.category
        assert detail["review"]["priority"] == case.priority
        assert detail["feedback"][0]["decided"] == body["decided"]

    output = manage(system.environment(), "retrain", timeout=600)
    assert "v1 is active" in output, output

    after = post_and_wait(system, [case.paraphrase for case in CASES])
    for case, detail in zip(CASES, after, strict=True):
        if case.category:
            assert detail["category"] == case.category, (case.name, detail["category_result"])
        if case.priority:
            assert detail["priority"] == case.priority, (case.name, detail["priority_result"])
        # The version that produced each step's result is named on it.
        assert "model:v1" in detail["steps"]["classify"]["version"]
        assert "model:v1" in detail["steps"]["prioritize"]["version"]

    # The same worker processes: nothing was restarted to pick the new version up.
    assert {name: system.processes[name].pid for name in worker_pids} == worker_pids
    assert not system.stopped()

    # The labelled set the feedback did not come from did not get worse.
    with psycopg.connect(system.database_url) as connection:
        evaluation, active = connection.execute(
            "SELECT evaluation, active FROM triage_modelversion WHERE name = 'v1'"
        ).fetchone()
    assert active
    for figure in ("category_accuracy", "priority_exact"):
        assert evaluation["after"][figure] >= evaluation["before"][figure], evaluation
    print(output)  # the before/after figures, in the test's log
