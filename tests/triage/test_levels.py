"""The level head: a second reading of the rules' priority level, learned from labelled mail."""

import numpy as np
import pytest

from apps.triage.engine.classify import CategoryHead, category_text
from apps.triage.engine.levels import LEVEL_NAMES, LevelHead, Verdict, second_reading
from apps.triage.engine.priority import PriorityDecision, PriorityPolicy, prioritize
from apps.triage.engine.taxonomy import Taxonomy
from tests.triage.conftest import make_message


def ruled(level: str, score: int, floor: str = "P3", ceiling: str = "P0") -> PriorityDecision:
    return PriorityDecision(score, level, ["the rules"], floor=floor, ceiling=ceiling)


@pytest.mark.parametrize(
    ("decision", "probabilities", "level", "score"),
    [
        # Surer of the level below by 0.5: moved, the score just inside it.
        (ruled("P1", 52), [0.05, 0.2, 0.7, 0.05], "P2", 44),
        # Surer by less than the margin: the rules' level stands.
        (ruled("P1", 52), [0.0, 0.4, 0.5, 0.1], "P1", 52),
        # Raised to now where the rules allow it; never past their ceiling, however sure.
        (ruled("P1", 60), [0.8, 0.15, 0.05, 0.0], "P0", 70),
        (ruled("P1", 60, ceiling="P1"), [0.8, 0.15, 0.05, 0.0], "P1", 60),
        # One level at most: P3 mail that reads like P1 goes to P2 only if P2 is surer than P3.
        (ruled("P3", 10), [0.0, 0.9, 0.05, 0.05], "P3", 10),
        (ruled("P3", 10), [0.0, 0.2, 0.7, 0.1], "P2", 20),
        # Never below their floor (a frustrated sender is answered today).
        (ruled("P1", 45, floor="P1"), [0.0, 0.1, 0.9, 0.0], "P1", 45),
        # Mail that needs no action stays where the rules put it.
        (ruled("P3", 0, floor="P3", ceiling="P3"), [0.0, 0.0, 0.95, 0.05], "P3", 0),
    ],
)  # fmt: skip
def test_the_second_reading_moves_one_level_within_what_the_rules_allow(
    decision, probabilities, level, score
):
    before = (decision.level, decision.score)
    moved = second_reading(decision, np.array(probabilities))
    assert (moved.level, moved.score) == (level, score)
    if (level, score) == ("P2", 44):
        assert moved.reasons[-1] == (
            "labelled mail like this one is P2 (0.70, against 0.20 for P1, the rules' level)"
        )
    elif (level, score) == before:
        assert moved.reasons == ["the rules"]


@pytest.mark.parametrize(
    ("category", "floor", "ceiling"),
    [("incident", "P3", "P0"), ("security", "P3", "P0"), ("support", "P3", "P1"),
     ("legal", "P3", "P1"), ("newsletter", "P3", "P3"), ("notification", "P3", "P3")],
)  # fmt: skip
def test_the_rules_set_how_far_the_second_reading_may_move_a_level(category, floor, ceiling):
    # P0 is for outages and compromises; a question or a letter is for today at most; mail that
    # needs no action is not moved at all.
    decision = prioritize(make_message("Could you look at the export?", subject="Export"), category)
    assert (decision.floor, decision.ceiling) == (floor, ceiling)


def test_an_important_senders_level_is_not_read_lower():
    # The operator's word on a sender (a VIP rule) stands over what labelled mail suggests.
    question = make_message("How do I reset the notification settings for my team?",
                            subject="Notification settings", sender="Carol <carol@big.test>")  # fmt: skip
    policy = PriorityPolicy(vip_addresses=frozenset({"carol@big.test"}))
    decision = prioritize(question, "support", policy)
    assert (decision.level, decision.floor) == ("P1", "P1")
    assert second_reading(decision, np.array([0.0, 0.1, 0.9, 0.0])).level == "P1"
    assert prioritize(question, "support").floor == "P3"  # anyone else's: free to move


def test_the_level_head_learns_which_level_mail_like_this_was_given():
    # The same rules' verdict (legal at P1) on two kinds of letter: a contract to review,
    # labelled this week's work, and a court order with a clock on it, labelled today's.
    contracts = [f"Contract amendment {n}\nPlease review the attached amendment to our master "
                 f"services agreement, clause {n}, and send comments when you can."
                 for n in range(12)]  # fmt: skip
    orders = [f"Court order {n}\nA subpoena was served on your company today, case {n}; the "
              f"records must be produced to the court within 24 hours."
              for n in range(12)]  # fmt: skip
    reader = CategoryHead(Taxonomy.load(), encoder=None)
    head = LevelHead(reader.features, Taxonomy.load().names, contracts + orders, None,
                     [Verdict("legal", "P1", 52)] * 24, ["P2"] * 12 + ["P1"] * 12)  # fmt: skip
    new = ["Contract amendment 99\nPlease review the attached amendment to the services "
           "agreement and send your comments.",
           "Court order 99\nA subpoena was served on us this morning; the court wants the "
           "records within 24 hours."]  # fmt: skip
    probabilities = head.predict(new, None, [Verdict("legal", "P1", 52)] * 2)
    assert [LEVEL_NAMES[i] for i in probabilities.argmax(axis=1)] == ["P2", "P1"]
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[:, 0] == 0).all() and (probabilities[:, 3] == 0).all()  # never labelled


def test_an_example_weighed_three_times_counts_as_three_examples():
    # A reviewer's corrected level weighs more than one labelled message (learning.py).
    texts = [f"Contract amendment {n}\nPlease review clause {n} of the services agreement."
             for n in range(10)] + [f"Court order {n}\nRecords due to the court within 24 hours."
                                    for n in range(10)]  # fmt: skip
    levels = ["P2"] * 10 + ["P1"] * 10
    corrected = "Contract amendment 77\nThe regulator wants the signed amendment by tonight."
    reader = CategoryHead(Taxonomy.load(), encoder=None)

    def head(extra: list[str], weights=None) -> LevelHead:
        return LevelHead(reader.features, Taxonomy.load().names, texts + extra, None,
                         [Verdict("legal", "P1", 52)] * (20 + len(extra)),
                         levels + ["P1"] * len(extra), weights)  # fmt: skip

    weighed = head([corrected], [1.0] * 20 + [3.0])
    repeated = head([corrected] * 3)
    once = head([corrected])
    assert np.allclose(weighed.model.coef_, repeated.model.coef_, atol=1e-3)
    assert not np.allclose(weighed.model.coef_, once.model.coef_, atol=1e-3)


def test_the_level_head_reads_the_batch_the_category_head_just_read_without_hashing_it_again(
    triager,
):
    messages = [make_message("The export fails with a 500 error for everyone.", subject="Export"),
                make_message("Could you send the signed quote by Friday?", subject="Quote")]  # fmt: skip
    texts = [category_text(m) for m in messages]
    vectors = triager.encode(messages).vectors
    head = triager.classifier.head
    head.predict(texts, vectors)
    read = head.read([category_text(m) for m in messages], vectors)
    assert head.read(texts, vectors) is read  # the same matrix, not hashed again
    assert head.read(texts, vectors.copy()) is not read  # other embeddings: read anew
    assert (head.read(texts, vectors.copy()) != read).nnz == 0
