"""The chain's triage steps over a batch: classify, prioritize, summarize, draft_reply.

Each runs the engine on the batch's messages and stores its result with the version behind it.
The Celery tasks (tasks/pipeline.py) and manage.py triage call these same functions.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from apps.core.metrics import inference
from apps.inbox.batch import Batch
from apps.inbox.engine.stored import parsed_to_json
from apps.inbox.models import Message
from apps.inbox.threads import assign_threads
from apps.triage import encodings
from apps.triage.engine.encoder import Encoded
from apps.triage.engine.pipeline import Triager
from apps.triage.services import get_triager


def _keep_encodings(batch: Batch, triager: Triager, messages: list[Message], encoded) -> None:
    """Leave the encoder's output for summarize and draft_reply: in this process's batch, or in
    Redis when those steps run on another worker pool."""
    if batch.shared_between_processes:
        encodings.store([(m.id, m.runs) for m in messages], encoded, triager.versions["encoder"])
        return
    kept = batch.scratch.setdefault("encodings", {})
    for i, message in enumerate(messages):
        kept[message.id] = (encoded.vectors[i], encoded.sentence_vectors[i])


def _found_encodings(batch: Batch, triager: Triager, *, required: bool) -> dict | None:
    """The encoder's output for every message to do, by id: as classify left it, else encoded
    again (only if required). None when running without an encoder, or when some are missing
    and not required."""
    if triager.encoder is None or not batch.todo:
        return None
    if not batch.shared_between_processes:
        kept = batch.scratch.get("encodings", {})
        found = {m.id: kept[m.id] for m in batch.todo if m.id in kept}
    else:
        keys = [(m.id, m.runs) for m in batch.todo]
        loaded = encodings.load(keys, triager.versions["encoder"], triager.encoder.dimension)
        found = {}
        if loaded is not None:
            for i, message in enumerate(batch.todo):
                found[message.id] = (loaded.vectors[i], loaded.sentence_vectors[i])
    missing = [m for m in batch.todo if m.id not in found]
    if missing and not required:
        return None
    if missing:
        batch.scratch["reencoded"] = True
        encoded = _encode(triager, batch.parsed_of(missing))
        for i, message in enumerate(missing):
            found[message.id] = (encoded.vectors[i], encoded.sentence_vectors[i])
    return found


def _encoded_for(found: dict | None, messages: list[Message]) -> Encoded | None:
    if found is None:
        return None
    return Encoded(
        vectors=np.vstack([found[m.id][0] for m in messages]),
        sentence_vectors=[found[m.id][1] for m in messages],
    )


def _encode(triager: Triager, parsed: list) -> Encoded | None:
    if triager.encoder is None:
        return None
    with inference("encoder", len(parsed)):
        return triager.encode(parsed)


def _with_generator(triager: Triager, model: str, size: int):
    """Times a call that runs the local generator, where one is configured."""
    return inference(model, size) if triager.generator is not None else nullcontext()


def classify(batch: Batch) -> list[int]:
    """Category and spam decision. Runs the encoder and leaves its output for later steps."""
    batch.begin("classify")
    triager = get_triager()

    def work(messages, parsed):
        encoded = _encode(triager, parsed)
        with inference("classifier", len(parsed)):
            decisions = triager.classify(parsed, encoded.vectors if encoded else None)
        if encoded is not None:
            _keep_encodings(batch, triager, messages, encoded)
        threads = (assign_threads(messages, parsed) if batch.stored
                   else {m.id: "" for m in messages})  # fmt: skip
        return [(decision, threads[m.id]) for m, decision in zip(messages, decisions, strict=True)]

    def apply(message, result):
        decision, thread_key = result
        # The parsed form is stored here, not at ingest, to keep the request path light; later
        # steps read it instead of parsing the bytes again.
        message.parsed = parsed_to_json(batch.parsed_of([message])[0])
        message.category = decision.label
        message.language = batch.parsed_of([message])[0].language or ""
        message.category_confidence = decision.confidence
        message.category_result = decision.to_dict()
        message.thread_key = thread_key

    version = f"{triager.versions['classifier']} / {triager.versions['encoder']}"
    return batch.save(batch.compute(work), apply, version,
                      ["parsed", "category", "language", "category_confidence", "category_result",
                       "thread_key"])  # fmt: skip


def prioritize(batch: Batch) -> list[int]:
    """Priority from the category, deadlines, sender and wording."""
    batch.begin("prioritize")
    triager = get_triager()

    # The level head and reviewers' corrections read the embedding classify left; the level
    # head's reading is part of every level, so a missing embedding is made again for it.
    levels_read = triager.level_head is not None
    found = (_found_encodings(batch, triager, required=levels_read)
             if levels_read or triager.learned.corrections else None)  # fmt: skip

    def work(messages, parsed):
        encoded = _encoded_for(found, messages)
        return triager.prioritize(parsed, [m.category for m in messages],
                                  encoded.vectors if encoded is not None else None)  # fmt: skip

    def apply(message, decision):
        message.priority = decision.level
        message.priority_score = decision.score
        message.priority_result = decision.to_dict()

    return batch.save(batch.compute(work), apply, triager.versions["priority"],
                      ["priority", "priority_score", "priority_result"])  # fmt: skip


def summarize(batch: Batch) -> list[int]:
    """Extractive summary from the sentence vectors classify left (or a local generator's)."""
    batch.begin("summarize")
    triager = get_triager()
    found = _found_encodings(batch, triager, required=True)

    def work(messages, parsed):
        with _with_generator(triager, "summarizer", len(parsed)):
            return triager.summarize(parsed, _encoded_for(found, messages))

    def apply(message, summary):
        message.summary = summary

    version = f"{triager.versions['encoder']} / generator {triager.versions['generator']}"
    return batch.save(batch.compute(work), apply, version, ["summary"],
                      reencoded=batch.scratch.pop("reencoded", False))  # fmt: skip


def draft_reply(batch: Batch) -> list[int]:
    """A reply draft for categories that expect one, and the sender's trust, which decides
    whether the message's own words may appear in it. The trust report is stored for
    verify_sender, which does not assess the sender again."""
    batch.begin("draft_reply")
    triager = get_triager()
    found = _found_encodings(batch, triager, required=False)

    def work(messages, parsed):
        encoded = _encoded_for(found, messages)
        with _with_generator(triager, "generator", len(parsed)):
            return triager.draft(
                parsed,
                [m.category for m in messages],
                [(m.priority_result or {}).get("deadlines", []) for m in messages],
                [m.summary for m in messages],
                encoded.vectors if encoded is not None else None,
            )

    def apply(message, result):
        draft, trust = result
        message.draft_reply = draft.text if draft else ""
        message.draft_result = draft.to_dict() if draft else None
        message.sender_trust = trust.level
        message.sender_result = {"trust": trust.to_dict(), "deliverability": None}

    version = (
        f"templates {triager.versions['templates']} / generator {triager.versions['generator']}"
        f" / replies model:{triager.versions['model']}"
    )
    return batch.save(batch.compute(work), apply, version,
                      ["draft_reply", "draft_result", "sender_trust", "sender_result"])  # fmt: skip


TRIAGE_STEPS = (classify, prioritize, summarize, draft_reply)
