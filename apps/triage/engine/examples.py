"""Messages labelled by hand that teach the category head what each category looks like in
everyday mail, beside the taxonomy's descriptions (which say what a category means):

- data/category_examples.json: the tune part of the labelled business set (samples/business),
  kept as the text the head reads, written by `manage.py train_categories`;
- data/written/*.json: short messages written for each category in English and six other
  languages ({"category", "language", "subject", "text"}).

Their embeddings are stored beside them (data/category_examples.npz, and .int8.npz for the
quantized encoder) so that a process does not spend half a minute encoding them at start; they
are made again when the encoder or the examples change. They are encoded from their first
EXAMPLE_TOKENS tokens whatever the encoder reads of each message (MAILSCORE_MAX_TOKENS): a shorter
reading of the mail, chosen for speed, is no reason to describe the categories less fully, nor to
encode every example again at each start of a worker."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from apps.triage.engine.classify import category_text
from apps.triage.engine.levels import Verdict
from apps.triage.engine.priority import PriorityPolicy, prioritize

PACKAGED = "data/category_examples.json"
WRITTEN = "data/written"
VECTORS = "data/category_examples.npz"
VECTORS_INT8 = "data/category_examples.int8.npz"
# The length the stored embeddings were made at (the encoder's default MAILSCORE_MAX_TOKENS).
EXAMPLE_TOKENS = 256


@dataclass
class CategoryExamples:
    texts: list[str]
    labels: list[str]
    sources: list[str]  # the Message-ID each example was taken from; "" for written ones
    vectors: np.ndarray | None = None  # the encoder's embeddings of texts
    # For the level head (levels.py), of each labelled message: its accepted levels ("P1|P2")
    # and what the priority rules said of it when train_categories ran; "" and None for written
    # examples.
    levels: list[str] = field(default_factory=list)
    verdicts: list[Verdict | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Examples made without levels (written ones, a file from before the level head).
        self.levels = self.levels or [""] * len(self.texts)
        self.verdicts = self.verdicts or [None] * len(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def digest(self) -> str:
        payload = json.dumps([self.texts, self.labels], ensure_ascii=False).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def _subset(self, keep: list[int]) -> CategoryExamples:
        return CategoryExamples(
            [self.texts[i] for i in keep], [self.labels[i] for i in keep],
            [self.sources[i] for i in keep], None if self.vectors is None else self.vectors[keep],
            [self.levels[i] for i in keep], [self.verdicts[i] for i in keep],
        )  # fmt: skip

    def with_levels(self) -> list[int]:
        """Which examples have a labelled level and the rules' verdict on it."""
        return [i for i, verdict in enumerate(self.verdicts) if self.levels[i] and verdict]

    def only(self, names) -> CategoryExamples:
        """The examples of the categories a taxonomy has (the admin may have removed some)."""
        names = set(names)
        return self._subset([i for i, label in enumerate(self.labels) if label in names])

    def without(self, message_ids) -> CategoryExamples:
        """All but the examples taken from these messages: to judge a message fairly, the head
        must not have learned from it."""
        message_ids = set(message_ids)
        return self._subset(
            [i for i, source in enumerate(self.sources) if source not in message_ids]
        )

    def with_vectors(self, encoder, cache: Path | None = None) -> CategoryExamples:
        """These examples with their embeddings: from the cache where it was made by this
        encoder from these texts, else encoded now."""
        if encoder is None or not self.texts:
            return self
        if cache is not None and cache.is_file():
            with np.load(cache) as stored:
                if (str(stored["encoder"]) == _made_by(encoder)
                        and str(stored["digest"]) == self.digest):  # fmt: skip
                    self.vectors = stored["vectors"]
                    return self
        self.vectors = encoder.encode(self.texts, max_length=example_length(encoder)).vectors
        return self

    def save_vectors(self, encoder, cache: Path) -> None:
        np.savez_compressed(cache, vectors=self.vectors.astype(np.float32), digest=self.digest,
                            encoder=_made_by(encoder))  # fmt: skip


def _made_by(encoder) -> str:
    """What stored embeddings record of the encoder and length that made them, and are matched
    on when read."""
    return f"{encoder.version}/{example_length(encoder)}"


def example_length(encoder) -> int:
    """Tokens read of each example: EXAMPLE_TOKENS, or more where the encoder reads more of each
    message, within what its model takes."""
    length = max(encoder.max_length, EXAMPLE_TOKENS)
    model_limit = getattr(encoder.tokenizer, "model_max_length", length)
    # A tokenizer that does not know its model's limit says a huge number.
    return min(length, model_limit) if model_limit < 1_000_000 else length


def _read_entries(data: list[dict], where: str, examples: CategoryExamples) -> None:
    """Append one file's entries to examples."""
    for number, item in enumerate(data, 1):
        try:
            text = item["text"] if "message_id" in item else f"{item['subject']}\n{item['text']}"
            rules = item.get("rules")
            verdict = (
                Verdict(item["category"], rules["level"], int(rules["score"])) if rules else None
            )
            examples.texts.append(text[:4000])
            examples.labels.append(item["category"])
            examples.sources.append(item.get("message_id") or "")
            examples.levels.append(item.get("priority") or "")
            examples.verdicts.append(verdict)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: entry {number} is not an example ({exc})") from exc


def load_examples(path: str | Path | None = None) -> CategoryExamples:
    """The examples: the packaged ones by default, or one JSON file of them."""
    if path:
        files = [Path(path)]
    else:
        data = resources.files("apps.triage.engine")
        files = [Path(str(data.joinpath(PACKAGED)))]
        written = Path(str(data.joinpath(WRITTEN)))
        files += sorted(written.glob("*.json")) if written.is_dir() else []
    examples = CategoryExamples([], [], [])
    for file in files:
        if not file.is_file() and not path:
            continue
        _read_entries(json.loads(file.read_text(encoding="utf-8")), str(file), examples)
    return examples


def packaged_vectors_path(encoder=None) -> Path:
    """Where the packaged examples' embeddings by this encoder are kept: one file for the
    float32 encoder and one for its int8 form."""
    name = VECTORS_INT8 if getattr(encoder, "quantized", False) else VECTORS
    return Path(str(resources.files("apps.triage.engine").joinpath(name)))


def rules_verdict(message, category: str, policy: PriorityPolicy | None = None) -> dict:
    """What the priority rules say of a message in its (labelled or corrected) category, as the
    level head learns it: in the examples file, and beside a reviewer's corrected level."""
    decision = prioritize(message, category, policy)
    return {"level": decision.level, "score": decision.score}


def examples_from_labelled(labelled) -> list[dict]:
    """The examples file's entries for labelled messages (evaluation.Labelled), spam left out:
    the spam head decides spam."""
    return [
        {"category": item.category, "text": category_text(item.message),
         "message_id": item.message.message_id, "priority": "|".join(item.levels),
         "rules": rules_verdict(item.message, item.category)}
        for item in labelled if item.category != "spam"
    ]  # fmt: skip
