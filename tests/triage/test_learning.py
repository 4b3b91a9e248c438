"""The engine's side of learning from reviewers, sender lists and who gets no draft."""

from __future__ import annotations

import numpy as np
import pytest

from apps.triage.engine.classify import CategoryHead, SenderLists, category_text
from apps.triage.engine.draft import no_reply_reason
from apps.triage.engine.learning import LEVEL_CORRECTION_WEIGHT, Correction, Learned
from apps.triage.engine.levels import LevelHead
from apps.triage.engine.pipeline import TriageSetup
from apps.triage.engine.priority import prioritize
from apps.triage.engine.taxonomy import Taxonomy
from tests.triage.conftest import make_message

WARRANTY = make_message(
    "Hi, the espresso machine I bought from you in March has stopped heating. It is still under "
    "the two-year warranty. Can you replace or repair it? Order 448812.\n\nThanks,\nMarta",
    subject="Warranty claim for my espresso machine",
)
# A customer reporting a payment-diversion attempt in our name, and another customer's report of
# the same kind in other words: the heads read both as billing.
FAKE_BANK_DETAILS = make_message(
    "Hi, one of our finance people received an email, supposedly from you, saying your bank "
    "account changed and asking us to pay invoice BD-2291 to a new IBAN in Lithuania. It looks "
    "fake to us. Can you confirm it's not from you?\n\nSofia",
    subject="Suspicious mail about your bank details",
)
FAKE_BANK_DETAILS_REWORDED = make_message(
    "Hello, our accountant got an email in your name telling us to send the next payment to a "
    "different bank account in Latvia. That seems suspicious to us. Did you send it? Regards, Karl",
    subject="Is this really your new account?",
)
QUOTE = make_message(
    "Hello, could you send us the signed quote for the 40 licences by tomorrow noon? Our "
    "purchasing committee meets at 2pm and cannot approve without it.\n\nBest, Karen",
    subject="Signed quote needed by tomorrow",
)
QUOTE_REWORDED = make_message(
    "Hi, we need your countersigned offer for the licence renewal before our approval meeting "
    "tomorrow morning, otherwise the purchase slips a month. Thanks, Raj",
    subject="Countersigned offer before our board meeting",
)
# A billing system's notice and the next one from the same template.
PAYMENT_FAILED = make_message(
    "We could not charge the card ending 4242 for invoice INV-20931 (EUR 1,240.00). Your "
    "subscription will be suspended in 3 days unless the payment method is updated. Update it "
    "in the billing portal.",
    subject="Payment failed: invoice INV-20931",
    sender="Billing <billing@payments.test>",
)
PAYMENT_FAILED_AGAIN = make_message(
    "We could not charge the card ending 0019 for invoice INV-21177 (EUR 980.00). Your "
    "subscription will be suspended in 3 days unless the payment method is updated. Update it "
    "in the billing portal.",
    subject="Payment failed: invoice INV-21177",
    sender="Billing <billing@payments.test>",
)
UNRELATED = make_message(
    "Hi, could you tell me whether your enterprise plan includes single sign-on and what the "
    "price per seat would be for 200 users?",
    subject="Enterprise plan question",
)


@pytest.fixture
def with_setup(triager):
    """Run the session's triager with another setup, and give its own back afterwards."""
    original = triager.setup

    def use(**changes) -> None:
        values = {field: getattr(original, field) for field in
                  ("taxonomy", "templates", "policy", "senders", "learned")}  # fmt: skip
        triager.reconfigure(TriageSetup(**{**values, **changes}))

    yield use
    triager.reconfigure(original)


def corrections(triager, *items: tuple) -> Learned:
    texts = [category_text(message) for message, *_ in items]
    vectors = triager.encoder.encode(texts).vectors
    return Learned("test-1", [
        Correction(text, category=category, priority=priority, vector=vector,
                   category_corrected=category is not None,
                   priority_corrected=priority is not None, seen_as=seen_as)
        for text, vector, (_, category, priority, seen_as) in zip(texts, vectors, items, strict=True)
    ])  # fmt: skip


