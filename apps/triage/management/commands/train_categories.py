"""manage.py train_categories: the category head's examples of real mail, from a labelled set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.triage.engine.encoder import ModelLoadError, load_encoder
from apps.triage.engine.evaluation import SPLITS, load_labelled
from apps.triage.engine.examples import (
    PACKAGED,
    examples_from_labelled,
    load_examples,
    packaged_vectors_path,
)
from apps.triage.management.labelled import add_labelled_arguments

BASE = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = ("Write the category head's examples of real mail from the tune part of a labelled set "
            "(never the holdout part, which evaluate reports on).")  # fmt: skip

    def add_arguments(self, parser) -> None:
        add_labelled_arguments(parser)
        parser.add_argument("--split", choices=SPLITS, default="tune",
                            help="which part to learn from (default: %(default)s)")  # fmt: skip
        parser.add_argument("--output", default=str(BASE / "apps" / "triage" / "engine" / PACKAGED),
                            help="where the examples go (default: %(default)s)")  # fmt: skip

    def handle(self, *args, **options) -> None:
        try:
            labelled = load_labelled(options["labelled"], options["labels"], split=options["split"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot use the labelled set: {exc}", returncode=2) from exc
        examples = examples_from_labelled(labelled)
        output = Path(options["output"])
        output.write_text(
            json.dumps(examples, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        counts = Counter(item["category"] for item in examples)
        self.stdout.write(f"{len(examples)} examples from the {options['split']} part "
                          f"({', '.join(f'{name} {n}' for name, n in sorted(counts.items()))}): "
                          f"{output}")  # fmt: skip
        if output.resolve() != (BASE / "apps" / "triage" / "engine" / PACKAGED).resolve():
            return  # the stored embeddings belong to the packaged examples only
        triage = settings.MAILSCORE_TRIAGE
        packaged = load_examples()
        # For the encoder as float32 and as int8 (MAILSCORE_QUANTIZE): a process loads the one
        # its encoder made.
        for quantize in (False, True):
            try:
                encoder = load_encoder(triage["encoder_path"] or None, device=triage["device"],
                                       quantize=quantize, max_length=triage["max_length"],
                                       batch_size=triage["batch_size"])  # fmt: skip
            except ModelLoadError as exc:
                raise CommandError(str(exc)) from exc
            self.stderr.write(f"Encoding all {len(packaged)} packaged examples (written ones "
                              f"included) with {encoder.version}...")  # fmt: skip
            packaged.vectors = encoder.encode(packaged.texts).vectors
            path = packaged_vectors_path(encoder)
            packaged.save_vectors(encoder, path)
            self.stdout.write(f"Their embeddings: {path}")
