"""Training and cross-validation of the spam head on a labelled corpus, with progress reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from apps.inbox.engine import parse_message
from apps.triage.engine import spam
from apps.triage.engine.classify import SPAM_SURE


@dataclass
class Corpus:
    documents: list[spam.SpamDocument]
    encoder_texts: list[str]
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    folders: list[str] | None = None  # where each message came from (hard-ham-1, spam-2, ...)


def load_corpus(root: str | Path, *, limit: int | None = None,
                progress: Callable[[str], None] = lambda _: None) -> Corpus:  # fmt: skip
    files = spam.corpus_files(root)
    if limit:
        rng = np.random.default_rng(0)
        files = [
            files[i]
            for i in sorted(rng.choice(len(files), size=min(limit, len(files)), replace=False))
        ]
    documents, texts, labels, folders = [], [], [], []
    for index, (path, label) in enumerate(files, 1):
        folders.append(path.parent.name)
        message = parse_message(path.read_bytes(), max_bytes=50 * 1024 * 1024)
        documents.append(spam.spam_document(message))
        texts.append(f"{message.subject}\n{message.text}"[:3000])
        labels.append(label)
        if index % 500 == 0:
            progress(f"parsed {index}/{len(files)} messages")
    return Corpus(documents, texts, np.array(labels), folders=folders)


def embed(corpus: Corpus, encoder, progress: Callable[[str], None] = lambda _: None) -> None:
    vectors = []
    step = 256
    for start in range(0, len(corpus.encoder_texts), step):
        vectors.append(encoder.encode(corpus.encoder_texts[start : start + step]).vectors)
        progress(
            f"encoded {min(start + step, len(corpus.encoder_texts))}/{len(corpus.encoder_texts)} messages"
        )
    corpus.embeddings = np.vstack(vectors)


# Today's business mail beside the 2002 corpus: written examples count once, real
# labelled messages (the tune part) three times, the taxonomy's lines ten times as a corpus message.
WRITTEN_WEIGHT = 1.0
LABELLED_WEIGHT = 3.0


def business_augmentation(taxonomy, encoder, examples=None, labelled=()) -> spam.Augmentation:
    """What the spam head learns beside the corpus: the taxonomy's descriptions and examples,
    the written examples of every category (examples.CategoryExamples; spam ones as spam), and
    labelled real messages (evaluation.Labelled, the tune part)."""
    augmentation = spam.taxonomy_augmentation(taxonomy, encoder)
    if examples is not None:
        written = examples.without({s for s in examples.sources if s})
        if written:
            vectors = None
            if encoder is not None:
                vectors = (
                    written.vectors
                    if written.vectors is not None
                    else encoder.encode(written.texts).vectors
                )
            augmentation = augmentation + spam.Augmentation(
                [spam.text_document(text) for text in written.texts], vectors,
                np.array([1 if label == "spam" else 0 for label in written.labels]), WRITTEN_WEIGHT,
            )  # fmt: skip
    if labelled:
        texts = [f"{item.message.subject}\n{item.message.text}"[:3000] for item in labelled]
        augmentation = augmentation + spam.Augmentation(
            [spam.spam_document(item.message) for item in labelled],
            encoder.encode(texts).vectors if encoder is not None else None,
            np.array([1 if item.category == "spam" else 0 for item in labelled]), LABELLED_WEIGHT,
        )  # fmt: skip
    return augmentation


def cross_validate(corpus: Corpus, *, folds: int = 5, use_embeddings: bool = True,
                   C: float = 30.0, augmentation: spam.Augmentation | None = None) -> dict:  # fmt: skip
    """Precision, recall and F1 of the spam class over stratified folds, with calibration. The
    augmentation joins every training fold and never a test fold."""
    predictions = np.zeros(len(corpus.labels))
    probabilities = np.zeros(len(corpus.labels))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    embeddings = corpus.embeddings if use_embeddings else None
    for train_index, test_index in splitter.split(corpus.documents, corpus.labels):
        head = spam.train(
            [corpus.documents[i] for i in train_index],
            None if embeddings is None else embeddings[train_index],
            corpus.labels[train_index], C=C, augmentation=augmentation,
        )  # fmt: skip
        p = head.predict_proba([corpus.documents[i] for i in test_index],
                               None if embeddings is None else embeddings[test_index])  # fmt: skip
        probabilities[test_index] = p
        predictions[test_index] = p >= 0.5
    precision, recall, f1, _ = precision_recall_fscore_support(
        corpus.labels, predictions, average="binary"
    )
    by_folder = {}
    for folder in sorted(set(corpus.folders or [])):
        inside = np.array([f == folder for f in corpus.folders])
        wrong = predictions[inside] != corpus.labels[inside]
        # Ham called spam with SPAM_SURE or more is filed unseen; below, a person looks first.
        unseen = (probabilities[inside] >= SPAM_SURE) & (corpus.labels[inside] == 0)
        by_folder[folder] = {"messages": int(inside.sum()), "wrong": int(wrong.sum()),
                             "filed_unseen": int(unseen.sum()),
                             "spam": bool(corpus.labels[inside].all())}  # fmt: skip
    return {
        "messages": int(len(corpus.labels)),
        "by_folder": by_folder,
        "spam": int(corpus.labels.sum()),
        "folds": folds,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "brier": float(np.mean((probabilities - corpus.labels) ** 2)),
        "ece": expected_calibration_error(probabilities, corpus.labels),
        "augmented": augmentation is not None,
    }


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> float:
    """How far predicted probabilities are from observed frequencies, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (probabilities >= low) & (
            (probabilities < high) | (high == 1) & (probabilities <= high)
        )
        if inside.any():
            total += inside.mean() * abs(probabilities[inside].mean() - labels[inside].mean())
    return float(total)