def test_a_correction_reaches_a_differently_worded_message(triager, with_setup):
    before = triager.triage([FAKE_BANK_DETAILS_REWORDED, UNRELATED])
    assert before[0].category.label != "security"

    with_setup(learned=corrections(triager, (FAKE_BANK_DETAILS, "security", None, None)))
    after = triager.triage([FAKE_BANK_DETAILS, FAKE_BANK_DETAILS_REWORDED, UNRELATED])

    assert after[0].category.label == "security"
    assert "reviewer filed as security" in after[0].category.decided_by  # its own words again
    assert after[1].category.label == "security" and after[1].category.decided_by == "encoder"
    assert after[2].category.label == before[1].category.label  # unlike it: left alone
    assert "model:test-1" in triager.versions["classifier"]


def test_a_corrected_level_is_taken_by_the_same_kind_of_mail_in_its_category(triager, with_setup):
    assert triager.triage([PAYMENT_FAILED_AGAIN])[0].priority.level != "P1"
    with_setup(learned=corrections(triager, (PAYMENT_FAILED, None, "P1", "billing"),
                                   (QUOTE, None, "P3", "sales")))  # fmt: skip

    again, quote = triager.triage([PAYMENT_FAILED_AGAIN, QUOTE_REWORDED])
    assert again.category.label == "billing" and again.priority.level == "P1"
    assert again.priority.reasons[0].startswith("a reviewer set a message like this one to P1")
    # How urgent a person's request is depends on more than its topic: a request worded
    # otherwise keeps its own level (learning.PRIORITY_NEIGHBOUR_SIMILARITY).
    assert quote.priority.level != "P3"
    assert not quote.priority.reasons[0].startswith("a reviewer")
    # The same words filed under another category are not overruled.
    other = triager.prioritize([PAYMENT_FAILED_AGAIN], ["support"],
                               triager.encode([PAYMENT_FAILED_AGAIN]).vectors)[0]  # fmt: skip
    assert not other.reasons[0].startswith("a reviewer")


def test_a_corrected_level_with_the_rules_verdict_teaches_the_level_head(triager, with_setup):
    learned = corrections(triager, (QUOTE, None, "P3", "sales"), (WARRANTY, "support", None, None))
    with_setup(learned=learned)
    examples = triager.level_head.examples
    # Beside what the rules said of the message, in the category it had, a level is an example.
    rules = prioritize(QUOTE, "sales", triager.policy)
    learned.corrections[0].rules_level = rules.level
    learned.corrections[0].rules_score = rules.score
    with_setup(learned=learned)

    assert triager.level_head.examples == examples + 1  # the category correction has no level
    assert triager.versions["priority"].endswith(f"+levels:{examples + 1}")
    # Where a correction weighs w, the head fits as if it had seen the message w times.
    weights = triager.level_head.weights
    assert weights[-1] == LEVEL_CORRECTION_WEIGHT and set(weights[:-1]) == {1.0}


def test_sender_lists(triager, with_setup):
    lottery = make_message(
        "CONGRATULATIONS!!! You have WON $1,000,000 in our international lottery. Send your bank "
        "details and a processing fee of $99 to claim your prize NOW!!!",
        subject="You are a WINNER", sender="Prize Office <claims@lotto-win.test>",
    )  # fmt: skip
    partner = make_message("Could we move our call to Thursday?", subject="Our call",
                           sender="Ann <ann@partner.test>")  # fmt: skip
    assert triager.triage([lottery])[0].category.label == "spam"

    with_setup(senders=SenderLists(allow=frozenset({"lotto-win.test"}),
                                   deny=frozenset({"ann@partner.test"})))  # fmt: skip
    allowed, denied = triager.triage([lottery, partner])

    assert allowed.category.label != "spam" and "allow list" in allowed.category.decided_by
    assert (
        denied.category.label == "spam"
        and denied.category.decided_by == "deny list: ann@partner.test"
    )


