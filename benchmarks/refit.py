"""What a configuration change costs a triage worker before its next batch.

A change to the categories fits the category and level heads again; a new active model version
fits them again with its corrections but keeps their temperatures (fitted on the same labelled
examples); templates, sender rules and priorities change neither. Timed on one loaded triager, in-process,
medians of --runs.

    python benchmarks/refit.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.triage.engine.classify import Classifier, SenderLists  # noqa: E402
from apps.triage.engine.learning import Correction, Learned  # noqa: E402
from apps.triage.engine.pipeline import TriageConfig, Triager  # noqa: E402
from apps.triage.engine.taxonomy import Taxonomy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()

    triager = Triager(TriageConfig(device="cpu"))
    setup = triager.setup
    timings: dict[str, list[float]] = {"category head": [], "level head": [],
                                       "a category's description changed": [],
                                       "a sender rule changed": [],
                                       "a new model version": []}  # fmt: skip
    for run in range(arguments.runs):
        started = time.perf_counter()
        classifier = Classifier(setup.taxonomy, triager.spam_head, triager.encoder,
                                learned=setup.learned, senders=setup.senders,
                                examples=triager.category_examples)  # fmt: skip
        fitted = time.perf_counter()
        triager._level_head(classifier, setup.taxonomy, setup.learned)
        timings["category head"].append(fitted - started)
        timings["level head"].append(time.perf_counter() - fitted)

        categories = list(setup.taxonomy.categories)
        categories[0] = replace(categories[0], description=f"{categories[0].description} ({run})")
        changed = replace(setup, taxonomy=Taxonomy(categories, version=f"bench-{run}"))
        started = time.perf_counter()
        triager.reconfigure(changed)
        timings["a category's description changed"].append(time.perf_counter() - started)

        allowed = replace(changed, senders=SenderLists(allow=frozenset({f"partner{run}.test"})))
        started = time.perf_counter()
        triager.reconfigure(allowed)
        timings["a sender rule changed"].append(time.perf_counter() - started)

        # A retrained model: a reviewer's corrected category, which both heads learn.
        text = f"Run {run}: the espresso machine stopped heating, still under warranty. Repair?"
        vector = triager.encoder.encode([text]).vectors[0]
        learned = Learned(f"bench-{run}", [Correction(text, category="support", vector=vector)])
        started = time.perf_counter()
        triager.reconfigure(replace(allowed, learned=learned))
        timings["a new model version"].append(time.perf_counter() - started)
    for name, values in timings.items():
        print(f"{name:34} {statistics.median(values):8.3f} s  (runs: "
              f"{', '.join(f'{v:.3f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
