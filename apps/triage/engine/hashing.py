"""Hashed character n-grams, each word's hashed once.

The spam head and the category head both read character n-grams (3 to 5, inside word
boundaries) through scikit-learn's HashingVectorizer, which builds and hashes every n-gram of
every word of every message in Python: about 1.4 ms per message for the two heads, the largest
part of the work outside the encoder.
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

# The store starts again from empty past either bound, which hold it near 20 MB per process
# (8 bytes per n-gram, about 150 per word's entry; mail's words have 15 n-grams on average).
MAX_WORDS = 50_000
MAX_NGRAMS = 1_500_000
# A word's place in the pool is one integer: its first n-gram << LENGTH_BITS | its n-gram count.
LENGTH_BITS = 24


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
        # Every known word's n-gram columns and counts, one after another in two flat arrays (a
        # pair of small arrays per word would cost three times the memory); word -> its place.
        self._columns = np.empty(0, dtype=np.int32)
        self._counts = np.empty(0, dtype=np.float32)  # exact for counts below 2**24
        self._used = 0
        self._places: dict[str, int] = {}
        # The pool may be emptied and refilled while a transform reads it; one at a time.
        self._lock = threading.Lock()

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        word_counts = [Counter(self._preprocess(text).split()) for text in texts]
        batch_words = list({word: None for counts in word_counts for word in counts})
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
        documents = sp.csr_matrix(
            (occurrences, columns, indptr), shape=(len(texts), len(batch_words))
        )
        return (documents @ self._rows(batch_words)).tocsr()

    def _rows(self, words: list[str]) -> sp.csr_matrix:
        """words x features: each word's n-gram counts, hashed by the vectorizer the first time
        the word is seen."""
        with self._lock:
            unseen = [word for word in words if word not in self._places]
            if unseen:
                hashed = self.vectorizer.transform(unseen)
                if (
                    len(self._places) + len(unseen) > MAX_WORDS
                    or self._used + hashed.nnz > MAX_NGRAMS
                ):
                    # Full: start again from this batch's words alone.
                    known = [word for word in words if word in self._places]
                    self._forget()
                    if known:
                        self._remember(known, self.vectorizer.transform(known))
                self._remember(unseen, hashed)
            places = np.fromiter(
                (self._places[word] for word in words), dtype=np.int64, count=len(words)
            )
            starts, lengths = places >> LENGTH_BITS, places & ((1 << LENGTH_BITS) - 1)
            indptr = np.zeros(len(words) + 1, dtype=np.int64)
            np.cumsum(lengths, out=indptr[1:])
            # The pool positions of every word's n-grams, word after word.
            taken = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
            return sp.csr_matrix(
                (self._counts[taken].astype(np.float64), self._columns[taken], indptr),
                shape=(len(words), self.vectorizer.n_features),
            )

    def _remember(self, words: list[str], hashed: sp.csr_matrix) -> None:
        needed = self._used + hashed.nnz
        if needed > len(self._columns):
            size = max(needed, min(2 * len(self._columns), MAX_NGRAMS), 4096)
            self._columns = np.resize(self._columns, size)
            self._counts = np.resize(self._counts, size)
        self._columns[self._used : needed] = hashed.indices
        self._counts[self._used : needed] = hashed.data
        starts = self._used + hashed.indptr[:-1].astype(np.int64)
        lengths = np.diff(hashed.indptr).astype(np.int64)
        self._places.update(zip(words, ((starts << LENGTH_BITS) | lengths).tolist(), strict=True))
        self._used = needed

    def _forget(self) -> None:
        self._places.clear()
        self._used = 0

    def forget(self) -> None:
        """Start again from no known words (for measuring the cost of words never seen)."""
        with self._lock:
            self._forget()


# One store for both heads: they hash the same n-grams into the same space.
CHAR_NGRAMS = CharNgramCounts(n_features=2**17)
