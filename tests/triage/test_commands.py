"""manage.py triage, evaluate and train_spam."""

import json
import re
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from apps.inbox.engine import parse_message
from apps.triage.engine.spam import SpamHead, spam_document
from tests.triage.conftest import SAMPLES

# The commands triage with the team's configuration, read from the database.
pytestmark = pytest.mark.django_db

REQUIRED = {"source", "message_id", "from", "subject", "category", "priority", "summary", "draft_reply",
            "verification", "timings"}  # fmt: skip


def test_triage_json_on_the_bundled_mailbox():
    out, err = StringIO(), StringIO()
    call_command(
        "triage", "--json", "--no-verify", str(SAMPLES / "demo.mbox"), stdout=out, stderr=err
    )
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 70
    assert all(set(r) >= REQUIRED for r in records)
    assert records[0]["source"].endswith("demo.mbox#0") and records[69]["source"].endswith(
        "demo.mbox#69"
    )
    assert {"label", "confidence", "decided_by"} <= set(records[0]["category"])
    assert {"score", "level", "reasons"} <= set(records[0]["priority"])
    assert all(r["verification"] is None for r in records)
    assert {r["draft_reply"] is None for r in records if r["category"]["label"] == "spam"} == {True}
    assert "70 messages triaged, 0 errors" in err.getvalue()


def test_triage_with_sender_verification_offline(tmp_path):
    # No SMTP and no reachable DNS here: verification must answer, not hang or fail the batch.
    eml = tmp_path / "one.eml"
    eml.write_bytes(b"From: Jane <jane@example.com>\nSubject: Export fails\nDate: Wed, 04 Mar 2026 10:00:00 +0000\n\n"
                    b"The export fails with error 42 since this morning.\n")  # fmt: skip
    out = StringIO()
    call_command("triage", "--json", "--no-smtp", str(eml), stdout=out, stderr=StringIO())
    [record] = [json.loads(line) for line in out.getvalue().splitlines()]
    verification = record["verification"]
    assert verification["trust"]["reply_address"] == "jane@example.com"
    assert verification["deliverability"]["address"] == "jane@example.com"


def test_unreadable_input_is_reported_and_the_rest_processed(tmp_path):
    good = tmp_path / "good.eml"
    good.write_bytes(b"From: a@example.com\nSubject: hi\n\nHello, how do I reset my password?\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\n")
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="2 input"):
        call_command("triage", "--json", "--no-verify", str(tmp_path / "missing.eml"), str(notes), str(good),
                     stdout=out, stderr=err)  # fmt: skip
    assert len(out.getvalue().splitlines()) == 1
    assert "does not exist" in err.getvalue() and "not an email message" in err.getvalue()


def test_evaluate_prints_the_figures():
    out = StringIO()
    call_command("evaluate", "--skip-spam", "--labelled", str(SAMPLES / "demo.mbox"),
                 "--labels", str(SAMPLES / "demo_labels.csv"), stdout=out, stderr=StringIO())  # fmt: skip
    text = out.getvalue()
    assert "Categories (70 labelled messages, all part of" in text and "accuracy" in text
    assert "within one level" in text and "(rows: label, columns: predicted)" in text
    assert "business mail filed as spam:" in text and "Other languages:" in text
    assert "P0: " in text and "To review:" in text


def test_evaluate_spam_cross_validation_on_a_sample(spam_corpus):
    out = StringIO()
    # The bundled mailbox as the labelled set: its triage figures are another test's concern.
    call_command("evaluate", "--json", "--limit", "150", "--folds", "3",
                 "--labelled", str(SAMPLES / "demo.mbox"), "--labels",
                 str(SAMPLES / "demo_labels.csv"), stdout=out, stderr=StringIO())  # fmt: skip
    report = json.loads(out.getvalue())
    assert report["spam"]["messages"] == 150 and report["spam"]["folds"] == 3
    assert 0.5 < report["spam"]["f1"] <= 1.0 and report["spam"]["augmented"] is True
    assert report["spam_corpus_only"]["augmented"] is False


def test_train_spam_writes_loadable_heads(tmp_path, spam_corpus):
    call_command(
        "train_spam",
        "--limit",
        "120",
        "--output-dir",
        str(tmp_path),
        stdout=StringIO(),
        stderr=StringIO(),
    )
    full = SpamHead.load(tmp_path / "spam_head.npz")
    light = SpamHead.load(tmp_path / "spam_head_light.npz")
    assert full.embedding_dimension == 384 and light.embedding_dimension == 0
    assert full.meta["messages"] == 120 and full.meta["augmented"] is True
    assert full.bayes is not None and light.bayes is not None
    prize = parse_message(
        b"Subject: WIN NOW\n\nWIN $1,000,000 NOW!!! Click here to claim your prize\n"
    )
    probability = light.predict_proba([spam_document(prize)], None)
    assert np.isfinite(probability).all()


def test_bad_corpus_path_is_a_usage_error(tmp_path):
    missing = tmp_path / "nope"
    says_where = rf"No corpus at {re.escape(str(missing))}.*MAILSCORE_SPAM_CORPUS"
    with pytest.raises(CommandError, match=says_where):
        call_command("train_spam", "--data", str(missing), stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match=says_where):
        call_command("evaluate", "--spam-data", str(missing), stdout=StringIO(), stderr=StringIO())
