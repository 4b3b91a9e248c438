"""Quality figures from labelled data: category accuracy and confusion, priority agreement, P0
recall and precision, business mail filed as spam, mail in other languages, what goes to review,
and how well confidences are calibrated."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from apps.inbox.engine import ParsedMessage, parse_message
from apps.inbox.engine.mailbox import iter_messages
from apps.triage.engine.training import expected_calibration_error
from apps.verification.engine.trust import review_reason

PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}
# Mail a business must never lose to the spam folder.
BUSINESS = ("incident", "support", "billing", "sales", "account", "security", "legal")
SPLITS = ("tune", "holdout", "all")


class Labelled(NamedTuple):
    message: ParsedMessage
    category: str
    levels: tuple[str, ...]  # every accepted level ("P1|P2" in the labels file), most urgent first
    language: str = ""
    split: str = ""
    note: str = ""


def _accepted(value: str, where: str) -> tuple[str, ...]:
    levels = tuple(level.strip() for level in value.split("|") if level.strip())
    if not levels or any(level not in PRIORITY_RANK for level in levels):
        raise ValueError(f"{where}: priority {value!r}: use P0 to P3, or two as P1|P2")
    return tuple(sorted(levels, key=PRIORITY_RANK.get))


def load_labelled(
    mailbox_path: str | Path, labels_path: str | Path, *, split: str = "all"
) -> list[Labelled]:
    """Messages (a mailbox or a folder of .eml files) and their labels, matched by Message-ID.
    The labels live in a separate file so that nothing in a message can give its label away:
    message_id, category, priority (one level or two as P1|P2), and optionally language, split
    (tune or holdout) and note. With split, only that part is returned."""
    if split not in SPLITS:  # said before the messages are read
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    with open(labels_path, newline="", encoding="utf-8") as handle:
        rows = {row["message_id"]: row for row in csv.DictReader(handle)}
    labelled = []
    for item in iter_messages([mailbox_path]):
        if item.error:
            raise ValueError(item.error)
        message = parse_message(item.raw)
        row = rows.get(message.message_id or "")
        if row is None:
            raise ValueError(f"{item.source}: no label for {message.message_id} in {labels_path}")
        labelled.append(Labelled(message, row["category"], _accepted(row["priority"], item.source),
                                 row.get("language") or "", row.get("split") or "",
                                 row.get("note") or ""))  # fmt: skip
    missing = set(rows) - {item.message.message_id for item in labelled}
    if missing:
        raise ValueError(f"labels without a message: {', '.join(sorted(missing))}")
    return part(labelled, split)


def part(labelled: list[Labelled], split: str) -> list[Labelled]:
    """The messages of one part of a labelled set (all of them for "all")."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    if split == "all":
        return labelled
    if not any(item.split for item in labelled):
        raise ValueError("the labels have no split column: use --split all")
    return [item for item in labelled if item.split == split]


def _distance(level: str, accepted: tuple[str, ...]) -> int:
    return min(abs(PRIORITY_RANK[level] - PRIORITY_RANK[a]) for a in accepted)


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _judged_fairly(triager, labelled: list[Labelled], folds: int = 5) -> tuple[list, int]:
    """Each message triaged by a category head that did not learn from it. Where the triager's
    examples include some of these messages (the tune part evaluated), they are judged in folds,
    the head refitted without each fold's messages; returns the outcomes and the folds used."""
    examples = getattr(triager, "category_examples", None)
    ids = [item.message.message_id for item in labelled]
    learned_from = set(ids) & set(examples.sources if examples is not None else ())
    if not learned_from:
        return triager.triage([item.message for item in labelled]), 0
    outcomes: list = [None] * len(labelled)
    order = np.random.default_rng(0).permutation(len(labelled))
    try:
        for fold in range(folds):
            members = [int(i) for i in order[fold::folds]]
            triager.category_examples = examples.without(ids[i] for i in members)
            triager.reconfigure(triager.setup)
            found = triager.triage([labelled[i].message for i in members])
            for i, outcome in zip(members, found, strict=True):
                outcomes[i] = outcome
    finally:
        triager.category_examples = examples
        triager.reconfigure(triager.setup)
    return outcomes, folds


