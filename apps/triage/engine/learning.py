"""What triage learns from reviewers: corrected categories and priorities, and approved replies.

Corrections join the category head's training set as examples like the taxonomy's own, and pull
messages worded like them towards their category, the more the closer they are, so that a
correction reaches differently worded mail of the same kind, not only the message it was made on.
Mail unlike every correction is left as the head decides it. A message very close to a corrected
one (a re-send) takes the reviewer's decision outright and says so. Priority: the rules score a
message, and a corrected message of the same category close enough to it sets the level. Nothing
here knows about Django: the app hands in plain records.

The weights and floors were chosen on paraphrase pairs against samples/ (docs/review.md): a
heavier weight for corrections moved unrelated messages of the labelled set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apps.triage.engine.draft import ApprovedReply

# How much one correction counts against one taxonomy example.
CORRECTION_WEIGHT = 1.0
# Cosine similarity (of the encoder's message embeddings) from which a corrected message's
# decision is taken as it is. Measured on paraphrase pairs: see docs/review.md.
CATEGORY_NEIGHBOUR_SIMILARITY = 0.80
# Priority is overruled by a corrected message of the same category only, so a lower
# similarity is enough: within one category, paraphrases of one request score 0.55 and above.
PRIORITY_NEIGHBOUR_SIMILARITY = 0.55

# Corrections also pull messages like them towards their category, more the closer they are:
# probability x exp(STRENGTH x (similarity - FLOOR)) above FLOOR. Messages unlike every
# correction (below FLOOR) are left exactly as the head decides, so the rest of the mail does
# not move.
PULL_FLOOR = 0.5
PULL_STRENGTH = 10.0

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

    def category_pull(self, embeddings: np.ndarray, classes: list[str]) -> np.ndarray | None:
        """(messages, classes) factors to multiply the head's probabilities by; None when no
        correction applies."""
        examples = [c for c in self.category_corrections
                    if c.vector is not None and c.category in classes]  # fmt: skip
        if not examples or embeddings is None:
            return None
        similarity = embeddings @ np.vstack([c.vector for c in examples]).T
        factors = np.ones((len(embeddings), len(classes)))
        for column, name in enumerate(classes):
            mine = [j for j, c in enumerate(examples) if c.category == name]
            if mine:
                closest = similarity[:, mine].max(axis=1)
                factors[:, column] = np.exp(PULL_STRENGTH * np.clip(closest - PULL_FLOOR, 0, None))
        return factors

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
