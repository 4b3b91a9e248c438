"""Character n-grams hashed a word at a time must be scikit-learn's own counts, to the last one:
the heads' trained weights were learned on those."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer

from apps.inbox.engine import parse_message
from apps.triage.engine.classify import category_text
from apps.triage.engine.hashing import CharNgramCounts
from apps.triage.engine.spam import spam_document

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

ODD_TEXTS = [
    "",
    "   \n\t  ",
    "a",
    "ab cd",
    "İstanbul ΣΊΣΥΦΟΣ straße ǅemal",  # lowercasing that changes lengths
    "x" * 5000,  # one long word
    "tab\tseparated\u00a0no-break\u2003em space\u3000ideographic",
    "nul\x00inside and \x0bvertical tab",
    "emoji 👍🏽 and 中文字符 and עברית",
    "repeat repeat repeat Repeat REPEAT",
]


def reference(texts):
    vectorizer = HashingVectorizer(
        n_features=2**17, analyzer="char_wb", ngram_range=(3, 5), alternate_sign=False, norm=None
    )
    return vectorizer.transform(texts)


def assert_same_counts(texts, hasher):
    ours, theirs = hasher.transform(texts), reference(texts)
    assert ours.shape == theirs.shape
    assert (ours != theirs).nnz == 0
    assert ours.dtype == theirs.dtype == np.float64


def labelled_mail_texts():
    messages = [
        parse_message(path.read_bytes())
        for path in sorted((SAMPLES / "business" / "messages").glob("*.eml"))
    ]
    return [category_text(m) for m in messages] + [spam_document(m).text for m in messages]


def test_labelled_mail_gets_scikit_learns_counts_cold_and_warm():
    texts = labelled_mail_texts()
    assert len(texts) > 600
    hasher = CharNgramCounts(n_features=2**17)
    assert_same_counts(texts[:300], hasher)  # every word unseen
    assert_same_counts(texts, hasher)  # half of them known by now
    assert_same_counts(texts, hasher)  # all known


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_text_gets_scikit_learns_counts(text):
    assert_same_counts([text, text + " tail", "head " + text], CharNgramCounts(n_features=2**17))


@pytest.mark.parametrize("bound, value", [("MAX_WORDS", 50), ("MAX_NGRAMS", 2000)])
def test_a_full_store_starts_again_and_stays_right(monkeypatch, bound, value):
    monkeypatch.setattr(f"apps.triage.engine.hashing.{bound}", value)
    hasher = CharNgramCounts(n_features=2**17)
    texts = labelled_mail_texts()[:40]
    for start in range(0, 40, 10):
        assert_same_counts(texts[start : start + 10], hasher)
        # Emptied before a batch that would not fit: what is kept is at most one batch's words.
        batch_words = {w for t in texts[start : start + 10] for w in t.lower().split()}
        assert len(hasher._places) <= len(batch_words) + (value if bound == "MAX_WORDS" else 0)


def test_no_texts():
    assert CharNgramCounts(n_features=2**17).transform([]).shape == (0, 2**17)