def evaluate_triage(triager, labelled: list[Labelled], *, review_confidence: float = 0.0) -> dict:
    """Every figure for one labelled set. review_confidence is the level below which a result
    goes to a person (MAILSCORE_REVIEW_CONFIDENCE), for the review figures."""
    outcomes, folds = _judged_fairly(triager, labelled)
    truth = [item.category for item in labelled]
    predicted = [o.category.label for o in outcomes]
    confidences = np.array([o.category.confidence for o in outcomes])
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    names = sorted(set(truth) | set(predicted))
    confusion = {t: Counter() for t in names}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    levels = [o.priority.level for o in outcomes]
    distance = np.array([_distance(level, item.levels)
                         for level, item in zip(levels, labelled, strict=True)])  # fmt: skip

    per_category = {}
    for name in sorted(set(truth)):
        labelled_as = [i for i, t in enumerate(truth) if t == name]
        predicted_as = [i for i, p in enumerate(predicted) if p == name]
        per_category[name] = {
            "messages": len(labelled_as),
            "recall": _rate(sum(predicted[i] == name for i in labelled_as), len(labelled_as)),
            "precision": _rate(sum(truth[i] == name for i in predicted_as), len(predicted_as)),
        }
    per_level = {}
    for level in PRIORITY_RANK:
        labelled_at = [i for i, item in enumerate(labelled) if item.levels[0] == level]
        per_level[level] = {
            "messages": len(labelled_at),
            "accepted": _rate(sum(distance[i] == 0 for i in labelled_at), len(labelled_at)),
            "predicted": sum(1 for p in levels if p == level),
        }
    # What the level head's second reading did: levels it moved that are now accepted and were
    # not, and the other way round.
    moved = [i for i, o in enumerate(outcomes) if o.priority.rules_level]
    ruled_distance = {i: _distance(outcomes[i].priority.rules_level, labelled[i].levels)
                      for i in moved}  # fmt: skip
    p0 = [i for i, item in enumerate(labelled) if "P0" in item.levels]
    predicted_p0 = [i for i, level in enumerate(levels) if level == "P0"]
    reasons = [review_reason(o.category.label, o.category.review, o.trust.level) for o in outcomes]
    review = [
        i for i, o in enumerate(outcomes)
        if reasons[i] or o.category.confidence < review_confidence
    ]  # fmt: skip
    in_review = set(review)
    business_as_spam = [
        i for i, (t, p) in enumerate(zip(truth, predicted, strict=True))
        if t in BUSINESS and p == "spam"
    ]  # fmt: skip

    def row(i: int) -> dict:
        item, outcome = labelled[i], outcomes[i]
        return {
            "message_id": item.message.message_id, "subject": item.message.subject,
            "language": item.message.language, "label": item.category,
            "predicted": outcome.category.label,
            "confidence": round(outcome.category.confidence, 3),
            "spam_probability": (None if outcome.category.spam_probability is None
                                 else round(outcome.category.spam_probability, 3)),
            "decided_by": outcome.category.decided_by, "review": reasons[i],
            "priority_label": "|".join(item.levels), "priority": outcome.priority.level,
            "priority_reasons": outcome.priority.reasons,
        }  # fmt: skip

    other_languages = [
        i for i, item in enumerate(labelled) if item.message.language not in (None, "en")
    ]
    foreign = set(other_languages)
    languages = Counter(labelled[i].message.language for i in other_languages)
    return {
        "messages": len(labelled),
        "cross_validated_folds": folds,
        "category_accuracy": float(correct.mean()),
        "category_ece": expected_calibration_error(confidences, correct.astype(float)),
        "priority_exact": float((distance == 0).mean()),
        "priority_within_one": float((distance <= 1).mean()),
        "second_reading": {
            "moved": len(moved),
            "now_accepted": sum(int(distance[i] == 0 < ruled_distance[i]) for i in moved),
            "no_longer_accepted": sum(int(ruled_distance[i] == 0 < distance[i]) for i in moved),
        },
        "p0_messages": len(p0),
        "p0_recall": _rate(sum(levels[i] == "P0" for i in p0), len(p0)),
        "p0_below_p1": sum(PRIORITY_RANK[levels[i]] > 1 for i in p0),
        "p0_precision": _rate(
            sum("P0" in labelled[i].levels for i in predicted_p0), len(predicted_p0)
        ),  # fmt: skip
        "business_as_spam": [row(i) for i in business_as_spam],
        "review": {
            "messages": len(review),
            "reasons": dict(Counter(reasons[i] or "low confidence" for i in review)),
            "accuracy_of_the_rest": _rate(
                sum(bool(correct[i]) for i in range(len(labelled)) if i not in in_review),
                len(labelled) - len(review),
            ),
        },
        "other_languages": {
            "messages": len(other_languages),
            "languages": dict(languages),
            "category_accuracy": _rate(
                sum(bool(correct[i]) for i in other_languages), len(other_languages)
            ),  # fmt: skip
            "business_as_spam": sum(1 for i in business_as_spam if i in foreign),
            "to_review_for_language": sum(
                1 for i in other_languages if outcomes[i].category.review == "language"
            ),
            "wrong_and_not_reviewed": sum(
                1 for i in other_languages if not correct[i] and i not in in_review
            ),
        },
        "decided_by": dict(Counter(o.category.decided_by.split(":")[0] for o in outcomes)),
        "per_category": per_category,
        "per_level": per_level,
        "confusion": {t: dict(confusion[t]) for t in names},
        "labels": names,
        "mistakes": [row(i) for i in range(len(labelled)) if not correct[i]],
        "priority_misses": [row(i) for i in range(len(labelled)) if distance[i] > 0],
    }


def confusion_table(result: dict) -> str:
    names = result["labels"]
    short = {n: n[:6] for n in names}
    width = max(len(n) for n in names) + 1
    lines = [
        " " * width
        + " ".join(f"{short[n]:>6}" for n in names)
        + "   (rows: label, columns: predicted)"
    ]
    for t in names:
        row = result["confusion"].get(t, {})
        lines.append(f"{t:<{width}}" + " ".join(f"{row.get(p, 0) or '.':>6}" for p in names))
    return "\n".join(lines)
