"""How far reviewers' corrections reach, and what they cost the rest of the mail.

Two measures, each comparing ways of learning in the same run on one loaded encoder, the engine
alone, in-process:

- written cases: the corrections of samples/corrections.json are learned from their original
  messages; then the differently worded messages are triaged (do they come out the way the
  reviewer decided?) and so is the labelled mailbox of samples/ (did it get worse?);
- replay: the labelled business set's last rounds (samples/business, tune part) arrive as new
  mail to heads that never learned them. A reviewer corrects every category and level the model
  got wrong in a random half; the other half, mail that arrives later, and the holdout part are
  triaged before and after learning. What was fixed and what was broken is counted per message.

    python benchmarks/learning.py                 # both
    python benchmarks/learning.py --replay-only --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.inbox.engine import parse_message  # noqa: E402
from apps.inbox.engine.mailbox import iter_messages  # noqa: E402
from apps.triage.engine import learning  # noqa: E402
from apps.triage.engine.classify import category_text  # noqa: E402
from apps.triage.engine.evaluation import evaluate_triage, load_labelled  # noqa: E402
from apps.triage.engine.learning import Correction, Learned  # noqa: E402
from apps.triage.engine.pipeline import TriageConfig, Triager, TriageSetup  # noqa: E402
from apps.triage.engine.priority import prioritize  # noqa: E402

SAMPLES = ROOT / "samples"
BUSINESS = SAMPLES / "business"
# The rounds of the labelled set replayed as new mail: the last 640 messages written.
REPLAYED_ROUNDS = "zi,zj,zk,zl,zm,zn,zo,zp,zq,zr,zs,zt,zu,zv,zw,zx"


@dataclass(frozen=True)
class Setting:
    label: str
    weight: float  # of a correction in the category head
    priority_similarity: float  # from which a corrected level is taken by a neighbour
    levels_learned: bool  # corrected levels join the level head's examples


SETTINGS = [
    Setting("weight 1, neighbour 0.55", 1.0, 0.55, False),
    Setting("weight 4, neighbour 0.8", 4.0, 0.8, False),
    Setting(
        "and levels learned (shipped)",
        learning.CORRECTION_WEIGHT,
        learning.PRIORITY_NEIGHBOUR_SIMILARITY,
        True,
    ),  # fmt: skip
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


def learn(triager: Triager, baseline: TriageSetup, setting: Setting, corrections: list[dict],
          vectors) -> None:  # fmt: skip
    """Reconfigure the triager with corrections ({"text", "category", "priority", "seen_as",
    "message"}) learned the way setting says."""
    learning.PRIORITY_NEIGHBOUR_SIMILARITY = setting.priority_similarity
    learned = []
    for item, vector in zip(corrections, vectors, strict=True):
        rules = (prioritize(item["message"], item["seen_as"], baseline.policy)
                 if item["priority"] and setting.levels_learned else None)  # fmt: skip
        learned.append(Correction(
            item["text"], category=item["category"], priority=item["priority"], vector=vector,
            weight=setting.weight,
            category_corrected=item["category"] is not None,
            priority_corrected=item["priority"] is not None, seen_as=item["seen_as"],
            rules_level=rules.level if rules else None, rules_score=rules.score if rules else None,
        ))  # fmt: skip
    triager.reconfigure(TriageSetup(baseline.taxonomy, baseline.templates, baseline.policy,
                                    baseline.senders, Learned("bench", learned)))  # fmt: skip


def written_cases(triager: Triager, settings: list[Setting], path: Path) -> list[dict]:
    cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    labelled = load_labelled(SAMPLES / "demo.mbox", SAMPLES / "demo_labels.csv")
    baseline = triager.setup
    originals = [message(case["original"]) for case in cases]
    reworded = [message(case["paraphrase"]) for case in cases]
    texts = [category_text(m) for m in originals]
    vectors = triager.encoder.encode(texts).vectors
    # A priority correction applies within the category the message had when it was made.
    seen_as = [o.category.label for o in triager.triage(originals)]
    corrections = [
        {"text": text, "category": case["category"], "priority": case["priority"],
         "seen_as": case["category"] or model_category, "message": original}
        for text, case, model_category, original in zip(texts, cases, seen_as, originals,
                                                        strict=True)
    ]  # fmt: skip

    def decided(outcome, case: dict) -> bool:
        category = case["category"] is None or outcome.category.label == case["category"]
        priority = case["priority"] is None or outcome.priority.level == case["priority"]
        return category and priority

    def row(label: str) -> dict:
        outcomes = triager.triage(reworded)
        # Mean confidence of the category the reviewer chose: below MAILSCORE_REVIEW_CONFIDENCE
        # a message still waits for review.
        sure = [o.category.confidence if o.category.label == c["category"] else 0.0
                for o, c in zip(outcomes, cases, strict=True) if c["category"]]  # fmt: skip
        result = evaluate_triage(triager, labelled)
        return {"setting": label, "of": len(cases),
                "reworded_right": sum(decided(o, c) for o, c in zip(outcomes, cases, strict=True)),
                "reworded_confidence": sum(sure) / len(sure) if sure else 0.0,
                "category_accuracy": result["category_accuracy"],
                "priority_exact": result["priority_exact"],
                "wrong": [c["name"] for o, c in zip(outcomes, cases, strict=True)
                          if not decided(o, c)]}  # fmt: skip

    rows = [row("no learned model")]
    for setting in settings:
        learn(triager, baseline, setting, corrections, vectors)
        rows.append(row(setting.label))
        triager.reconfigure(baseline)
    return rows


def _rounds(labelled, rounds: set[str]) -> list:
    """The labelled messages of the tune part whose file name starts with one of rounds."""
    prefix = {}
    for item in iter_messages([BUSINESS / "messages"]):
        prefix[parse_message(item.raw).message_id] = Path(item.source).name.rsplit("-", 1)[0]
    return [item for item in labelled
            if item.split == "tune" and prefix.get(item.message.message_id) in rounds]  # fmt: skip


def replay(triager: Triager, settings: list[Setting], rounds: set[str],
           seeds: list[int]) -> list[dict]:  # fmt: skip
    labelled = load_labelled(BUSINESS / "messages", BUSINESS / "labels.csv")
    incoming = _rounds(labelled, rounds)
    holdout = [item for item in labelled if item.split == "holdout"]
    if not incoming:
        raise SystemExit(f"no tune message in the rounds {sorted(rounds)} of {BUSINESS}")
    # The heads as they were before this mail came: without it among their examples.
    triager.category_examples = triager.category_examples.without(
        {item.message.message_id for item in incoming}
    )
    baseline = triager.setup
    triager.reconfigure(baseline)
    vectors = {id(part): triager.encode([i.message for i in part]).vectors
               for part in (incoming, holdout)}  # fmt: skip

    def read(items, encoded) -> list[tuple[str, str]]:
        decisions = triager.classify([i.message for i in items], encoded)
        levels = triager.prioritize([i.message for i in items], [d.label for d in decisions],
                                    encoded)  # fmt: skip
        return [(d.label, p.level) for d, p in zip(decisions, levels, strict=True)]

    def compare(items, before, after) -> dict:
        pairs = list(zip(items, before, after, strict=True))
        return {
            "category": sum(a[0] == i.category for i, _, a in pairs) / len(items),
            "priority": sum(a[1] in i.levels for i, _, a in pairs) / len(items),
            "category_fixed": sum(a[0] == i.category != b[0] for i, b, a in pairs),
            "category_broken": sum(b[0] == i.category != a[0] for i, b, a in pairs),
            "priority_fixed": sum(a[1] in i.levels and b[1] not in i.levels for i, b, a in pairs),
            "priority_broken": sum(b[1] in i.levels and a[1] not in i.levels for i, b, a in pairs),
        }

    index = {id(item): n for n, item in enumerate(incoming)}
    runs = []
    for seed in seeds:
        order = list(incoming)
        random.Random(seed).shuffle(order)
        reviewed, later = order[: len(order) // 2], order[len(order) // 2 :]
        rows_of = [index[id(item)] for item in later]
        later_vectors = vectors[id(incoming)][rows_of]
        reviewed_vectors = vectors[id(incoming)][[index[id(item)] for item in reviewed]]
        triager.reconfigure(baseline)
        corrections = []
        for item, (category, level) in zip(reviewed, read(reviewed, reviewed_vectors),
                                           strict=True):  # fmt: skip
            if category == item.category and level in item.levels:
                continue
            corrections.append({
                "text": category_text(item.message), "message": item.message,
                "category": item.category if category != item.category else None,
                "priority": item.levels[0] if level not in item.levels else None,
                "seen_as": item.category,
            })  # fmt: skip
        correction_vectors = triager.encoder.encode([c["text"] for c in corrections]).vectors
        before_later = read(later, later_vectors)
        before_holdout = read(holdout, vectors[id(holdout)])
        run = {"seed": seed, "reviewed": len(reviewed), "later": len(later),
               "corrected_category": sum(1 for c in corrections if c["category"]),
               "corrected_priority": sum(1 for c in corrections if c["priority"]),
               "settings": [{"setting": "no learned model",
                             "later": compare(later, before_later, before_later),
                             "holdout": compare(holdout, before_holdout, before_holdout)}]}  # fmt: skip
        for setting in settings:
            learn(triager, baseline, setting, corrections, correction_vectors)
            run["settings"].append({
                "setting": setting.label,
                "later": compare(later, before_later, read(later, later_vectors)),
                "holdout": compare(holdout, before_holdout, read(holdout, vectors[id(holdout)])),
            })  # fmt: skip
        triager.reconfigure(baseline)
        runs.append(run)
        print(f"seed {seed}: {len(corrections)} of {len(reviewed)} reviewed messages corrected",
              file=sys.stderr, flush=True)  # fmt: skip
    return runs


def print_written(rows: list[dict]) -> None:
    labelled = len(load_labelled(SAMPLES / "demo.mbox", SAMPLES / "demo_labels.csv"))
    print(f"Written cases: {rows[0]['of']} corrections; reworded messages decided as the "
          f"reviewer did, and the labelled mailbox of samples/ ({labelled} messages) after "
          "learning:\n")  # fmt: skip
    print(f"{'setting':44}{'reworded':>10}{'confidence':>12}{'category':>10}{'priority':>10}")
    for row in rows:
        right = f"{row['reworded_right']}/{row['of']}"
        wrong = "; ".join(row["wrong"]) or "-"
        print(f"{row['setting']:44}{right:>10}{row['reworded_confidence']:>12.2f}"
              f"{row['category_accuracy']:>10.1%}{row['priority_exact']:>10.1%}   wrong: {wrong}")  # fmt: skip


def print_replay(runs: list[dict]) -> None:
    first = runs[0]
    corrected = ", ".join(f"{r['corrected_category']} categories and {r['corrected_priority']} "
                          f"levels with seed {r['seed']}" for r in runs)  # fmt: skip
    print(f"\nReplay: {first['reviewed'] + first['later']} messages of the labelled set's last "
          "rounds, new to the heads; a reviewer corrects every mistake in a random half "
          f"({corrected}); then the other half ({first['later']}) and the holdout part are read "
          "again. Medians over the seeds; messages fixed and broken summed over them:\n")  # fmt: skip
    print(f"{'setting':44}{'category':>10}{'fixed/broken':>14}{'priority':>10}{'fixed/broken':>14}"
          f"{'holdout cat.':>14}{'holdout pri.':>14}")  # fmt: skip
    for n, name in enumerate(s["setting"] for s in first["settings"]):
        later = [r["settings"][n]["later"] for r in runs]
        held = [r["settings"][n]["holdout"] for r in runs]

        def med(rows, key):
            return statistics.median(row[key] for row in rows)

        def total(rows, key):
            return sum(row[key] for row in rows)

        categories = f"+{total(later, 'category_fixed')} -{total(later, 'category_broken')}"
        levels = f"+{total(later, 'priority_fixed')} -{total(later, 'priority_broken')}"
        print(f"{name:44}{med(later, 'category'):>10.1%}{categories:>14}"
              f"{med(later, 'priority'):>10.1%}{levels:>14}"
              f"{med(held, 'category'):>14.1%}{med(held, 'priority'):>14.1%}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--replay-only", action="store_true", help="only the replay")
    parser.add_argument("--written-only", action="store_true", help="only the written cases")
    parser.add_argument("--rounds", default=REPLAYED_ROUNDS,
                        help="file-name prefixes of the labelled set's rounds replayed as new mail")  # fmt: skip
    parser.add_argument("--cases", type=Path, default=SAMPLES / "corrections.json",
                        help="the written corrections and their rewordings")  # fmt: skip
    parser.add_argument("--seeds", default="0,1,2,3", help="one replay per seed of the random half")
    arguments = parser.parse_args()

    triager = Triager(TriageConfig(device="cpu"))
    result = {}
    if not arguments.replay_only:
        result["written"] = written_cases(triager, SETTINGS, arguments.cases)
        if not arguments.json:
            print_written(result["written"])
    if not arguments.written_only:
        seeds = [int(seed) for seed in arguments.seeds.split(",")]
        result["replay"] = replay(triager, SETTINGS, set(arguments.rounds.split(",")), seeds)
        if not arguments.json:
            print_replay(result["replay"])
    if arguments.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
