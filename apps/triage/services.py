"""Build the triage engine from Django settings and the team's configuration, once per process,
and keep it in step with the admin: every call compares the configuration's revision and, when it
moved, rebuilds the categories, templates, sender rules and learned model (not the encoder)."""

from __future__ import annotations

import logging
import threading

import numpy as np
from django.conf import settings
from django.db import DatabaseError

from apps.triage.engine.classify import SenderLists
from apps.triage.engine.draft import ApprovedReply
from apps.triage.engine.learning import Correction, Learned, unpack_vectors
from apps.triage.engine.pipeline import TriageConfig, Triager, TriageSetup
from apps.triage.engine.priority import PriorityPolicy
from apps.triage.engine.taxonomy import Category, Taxonomy

logger = logging.getLogger(__name__)

_triager: Triager | None = None
_revision: int | None = None
_lock = threading.Lock()
_threads_after_fork = 0


def triage_config(**overrides) -> TriageConfig:
    values = {**settings.MAILSCORE_TRIAGE, **overrides}
    return TriageConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def get_triager(**overrides) -> Triager:
    """The process's triager; models load on first use and stay loaded. Its configuration
    follows the admin's, checked on every call (one indexed read)."""
    global _triager
    if overrides:
        return Triager(triage_config(**overrides))
    with _lock:
        if _triager is None:
            _triager = Triager(triage_config())
        _follow_configuration(_triager)
        return _triager


def _follow_configuration(triager: Triager) -> None:
    global _revision
    from apps.triage.models import ConfigRevision

    try:
        revision = ConfigRevision.current()
        if revision == _revision:
            return
        setup = setup_from_database(triager)
    except DatabaseError as exc:
        # Without the database (or before migrate) the packaged configuration still triages.
        logger.warning("Triage configuration not read from the database: %s", exc)
        return
    except ValueError as exc:
        logger.error("The triage configuration in the admin is not usable, keeping the one "
                     "loaded: %s", exc)  # fmt: skip
        _revision = revision
        return
    if setup is not None:
        triager.reconfigure(setup)
        logger.info("Triage configuration changed; learned model: %s", setup.learned.version)
    _revision = revision


def setup_from_database(triager: Triager, *, model=None) -> TriageSetup | None:
    """The team's configuration as the engine takes it; None while no category is configured.
    model: a ModelVersion to use instead of the active one ("none" for no learned model)."""
    from apps.triage.models import CategoryConfig, ModelVersion, SenderRule

    categories = list(CategoryConfig.objects.select_related("reply_template"))
    if not categories:
        return None
    taxonomy = Taxonomy(
        [Category(c.name, c.description, c.expects_reply, tuple(c.example_list))
         for c in categories],
        version="admin",
    )  # fmt: skip
    templates = {"version": "admin", "categories": {}}
    for category in categories:
        template = category.reply_template
        if template is not None and category.expects_reply:
            templates["categories"][category.name] = {
                "name": template.name, "opening": template.opening, "body": template.body,
                "closing": template.closing, "team": template.signature,
            }  # fmt: skip
    rules = list(SenderRule.objects.values_list("kind", "value"))
    config = triager.config
    vips = [v for k, v in rules if k == SenderRule.Kind.VIP]
    policy = PriorityPolicy(
        vip_addresses=frozenset([a.lower() for a in config.vip_addresses]
                                + [v for v in vips if "@" in v]),
        vip_domains=frozenset([d.lower() for d in config.vip_domains]
                              + [v for v in vips if "@" not in v]),
        category_base={c.name: c.priority_base for c in categories},
    )  # fmt: skip
    senders = SenderLists(
        allow=frozenset(v for k, v in rules if k == SenderRule.Kind.ALLOW),
        deny=frozenset(v for k, v in rules if k == SenderRule.Kind.DENY),
    )
    if model is None:
        model = ModelVersion.objects.filter(active=True).first()
    learned = learned_from(model, triager) if model not in (None, "none") else Learned()
    return TriageSetup(taxonomy, templates, policy, senders, learned)


def learned_from(model, triager: Triager) -> Learned:
    """A stored model version as the engine takes it. Its embeddings are used where the encoder
    is the one that made them; otherwise the texts are encoded again."""
    corrections, replies = model.corrections or [], model.replies or []
    vectors: np.ndarray | None = None
    encoder = triager.encoder
    if encoder is not None:
        if model.encoder_version == encoder.version and model.vectors:
            vectors = unpack_vectors(model.vectors, encoder.dimension)
        texts = [c["text"] for c in corrections] + [r["message_text"] for r in replies]
        if texts and (vectors is None or len(vectors) != len(texts)):
            vectors = encoder.encode(texts).vectors
    learned = Learned(version=model.name)
    for i, item in enumerate(corrections):
        learned.corrections.append(Correction(
            text=item["text"], category=item.get("category") or None,
            priority=item.get("priority") or None,
            vector=vectors[i] if vectors is not None else None,
            weight=float(item.get("weight", 1.0)), 
            category_corrected=bool(item.get("category_corrected", True)),
            priority_corrected=bool(item.get("priority_corrected", True)),
            seen_as=item.get("seen_as"),
            rules_level=(item.get("rules") or {}).get("level"),
            rules_score=(item.get("rules") or {}).get("score"),
        ))  # fmt: skip
    if vectors is not None:
        for j, item in enumerate(replies):
            learned.replies.append(ApprovedReply(
                item["category"], vectors[len(corrections) + j], item["reply"],
                label=f"approved reply #{item.get('id', j + 1)}",
            ))  # fmt: skip
    return learned


def load_before_fork() -> Triager:
    """Load the models in a process that will then fork its workers, which share them.

    Torch's thread pool does not survive a fork: a child's first inference waits for ever on a
    lock held by a thread it does not have. So the load-time inference here runs on one thread,
    and after_fork() gives each child the pool back."""
    import os

    import torch

    global _threads_after_fork
    # The tokenizer's own threads have the same problem.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _threads_after_fork = _threads_after_fork or torch.get_num_threads()
    torch.set_num_threads(1)
    triager = get_triager()
    # Reading the configuration opened a database connection; the children must not share it.
    from django.db import connections

    connections.close_all()
    return triager


def after_fork() -> None:
    if _threads_after_fork:
        import torch

        torch.set_num_threads(_threads_after_fork)
