"""Hashed character n-grams, each word's hashed once.

The spam head and the category head both read character n-grams (3 to 5, inside word
boundaries) through scikit-learn's HashingVectorizer, which builds and hashes every n-gram of
every word of every message in Python: about 1.4 ms of a message's 1.7 ms outside the encoder.
Those n-grams never cross a word, so a message's counts are the sum of its words' counts, and mail
repeats its words: each distinct word is hashed once, by the same vectorizer, and kept.

The result is the vectorizer's own, to the last count (tests/triage/test_hashing.py), so the
heads' trained weights stay valid.
"""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

# Words kept before the store starts again from empty: about 100 bytes of n-gram indices each.
MAX_WORDS = 200_000


class CharNgramCounts:
    """Counts of hashed character n-grams (analyzer "char_wb"), as
    HashingVectorizer(analyzer="char_wb", norm=None, alternate_sign=False).transform gives them."""

    def __init__(self, n_features: int, ngram_range: tuple[int, int] = (3, 5)) -> None:
        self.vectorizer = HashingVectorizer(
            n_features=n_features,
            analyzer="char_wb",
            ngram_range=ngram_range,
            alternate_sign=False,
            norm=None,
        )
        # The vectorizer's own lowercasing, so that words are split exactly as it splits them.
        self._preprocess = self.vectorizer.build_preprocessor()
        self._words: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        word_counts = [Counter(self._preprocess(text).split()) for text in texts]
        batch_words = {word: None for counts in word_counts for word in counts}
        rows = self._rows(list(batch_words))
        position = {word: i for i, word in enumerate(batch_words)}
        # documents x words (how often each word occurs) times words x features (its n-grams).
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(counts) for counts in word_counts], out=indptr[1:])
        columns = np.fromiter(
            (position[word] for counts in word_counts for word in counts),
            dtype=np.int64,
            count=int(indptr[-1]),
        )
        occurrences = np.fromiter(
            (n for counts in word_counts for n in counts.values()),
            dtype=np.float64,
            count=int(indptr[-1]),
        )
        documents = sp.csr_matrix((occurrences, columns, indptr), shape=(len(texts), len(position)))
        return (documents @ rows).tocsr()

    def _rows(self, words: list[str]) -> sp.csr_matrix:
        """words x features: each word's n-gram counts, hashed by the vectorizer the first time
        the word is seen."""
        with self._lock:
            known = [self._words.get(word) for word in words]
        unseen = [word for word, row in zip(words, known, strict=True) if row is None]
        if unseen:
            hashed = self.vectorizer.transform(unseen)
            fresh = {
                word: (
                    hashed.indices[hashed.indptr[i] : hashed.indptr[i + 1]].copy(),
                    hashed.data[hashed.indptr[i] : hashed.indptr[i + 1]].copy(),
                )
                for i, word in enumerate(unseen)
            }
            known = [
                fresh[word] if row is None else row for word, row in zip(words, known, strict=True)
            ]
            with self._lock:
                if len(self._words) + len(fresh) > MAX_WORDS:
                    self._words.clear()
                self._words.update(fresh)
        if not known:
            return sp.csr_matrix((0, self.vectorizer.n_features))
        indptr = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum([len(indices) for indices, _ in known], out=indptr[1:])
        return sp.csr_matrix(
            (
                np.concatenate([data for _, data in known]),
                np.concatenate([indices for indices, _ in known]),
                indptr,
            ),
            shape=(len(words), self.vectorizer.n_features),
        )

    def forget(self) -> None:
        """Start again from no known words (for measuring the cost of words never seen)."""
        with self._lock:
            self._words.clear()


# One store for both heads: they hash the same n-grams into the same space.
CHAR_NGRAMS = CharNgramCounts(n_features=2**17)