@pytest.mark.parametrize(
    ("sender", "extra", "reason"),
    [
        ("No Reply <no-reply@shop.test>", "", "takes no replies"),
        ("Billing <donotreply@bank.test>", "", "takes no replies"),
        ("Ops <ops@acme.test>", "Auto-Submitted: auto-generated\n", "Auto-Submitted"),
        ("Dev List <dev@lists.acme.test>", "List-Id: <dev.lists.acme.test>\n", "mailing list"),
        ("Promo <promo@acme.test>", "Precedence: bulk\n", "bulk mail"),
    ],
)
def test_no_draft_for_senders_that_read_no_replies(triager, sender, extra, reason):
    message = make_message("My invoice 4471 shows the wrong amount, can you correct it?",
                           subject="Invoice 4471 is wrong", sender=sender, extra=extra)  # fmt: skip
    assert reason in no_reply_reason(message)
    outcome = triager.triage([message])[0]
    assert outcome.draft is None


def test_a_person_gets_a_draft_that_names_its_template(triager):
    message = make_message("My invoice 4471 shows the wrong amount, can you correct it?",
                           subject="Invoice 4471 is wrong")  # fmt: skip
    assert no_reply_reason(message) is None
    outcome = triager.triage([message])[0]
    assert outcome.draft is not None and outcome.draft.origin.endswith("template")


def test_the_heads_are_fitted_again_only_when_what_they_learn_from_changes(triager, with_setup):
    head, levels = triager.classifier.head, triager.level_head
    # A sender rule changes no head: the next batch does not wait for a refit.
    with_setup(senders=SenderLists(allow=frozenset({"partner.test"})))
    assert triager.classifier.senders.allow == {"partner.test"}
    assert triager.classifier.head is head and triager.level_head is levels

    # A corrected level teaches the level head only.
    learned = corrections(triager, (QUOTE, None, "P3", "sales"))
    rules = prioritize(QUOTE, "sales", triager.policy)
    learned.corrections[0].rules_level = rules.level
    learned.corrections[0].rules_score = rules.score
    with_setup(learned=learned)
    assert triager.classifier.head is head and triager.level_head is not levels
    assert triager.classifier.learned is learned

    # A corrected category: both, as the level head reads what the category head reads.
    levels = triager.level_head
    with_setup(learned=corrections(triager, (WARRANTY, "support", None, None)))
    assert triager.classifier.head is not head and triager.level_head is not levels


def test_a_new_learned_model_keeps_the_heads_temperatures(triager, with_setup, monkeypatch):
    fits = []
    for head in (CategoryHead, LevelHead):
        fit = head._fit_temperature
        monkeypatch.setattr(head, "_fit_temperature",
                            lambda self, *a, fit=fit: fits.append(type(self)) or fit(self, *a))  # fmt: skip
    head, levels = triager.classifier.head, triager.level_head
    learned = corrections(triager, (WARRANTY, "support", None, None), (QUOTE, None, "P3", "sales"))
    rules = prioritize(QUOTE, "sales", triager.policy)
    level_correction = learned.corrections[1]
    level_correction.rules_level, level_correction.rules_score = rules.level, rules.score
    with_setup(learned=learned)
    # Both heads learned the corrections; neither ran its three cross-validation fits again.
    assert triager.classifier.head is not head and triager.level_head is not levels
    assert triager.level_head.examples == levels.examples + 1
    assert fits == []
    assert triager.classifier.head.temperature == head.temperature
    assert triager.level_head.temperature == levels.temperature

    # Another taxonomy: the temperatures are fitted again, on what the heads learn from now.
    categories = [c for c in triager.taxonomy.categories if c.name != "feedback"]
    with_setup(taxonomy=Taxonomy(categories, version="without-feedback"), learned=learned)
    assert fits == [CategoryHead, LevelHead]
    assert "feedback" not in triager.classifier.head.classes


def test_a_setup_that_cannot_be_fitted_leaves_the_last_one_whole(triager, with_setup):
    head = triager.classifier.head
    # A correction kept with another encoder's embedding (10 numbers, not 384) cannot be fitted.
    foreign = Learned("other-encoder", [Correction("Where is my order?", category="support",
                                                   vector=np.ones(10, dtype=np.float32))])  # fmt: skip
    with pytest.raises(ValueError, match="dimension"):
        with_setup(learned=foreign)
    assert triager.classifier.head is head and triager.learned is not foreign
    # Tried again, it is fitted again, not taken for the setup that last fitted.
    with pytest.raises(ValueError, match="dimension"):
        with_setup(learned=foreign)
