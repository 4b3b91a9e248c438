"""summarize: at most two sentences and 300 characters of what the message adds (never the quoted
history or the signature). Extractive by default: the sentences most central to the message,
the second chosen to add something the first does not say."""

from __future__ import annotations

import numpy as np

MAX_CHARS = 300
MAX_SENTENCES = 2
REDUNDANCY_WEIGHT = 0.35


def fit_to_limit(text: str, limit: int = MAX_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "…"


def extractive_summary(
    sentences: list[str], vectors: np.ndarray | None, message_vector: np.ndarray | None
) -> str:
    if not sentences:
        return ""
    if len(sentences) <= MAX_SENTENCES and sum(len(s) + 1 for s in sentences) <= MAX_CHARS:
        return fit_to_limit(" ".join(sentences))
    usable = vectors is not None and message_vector is not None and len(vectors) == len(sentences)
    if not usable or not np.any(vectors):
        ranked = [0, 1]  # no vectors (fallback mode): the lead sentences
    else:
        similarity = vectors @ vectors.T
        # Centrality: close to the message as a whole and to the other sentences.
        centrality = vectors @ message_vector + similarity.mean(axis=1)
        empty = ~np.any(vectors, axis=1)
        centrality[empty] = -np.inf  # sentences past the encoder's window
        first = int(np.argmax(centrality))
        penalty = REDUNDANCY_WEIGHT * similarity[first]
        scores = (1 - REDUNDANCY_WEIGHT) * centrality - penalty
        scores[first] = -np.inf
        ranked = [first, int(np.argmax(scores))] if len(sentences) > 1 else [first]
    ranked = [i for i in ranked if i < len(sentences)]
    summary = " ".join(sentences[i] for i in sorted(ranked))  # in the order they were written
    if len(summary) > MAX_CHARS:
        summary = sentences[ranked[0]]
    return fit_to_limit(summary)
