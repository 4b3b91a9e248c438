"""The four triage steps in one process: classify -> prioritize -> summarize -> draft_reply.

Messages go through in batches. The encoder runs once per message: the same forward pass gives
the message embedding (classification, spam, retrieval) and the sentence embeddings (summary).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from apps.inbox.engine import ParsedMessage
from apps.triage.engine.classify import (
    CategoryDecision,
    CategoryHead,
    Classifier,
    SenderLists,
    category_text,
)
from apps.triage.engine.draft import (
    ApprovedReply,
    Draft,
    compose_draft,
    load_templates,
    no_reply_reason,
)
from apps.triage.engine.encoder import Encoded, ModelLoadError, load_encoder
from apps.triage.engine.examples import load_examples, packaged_vectors_path
from apps.triage.engine.learning import LEVEL_CORRECTION_WEIGHT, Learned, score_for_level
from apps.triage.engine.levels import LevelHead, Verdict, second_reading
from apps.triage.engine.priority import (
    PriorityDecision,
    PriorityPolicy,
    level_for,
    prioritize,
)
from apps.triage.engine.sentences import split_sentences
from apps.triage.engine.spam import SpamHead, packaged_head_path, spam_document
from apps.triage.engine.summarize import MAX_CHARS, extractive_summary, fit_to_limit
from apps.triage.engine.taxonomy import NO_REPLY, Taxonomy
from apps.verification.engine.trust import TrustReport, assess_sender

logger = logging.getLogger(__name__)


# Priority comes from rules in priority.py; change this label when they change.
PRIORITY_RULES_VERSION = "priority-rules-14"
# The fewest labelled examples the level head is fitted on (levels.py).
LEVEL_HEAD_EXAMPLES = 20


@dataclass(frozen=True)
class TriageConfig:
    encoder_path: str = ""
    generator_path: str = ""
    device: str = "auto"
    quantize: bool = False
    batch_size: int = 32
    max_length: int = 256
    # "auto": fall back to rules plus the light model when the encoder cannot load;
    # "encoder": refuse to start without it; "fallback": never load it.
    mode: str = "auto"
    taxonomy_path: str = ""
    templates_path: str = ""
    spam_head_path: str = ""
    light_spam_head_path: str = ""
    # Labelled real mail for the category head; empty means the packaged examples.
    category_examples_path: str = ""
    vip_addresses: tuple[str, ...] = ()
    vip_domains: tuple[str, ...] = ()
    own_domains: tuple[str, ...] = ()
    trusted_authserv_ids: tuple[str, ...] = ()


@dataclass
class TriageSetup:
    """The part of triage a team changes while it runs: rebuilt without loading a model."""

    taxonomy: Taxonomy
    templates: dict
    policy: PriorityPolicy
    senders: SenderLists = field(default_factory=SenderLists)
    learned: Learned = field(default_factory=Learned)


@dataclass
class TriageOutcome:
    category: CategoryDecision
    priority: PriorityDecision
    summary: str
    draft: Draft | None
    trust: TrustReport
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "category": self.category.to_dict(),
            "priority": self.priority.to_dict(),
            "summary": self.summary,
            "draft_reply": self.draft.to_dict() if self.draft else None,
            "sender_trust": self.trust.level,
            "timings": self.timings,
            "model_versions": self.versions,
        }


def _split_body(message: ParsedMessage) -> tuple[str, int, list[tuple[int, int, str]]]:
    """The text the encoder reads (category_text), where its body starts, and the body's
    sentences as split_sentences gives them (offsets within the body)."""
    text = category_text(message)
    body_offset = len(message.subject) + 1
    return text, body_offset, split_sentences(text[body_offset:])


class Triager:
    """Loads every model once; triage() is then safe to call for batch after batch."""

    def __init__(self, config: TriageConfig | None = None) -> None:
        self.config = config = config or TriageConfig()
        self.degraded: str | None = None
        self.encoder = None
        if config.mode not in ("auto", "encoder", "fallback"):
            raise ModelLoadError(
                f"MAILSCORE_TRIAGE_MODE={config.mode!r}: use auto, encoder or fallback."
            )
        if config.mode != "fallback":
            try:
                self.encoder = load_encoder(config.encoder_path or None, device=config.device,
                                            quantize=config.quantize, max_length=config.max_length,
                                            batch_size=config.batch_size)  # fmt: skip
            except ModelLoadError as exc:
                if config.mode == "encoder":
                    raise
                self.degraded = f"encoder unavailable, running on rules and the light model: {exc}"
                logger.error("%s", self.degraded)
        else:
            self.degraded = (
                "fallback mode: rules and the light model (MAILSCORE_TRIAGE_MODE=fallback)"
            )
        head_path = (config.spam_head_path or packaged_head_path("full")) if self.encoder else (
            config.light_spam_head_path or packaged_head_path("light"))  # fmt: skip
        try:
            self.spam_head = SpamHead.load(head_path)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Could not load the spam head from {head_path}: {exc}") from exc
        if self.encoder and self.spam_head.embedding_dimension not in (0, self.encoder.dimension):
            raise ModelLoadError(
                f"The spam head at {head_path} was trained on {self.spam_head.embedding_dimension}-"
                f"dimensional embeddings; the encoder gives {self.encoder.dimension}. Retrain it "
                "with manage.py train_spam."
            )
        try:
            self.category_examples = load_examples(config.category_examples_path or None)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Could not load the category examples from "
                                 f"{config.category_examples_path}: {exc}") from exc  # fmt: skip
        self.category_examples.with_vectors(
            self.encoder,
            None if config.category_examples_path else packaged_vectors_path(self.encoder),
        )
        self.generator = None
        # What the category and level heads were last fitted on, and their temperatures.
        self._fitted_on: _FittedOn | None = None
        self._temperatures: _Temperatures | None = None
        if config.generator_path:
            from apps.triage.engine.generator import load_generator

            self.generator = load_generator(config.generator_path, device=config.device)
        self.reconfigure(TriageSetup(
            taxonomy=Taxonomy.load(config.taxonomy_path or None),
            templates=load_templates(config.templates_path or None),
            policy=PriorityPolicy(frozenset(a.lower() for a in config.vip_addresses),
                                  frozenset(d.lower() for d in config.vip_domains)),
        ))  # fmt: skip

    def reconfigure(self, setup: TriageSetup) -> None:
        """Take a new taxonomy, templates, sender rules and learned model. The category and
        level heads are refitted where what they learn from changed (several seconds each on
        two cores): a new taxonomy, examples or learned model; a change to sender rules,
        templates or priorities keeps them. A new learned model alone keeps the heads'
        temperatures, fitted on the same labelled examples: its corrections are a few dozen
        among thousands, and the temperature's three cross-validation fits are two thirds of a
        head's refit. The encoder and spam head stay as they are."""
        fitted = self._fitted_on
        now = _FittedOn.of(self.category_examples, setup)
        last = self._temperatures
        kept = last if last is not None and last.labelled == now.labelled else None
        if fitted is not None and fitted.category_head == now.category_head:
            head = self.classifier.head
        else:
            head = CategoryHead(setup.taxonomy, self.encoder, setup.learned,
                                self.category_examples, temperature=kept and kept.category)  # fmt: skip
        classifier = Classifier(setup.taxonomy, self.spam_head, self.encoder,
                                learned=setup.learned, senders=setup.senders,
                                examples=self.category_examples, head=head)  # fmt: skip
        if fitted is None or fitted.level_head != now.level_head:
            level_head = self._level_head(classifier, setup.taxonomy, setup.learned,
                                          temperature=kept and kept.level)  # fmt: skip
        else:
            level_head = self.level_head
        # Only once both heads are fitted: a setup that fails to fit leaves the last one whole.
        self._fitted_on = now
        self._temperatures = _Temperatures(now.labelled, head.temperature,
                                           level_head.temperature if level_head else None)  # fmt: skip
        self.level_head = level_head
        self.setup = setup
        self.taxonomy = setup.taxonomy
        self.templates = setup.templates
        self.policy = setup.policy
        self.learned = setup.learned
        self.classifier = classifier
        self.versions = {
            "encoder": self.encoder.version if self.encoder else "none (fallback)",
            "classifier": self.classifier.version,
            "priority": f"{PRIORITY_RULES_VERSION}+model:{setup.learned.version}"
            + (f"+levels:{self.level_head.examples}" if self.level_head else ""),
            "templates": str(self.templates.get("version", "custom")),
            "generator": self.generator.version if self.generator else "none",
            "model": setup.learned.version,
        }

    def _level_head(self, classifier: Classifier, taxonomy: Taxonomy, learned: Learned,
                    temperature: float | None = None) -> LevelHead | None:  # fmt: skip
        """The level head, fitted on the labelled examples of this taxonomy's categories and the
        levels reviewers corrected; none where there are too few labelled examples (a custom
        examples file without levels)."""
        examples = self.category_examples
        chosen = [i for i in examples.with_levels() if examples.labels[i] in taxonomy]
        levels = [examples.levels[i].split("|")[0] for i in chosen]  # the first accepted
        if len(chosen) < LEVEL_HEAD_EXAMPLES or len(set(levels)) < 2:
            return None
        texts = [examples.texts[i] for i in chosen]
        verdicts = [examples.verdicts[i] for i in chosen]
        weights = [1.0] * len(chosen)
        vectors = None
        if self.encoder is not None and examples.vectors is not None:
            vectors = examples.vectors[chosen]
        corrected = [c for c in learned.level_corrections
                     if c.seen_as in taxonomy and (vectors is None or c.vector is not None)]  # fmt: skip
        if corrected:
            texts += [c.text for c in corrected]
            verdicts += [Verdict(c.seen_as, c.rules_level, c.rules_score) for c in corrected]
            levels += [c.priority for c in corrected]
            weights += [LEVEL_CORRECTION_WEIGHT] * len(corrected)
            if vectors is not None:
                vectors = np.vstack([vectors, *[c.vector for c in corrected]])
        return LevelHead(classifier.head.read, taxonomy.names, texts, vectors, verdicts, levels,
                         weights, temperature)  # fmt: skip

    @property
    def chunk_size(self) -> int:
        """How many messages to hand triage() at once: several encoder batches, so that sorting
        by length packs each batch with similar lengths and little padding. At 16 batches the
        encoder is as fast as on a thousand messages sorted at once; at 8 it lost 2 to 3%."""
        return self.config.batch_size * 16

    def triage(self, messages: list[ParsedMessage], *,
               library: list[ApprovedReply] | None = None) -> list[TriageOutcome]:  # fmt: skip
        """All four steps in one process. The Celery chain (tasks/pipeline.py) calls the same
        step methods one queue at a time."""
        count = len(messages)
        if not count:
            return []
        started = time.perf_counter()
        encoded = self.encode(messages)
        encode_ms = _per_message(started, count)
        vectors = encoded.vectors if encoded else None

        started = time.perf_counter()
        decisions = self.classify(messages, vectors)
        classify_ms = _per_message(started, count)

        started = time.perf_counter()
        priorities = self.prioritize(messages, [d.label for d in decisions], vectors)
        prioritize_ms = _per_message(started, count)

        started = time.perf_counter()
        summaries = self.summarize(messages, encoded)
        summarize_ms = _per_message(started, count)

        started = time.perf_counter()
        drafts = self.draft(
            messages,
            [d.label for d in decisions],
            [p.deadlines for p in priorities],
            summaries,
            vectors,
            library,
        )
        draft_ms = _per_message(started, count)

        outcomes = []
        for i in range(count):
            draft, trust = drafts[i]
            outcomes.append(TriageOutcome(
                category=decisions[i], priority=priorities[i], summary=summaries[i], draft=draft,
                trust=trust,
                timings={"encode_ms": encode_ms, "classify_ms": classify_ms,
                         "prioritize_ms": prioritize_ms, "summarize_ms": summarize_ms,
                         "draft_ms": draft_ms},
                versions=self.versions,
            ))  # fmt: skip
        return outcomes

    def encode(self, messages: list[ParsedMessage]) -> Encoded | None:
        """One encoder pass per message: its embedding and its sentences' embeddings. None when
        running without an encoder."""
        if not self.encoder or not messages:
            return None
        texts, spans, sentences = [], [], []
        for message in messages:
            text, body_offset, found = _split_body(message)
            texts.append(text)
            spans.append([(body_offset + start, body_offset + end) for start, end, _ in found])
            sentences.append([sentence for _, _, sentence in found])
        encoded = self.encoder.encode(texts, spans)
        encoded.sentences = sentences
        return encoded

    def classify(self, messages: list[ParsedMessage], vectors) -> list[CategoryDecision]:
        return self.classifier.classify(messages, vectors, [spam_document(m) for m in messages])

    def prioritize(
        self, messages: list[ParsedMessage], labels: list[str], vectors=None
    ) -> list[PriorityDecision]:
        """The rules' score and level, read a second time by the level head; where a reviewer
        set the level of a message close to this one, their level, with the reasons kept beside
        it."""
        decisions = [
            prioritize(m, label, self.policy) for m, label in zip(messages, labels, strict=True)
        ]
        # The level head reads the embedding the category head read (the chain's step loads the
        # one classify left); a caller with an encoder but no embeddings gets the rules' level.
        if self.level_head is not None and messages and (vectors is not None or not self.encoder):
            probabilities = self.level_head.predict(
                [category_text(m) for m in messages], vectors,
                [Verdict(label, d.level, d.score) for label, d in zip(labels, decisions, strict=True)],
            )  # fmt: skip
            decisions = [
                second_reading(d, p) for d, p in zip(decisions, probabilities, strict=True)
            ]
        if vectors is None or not self.learned.corrections:
            return decisions
        for i, decision in enumerate(decisions):
            near = self.learned.nearest_priority(vectors[i], labels[i])
            if near is None or near.value == decision.level or labels[i] in NO_REPLY:
                continue
            decision.score = score_for_level(decision.score, near.value)
            decision.level = level_for(decision.score)
            decision.reasons.insert(0, f"a reviewer set a message like this one to {near.value} "
                                       f"(similarity {near.similarity:.2f}, model "
                                       f"{self.learned.version})")  # fmt: skip
        return decisions

    def summarize(self, messages: list[ParsedMessage], encoded: Encoded | None) -> list[str]:
        summaries = []
        for i, message in enumerate(messages):
            if encoded is not None and encoded.sentences is not None:
                sentences = encoded.sentences[i]
            else:
                sentences = [sentence for _, _, sentence in _split_body(message)[2]]
            summaries.append(extractive_summary(
                sentences,
                encoded.sentence_vectors[i] if encoded else None,
                encoded.vectors[i] if encoded else None,
            ))  # fmt: skip
        if self.generator:
            summaries = self._generated_summaries(messages, summaries)
        return summaries

    def _generated_summaries(self, messages, extractive: list[str]) -> list[str]:
        prompts = [f"summarize: {m.subject}. {(m.new_text or m.text)[:2000]}" for m in messages]
        generated = self.generator.generate(prompts)
        # A generated summary is kept only when it fits the limits; otherwise the extractive one.
        return [
            fit_to_limit(g) if g and len(g) <= MAX_CHARS else e
            for g, e in zip(generated, extractive, strict=True)
        ]

    def draft(
        self,
        messages: list[ParsedMessage],
        labels: list[str],
        deadlines: list[list[dict]],
        summaries: list[str],
        vectors,
        library: list[ApprovedReply] | None = None,
    ) -> list[tuple[Draft | None, TrustReport]]:
        """A draft for each message whose category expects a reply, and the sender's trust,
        which decides whether the message's own words may appear in that draft."""
        if library is None:
            library = self.learned.replies
        results: list[tuple[Draft | None, TrustReport]] = []
        needs_ack = []
        for i, message in enumerate(messages):
            trust = assess_sender(message, own_domains=self.config.own_domains,
                                  trusted_authserv_ids=self.config.trusted_authserv_ids)  # fmt: skip
            results.append((None, trust))
            label = labels[i]
            if (
                label in NO_REPLY
                or label not in self.taxonomy
                or not self.taxonomy[label].expects_reply
                or no_reply_reason(message)
            ):
                continue
            needs_ack.append(i)
        acks: dict[int, str] = {}
        # Suspicious senders' text never reaches a draft, so it is never given to the generator.
        asked = [i for i in needs_ack if results[i][1].level != "suspicious"]
        if self.generator and asked:
            prompts = [
                f"restate the request in one sentence: {(messages[i].new_text or messages[i].text)[:1500]}"
                for i in asked
            ]
            acks = dict(zip(asked, self.generator.generate(prompts), strict=True))
        for i in needs_ack:
            trust = results[i][1]
            draft = compose_draft(
                messages[i], labels[i], templates=self.templates, key_point=_first_sentence(summaries[i]),
                deadlines=deadlines[i], suspicious=trust.level == "suspicious",
                message_vector=vectors[i] if vectors is not None else None, library=library,
                generated_ack=acks.get(i),
            )  # fmt: skip
            results[i] = (draft, trust)
        return results


