"""Build the triage engine from Django settings, once per process."""

from __future__ import annotations

import threading

from django.conf import settings

from apps.triage.engine.pipeline import TriageConfig, Triager

_triager: Triager | None = None
_lock = threading.Lock()
_threads_after_fork = 0


def triage_config(**overrides) -> TriageConfig:
    values = {**settings.MAILSCORE_TRIAGE, **overrides}
    return TriageConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def get_triager(**overrides) -> Triager:
    """The process's triager; models load on first use and stay loaded."""
    global _triager
    if overrides:
        return Triager(triage_config(**overrides))
    with _lock:
        if _triager is None:
            _triager = Triager(triage_config())
        return _triager


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
    return get_triager()


def after_fork() -> None:
    if _threads_after_fork:
        import torch

        torch.set_num_threads(_threads_after_fork)
