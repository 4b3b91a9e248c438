"""A second reading of each priority level, learned from labelled mail.

The rules in priority.py read what a message says (an outage for everyone, a deadline, anger, a
compromise) and add it up; what they cannot weigh is how a support lead reads the whole of it:
that a legal letter with a date in it is this week's work, that one customer's broken webhook is
for today and a whole region's is for now. The level head reads the same text the category head
reads (its embedding, words and character n-grams) beside the rules' own verdict (the category,
level and score), and learns from the tune part of the labelled set which level a support lead
gave mail like it.

It is a second reading, not a second set of rules: it may move the rules' level by one, and
only where it is clearly surer of the other level (MOVE_MARGIN), within the floor and ceiling
the rules set on each decision: never for mail that needs no action, never above what they allow
a category (priority.TODAY_AT_MOST), never below a frustrated sender's P1 or an important
sender's own level. Its reason says what it did and how sure it was."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC

from apps.triage.engine.classify import softmax, temperature_for
from apps.triage.engine.learning import score_for_level
from apps.triage.engine.priority import LEVELS, PriorityDecision, level_for

LEVEL_NAMES = tuple(level for _, level in LEVELS)  # P0 to P3
# How much surer of a neighbouring level than of the rules' own the head must be to move a
# message there (cross-validated on the tune part: 0.1 to 0.3 read as many levels right; the
# larger margin moves fewer messages).
MOVE_MARGIN = 0.2
# The rules' verdict beside the text (weighed 3 times as much, it read no more levels right).
VERDICT_WEIGHT = 1.0


@dataclass
class Verdict:
    """What the rules said of a message: its category, level and score."""

    category: str
    level: str
    score: int


def _per_class(scores: np.ndarray) -> np.ndarray:
    """One margin per class, also where only two levels were labelled (one column)."""
    return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores


class LevelHead:
    """A linear SVM over the category head's text features and the rules' verdict, with a
    temperature fitted on cross-validated margins so that its confidences mean what they say."""

    def __init__(self, text_features, categories: list[str], texts: list[str],
                 embeddings: np.ndarray | None, verdicts: list[Verdict], levels: list[str],
                 weights: list[float] | None = None,
                 temperature: float | None = None) -> None:  # fmt: skip
        """temperature: as CategoryHead's, one fitted on the same labelled levels, kept."""
        # text_features(texts, embeddings) -> sparse matrix: the category head's reading.
        self.text_features = text_features
        self.categories = sorted(categories)
        matrix = self._features(texts, embeddings, verdicts)
        labels = np.array([LEVEL_NAMES.index(level) for level in levels])
        # A labelled message counts 1; a reviewer's level may count more (learning.py).
        self.weights = np.ones(len(levels)) if weights is None else np.asarray(weights, float)
        self.model = LinearSVC(C=0.3)
        self.model.fit(matrix, labels, sample_weight=self.weights)
        self.classes = [int(c) for c in self.model.classes_]
        self.temperature = temperature if temperature else self._fit_temperature(matrix, labels)
        self.examples = len(levels)

    def _verdict_features(self, verdicts: list[Verdict]) -> np.ndarray:
        width = len(self.categories)
        rows = np.zeros((len(verdicts), width + 4 + 1 + width * 4))
        for i, verdict in enumerate(verdicts):
            level = LEVEL_NAMES.index(verdict.level)
            if verdict.category in self.categories:
                category = self.categories.index(verdict.category)
                rows[i, category] = 1
                # The same level means different things in different categories.
                rows[i, width + 5 + category * 4 + level] = 1
            rows[i, width + level] = 1
            rows[i, width + 4] = verdict.score / 100
        return rows * VERDICT_WEIGHT

    def _features(self, texts, embeddings, verdicts):
        return sp.hstack([
            sp.csr_matrix(self._verdict_features(verdicts)), self.text_features(texts, embeddings)
        ]).tocsr()  # fmt: skip

    def _fit_temperature(self, matrix, labels: np.ndarray) -> float:
        folds = min(3, min(np.unique(labels, return_counts=True)[1]))
        if folds < 2:
            return 1.0
        scores = cross_val_predict(LinearSVC(C=0.3), matrix, labels,
                                   cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                                   method="decision_function",
                                   params={"sample_weight": self.weights})  # fmt: skip
        return temperature_for(
            _per_class(scores), np.array([self.classes.index(label) for label in labels])
        )

    def predict(self, texts: list[str], embeddings: np.ndarray | None,
                verdicts: list[Verdict]) -> np.ndarray:  # fmt: skip
        """Each message's probability of each level, P0 to P3 (0 for a level never labelled)."""
        matrix = self._features(texts, embeddings, verdicts)
        probabilities = softmax(_per_class(self.model.decision_function(matrix)) / self.temperature)
        full = np.zeros((len(texts), len(LEVEL_NAMES)))
        full[:, self.classes] = probabilities
        return full


def second_reading(decision: PriorityDecision, probabilities: np.ndarray) -> PriorityDecision:
    """The rules' decision, moved by one level where the level head is MOVE_MARGIN surer of
    that level than of the rules' own, within the floor and ceiling the rules set."""
    ruled = LEVEL_NAMES.index(decision.level)
    highest, lowest = LEVEL_NAMES.index(decision.ceiling), LEVEL_NAMES.index(decision.floor)
    allowed = [level for level in (ruled - 1, ruled + 1) if highest <= level <= lowest]
    if not allowed:
        return decision
    best = max(allowed, key=lambda level: probabilities[level])
    if probabilities[best] - probabilities[ruled] < MOVE_MARGIN:
        return decision
    level = LEVEL_NAMES[best]
    decision.rules_level = decision.level
    decision.score = score_for_level(decision.score, level)
    decision.level = level_for(decision.score)
    decision.reasons.append(
        f"labelled mail like this one is {level} ({probabilities[best]:.2f}, against "
        f"{probabilities[ruled]:.2f} for {LEVEL_NAMES[ruled]}, the rules' level)"
    )
    return decision
