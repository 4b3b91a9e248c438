"""The spam head: logistic regression over hashed words, hashed character n-grams, a few header
tokens, tokens of the message's structure, and the message embedding, with a naive Bayes vote on
the words beside it. Trained on the SpamAssassin training split; stored as plain arrays (.npz),
never pickled code."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import normalize

from apps.inbox.engine import ParsedMessage
from apps.triage.engine.hashing import CHAR_NGRAMS
from apps.verification.engine.lists import FREE_PROVIDERS
from apps.verification.engine.trust import address_domain, organisational_domain

WORD_FEATURES = 2**17
EMBEDDING_WEIGHT = 0.5
# Header tokens that mark spam in any era. Mailing-list headers (List-Id, Precedence, X-Mailer,
# User-Agent) are left out on purpose: in the 2002 training corpus nearly all ham came from
# mailing lists, so their absence taught "spam" to a head that must judge today's direct mail.
_HEADER_NAMES = ("content-type", "x-priority", "x-msmail-priority")

_words = HashingVectorizer(
    n_features=WORD_FEATURES, alternate_sign=False, ngram_range=(1, 2), norm=None
)


STRUCTURE_WEIGHT = 2.0

# The naive Bayes vote: which words a message has (not how often), over the same text. Naive Bayes
# reads a spammer's vocabulary that the regression, which spreads its weight over correlated
# features, discounts; together they missed a third fewer of the corpus' spam in
# cross-validation.
# Its odds multiply every word's as if independent, so they run to thousands on a long message:
# capped at a billion to one, weighted, and the sum tempered, so that the vote moves a close call
# and a probability of 0.9 still means about nine in ten. Weighted more, it lets today's fake
# invoices and shared documents through: their words are those of the real ones
# (docs/benchmarks.md, "Spam with today's mail").
BAYES_FEATURES = 2**18
BAYES_ALPHA = 0.1
BAYES_WEIGHT = 0.1
BAYES_LOGIT_LIMIT = 20.7  # log(1e9)
TEMPERATURE = 0.7

_present_words = HashingVectorizer(
    n_features=BAYES_FEATURES, alternate_sign=False, binary=True, norm=None
)


@dataclass(frozen=True)
class SpamDocument:
    text: str  # subject, body and header tokens: hashed as words and character n-grams
    structure: str  # tokens of the message's shape: hashed on their own


def _bucket(count: int, edges: tuple[int, ...]) -> str:
    return next((str(edge) for edge in edges if count <= edge), "many")


_LINK_HOST = re.compile(r"https?://([A-Za-z0-9.-]+)")


def _sender_tokens(message: ParsedMessage, text: str) -> list[str]:
    """Whose mail it says it is against where it leads: answers asked for (Reply-To) or links
    to another domain than the sender's, as a fake invoice's "pay here" does, and a free
    mailbox as the sender of what reads as a company's mail."""
    domain = address_domain(message.from_address) or ""
    own = organisational_domain(domain) if domain else None
    reply_to = {organisational_domain(d) for d in map(address_domain, message.reply_to) if d}
    links = {organisational_domain(host.lower().rstrip(".")) for host in _LINK_HOST.findall(text)}
    return [
        f"s_replyto_{'none' if not reply_to else 'same' if reply_to == {own} else 'other'}",
        f"s_linkdomain_{'none' if not links else 'same' if links == {own} else 'some' if own in links else 'other'}",
        f"s_freemail_{domain in FREE_PROVIDERS}",
    ]  # fmt: skip


def structure_tokens(message: ParsedMessage) -> str:
    """What separates a person writing to a person from a broadcast, in any decade: a signed-off
    name, a greeting by name, quoted history, a reply; against links, shouting, exclamation
    marks and money amounts, and a sender whose replies and links go elsewhere."""
    text = message.text[:5000]
    greeting = bool(re.match(r"^(hi|hello|dear|hey) +[A-Z][a-z]+", message.new_text or ""))
    return " ".join([
        f"s_signoff_{bool(message.sign_off_name)}",
        f"s_links_{_bucket(len(re.findall(r'https?://', text)), (0, 1, 3, 8))}",
        f"s_caps_{_bucket(len(re.findall(r'[A-Z]{3,}', text)), (0, 2, 6, 15))}",
        f"s_excl_{_bucket(text.count('!'), (0, 1, 3, 8))}",
        f"s_money_{bool(re.search(r'[$€£] ?[0-9]', text))}",
        f"s_quoted_{bool(message.quoted_text)}",
        f"s_greetname_{greeting}",
        f"s_reply_{bool(message.in_reply_to)}",
        *_sender_tokens(message, text),
    ])  # fmt: skip


