"""classify: header rules where they are certain, then the spam head, then a category head
trained on the taxonomy's descriptions and examples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from apps.inbox.engine import ParsedMessage
from apps.triage.engine.learning import Learned
from apps.triage.engine.rules import header_category
from apps.triage.engine.spam import SpamDocument, SpamHead
from apps.triage.engine.taxonomy import Taxonomy

SPAM_THRESHOLD = 0.5
_words = HashingVectorizer(n_features=2**16, alternate_sign=False, ngram_range=(1, 2), norm="l2")


@dataclass
class CategoryDecision:
    label: str
    confidence: float
    decided_by: str
    alternatives: list[tuple[str, float]]
    spam_probability: float | None = None

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "decided_by": self.decided_by,
            "alternatives": [{"label": n, "confidence": round(p, 4)} for n, p in self.alternatives],
            "spam_probability": None
            if self.spam_probability is None
            else round(self.spam_probability, 4),
        }


def category_text(message: ParsedMessage) -> str:
    """What the category head reads: the subject and what this message adds."""
    return f"{message.subject}\n{message.new_text or message.text}"[:4000]


class CategoryHead:
    """Multinomial logistic regression over embeddings (plus hashed words), with a temperature
    fitted on cross-validated predictions so that confidences mean what they say."""

    def __init__(self, taxonomy: Taxonomy, encoder=None, learned: Learned | None = None) -> None:
        self.encoder = encoder
        texts, labels = [], []
        for category in taxonomy.categories:
            if category.name == "spam":
                continue  # the spam head decides spam
            for text in (category.description, *category.examples):
                texts.append(text)
                labels.append(category.name)
        weights = [1.0] * len(texts)
        matrix = self._features(texts, None)
        # Reviewers' corrections to categories the head knows, with the embeddings kept when
        # they were learned (the encoder does not run again for them).
        corrections = [
            c for c in (learned.category_corrections if learned else [])
            if c.category in set(labels)
        ]  # fmt: skip
        if corrections:
            vectors = None
            if self.encoder is not None and all(c.vector is not None for c in corrections):
                vectors = np.vstack([c.vector for c in corrections])
            matrix = sp.vstack([matrix, self._features([c.text for c in corrections], vectors)])
            labels += [c.category for c in corrections]
            weights += [c.weight for c in corrections]
        self.labels = np.array(labels)
        self.weights = np.array(weights)
        self.model = LogisticRegression(C=20.0, max_iter=5000)
        self.model.fit(matrix, self.labels, sample_weight=self.weights)
        self.classes = list(self.model.classes_)
        self.temperature = self._fit_temperature(matrix)

    def _features(self, texts: list[str], embeddings: np.ndarray | None):
        words = _words.transform(texts)
        if self.encoder is None:
            return sp.csr_matrix(words)
        if embeddings is None:
            embeddings = self.encoder.encode(texts).vectors
        return sp.hstack([sp.csr_matrix(embeddings), words * 0.5]).tocsr()

    def _fit_temperature(self, matrix) -> float:
        folds = min(3, min(np.unique(self.labels, return_counts=True)[1]))
        if folds < 2:
            return 1.0
        scores = cross_val_predict(
            LogisticRegression(C=20.0, max_iter=5000), matrix, self.labels,
            cv=StratifiedKFold(folds, shuffle=True, random_state=0), method="decision_function",
            params={"sample_weight": self.weights},
        )  # fmt: skip
        truth = np.array([self.classes.index(label) for label in self.labels])
        best, best_loss = 1.0, float("inf")
        for temperature in np.linspace(0.2, 5.0, 49):
            probabilities = _softmax(scores / temperature)
            loss = -np.log(probabilities[np.arange(len(truth)), truth] + 1e-12).mean()
            if loss < best_loss:
                best, best_loss = float(temperature), loss
        return best

    def predict(self, texts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        scores = self.model.decision_function(self._features(texts, embeddings))
        return _softmax(scores / self.temperature)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class SenderLists:
    """Senders a team has decided about: allowed ones are never spam, denied ones always are.
    Each entry is an address or a whole domain, lower case."""

    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()

    def match(self, address: str | None) -> tuple[str, str] | None:
        address = (address or "").lower()
        if not address:
            return None
        domain = address.rsplit("@", 1)[-1]
        for kind, entries in (("deny", self.deny), ("allow", self.allow)):
            for candidate in (address, domain):
                if candidate in entries:
                    return kind, candidate
        return None


class Classifier:
    def __init__(self, taxonomy: Taxonomy, spam_head: SpamHead, encoder=None, *,
                 learned: Learned | None = None, senders: SenderLists | None = None) -> None:  # fmt: skip
        self.taxonomy = taxonomy
        self.spam_head = spam_head
        self.encoder = encoder
        self.learned = learned or Learned()
        self.senders = senders or SenderLists()
        self.head = CategoryHead(taxonomy, encoder, self.learned)
        mode = "encoder" if encoder is not None else "fallback"
        self.version = (
            f"{mode}:{encoder.version if encoder else 'hashed-words'}"
            f"+taxonomy:{taxonomy.version}@{taxonomy.digest}+{spam_head.version}"
            f"+model:{self.learned.version}"
        )
        self.model_signal = "encoder" if encoder is not None else "fallback"

    def classify(self, messages: list[ParsedMessage], embeddings: np.ndarray | None,
                 spam_documents: list[SpamDocument]) -> list[CategoryDecision]:  # fmt: skip
        spam_p = self.spam_head.predict_proba(spam_documents, embeddings)
        probabilities = self.head.predict([category_text(m) for m in messages], embeddings)
        pull = self.learned.category_pull(embeddings, self.head.classes)
        if pull is not None:
            probabilities = probabilities * pull
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        decisions = []
        for i, message in enumerate(messages):
            ranked = sorted(
                zip(self.head.classes, probabilities[i], strict=True), key=lambda x: -x[1]
            )
            alternatives = [(name, float(p)) for name, p in ranked[:3]]
            listed = self.senders.match(message.from_address)
            if listed and listed[0] == "deny" and "spam" in self.taxonomy:
                decisions.append(CategoryDecision("spam", 1.0, f"deny list: {listed[1]}",
                                                  alternatives, float(spam_p[i])))  # fmt: skip
                continue
            rule = header_category(message, "before_spam")
            if rule:
                decisions.append(CategoryDecision(rule[0], 1.0, f"headers: {rule[1]}", alternatives,
                                                  float(spam_p[i])))  # fmt: skip
                continue
            near = self.learned.nearest_category(embeddings[i] if embeddings is not None else None)
            if near and near.value in self.taxonomy:
                decisions.append(CategoryDecision(
                    near.value, near.similarity,
                    f"reviewed: like a message a reviewer filed as {near.value} "
                    f"(similarity {near.similarity:.2f}, model {self.learned.version})",
                    [a for a in alternatives if a[0] != near.value][:2], float(spam_p[i]),
                ))  # fmt: skip
                continue
            if listed and listed[0] == "allow":
                pass  # an allowed sender is never spam: straight to the category head
            elif spam_p[i] >= SPAM_THRESHOLD:
                decisions.append(CategoryDecision("spam", float(spam_p[i]), "spam_head", alternatives,
                                                  float(spam_p[i])))  # fmt: skip
                continue
            rule = header_category(message, "after_spam")
            if rule:
                decisions.append(CategoryDecision(rule[0], 1.0, f"headers: {rule[1]}", alternatives,
                                                  float(spam_p[i])))  # fmt: skip
                continue
            label, confidence = ranked[0]
            # An allowed sender's mail is not doubted for looking like spam.
            not_spam = 1.0 if listed else 1 - float(spam_p[i])
            decided_by = (
                f"{self.model_signal}, allow list: {listed[1]}" if listed else self.model_signal
            )
            decisions.append(CategoryDecision(label, float(confidence) * not_spam, decided_by,
                                              alternatives[1:], float(spam_p[i])))  # fmt: skip
        return decisions
