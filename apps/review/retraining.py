"""Retraining from reviewers' feedback: collect what they decided, fit a candidate, compare it
with the active model on a labelled set the feedback did not come from, and keep it as a new
version, active only when it is no worse (unless forced)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction

from apps.inbox.engine import bare_message_id
from apps.inbox.ingest import parsed_of_stored
from apps.inbox.models import Message
from apps.review.models import Feedback, ReplyExample
from apps.triage.engine.evaluation import evaluate_triage, load_labelled
from apps.triage.engine.examples import rules_verdict
from apps.triage.engine.learning import CORRECTION_WEIGHT, pack_vectors
from apps.triage.engine.priority import PriorityPolicy
from apps.triage.models import ModelVersion
from apps.triage.services import get_triager, setup_from_database

logger = logging.getLogger(__name__)

# One retraining at a time across every process (nightly job, admin button, command line).
ADVISORY_LOCK = 0x6D61696C7265  # "mailre"
# The figures that must not drop for a version to be activated.
GUARDED = ("category_accuracy", "priority_exact")


class RetrainError(RuntimeError):
    """Retraining cannot run; the message says why and what to do."""


@dataclass
class TrainingSet:
    corrections: list[dict] = field(default_factory=list)
    replies: list[dict] = field(default_factory=list)
    feedback_count: int = 0
    # Message-IDs the feedback came from: they are left out of the evaluation.
    message_ids: set[str] = field(default_factory=set)

    @property
    def category_corrections(self) -> int:
        return sum(1 for c in self.corrections if c.get("category") and c["category_corrected"])

    @property
    def priority_corrections(self) -> int:
        return sum(1 for c in self.corrections if c.get("priority") and c["priority_corrected"])


@dataclass
class RetrainResult:
    version: ModelVersion
    activated: bool
    before: dict
    after: dict
    excluded: int
    training: TrainingSet


def collect_training_set() -> TrainingSet:
    """The latest decision per message on its category and on its priority, and every approved
    reply. A confirmation teaches the head what it already said; a change also overrules the
    model on messages very like it."""
    training = TrainingSet()
    latest: dict[int, dict] = {}
    for feedback in Feedback.objects.order_by("created_at", "id").iterator():
        training.feedback_count += 1
        if feedback.message_id_header:
            training.message_ids.add(bare_message_id(feedback.message_id_header))
        entry = latest.setdefault(feedback.message_id, {"message_id": feedback.message_id})
        if feedback.text:
            entry["text"] = feedback.text
        if feedback.category:
            entry["category"] = feedback.category
            entry["category_corrected"] = feedback.category != feedback.model_category
        elif feedback.confirmed and feedback.model_category and "category" not in entry:
            entry["category"] = feedback.model_category
            entry["category_corrected"] = False
        if feedback.priority and feedback.priority != feedback.model_priority:
            entry["priority"] = feedback.priority
            entry["priority_corrected"] = True
            entry["seen_as"] = entry.get("category") or feedback.model_category
    for entry in latest.values():
        if not entry.get("text") or not (entry.get("category") or entry.get("priority")):
            continue
        entry.setdefault("category_corrected", False)
        entry.setdefault("priority_corrected", False)
        entry["weight"] = CORRECTION_WEIGHT
        training.corrections.append(entry)
    for reply in ReplyExample.objects.order_by("created_at", "id"):
        training.replies.append({"id": reply.id, "category": reply.category,
                                 "message_text": reply.message_text, "reply": reply.reply})  # fmt: skip
    return training


def add_rules_verdicts(training: TrainingSet, policy: PriorityPolicy) -> None:
    """What the priority rules say of each message whose level a reviewer corrected, in the
    category it had: beside it, the reviewer's level teaches the level head. A message gone
    since (retention) or whose stored bytes no longer parse keeps its correction without one."""
    wanted = {c["message_id"]: c for c in training.corrections if c.get("priority_corrected")}
    for message in Message.objects.filter(id__in=list(wanted)).only("id", "raw", "parsed"):
        entry = wanted[message.id]
        try:
            parsed = parsed_of_stored(message)
        except Exception as exc:  # the correction still teaches its neighbours
            logger.warning("Message %s no longer parses (%s): its corrected level teaches the "
                           "level head nothing", message.id, exc)  # fmt: skip
            continue
        entry["rules"] = rules_verdict(parsed, entry["seen_as"], policy)


def default_labelled_set() -> tuple[Path, Path]:
    samples = Path(settings.BASE_DIR) / "samples"
    return samples / "demo.mbox", samples / "demo_labels.csv"


def next_version_name() -> str:
    number = ModelVersion.objects.count() + 1
    while ModelVersion.objects.filter(name=f"v{number}").exists():
        number += 1
    return f"v{number}"


def _evaluation_summary(result: dict) -> dict:
    keep = ("messages", "category_accuracy", "priority_exact", "priority_within_one",
            "category_ece")  # fmt: skip
    return {name: result[name] for name in keep} | {"mistakes": result["mistakes"][:20]}


def retrain(*, mailbox: Path | None = None, labels: Path | None = None, force: bool = False,
            created_by: str = "", progress: Callable[[str], None] = lambda _: None,
            only_if_new: bool = False) -> RetrainResult | None:  # fmt: skip
    """Learn from all feedback so far. None when there is nothing (new) to learn from."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK])
        if not cursor.fetchone()[0]:
            raise RetrainError("Another retraining is running; try again when it has finished.")
    try:
        return _retrain(mailbox, labels, force, created_by, progress, only_if_new)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK])