def spam_document(message: ParsedMessage) -> SpamDocument:
    tokens = []
    for name in _HEADER_NAMES:
        value = message.header(name)
        tokens.append(f"h_{name}_" + (re.sub(r"\W+", "_", value.lower())[:40] if value else "none"))
    domain = message.from_address.rsplit("@", 1)[-1].lower() if message.from_address else "none"
    tokens += [f"fromdom_{domain}", f"htmlonly_{message.html_only}",
               f"att_{min(len(message.attachments), 3)}"]  # fmt: skip
    text = f"{message.subject}\n{message.text[:5000]}\n{' '.join(tokens)}"
    return SpamDocument(text, structure_tokens(message))


def sparse_features(documents: list[SpamDocument]) -> sp.csr_matrix:
    """The hashed part of the features."""
    blocks = []
    for matrix in (
        _words.transform([d.text for d in documents]),
        CHAR_NGRAMS.transform([d.text[:4000] for d in documents]),
    ):
        matrix.data = np.log1p(matrix.data)
        blocks.append(normalize(matrix))
    blocks.append(
        normalize(_words.transform([d.structure for d in documents]).astype(float))
        * STRUCTURE_WEIGHT
    )
    return sp.hstack(blocks).tocsr()


def features(documents: list[SpamDocument], embeddings: np.ndarray | None) -> sp.csr_matrix:
    """embeddings None: the light model of fallback mode, hashed features only."""
    sparse = sparse_features(documents)
    if embeddings is None:
        embeddings = np.zeros((len(documents), 0), dtype=np.float32)
    return sp.hstack([sparse, sp.csr_matrix(embeddings * EMBEDDING_WEIGHT)]).tocsr()


@dataclass
class BayesVote:
    """Multinomial naive Bayes as the log odds it adds: a prior and one weight per hashed word."""

    word_log_odds: np.ndarray
    prior_log_odds: float

    @classmethod
    def fit(
        cls, documents: list[SpamDocument], labels: np.ndarray, weights: np.ndarray
    ) -> BayesVote:
        model = MultinomialNB(alpha=BAYES_ALPHA)
        model.fit(_present_words.transform([d.text for d in documents]), labels,
                  sample_weight=weights)  # fmt: skip
        return cls(model.feature_log_prob_[1] - model.feature_log_prob_[0],
                   float(model.class_log_prior_[1] - model.class_log_prior_[0]))  # fmt: skip

    def logits(self, documents: list[SpamDocument]) -> np.ndarray:
        words = _present_words.transform([d.text for d in documents])
        return np.clip(words @ self.word_log_odds + self.prior_log_odds,
                       -BAYES_LOGIT_LIMIT, BAYES_LOGIT_LIMIT)  # fmt: skip


@dataclass
class SpamHead:
    coef: np.ndarray
    intercept: float
    embedding_dimension: int
    meta: dict
    bayes: BayesVote | None = None  # heads trained before the vote have none

    @property
    def version(self) -> str:
        return self.meta.get("version", "spam-head")

    def predict_proba(
        self, documents: list[SpamDocument], embeddings: np.ndarray | None
    ) -> np.ndarray:
        if self.embedding_dimension and embeddings is None:
            raise ValueError("This spam head needs embeddings; use a light head in fallback mode.")
        sparse = sparse_features(documents)
        # The same product as features() @ coef, without copying the embeddings into a sparse
        # matrix first.
        width = sparse.shape[1]
        logits = sparse @ self.coef[:width] + self.intercept
        if self.embedding_dimension:
            logits += (embeddings * EMBEDDING_WEIGHT) @ self.coef[width:]
        if self.bayes is not None:
            logits = TEMPERATURE * (
                np.clip(logits, -BAYES_LOGIT_LIMIT, BAYES_LOGIT_LIMIT)
                + BAYES_WEIGHT * self.bayes.logits(documents)
            )
        return 1 / (1 + np.exp(-logits))

    def save(self, path: str | Path) -> None:
        bayes = {}
        if self.bayes is not None:
            bayes = {"word_log_odds": self.bayes.word_log_odds.astype(np.float32),
                     "prior_log_odds": np.array([self.bayes.prior_log_odds])}  # fmt: skip
        np.savez_compressed(
            path,
            coef=self.coef.astype(np.float32),
            intercept=np.array([self.intercept]),
            embedding_dimension=np.array([self.embedding_dimension]),
            meta=np.array([json.dumps(self.meta)]),
            **bayes,
        )

    @classmethod
    def load(cls, path: str | Path) -> SpamHead:
        with np.load(path, allow_pickle=False) as data:
            bayes = None
            if "word_log_odds" in data:
                bayes = BayesVote(data["word_log_odds"].astype(np.float64),
                                  float(data["prior_log_odds"][0]))  # fmt: skip
            return cls(
                coef=data["coef"].astype(np.float64),
                intercept=float(data["intercept"][0]),
                embedding_dimension=int(data["embedding_dimension"][0]),
                meta=json.loads(str(data["meta"][0])),
                bayes=bayes,
            )


