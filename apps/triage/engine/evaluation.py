"""Quality figures from labelled data: category accuracy and confusion, priority agreement, and
how well confidences are calibrated."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from apps.inbox.engine import ParsedMessage, parse_message
from apps.inbox.engine.mailbox import iter_messages
from apps.triage.engine.training import expected_calibration_error

PRIORITY_RANK = {"P0": 0, "P1": 1, "P2": 2, "P3": 3}


def load_labelled(
    mailbox_path: str | Path, labels_path: str | Path
) -> list[tuple[ParsedMessage, str, str]]:
    """Messages and their (category, priority) labels, matched by Message-ID. The labels live
    in a separate file so that nothing in a message can give its label away."""
    with open(labels_path, newline="", encoding="utf-8") as handle:
        labels = {
            row["message_id"]: (row["category"], row["priority"]) for row in csv.DictReader(handle)
        }
    labelled = []
    for item in iter_messages([mailbox_path]):
        if item.error:
            raise ValueError(item.error)
        message = parse_message(item.raw)
        if message.message_id not in labels:
            raise ValueError(f"{item.source}: no label for {message.message_id} in {labels_path}")
        labelled.append((message, *labels[message.message_id]))
    missing = set(labels) - {m.message_id for m, _, _ in labelled}
    if missing:
        raise ValueError(f"labels without a message: {', '.join(sorted(missing))}")
    return labelled


def evaluate_triage(triager, labelled: list[tuple[ParsedMessage, str, str]]) -> dict:
    messages = [m for m, _, _ in labelled]
    outcomes = triager.triage(messages)
    truth = [c for _, c, _ in labelled]
    predicted = [o.category.label for o in outcomes]
    confidences = np.array([o.category.confidence for o in outcomes])
    correct = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    names = sorted(set(truth) | set(predicted))
    confusion = {t: Counter() for t in names}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] += 1
    priority_truth = [PRIORITY_RANK[p] for _, _, p in labelled]
    priority_predicted = [PRIORITY_RANK[o.priority.level] for o in outcomes]
    distance = np.abs(np.array(priority_truth) - np.array(priority_predicted))
    decided_by = Counter(o.category.decided_by.split(":")[0] for o in outcomes)
    mistakes = [
        {"message_id": m.message_id, "subject": m.subject, "label": t, "predicted": o.category.label,
         "confidence": round(o.category.confidence, 3), "decided_by": o.category.decided_by}
        for (m, t, _), o in zip(labelled, outcomes, strict=True) if o.category.label != t
    ]  # fmt: skip
    priority_misses = [
        {"message_id": m.message_id, "label": p, "predicted": o.priority.level, "reasons": o.priority.reasons}
        for (m, _, p), o in zip(labelled, outcomes, strict=True)
        if abs(PRIORITY_RANK[p] - PRIORITY_RANK[o.priority.level]) > 1
    ]  # fmt: skip
    return {
        "messages": len(labelled),
        "category_accuracy": float(correct.mean()),
        "category_ece": expected_calibration_error(confidences, correct.astype(float)),
        "priority_exact": float((distance == 0).mean()),
        "priority_within_one": float((distance <= 1).mean()),
        "decided_by": dict(decided_by),
        "confusion": {t: dict(confusion[t]) for t in names},
        "labels": names,
        "mistakes": mistakes,
        "priority_misses": priority_misses,
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