@dataclass(frozen=True)
class _FittedOn:
    """What the category head and the level head are fitted on: where it is the same, so is
    the head fitted on it."""

    labelled: tuple  # the labelled examples and the taxonomy
    category_corrections: tuple
    level_corrections: tuple

    @classmethod
    def of(cls, examples, setup: TriageSetup) -> _FittedOn:
        learned = setup.learned
        return cls(
            (examples.digest, setup.taxonomy.digest),
            tuple((c.text, c.category, c.weight) for c in learned.category_corrections),
            tuple((c.text, c.priority, c.seen_as, c.rules_level, c.rules_score)
                  for c in learned.level_corrections),
        )  # fmt: skip

    @property
    def category_head(self) -> tuple:
        return self.labelled, self.category_corrections

    @property
    def level_head(self) -> tuple:
        # The level head reads the category head's features, so it follows that head too.
        return self.category_head, self.level_corrections


@dataclass(frozen=True)
class _Temperatures:
    """The heads' temperatures, and the labelled examples and taxonomy they were fitted on."""

    labelled: tuple
    category: float
    level: float | None


def _first_sentence(summary: str) -> str:
    sentences = split_sentences(summary)
    return sentences[0][2] if sentences else summary


def _per_message(started: float, count: int) -> float:
    return round((time.perf_counter() - started) * 1000 / count, 3)