def packaged_head_path(kind: str = "full") -> Path:
    name = "spam_head.npz" if kind == "full" else "spam_head_light.npz"
    return Path(str(resources.files("apps.triage.engine").joinpath(f"data/{name}")))


@dataclass
class Augmentation:
    """Labelled examples added to every training set with a weight: the taxonomy's examples of
    today's business mail, which the 2002 corpus lacks (its ham is mostly mailing-list talk)."""

    documents: list[SpamDocument]
    embeddings: np.ndarray | None
    labels: np.ndarray
    weight: float | np.ndarray = 10.0  # one for all, or one per example

    def weights(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.weight, dtype=float), (len(self.labels),)).copy()

    def __add__(self, other: Augmentation) -> Augmentation:
        embeddings = None
        if self.embeddings is not None and other.embeddings is not None:
            embeddings = np.vstack([self.embeddings, other.embeddings])
        return Augmentation(self.documents + other.documents, embeddings,
                            np.concatenate([self.labels, other.labels]),
                            np.concatenate([self.weights(), other.weights()]))  # fmt: skip


def text_document(text: str) -> SpamDocument:
    """A document of a text alone (an example, a description), shaped as a message of it."""
    from apps.inbox.engine import parse_message

    return SpamDocument(text, structure_tokens(parse_message(f"Subject: x\n\n{text}\n".encode())))


def taxonomy_augmentation(taxonomy, encoder, weight: float = 10.0) -> Augmentation:
    texts, labels = [], []
    for category in taxonomy.categories:
        for text in (category.description, *category.examples):
            texts.append(text)
            labels.append(1 if category.name == "spam" else 0)
    documents = [text_document(text) for text in texts]
    embeddings = encoder.encode(texts).vectors if encoder is not None else None
    return Augmentation(documents, embeddings, np.array(labels), weight)


def train(documents: list[SpamDocument], embeddings: np.ndarray | None, labels: np.ndarray, *,
          C: float = 30.0, augmentation: Augmentation | None = None,
          meta: dict | None = None) -> SpamHead:  # fmt: skip
    matrix = features(documents, embeddings)
    weights = np.ones(len(labels))
    if augmentation is not None:
        extra = features(
            augmentation.documents, augmentation.embeddings if embeddings is not None else None
        )
        matrix = sp.vstack([matrix, extra]).tocsr()
        documents = documents + augmentation.documents
        labels = np.concatenate([labels, augmentation.labels])
        weights = np.concatenate([weights, augmentation.weights()])
    model = LogisticRegression(C=C, max_iter=5000)
    model.fit(matrix, labels, sample_weight=weights)
    dimension = 0 if embeddings is None else embeddings.shape[1]
    info = dict(meta or {}, C=C, augmented=augmentation is not None,
                bayes={"alpha": BAYES_ALPHA, "weight": BAYES_WEIGHT, "temperature": TEMPERATURE})  # fmt: skip
    return SpamHead(model.coef_[0], float(model.intercept_[0]), dimension, info,
                    BayesVote.fit(documents, labels, weights))  # fmt: skip


def corpus_files(root: str | Path) -> list[tuple[Path, int]]:
    """The SpamAssassin layout: folders whose names start with "spam" hold spam, the rest ham."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No corpus at {root}: expected folders of raw messages.")
    files = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = 1 if folder.name.lower().startswith("spam") else 0
        files += [(path, label) for path in sorted(folder.iterdir()) if path.is_file()]
    if not files:
        raise FileNotFoundError(f"No messages under {root}.")
    return files
