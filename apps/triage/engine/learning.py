"""What triage learns from reviewers: corrected categories and priorities, and approved replies.

Corrections join the category head's training set, each weighing as much as CORRECTION_WEIGHT
labelled messages, so that the head learns from a correction what it learns from labelled mail
and reaches differently worded mail of the same kind, not only the message it was made on. A
message very close to a corrected one (a re-send) takes the reviewer's decision outright and
says so. Priority: a corrected level joins the level head's examples (levels.py), beside what
the rules said of the message, and a corrected message of the same category nearly identical to
another (the next alert from the same system) sets its level. Nothing here knows about Django:
the app hands in plain records.

The weights and similarities were chosen by replaying the labelled business set's last rounds
as new mail, with a reviewer correcting every mistake in half of it (benchmarks/learning.py,
docs/benchmarks.md): a corrected level applied to every message of its category 0.55 similar
broke more levels of the other half than it fixed, and pulling mail like a corrected message
towards its category, on top of the head's own learning, broke more categories than it fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apps.triage.engine.draft import ApprovedReply

# How much one correction counts against one labelled message in the category head. Among 3,000
# examples, at 1 a correction moved nothing beyond its own message.
CORRECTION_WEIGHT = 4.0
# How much one corrected level counts against one labelled message in the level head.
LEVEL_CORRECTION_WEIGHT = 3.0
# Cosine similarity (of the encoder's message embeddings) from which a corrected message's
# category is taken as it is: a re-send or a near copy. With this encoder, paraphrases of one
# request score 0.45 to 0.7; one system's alerts with other details 0.7 to 0.95.
CATEGORY_NEIGHBOUR_SIMILARITY = 0.80
# Priority is overruled outright by a corrected message of the same category this similar: the
# same kind of mail from the same source (an identity provider's next alert). How urgent a
# person's message is depends on more than its topic: at 0.55, where paraphrases of one request
# begin, the corrected levels of replayed mail broke more levels of mail like it than they fixed.
PRIORITY_NEIGHBOUR_SIMILARITY = 0.8

PRIORITY_FLOORS = {"P0": 70, "P1": 45, "P2": 20, "P3": 0}
PRIORITY_CEILINGS = {"P0": 100, "P1": 69, "P2": 44, "P3": 19}


@dataclass
class Correction:
    """A reviewer's decision on one message: its category, its priority level, or both."""

    text: str
    category: str | None = None
    priority: str | None = None
    vector: np.ndarray | None = None
    weight: float = CORRECTION_WEIGHT
    # False where the reviewer confirmed what the model said: a training example for the head,
    # but no reason to overrule the model on messages like it.
    category_corrected: bool = True
    priority_corrected: bool = True
    # The category the message had when its priority was decided (the reviewer's or the model's).
    seen_as: str | None = None
    # What the priority rules said of the message in that category (its level and score): with
    # them a corrected level teaches the level head (levels.py) like a labelled message.
    rules_level: str | None = None
    rules_score: int | None = None


@dataclass
class Neighbour:
    index: int
    similarity: float
    value: str


@dataclass
class Learned:
    """Everything learned up to one model version."""

    version: str = "none"
    corrections: list[Correction] = field(default_factory=list)
    replies: list[ApprovedReply] = field(default_factory=list)

    @property
    def category_corrections(self) -> list[Correction]:
        return [c for c in self.corrections if c.category]

    @property
    def level_corrections(self) -> list[Correction]:
        """Corrected levels the level head can learn: with the rules' verdict beside them."""
        return [c for c in self.corrections
                if c.priority and c.priority_corrected and c.seen_as and c.rules_level
                and c.rules_score is not None]  # fmt: skip

    def _nearest(self, vector: np.ndarray | None, attribute: str, floor: float,
                 category: str | None = None) -> Neighbour | None:  # fmt: skip
        if vector is None:
            return None
        best: Neighbour | None = None
        for index, correction in enumerate(self.corrections):
            value = getattr(correction, attribute)
            corrected = getattr(correction, f"{attribute}_corrected")
            if not value or not corrected or correction.vector is None:
                continue
            if category is not None and (correction.category or correction.seen_as) != category:
                continue
            similarity = float(correction.vector @ vector)
            if similarity >= floor and (best is None or similarity > best.similarity):
                best = Neighbour(index, similarity, value)
        return best

    def nearest_category(self, vector: np.ndarray | None) -> Neighbour | None:
        return self._nearest(vector, "category", CATEGORY_NEIGHBOUR_SIMILARITY)

    def nearest_priority(self, vector: np.ndarray | None, category: str) -> Neighbour | None:
        return self._nearest(vector, "priority", PRIORITY_NEIGHBOUR_SIMILARITY, category)


def score_for_level(score: int, level: str) -> int:
    """The rules' score moved just far enough to land in level."""
    return max(PRIORITY_FLOORS[level], min(PRIORITY_CEILINGS[level], score))


def pack_vectors(vectors: list[np.ndarray]) -> bytes:
    if not vectors:
        return b""
    return np.vstack(vectors).astype(np.float32).tobytes()


def unpack_vectors(data: bytes, dimension: int) -> np.ndarray:
    if not data:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.frombuffer(bytes(data), dtype=np.float32).reshape(-1, dimension)
