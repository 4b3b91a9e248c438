"""How far reviewers' corrections reach, and what they cost the rest of the mail.

For each way of learning, the corrections of samples/corrections.json are learned from their
original messages; then the differently worded messages are triaged (do they come out the way the
reviewer decided?) and so is the labelled mailbox of samples/ (did it get worse?). The engine
alone, in-process, on one loaded encoder; every setting is measured in the same run.

    python benchmarks/learning.py
"""

from __future__ import annotations

import argparse
import json
import sys
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.inbox.engine import parse_message  # noqa: E402
from apps.triage.engine import learning  # noqa: E402
from apps.triage.engine.classify import category_text  # noqa: E402
from apps.triage.engine.evaluation import evaluate_triage, load_labelled  # noqa: E402
from apps.triage.engine.learning import Correction, Learned  # noqa: E402
from apps.triage.engine.pipeline import TriageConfig, Triager, TriageSetup  # noqa: E402

SAMPLES = ROOT / "samples"
# (label, weight of a correction in the head, pull strength; 0 turns the pull off)
SETTINGS = [
    ("head only, weight 1", 1.0, 0.0),
    ("head only, weight 4", 4.0, 0.0),
    ("pull only", 0.0, learning.PULL_STRENGTH),
    ("head weight 2 + pull", 2.0, learning.PULL_STRENGTH),
    ("head weight 1 + pull (shipped)", learning.CORRECTION_WEIGHT, learning.PULL_STRENGTH),
]


def message(fields: dict):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = (
        fields["from"],
        "support@mailscore.test",
        fields["subject"],
    )
    mail["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    mail.set_content(fields["text"])
    return parse_message(mail.as_bytes())


def decided(outcome, case: dict) -> bool:
    category = case["category"] is None or outcome.category.label == case["category"]
    priority = case["priority"] is None or outcome.priority.level == case["priority"]
    return category and priority


def confidence(outcomes, cases: list[dict]) -> float:
    """Mean confidence of the category the reviewer chose, on the reworded messages where the
    reviewer chose one: below MAILSCORE_REVIEW_CONFIDENCE a message still waits for review."""
    values = [o.category.confidence if o.category.label == c["category"] else 0.0
              for o, c in zip(outcomes, cases, strict=True) if c["category"]]  # fmt: skip
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()

    cases = json.loads((SAMPLES / "corrections.json").read_text(encoding="utf-8"))["cases"]
    labelled = load_labelled(SAMPLES / "demo.mbox", SAMPLES / "demo_labels.csv")
    triager = Triager(TriageConfig(device="cpu"))
    baseline = triager.setup
    originals = [message(case["original"]) for case in cases]
    reworded = [message(case["paraphrase"]) for case in cases]
    texts = [category_text(m) for m in originals]
    vectors = triager.encoder.encode(texts).vectors
    # A priority correction applies within the category the message had when it was made.
    seen_as = [o.category.label for o in triager.triage(originals)]

    rows = []
    before = evaluate_triage(triager, labelled)
    outcomes = triager.triage(reworded)
    right = sum(decided(o, c) for o, c in zip(outcomes, cases, strict=True))
    rows.append(("no learned model", right, confidence(outcomes, cases), before))
    for label, weight, strength in SETTINGS:
        learning.PULL_STRENGTH = strength
        corrections = [
            Correction(text, category=case["category"], priority=case["priority"], vector=vector,
                       weight=weight, category_corrected=case["category"] is not None,
                       priority_corrected=case["priority"] is not None,
                       seen_as=case["category"] or model_category)
            for text, vector, case, model_category in zip(texts, vectors, cases, seen_as,
                                                          strict=True)
        ]  # fmt: skip
        if weight == 0:  # the head without them: only the pull and the neighbours learn
            for correction in corrections:
                correction.weight = 1e-9
        triager.reconfigure(TriageSetup(baseline.taxonomy, baseline.templates, baseline.policy,
                                        baseline.senders, Learned("bench", corrections)))  # fmt: skip
        outcomes = triager.triage(reworded)
        right = sum(decided(o, c) for o, c in zip(outcomes, cases, strict=True))
        rows.append((label, right, confidence(outcomes, cases), evaluate_triage(triager, labelled)))
        triager.reconfigure(baseline)

    if arguments.json:
        print(json.dumps([{"setting": label, "reworded_right": right, "of": len(cases),
                           "reworded_confidence": sure,
                           "category_accuracy": r["category_accuracy"],
                           "priority_exact": r["priority_exact"]}
                          for label, right, sure, r in rows], indent=2))  # fmt: skip
        return
    print(f"{len(cases)} corrections; reworded messages decided as the reviewer did, and the "
          f"labelled set ({len(labelled)} messages) after learning:\n")  # fmt: skip
    print(f"{'setting':34}{'reworded':>10}{'confidence':>12}{'category':>10}{'priority':>10}")
    for label, right, sure, result in rows:
        print(f"{label:34}{f'{right}/{len(cases)}':>10}{sure:>12.2f}"
              f"{result['category_accuracy']:>10.1%}{result['priority_exact']:>10.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
