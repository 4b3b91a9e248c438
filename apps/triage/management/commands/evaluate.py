"""manage.py evaluate: the quality figures, from labelled data."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.triage.engine.encoder import ModelLoadError
from apps.triage.engine.evaluation import (
    SPLITS,
    confusion_table,
    evaluate_triage,
    load_labelled,
    part,
)
from apps.triage.engine.training import business_augmentation, cross_validate, embed, load_corpus
from apps.triage.management.labelled import add_labelled_arguments
from apps.triage.services import get_triager


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
        add_labelled_arguments(parser)
        parser.add_argument("--split", choices=SPLITS, default=None,
                            help="which part of the labelled set: holdout (the default where the "
                                 "labels have a split), tune, or all")  # fmt: skip
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
        split = options["split"]
        try:
            everything = load_labelled(options["labelled"], options["labels"])
            if split is None:
                split = "holdout" if any(item.split for item in everything) else "all"
            labelled = part(everything, split)
        except (OSError, ValueError) as exc:
            raise CommandError(
                f"Cannot use the labelled set: {exc}. It is a mailbox or folder of messages "
                "(--labelled) and a CSV of message_id,category,priority with optional language, "
                "split and note columns (--labels); by default the bundled "
                "samples/business/messages and samples/business/labels.csv.",
                returncode=2,
            ) from exc
        report["labelled_set"] = {"messages": options["labelled"], "split": split}
        report["triage"] = evaluate_triage(
            triager, labelled, review_confidence=settings.MAILSCORE_REVIEW_CONFIDENCE
        )
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
            # The shipped head's recipe: the corpus plus today's business mail (the tune part
            # and the written examples), which never joins a test fold.
            tune = part(everything, "tune") if any(item.split for item in everything) else []
            augmentation = business_augmentation(triager.taxonomy, triager.encoder,
                                                 triager.category_examples, tune)  # fmt: skip
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
        for key, title in (("spam", "shipped head: corpus plus business mail and taxonomy examples"),
                           ("spam_corpus_only", "corpus only")):  # fmt: skip
            if key not in report:
                continue
            s = report[key]
            write(f"\nSpam, {title} ({s['folds']}-fold cross-validation on {s['messages']} messages, "
                  f"{s['spam']} spam):")  # fmt: skip
            write(f"  precision {s['precision']:.4f}  recall {s['recall']:.4f}  F1 {s['f1']:.4f}  "
                  f"Brier {s['brier']:.4f}  calibration error {s['ece']:.4f}")  # fmt: skip
            for folder, figures in s.get("by_folder", {}).items():
                if figures["spam"]:
                    write(f"  {folder}: {figures['wrong']} of {figures['messages']} missed")
                else:
                    write(f"  {folder}: {figures['wrong']} of {figures['messages']} called spam, "
                          f"{figures.get('filed_unseen', 0)} of them sure enough to be filed "
                          "without review")  # fmt: skip
        t = report["triage"]
        where = report["labelled_set"]
        write(f"\nCategories ({t['messages']} labelled messages, {where['split']} part of "
              f"{where['messages']}"
              + (f"; {t['cross_validated_folds']}-fold cross-validated, as the category head learned "
                 "from them" if t["cross_validated_folds"] else "") + "):")  # fmt: skip
        write(f"  accuracy {t['category_accuracy']:.1%}  calibration error {t['category_ece']:.3f}  "
              f"decided by {t['decided_by']}")  # fmt: skip
        for name, figures in t["per_category"].items():
            write(f"  {name:<13} {figures['messages']:>3} messages  recall {_percent(figures['recall'])}"
                  f"  precision {_percent(figures['precision'])}")  # fmt: skip
        write(confusion_table(t))
        spam = t["business_as_spam"]
        write(f"  business mail filed as spam: {len(spam)}"
              + "".join(f"\n    {m['message_id']} {m['label']} {m['subject']!r}" for m in spam))  # fmt: skip
        for miss in t["mistakes"]:
            write(f"  wrong: {miss['message_id']} {miss['label']} -> {miss['predicted']} "
                  f"({miss['confidence']}, {miss['decided_by']}"
                  + (f", to review: {miss['review']}" if miss["review"] else "")
                  + f") {miss['subject']!r}")  # fmt: skip
        review = t["review"]
        write(f"\nTo review: {review['messages']} {review['reasons']}; accuracy of the rest "
              f"{_percent(review['accuracy_of_the_rest'])}")  # fmt: skip
        other = t["other_languages"]
        write(f"Other languages: {other['messages']} messages {other['languages']}: category "
              f"accuracy {_percent(other['category_accuracy'])}, business mail as spam "
              f"{other['business_as_spam']}, to review for language "
              f"{other['to_review_for_language']}, wrong and not sent to review "
              f"{other['wrong_and_not_reviewed']}")  # fmt: skip
        write(f"\nPriority: accepted level {t['priority_exact']:.1%}, within one level "
              f"{t['priority_within_one']:.1%}")  # fmt: skip
        second = t["second_reading"]
        write(f"  the level head moved {second['moved']}: {second['now_accepted']} now accepted "
              f"that were not, {second['no_longer_accepted']} no longer accepted")  # fmt: skip
        write(f"  P0: {t['p0_messages']} messages, recall {_percent(t['p0_recall'])}, below P1 "
              f"{t['p0_below_p1']}, precision {_percent(t['p0_precision'])}")  # fmt: skip
        for level, figures in t["per_level"].items():
            write(f"  {level}: {figures['messages']:>3} labelled, accepted "
                  f"{_percent(figures['accepted'])}, {figures['predicted']} predicted")  # fmt: skip
        for miss in t["priority_misses"]:
            write(f"  missed: {miss['message_id']} {miss['label']} {miss['priority_label']} -> "
                  f"{miss['priority']} {miss['subject']!r}")  # fmt: skip


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
