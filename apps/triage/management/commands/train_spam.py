"""manage.py train_spam: train the spam heads (full and light) on a labelled corpus."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.triage.engine import spam
from apps.triage.engine.encoder import ModelLoadError, load_encoder
from apps.triage.engine.evaluation import load_labelled
from apps.triage.engine.examples import load_examples, packaged_vectors_path
from apps.triage.engine.taxonomy import Taxonomy
from apps.triage.engine.training import business_augmentation, embed, load_corpus
from apps.triage.management.labelled import add_labelled_arguments


class Command(BaseCommand):
    help = "Train the spam heads on a folder of spam-* and ham folders of raw messages."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--data",
            default=str(settings.MAILSCORE_SPAM_CORPUS),
            help="corpus root (default: %(default)s)",
        )
        parser.add_argument("--output-dir", default=str(spam.packaged_head_path().parent),
                            help="where spam_head.npz and spam_head_light.npz go (default: %(default)s)")  # fmt: skip
        parser.add_argument(
            "--limit", type=int, help="train on a random sample of this many messages"
        )
        add_labelled_arguments(
            parser, "labelled business mail whose tune part the heads also learn from"
        )

    def handle(self, *args, **options) -> None:
        progress = lambda text: self.stderr.write(text)  # noqa: E731
        try:
            corpus = load_corpus(options["data"], limit=options["limit"], progress=progress)
        except FileNotFoundError as exc:
            raise CommandError(
                f"{exc} Training needs a labelled corpus: the SpamAssassin layout, spam-* and ham "
                "folders of raw messages. Set MAILSCORE_SPAM_CORPUS or pass --data to where it is.",
                returncode=2,
            ) from exc
        triage = settings.MAILSCORE_TRIAGE
        try:
            encoder = load_encoder(triage["encoder_path"] or None, device=triage["device"],
                                   max_length=triage["max_length"], batch_size=triage["batch_size"])  # fmt: skip
        except ModelLoadError as exc:
            raise CommandError(str(exc)) from exc
        embed(corpus, encoder, progress)
        output = Path(options["output_dir"])
        output.mkdir(parents=True, exist_ok=True)
        meta = {"corpus": Path(options["data"]).name, "messages": len(corpus.labels),
                "spam": int(corpus.labels.sum())}  # fmt: skip
        taxonomy = Taxonomy.load(settings.MAILSCORE_TRIAGE["taxonomy_path"] or None)
        try:
            labelled = load_labelled(options["labelled"], options["labels"], split="tune")
        except (OSError, ValueError) as exc:
            raise CommandError(
                f"Cannot use the labelled business mail: {exc}", returncode=2
            ) from exc
        examples = load_examples().with_vectors(encoder, packaged_vectors_path(encoder))
        progress(
            f"Learning also from {len(labelled)} labelled messages and {len(examples)} examples"
        )
        meta["business"] = {"labelled": len(labelled), "examples": len(examples)}
        full = spam.train(corpus.documents, corpus.embeddings, corpus.labels,
                          augmentation=business_augmentation(taxonomy, encoder, examples, labelled),
                          meta={**meta, "version": f"spam-head@{encoder.version}"})  # fmt: skip
        full.save(output / "spam_head.npz")
        light = spam.train(corpus.documents, None, corpus.labels,
                           augmentation=business_augmentation(taxonomy, None, examples, labelled),
                           meta={**meta, "version": "spam-head-light"})  # fmt: skip
        light.save(output / "spam_head_light.npz")
        self.stdout.write(f"Trained on {len(corpus.labels)} messages ({int(corpus.labels.sum())} spam): "
                          f"{output / 'spam_head.npz'}, {output / 'spam_head_light.npz'}")  # fmt: skip
