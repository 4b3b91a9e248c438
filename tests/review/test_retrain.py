"""manage.py retrain: what it learns from, the evaluation it prints, the versions it keeps, and
the version it refuses."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.inbox.engine import parse_message
from apps.inbox.models import Message
from apps.review.retraining import collect_training_set
from apps.review.services import Decision, record_feedback
from apps.triage.engine.priority import prioritize
from apps.triage.models import ModelVersion
from apps.triage.services import get_triager
from tests.review.conftest import demo_labels, demo_mail, raw_message, store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("team_configuration")]


def retrain(*arguments: str) -> str:
    out = StringIO()
    call_command("retrain", *arguments, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_nothing_to_learn_from_yet():
    assert "Nothing to learn from yet" in retrain()
    assert not ModelVersion.objects.exists()
    assert "No model versions yet" in retrain("--list")


def test_latest_decision_per_message_is_what_is_learned():
    message = store(raw_message("The invoice total is wrong.", subject="Invoice 88 total"),
                    category="sales", level="P3")  # fmt: skip
    record_feedback(message.id, Decision(category="support"))
    record_feedback(message.id, Decision(category="billing", priority="P2"))
    confirmed = store(raw_message("Our API returns 500 errors.", subject="API errors"),
                      category="incident", level="P1")  # fmt: skip
    record_feedback(confirmed.id, Decision(confirm=True))

    training = collect_training_set()

    assert training.feedback_count == 3
    by_text = {c["text"].split("\n")[0]: c for c in training.corrections}
    corrected = by_text["Invoice 88 total"]
    assert corrected["category"] == "billing" and corrected["category_corrected"]
    assert corrected["priority"] == "P2" and corrected["priority_corrected"]
    # A confirmation is an example for the head, never a reason to overrule the model.
    kept = by_text["API errors"]
    assert kept["category"] == "incident" and not kept["category_corrected"]
    assert "priority" not in kept


def test_retrain_evaluates_activates_refuses_and_rolls_back():
    labels = demo_labels()
    mail = demo_mail()
    get_triager()  # the models load once for the whole test

    # A correction that generalises: a warranty claim is support.
    warranty = store(raw_message(
        "Hi, the espresso machine I bought from you in March has stopped heating. It is still "
        "under the two-year warranty. Can you replace or repair it? Order 448812.",
        subject="Warranty claim for my espresso machine"), category="sales", level="P2")  # fmt: skip
    record_feedback(warranty.id, Decision(category="support"))
    # Feedback on a message of the labelled set takes it out of the evaluation.
    incident_id = next(mid for mid, (category, _) in labels.items() if category == "incident")
    from_labelled = store(mail[incident_id], category="incident", level="P1")
    record_feedback(from_labelled.id, Decision(confirm=True))

    output = retrain()

    assert "v1 is active" in output, output
    assert "(69 labelled" not in output and "1 left out: feedback came from them" in output
    table = re.findall(r"^category accuracy\s+([\d.]+)%\s+([\d.]+)%$", output, re.M)
    assert table and float(table[0][1]) >= float(table[0][0]), output
    first = ModelVersion.objects.get(name="v1")
    assert first.active and first.evaluation["excluded"] == 1
    assert first.evaluation["after"]["messages"] == len(labels) - 1
    assert "model:v1" in get_triager().versions["classifier"]

    # A correction that contradicts the labelled set: a labelled message's exact words,
    # filed as spam. The version is kept but not activated.
    subject_body = mail[incident_id].split(b"\n\n", 1)
    contradicting = store(raw_message(subject_body[1].decode("utf-8", "replace")[:1500],
                                      subject="Production is down"), category="incident")  # fmt: skip
    record_feedback(contradicting.id, Decision(category="spam"))
    other_incidents = [mid for mid, (c, _) in labels.items() if c == "incident"][1:3]
    for message_id in other_incidents:
        copy = store(mail[message_id].replace(message_id.encode(), b"<copy-" + message_id[1:].encode()),
                     category="incident")  # fmt: skip
        record_feedback(copy.id, Decision(category="spam"))

    output = retrain()

    assert "v2 was recorded but not activated: it is worse on category_accuracy" in output, output
    second = ModelVersion.objects.get(name="v2")
    assert not second.active and second.evaluation["refused"]
    assert ModelVersion.objects.get(active=True).name == "v1"

    listing = retrain("--list")
    assert re.search(r"^v1\s+yes", listing, re.M) and re.search(r"^v2\s+\d", listing, re.M)

    assert "v2 is active" in retrain("--activate", "v2")
    assert "model:v2" in get_triager().versions["classifier"]
    assert "No learned model is active" in retrain("--activate", "none")
    assert "model:none" in get_triager().versions["classifier"]
    assert "v1 is active" in retrain("--activate", "v1")
    with pytest.raises(CommandError, match="No model version 'v9'; known: v1, v2"):
        retrain("--activate", "v9")


def test_a_corrected_level_is_kept_with_what_the_rules_said_of_the_message():
    notice = raw_message(
        "We could not charge the card ending 4242 for invoice INV-20931 (EUR 1,240.00). Your "
        "subscription will be suspended in 3 days unless the payment method is updated.",
        subject="Payment failed: invoice INV-20931", sender="Billing <billing@payments.test>",
    )  # fmt: skip
    corrected = store(notice, category="billing", level="P2")
    record_feedback(corrected.id, Decision(priority="P1"))
    gone = store(raw_message("Could you send the quote by Friday?", subject="Quote"),
                 category="sales", level="P2")  # fmt: skip
    record_feedback(gone.id, Decision(priority="P3"))
    Message.objects.filter(id=gone.id).delete()  # retention took it since
    examples = get_triager().level_head.examples

    assert "v1 is active" in retrain("--force")

    entries = {
        entry["message_id"]: entry for entry in ModelVersion.objects.get(name="v1").corrections
    }
    rules = prioritize(parse_message(notice), "billing", get_triager().policy)
    assert entries[corrected.id]["seen_as"] == "billing"
    assert entries[corrected.id]["rules"] == {"level": rules.level, "score": rules.score}
    # Without the message there is no verdict: the correction still counts for its neighbours.
    assert entries[gone.id]["priority"] == "P3" and "rules" not in entries[gone.id]
    assert get_triager().level_head.examples == examples + 1
