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


@dataclass
class Corpus:
    documents: list[spam.SpamDocument]
    encoder_texts: list[str]
    labels: np.ndarray
    embeddings: np.ndarray | None = None


def load_corpus(root: str | Path, *, limit: int | None = None,
                progress: Callable[[str], None] = lambda _: None) -> Corpus:  # fmt: skip
    files = spam.corpus_files(root)
    if limit:
        rng = np.random.default_rng(0)
        files = [
            files[i]
            for i in sorted(rng.choice(len(files), size=min(limit, len(files)), replace=False))
        ]
    documents, texts, labels = [], [], []
    for index, (path, label) in enumerate(files, 1):
        message = parse_message(path.read_bytes(), max_bytes=50 * 1024 * 1024)
        documents.append(spam.spam_document(message))
        texts.append(f"{message.subject}\n{message.text}"[:3000])
        labels.append(label)
        if index % 500 == 0:
            progress(f"parsed {index}/{len(files)} messages")
    return Corpus(documents, texts, np.array(labels))


def embed(corpus: Corpus, encoder, progress: Callable[[str], None] = lambda _: None) -> None:
    vectors = []
    step = 256
    for start in range(0, len(corpus.encoder_texts), step):
        vectors.append(encoder.encode(corpus.encoder_texts[start : start + step]).vectors)
        progress(
            f"encoded {min(start + step, len(corpus.encoder_texts))}/{len(corpus.encoder_texts)} messages"
        )
    corpus.embeddings = np.vstack(vectors)


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
    return {
        "messages": int(len(corpus.labels)),
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
