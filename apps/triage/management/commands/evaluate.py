"""manage.py evaluate: the quality figures, from labelled data."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.triage.engine.encoder import ModelLoadError
from apps.triage.engine.evaluation import confusion_table, evaluate_triage, load_labelled
from apps.triage.engine.spam import taxonomy_augmentation
from apps.triage.engine.training import cross_validate, embed, load_corpus
from apps.triage.services import get_triager

BASE = Path(settings.BASE_DIR)


def _no_corpus(problem: str) -> str:
    return (f"{problem} The spam figures need a labelled corpus: the SpamAssassin layout, spam-* "
            "and ham folders of raw messages. Set MAILSCORE_SPAM_CORPUS or pass --spam-data to "
            "where it is, or leave the spam figures out with --skip-spam.")  # fmt: skip


class Command(BaseCommand):
    help = ("Print quality figures: spam precision/recall/F1 by k-fold cross-validation on a corpus, "
            "and category accuracy, confusion matrix and priority agreement on a labelled mailbox.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument("--spam-data", default=str(settings.MAILSCORE_SPAM_CORPUS),
                            help="spam-*/ham folders of raw messages (default: %(default)s)")  # fmt: skip
        parser.add_argument("--labelled", default=str(BASE / "samples" / "demo.mbox"),
                            help="a mailbox of labelled messages (default: %(default)s)")  # fmt: skip
        parser.add_argument("--labels", default=str(BASE / "samples" / "demo_labels.csv"),
                            help="message_id,category,priority (default: %(default)s)")  # fmt: skip
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument(
            "--skip-spam", action="store_true", help="skip the (slow) spam cross-validation"
        )
        parser.add_argument(
            "--limit", type=int, help="cross-validate on a random sample of the corpus"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the figures as one JSON object"
        )

    def handle(self, *args, **options) -> None:
        if not options["skip_spam"] and not Path(options["spam_data"]).is_dir():
            # Said before the models load, which takes a while.
            raise CommandError(_no_corpus(f"No corpus at {options['spam_data']}."), returncode=2)
        try:
            triager = get_triager()
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from exc
        report: dict = {"model_versions": triager.versions, "degraded": triager.degraded}
        try:
            labelled = load_labelled(options["labelled"], options["labels"])
        except (OSError, ValueError) as exc:
            raise CommandError(
                f"Cannot use the labelled set: {exc}. It is a mailbox (--labelled) and a CSV of "
                "message_id,category,priority (--labels); by default the bundled "
                "samples/demo.mbox and samples/demo_labels.csv.",
                returncode=2,
            ) from exc
        report["triage"] = evaluate_triage(triager, labelled)
        if not options["skip_spam"]:
            progress = lambda text: self.stderr.write(text)  # noqa: E731
            try:
                corpus = load_corpus(
                    options["spam_data"], limit=options["limit"], progress=progress
                )
            except FileNotFoundError as exc:
                raise CommandError(_no_corpus(str(exc)), returncode=2) from exc
            if triager.encoder is not None:
                embed(corpus, triager.encoder, progress)
            augmentation = taxonomy_augmentation(triager.taxonomy, triager.encoder)
            for augmented in (None, augmentation):
                key = "spam" if augmented else "spam_corpus_only"
                report[key] = cross_validate(corpus, folds=options["folds"], augmentation=augmented,
                                             use_embeddings=triager.encoder is not None)  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self._print(report)

    def _print(self, report: dict) -> None:
        write = self.stdout.write
        write(f"Models: {report['model_versions']}")
        if report["degraded"]:
            write(f"DEGRADED: {report['degraded']}")
        for key, title in (("spam", "shipped head: corpus plus taxonomy examples"),
                           ("spam_corpus_only", "corpus only")):  # fmt: skip
            if key not in report:
                continue
            s = report[key]
            write(f"\nSpam, {title} ({s['folds']}-fold cross-validation on {s['messages']} messages, "
                  f"{s['spam']} spam):")  # fmt: skip
            write(f"  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}  "
                  f"Brier {s['brier']:.4f}  calibration error {s['ece']:.4f}")  # fmt: skip
        t = report["triage"]
        write(f"\nCategories ({t['messages']} labelled messages):")
        write(f"  accuracy {t['category_accuracy']:.1%}  calibration error {t['category_ece']:.3f}  "
              f"decided by {t['decided_by']}")  # fmt: skip
        write(confusion_table(t))
        for miss in t["mistakes"]:
            write(f"  wrong: {miss['message_id']} {miss['label']} -> {miss['predicted']} "
                  f"({miss['confidence']}, {miss['decided_by']}) {miss['subject']!r}")  # fmt: skip
        write(
            f"\nPriority: exact {t['priority_exact']:.1%}, within one level {t['priority_within_one']:.1%}"
        )
        for miss in t["priority_misses"]:
            write(
                f"  off by more than one: {miss['message_id']} {miss['label']} -> {miss['predicted']}"
            )