def _retrain(mailbox, labels, force, created_by, progress, only_if_new) -> RetrainResult | None:
    training = collect_training_set()
    progress(f"Feedback: {training.feedback_count} decisions on {len(training.corrections)} "
             f"messages: {training.category_corrections} category corrections, "
             f"{training.priority_corrections} priority corrections, {len(training.replies)} "
             "approved replies.")  # fmt: skip
    if not training.corrections and not training.replies:
        progress("Nothing to learn from yet: no reviewed category, priority or reply.")
        return None
    latest = ModelVersion.objects.order_by("-created_at").first()
    if only_if_new and latest is not None and latest.feedback_count == training.feedback_count:
        progress(f"No feedback since {latest.name}; nothing to do.")
        return None

    default_mailbox, default_labels = default_labelled_set()
    mailbox, labels = Path(mailbox or default_mailbox), Path(labels or default_labels)
    for path in (mailbox, labels):
        if not path.is_file():
            raise RetrainError(f"The labelled set {path} does not exist: give --mailbox and "
                               "--labels (an mbox and its labels CSV).")  # fmt: skip
    labelled = load_labelled(mailbox, labels)
    kept = [
        item
        for item in labelled
        if bare_message_id(item.message.message_id) not in training.message_ids
    ]
    excluded = len(labelled) - len(kept)
    if not kept:
        raise RetrainError(f"Every message of {mailbox} has feedback: evaluate on another "
                           "labelled set (--mailbox, --labels).")  # fmt: skip

    progress("Loading the models...")
    triager = get_triager()
    active = triager.setup
    add_rules_verdicts(training, active.policy)
    progress(f"Evaluating the active model ({active.learned.version}) on {len(kept)} labelled "
             f"messages of {mailbox.name}" + (f" ({excluded} left out: feedback came from them)"
                                              if excluded else "") + "...")  # fmt: skip
    before = evaluate_triage(triager, kept)

    texts = [c["text"] for c in training.corrections] + [
        r["message_text"] for r in training.replies
    ]
    vectors = triager.encoder.encode(texts).vectors if triager.encoder is not None else None
    candidate = ModelVersion(
        name=next_version_name(), created_by=created_by,
        encoder_version=triager.versions["encoder"] if triager.encoder is not None else "",
        corrections=training.corrections, replies=training.replies,
        vectors=pack_vectors(list(vectors)) if vectors is not None else b"",
        feedback_count=training.feedback_count,
    )  # fmt: skip
    progress(f"Fitting {candidate.name} and evaluating it on the same messages...")
    setup = setup_from_database(triager, model=candidate)
    if setup is None:
        raise RetrainError("No category is configured: add categories in the admin first.")
    try:
        triager.reconfigure(setup)
        after = evaluate_triage(triager, kept)
    finally:
        triager.reconfigure(active)

    worse = [name for name in GUARDED if after[name] < before[name] - 1e-9]
    activated = not worse or force
    candidate.evaluation = {
        "labelled_set": str(mailbox.name),
        "excluded": excluded,
        "before_version": active.learned.version,
        "before": _evaluation_summary(before),
        "after": _evaluation_summary(after),
        "worse": worse,
        "refused": bool(worse) and not force,
        "forced": bool(worse) and force,
    }
    with transaction.atomic():
        candidate.save()
        if activated:
            candidate.activate()
    return RetrainResult(candidate, activated, before, after, excluded, training)
